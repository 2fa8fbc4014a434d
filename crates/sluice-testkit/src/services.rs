//! The map contents of the data-plane benchmarks (`sluice-l4`'s `testrun`
//! and `testrun_ab`, `sluice`'s `l4_pps`): three reals and a hash-scheduled
//! service per VIP on port 80/TCP, plus the helpers the golden test shares.
//!
//! Plain values, not writes: this crate is a dev-dependency of `sluice-l4`
//! and cannot name its `Dataplane`, so each caller writes them itself
//! (`set_real` for each real; `set_ring`, then `set_service`, for each
//! service, so the kernel never sees a service pointing at no ring).

use sluice_wire::maps::{Addr, RealDef, VipKey, VipMeta, addr_v4, family, real_flags, sched};

/// Maglev table size used (prime ≥ 100 × reals).
pub const RING: u32 = 65537;
/// Session table size of the benchmarks' data plane: room for every flow
/// they create.
pub const SESSION_CAPACITY: u32 = 1 << 20;
/// Outer source address of `tun` services.
pub const TUN_SRC: [u8; 4] = [10, 99, 0, 1];
/// Real servers of [`three_reals`].
const REALS: u32 = 3;
/// The services' port.
const PORT: u16 = 80;
/// IP protocol number of TCP.
const TCP: u8 = 6;

/// An IPv4 address in the maps' layout.
#[must_use]
pub fn a4(a: [u8; 4]) -> Addr {
    addr_v4(a)
}

/// Reals 10.99.0.11-13 in slots 0-2, as (slot, real); `mac(i)` is the MAC
/// of slot `i`.
#[must_use]
pub fn three_reals(mac: impl Fn(u32) -> [u8; 6]) -> Vec<(u32, RealDef)> {
    (0..REALS)
        .map(|i| {
            let real = RealDef {
                addr: a4([10, 99, 0, 11 + i as u8]),
                mac: mac(i),
                family: family::V4,
                flags: real_flags::PRESENT | real_flags::HAS_MAC,
                weight: 1,
                ..Default::default()
            };
            (i, real)
        })
        .collect()
}

/// One service's map contents: its ring (under `index`) and its record.
#[derive(Debug, Clone)]
pub struct Service {
    /// The service's index: its ring's slot and `meta.vip_index`.
    pub index: u32,
    /// The ring over the reals of [`three_reals`], [`RING`] long.
    pub ring: Vec<u32>,
    /// The service's key (VIP, port, protocol).
    pub key: VipKey,
    /// The service's record.
    pub meta: VipMeta,
}

/// Service `index` on `vip`:80/TCP with method `m`, hash-scheduled over
/// the three reals.
#[must_use]
pub fn service(index: u32, vip: [u8; 4], m: u8) -> Service {
    Service {
        index,
        ring: (0..RING).map(|i| i % REALS).collect(),
        key: VipKey {
            addr: a4(vip),
            port: PORT,
            proto: TCP,
            family: family::V4,
        },
        meta: VipMeta {
            vip_index: index,
            method: m,
            sched: sched::HASH_FLOW,
            family: family::V4,
            ring_len: RING,
            tun_src: a4(TUN_SRC),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_wire::maps::method;

    #[test]
    fn three_reals_fill_slots_0_to_2() {
        let reals = three_reals(|i| [2, 0, 0, 0, 0, i as u8]);
        assert_eq!(
            reals
                .iter()
                .map(|(slot, r)| (*slot, r.mac[5]))
                .collect::<Vec<_>>(),
            [(0, 0), (1, 1), (2, 2)]
        );
        assert_eq!(reals[2].1.addr, a4([10, 99, 0, 13]));
    }

    #[test]
    fn a_service_rings_over_the_three_reals() {
        let s = service(1, [10, 99, 255, 2], method::TUN);
        assert_eq!((s.index, s.meta.vip_index), (1, 1));
        assert_eq!(s.ring.len(), RING as usize);
        assert_eq!(&s.ring[..4], &[0, 1, 2, 0]);
        assert_eq!((s.key.port, s.key.proto), (80, 6));
        assert_eq!(s.meta.tun_src, a4(TUN_SRC));
    }
}
