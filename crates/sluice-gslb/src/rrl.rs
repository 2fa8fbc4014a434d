//! Response rate limiting (no I/O; time passed in): a token bucket per
//! source prefix (IPv4 /24, IPv6 /56, as BIND's RRL), so a spoofed-source
//! flood cannot use the server as an amplifier. Only UDP is limited (a
//! TCP client has proven its address).
//!
//! Over the limit, every [`SLIP`]-th response goes out truncated (TC set,
//! no records): a real client behind a busy prefix retries over TCP and
//! still gets its answer; the others are dropped.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// IPv4 source prefix length a bucket covers.
pub const V4_PREFIX: u8 = 24;
/// IPv6 source prefix length a bucket covers.
pub const V6_PREFIX: u8 = 56;
/// One limited response in this many goes out truncated instead of
/// dropped.
pub const SLIP: u32 = 2;
/// Most buckets kept; when full, buckets idle for [`IDLE`] are dropped,
/// and if none are, the whole table is cleared (an attacker spraying
/// prefixes then meets full buckets, never an unbounded table).
pub const MAX_BUCKETS: usize = 65_536;
/// A bucket unused this long is forgotten when the table is full.
pub const IDLE: Duration = Duration::from_secs(10);

/// What to do with one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send it truncated (TC, no records).
    Slip,
    /// Drop it.
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens, in millionths of a response.
    tokens: u64,
    /// Last refill, as time since the limiter's epoch.
    at: Duration,
    /// Responses limited so far (drives the slip).
    limited: u32,
}

/// Token buckets per source prefix: `rate` responses per second, bursts
/// of up to `rate` (one second's worth).
#[derive(Debug)]
pub struct RateLimiter {
    rate: u64,
    buckets: HashMap<u128, Bucket>,
}

const MICRO: u64 = 1_000_000;

impl RateLimiter {
    /// A limiter of `rate` responses per second per prefix (`rate` > 0).
    pub fn new(rate: u32) -> Self {
        Self {
            rate: u64::from(rate.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// The verdict for one response to `src` at `now` (monotonic, since
    /// any fixed epoch).
    pub fn check(&mut self, src: IpAddr, now: Duration) -> Verdict {
        let key = prefix_key(src);
        let cap = self.rate * MICRO;
        if self.buckets.len() >= MAX_BUCKETS && !self.buckets.contains_key(&key) {
            self.buckets.retain(|_, b| now.saturating_sub(b.at) < IDLE);
            if self.buckets.len() >= MAX_BUCKETS {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: cap,
            at: now,
            limited: 0,
        });
        let elapsed = now.saturating_sub(b.at);
        let refill = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .saturating_mul(self.rate);
        b.tokens = b.tokens.saturating_add(refill).min(cap);
        b.at = now;
        if b.tokens >= MICRO {
            b.tokens -= MICRO;
            return Verdict::Send;
        }
        b.limited = b.limited.wrapping_add(1);
        if b.limited.is_multiple_of(SLIP) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

/// The bucket key of a source: its /24 or /56, with a family tag.
fn prefix_key(src: IpAddr) -> u128 {
    match src {
        IpAddr::V4(a) => u128::from(u32::from(a) >> (32 - V4_PREFIX)) | (1 << 127),
        IpAddr::V6(a) => u128::from(a) >> (128 - V6_PREFIX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn a_burst_then_the_rate() {
        let mut l = RateLimiter::new(10);
        let t = Duration::from_secs(100);
        for _ in 0..10 {
            assert_eq!(l.check(ip("192.0.2.1"), t), Verdict::Send);
        }
        // Over the limit: drop, slip, drop, slip...
        assert_eq!(l.check(ip("192.0.2.1"), t), Verdict::Drop);
        assert_eq!(l.check(ip("192.0.2.200"), t), Verdict::Slip); // same /24
        assert_eq!(l.check(ip("192.0.2.1"), t), Verdict::Drop);
        // Another prefix has its own bucket.
        assert_eq!(l.check(ip("192.0.3.1"), t), Verdict::Send);
        // 100 ms later: one more token.
        let t = t + Duration::from_millis(100);
        assert_eq!(l.check(ip("192.0.2.1"), t), Verdict::Send);
        assert_ne!(l.check(ip("192.0.2.1"), t), Verdict::Send);
    }

    #[test]
    fn ipv6_buckets_are_per_56() {
        let mut l = RateLimiter::new(1);
        let t = Duration::ZERO;
        assert_eq!(l.check(ip("2001:db8:0:1::1"), t), Verdict::Send);
        assert_ne!(l.check(ip("2001:db8:0:2::1"), t), Verdict::Send); // same /56
        assert_eq!(l.check(ip("2001:db8:0:100::1"), t), Verdict::Send); // next /56
    }

    #[test]
    fn the_table_is_bounded() {
        let mut l = RateLimiter::new(1);
        for i in 0..(MAX_BUCKETS as u32 + 10) {
            let a = std::net::Ipv4Addr::from(i << 8);
            l.check(IpAddr::V4(a), Duration::ZERO);
        }
        assert!(l.buckets.len() <= MAX_BUCKETS);
    }
}
