//! Rate limiting, sans-IO: the caller passes the time in.

use std::time::{Duration, Instant};

/// Token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn new(rate_per_sec: u32, burst: u32, now: Instant) -> Self {
        Self {
            rate_per_sec: f64::from(rate_per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Take one token, or say how long until one is available.
    pub(crate) fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.tokens) / self.rate_per_sec,
            ))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        for _ in 0..3 {
            b.try_take(t0).unwrap();
        }
        let wait = b.try_take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-6, "{wait:?}");
        assert!(b.try_take(t0 + Duration::from_millis(50)).is_err());
        b.try_take(t0 + Duration::from_millis(101)).unwrap();
        // Refill is capped at the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            b.try_take(later).unwrap();
        }
        assert!(b.try_take(later).is_err());
    }
}
