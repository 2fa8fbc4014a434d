//! Small, deterministic, dependency-free hash functions.
//!
//! Every consistent-hashing table in sluice (Maglev, source/destination hash,
//! L7 `source`/`uri`/`consistent`) must produce the *same* result on every
//! load balancer and across restarts, so the functions here are fixed
//! algorithms with fixed constants: never `std`'s randomly keyed `HashMap`
//! hasher. They are not cryptographic; an attacker who can choose keys can
//! skew a table, which is the same trade-off IPVS and Katran make.
//!
//! - [`mix64`] is the SplitMix64 / MurmurHash3 `fmix64` style finaliser: a
//!   bijection on `u64` with full avalanche.
//! - [`hash_bytes`] is 64-bit FNV-1a over the bytes, seeded, then [`mix64`]
//!   (FNV-1a alone avalanches poorly on short keys such as IPv4 addresses).

use std::net::IpAddr;

/// FNV-1a 64-bit offset basis (from the FNV specification).
const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime (from the FNV specification).
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Finalises a 64-bit value: the SplitMix64 output function (Steele, Lea,
/// Flood 2014). A bijection, so distinct inputs never collide.
pub const fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Hashes `bytes` with `seed`: FNV-1a 64 over the seed's and the input's
/// bytes, then [`mix64`]. Deterministic across platforms and releases.
pub fn hash_bytes(bytes: &[u8], seed: u64) -> u64 {
    let mut h = FNV_OFFSET_BASIS;
    for b in seed.to_le_bytes().iter().chain(bytes) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix64(h)
}

/// Hashes a `u64` key with `seed` (used for Maglev permutations, where the
/// key is a real's stable id).
pub const fn hash_u64(key: u64, seed: u64) -> u64 {
    // Two rounds so that seeds differing in one bit give unrelated outputs.
    mix64(mix64(key) ^ seed)
}

/// Hashes an IP address (and optionally a port) for source/destination
/// hashing. IPv4 and IPv6 addresses hash their network-order octets; the
/// port, when given, is appended big-endian.
pub fn hash_ip(ip: IpAddr, port: Option<u16>, seed: u64) -> u64 {
    // 16 address octets + 2 port octets.
    let mut buf = [0u8; 18];
    let len = match ip {
        IpAddr::V4(a) => {
            buf[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            buf[..16].copy_from_slice(&a.octets());
            16
        }
    };
    let len = match port {
        Some(p) => {
            buf[len..len + 2].copy_from_slice(&p.to_be_bytes());
            len + 2
        }
        None => len,
    };
    hash_bytes(&buf[..len], seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn fnv_core_matches_reference_vector() {
        // FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c (FNV reference test suite);
        // check our core by undoing nothing: recompute without seed bytes.
        let mut h = FNV_OFFSET_BASIS;
        h ^= u64::from(b'a');
        h = h.wrapping_mul(FNV_PRIME);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        assert_eq!(hash_bytes(b"abc", 1), hash_bytes(b"abc", 1));
        assert_ne!(hash_bytes(b"abc", 1), hash_bytes(b"abc", 2));
        assert_ne!(hash_bytes(b"abc", 1), hash_bytes(b"abd", 1));
        assert_ne!(hash_u64(1, 0), hash_u64(1, 1));
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert_ne!(hash_ip(ip, None, 0), hash_ip(ip, Some(80), 0));
        assert_ne!(hash_ip(ip, Some(80), 0), hash_ip(ip, Some(81), 0));
    }

    #[test]
    fn mix64_spreads_consecutive_keys() {
        // Consecutive keys must land in different halves often enough: a
        // crude avalanche check (the low bit is ~uniform).
        let ones = (0u64..10_000).filter(|k| mix64(*k) & 1 == 1).count();
        assert!((4_500..5_500).contains(&ones), "{ones}");
    }
}
