//! The flow hash shared by the XDP program and userspace (golden tests and
//! `sluice ctl` predictions must agree with the kernel bit for bit).
//!
//! It is the MurmurHash3 32-bit mix over fixed-size inputs: cheap in BPF (no
//! loops over variable lengths, no tables) and well distributed for the
//! ring index. Not a cryptographic hash: a client that wants to steer its
//! flows to one real can already do so with `sh`.

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

#[inline(always)]
fn mix(h: u32, k: u32) -> u32 {
    let k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    (h ^ k)
        .rotate_left(13)
        .wrapping_mul(5)
        .wrapping_add(0xe654_6b64)
}

#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

use crate::maps::Addr;

/// Hash of a 16-byte address alone (`sh`, `dh`, persistence).
#[inline(always)]
pub fn addr_hash(addr: &Addr, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, addr[0]);
    h = mix(h, addr[1]);
    h = mix(h, addr[2]);
    h = mix(h, addr[3]);
    fmix(h ^ 16)
}

/// Hash of a client flow: client address, both ports and the protocol
/// (`mh`, the outer-source variation of `tun`).
#[inline(always)]
pub fn flow_hash(src: &Addr, sport: u16, dport: u16, proto: u8, seed: u32) -> u32 {
    let mut h = seed;
    h = mix(h, src[0]);
    h = mix(h, src[1]);
    h = mix(h, src[2]);
    h = mix(h, src[3]);
    h = mix(h, ((sport as u32) << 16) | dport as u32);
    h = mix(h, proto as u32);
    fmix(h ^ 24)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_change_the_flow_hash() {
        let a = crate::maps::addr_v4([10, 0, 0, 1]);
        assert_ne!(flow_hash(&a, 1000, 80, 6, 0), flow_hash(&a, 1001, 80, 6, 0));
        assert_ne!(
            flow_hash(&a, 1000, 80, 6, 0),
            flow_hash(&a, 1000, 80, 17, 0)
        );
        assert_eq!(flow_hash(&a, 1000, 80, 6, 7), flow_hash(&a, 1000, 80, 6, 7));
    }

    #[test]
    fn spreads_sequential_ports_evenly() {
        let a = crate::maps::addr_v4([10, 0, 0, 2]);
        let mut buckets = [0u32; 7];
        for p in 0..7000u16 {
            buckets[(flow_hash(&a, 30000 + p, 80, 6, 0) % 7) as usize] += 1;
        }
        for b in buckets {
            assert!((850..1150).contains(&b), "{buckets:?}");
        }
    }
}
