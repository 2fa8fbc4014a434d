//! Shared set-up of the data-plane benchmarks (`testrun`, `testrun_ab`, and
//! `sluice`'s `l4_pps`, which includes this file by path): three reals and
//! a hash-scheduled service per VIP on port 80/TCP, plus small helpers.
#![allow(dead_code, unreachable_pub)]

use sluice_l4::Dataplane;
use sluice_wire::maps::{Addr, RealDef, VipKey, VipMeta, addr_v4, family, real_flags, sched};

/// Maglev table size used (prime ≥ 100 × reals).
pub const RING: u32 = 65537;
/// Outer source address of `tun` services.
pub const TUN_SRC: [u8; 4] = [10, 99, 0, 1];

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn a4(a: [u8; 4]) -> Addr {
    addr_v4(a)
}

/// Reals 10.99.0.11-13 in slots 0-2; `mac(i)` is the MAC of slot `i`.
pub fn three_reals(dp: &mut Dataplane, mac: impl Fn(u32) -> [u8; 6]) {
    for i in 0..3u32 {
        dp.set_real(
            i,
            RealDef {
                addr: a4([10, 99, 0, 11 + i as u8]),
                mac: mac(i),
                family: family::V4,
                flags: real_flags::PRESENT | real_flags::HAS_MAC,
                weight: 1,
                ..Default::default()
            },
        )
        .unwrap();
    }
}

/// Service `idx` on `vip`:80/TCP with method `m`, hash-scheduled over the
/// three reals.
pub fn service(dp: &mut Dataplane, idx: u32, vip: [u8; 4], m: u8) {
    let ring: Vec<u32> = (0..RING).map(|i| i % 3).collect();
    dp.set_ring(idx, &ring).unwrap();
    dp.set_service(
        VipKey {
            addr: a4(vip),
            port: 80,
            proto: 6,
            family: family::V4,
        },
        VipMeta {
            vip_index: idx,
            method: m,
            sched: sched::HASH_FLOW,
            family: family::V4,
            ring_len: RING,
            tun_src: a4(TUN_SRC),
            ..Default::default()
        },
    )
    .unwrap();
}
