//! A small non-cryptographic random source (SplitMix64) seeded from the
//! standard library's randomly keyed hasher: enough for jitter, ICMP ids,
//! ephemeral ports and initial sequence numbers, without another crate.

use std::hash::{BuildHasher, RandomState};

/// SplitMix64 (Steele, Lea, Flood 2014): a 64-bit state, full period.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Seeded from SipHash keys that the standard library draws from the OS
    /// (and varies per `RandomState`), mixed with the current time.
    pub(crate) fn from_entropy() -> Self {
        let now = std::time::SystemTime::now();
        Self(RandomState::new().hash_one(now))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub(crate) fn next_u16(&mut self) -> u16 {
        (self.next_u64() >> 48) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_differ_and_values_vary() {
        let mut a = Rng::from_entropy();
        let mut b = Rng::from_entropy();
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_ne!(xs, ys);
        assert!(xs.windows(2).all(|w| w[0] != w[1]));
    }
}
