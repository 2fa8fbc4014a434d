//! Source hash (`sh`) and destination hash (`dh`).
//!
//! IPVS fills a fixed 256-bucket table sequentially (`a` repeated weight
//! times, then `b`, ...), which starves reals once the weights add up to more
//! than 256 and reshuffles every bucket when a real goes away. sluice keeps
//! the IPVS *semantics* (hash an address, and optionally a port, to a
//! weighted bucket; the same client keeps the same real while the real set is
//! fixed) but uses a Maglev table for the buckets, so weights are honoured
//! at any scale and a change moves few buckets.
//!
//! The table is built from the **configured** reals and weights, not from
//! their health, so a health flap does not reshuffle other clients. When the
//! bucket's real does not accept new flows, [`HashTable::pick`] returns
//! `None` (IPVS default) or, with `fallback`, probes the following buckets
//! (IPVS `sh-fallback`).

use std::net::IpAddr;

use super::maglev::{maglev_lookup, maglev_table, min_table_size};
use super::{Real, SchedError};
use crate::hash::hash_ip;

/// Seed of the source-hash key (fixed: changing it remaps every client).
pub const SEED_SH: u64 = 0x0073_685f_6b65_7931;
/// Seed of the destination-hash key (fixed, see [`SEED_SH`]).
pub const SEED_DH: u64 = 0x0064_685f_6b65_7931;
/// Seed of [`real_key`].
pub const SEED_REAL: u64 = 0x7265_616c_5f6b_6579;

/// Key for `sh`: the client's address, plus its port when the service hashes
/// ports too (IPVS `sh-port`).
pub fn sh_key(src: IpAddr, src_port: Option<u16>) -> u64 {
    hash_ip(src, src_port, SEED_SH)
}

/// Key for `dh`: the destination address (used for cache farms).
pub fn dh_key(dst: IpAddr) -> u64 {
    hash_ip(dst, None, SEED_DH)
}

/// A stable key for a real, from its address and port, for Maglev and hash
/// tables. Two LBs configured with the same real get the same key.
pub fn real_key(addr: IpAddr, port: u16) -> u64 {
    hash_ip(addr, Some(port), SEED_REAL)
}

/// Weighted bucket table for `sh`/`dh` (a Maglev table, see module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashTable {
    /// Bucket -> index into the reals the table was built from.
    table: Vec<u32>,
}

// === impl HashTable ===

impl HashTable {
    /// Builds a table for `(stable key, configured weight)` reals at
    /// [`min_table_size`] buckets.
    ///
    /// # Errors
    ///
    /// As [`maglev_table`] (only possible for absurd real counts).
    pub fn build(reals: &[(u64, u32)]) -> Result<Self, SchedError> {
        Self::with_size(reals, min_table_size(reals.len()))
    }

    /// Builds a table with exactly `m` buckets (`m` prime).
    ///
    /// # Errors
    ///
    /// As [`maglev_table`].
    pub fn with_size(reals: &[(u64, u32)], m: usize) -> Result<Self, SchedError> {
        Ok(Self {
            table: maglev_table(reals, m)?,
        })
    }

    /// The buckets (for copying into a BPF map). Empty when no real has
    /// weight > 0.
    pub fn buckets(&self) -> &[u32] {
        &self.table
    }

    /// The real for `key` ([`sh_key`] / [`dh_key`]), given the reals' current
    /// state (same order as at build time). Without `fallback`, `None` when
    /// the bucket's real does not accept new flows; with it, the next bucket
    /// whose real does (at most one pass over the table).
    pub fn pick(&self, key: u64, reals: &[Real], fallback: bool) -> Option<usize> {
        let first = maglev_lookup(&self.table, key)? as usize;
        let ok = |i: usize| reals.get(i).is_some_and(Real::accepts_new);
        if ok(first) {
            return Some(first);
        }
        if !fallback {
            return None;
        }
        let m = self.table.len();
        let start = (key % m as u64) as usize;
        (1..m)
            .map(|k| self.table[(start + k) % m] as usize)
            .find(|&i| ok(i))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn setup(weights: &[u32]) -> (Vec<(u64, u32)>, Vec<Real>) {
        let keyed = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| (real_key(ip(100 + i as u32), 80), w))
            .collect();
        (keyed, weights.iter().map(|&w| Real::new(w)).collect())
    }

    #[test]
    fn same_client_same_real_and_weights_honoured() {
        let (keyed, reals) = setup(&[1, 3]);
        let t = HashTable::build(&keyed).unwrap();
        let mut hits = [0usize; 2];
        for c in 0..20_000 {
            let k = sh_key(ip(c), None);
            let r = t.pick(k, &reals, false).unwrap();
            assert_eq!(t.pick(k, &reals, false), Some(r), "stable");
            hits[r] += 1;
        }
        let share = hits[1] as f64 / 20_000.0;
        assert!((0.72..0.78).contains(&share), "{hits:?}");
    }

    #[test]
    fn unavailable_bucket_owner_without_and_with_fallback() {
        let (keyed, mut reals) = setup(&[1, 1, 1]);
        let t = HashTable::build(&keyed).unwrap();
        reals[1].available = false;
        let mut moved_from_1 = 0;
        for c in 0..2_000 {
            let k = sh_key(ip(c), Some(1234));
            let first = maglev_lookup(t.buckets(), k).unwrap() as usize;
            if first == 1 {
                assert_eq!(t.pick(k, &reals, false), None);
                let fb = t.pick(k, &reals, true).unwrap();
                assert_ne!(fb, 1);
                moved_from_1 += 1;
            } else {
                // Clients of healthy reals are not disturbed.
                assert_eq!(t.pick(k, &reals, false), Some(first));
                assert_eq!(t.pick(k, &reals, true), Some(first));
            }
        }
        assert!(moved_from_1 > 0);
        reals.iter_mut().for_each(|r| r.available = false);
        assert_eq!(t.pick(sh_key(ip(1), None), &reals, true), None);
    }

    #[test]
    fn dh_and_ports_change_the_key() {
        assert_ne!(dh_key(ip(1)), sh_key(ip(1), None));
        assert_ne!(sh_key(ip(1), Some(1)), sh_key(ip(1), Some(2)));
        let t = HashTable::build(&[]).unwrap();
        assert!(t.buckets().is_empty());
        assert_eq!(t.pick(5, &[], true), None);
    }
}
