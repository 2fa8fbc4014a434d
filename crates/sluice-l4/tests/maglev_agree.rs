//! LBs with different histories agree on the Maglev ring (issue 17): two
//! planes reach the same reals, weights, health and operator states through
//! different sequences of adds, removals, weight changes and health flaps,
//! and a third starts fresh from that state. The rings the kernel reads must
//! name the same real at every entry, or ECMP and failover between them
//! would move flows.
//!
//! Ring entries are real slots, which each plane allocates by its own
//! history, so entries are compared through the real definition the kernel
//! holds for the slot (address, MAC, flags, weight, port), without the
//! slot's generation (also the plane's own).
//!
//! Needs root (CAP_BPF), like the golden table.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "common/resolver.rs"]
mod resolver;

use std::net::{IpAddr, Ipv4Addr};

use resolver::Fixed;
use sluice_core::sched::L4Scheduler;
use sluice_core::service::{OnRealDown, OperatorState};
use sluice_l4::{Dataplane, DataplaneParams, L4Plane, RealSpec, ServiceSpec};
use sluice_testkit::frames::LB_MAC;
use sluice_wire::maps::{Method, RealDef, addr_v4, family};

/// Ring size of the test program and the service's table (a prime).
const RING: u32 = 251;
const NAME: &str = "web";
const VIP: [u8; 4] = [10, 96, 0, 1];

fn addr(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 95, 0, i))
}

fn real(i: u8, weight: u32) -> RealSpec {
    RealSpec {
        addr: addr(i),
        weight,
        port: 0,
    }
}

fn spec(reals: Vec<RealSpec>) -> ServiceSpec {
    ServiceSpec {
        name: NAME.to_owned(),
        vip: IpAddr::V4(Ipv4Addr::from(VIP)),
        port: 80,
        proto: 6,
        method: Method::Dr,
        scheduler: L4Scheduler::Mh,
        persistence: None,
        table_size: RING,
        tun_source: None,
        tun_vary_source: false,
        local_addresses: Vec::new(),
        local_ports: (1024, 32767),
        toa: false,
        on_real_down: OnRealDown::Keep,
        fail_open: false,
        initially_up: true,
        reals,
    }
}

fn plane() -> L4Plane<Fixed> {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    L4Plane::new(dp, Fixed)
}

/// The service's ring as the kernel reads it: the raw slots, and each
/// entry's real definition without the slot's generation.
fn ring(plane: &L4Plane<Fixed>) -> (Vec<u32>, Vec<RealDef>) {
    let dp = plane.dataplane();
    let vip = dp
        .vip_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.key.family == family::V4 && s.key.addr == addr_v4(VIP) && s.key.port == 80)
        .expect("the service is in the kernel's table");
    let slots = dp.ring(vip.meta.vip_index, vip.meta.ring_len).unwrap();
    let defs = slots
        .iter()
        .map(|&s| RealDef {
            generation: 0,
            ..dp.real(s).unwrap()
        })
        .collect();
    (slots, defs)
}

/// The final state every history reaches: 1 (weight 1), 2 (2), 3 (1,
/// health down), 4 (3), 5 (1, drained by the operator), 6 (1).
fn final_reals() -> Vec<RealSpec> {
    vec![
        real(1, 1),
        real(2, 2),
        real(3, 1),
        real(4, 3),
        real(5, 1),
        real(6, 1),
    ]
}

#[test]
fn planes_with_different_histories_write_the_same_ring() {
    // A: the reals in address order, with a real that comes and goes,
    // flaps, and weights changed late.
    let mut a = plane();
    a.apply(vec![spec(vec![
        real(1, 1),
        real(2, 1),
        real(3, 1),
        real(4, 1),
        real(7, 1),
    ])])
    .unwrap();
    assert!(a.set_health(NAME, addr(2), false).unwrap());
    assert!(a.set_health(NAME, addr(2), true).unwrap());
    a.remove_real(NAME, addr(7)).unwrap();
    a.add_real(NAME, real(5, 1)).unwrap();
    a.add_real(NAME, real(6, 1)).unwrap();
    a.set_weight(NAME, addr(2), 2).unwrap();
    a.set_weight(NAME, addr(4), 3).unwrap();
    assert!(a.set_health(NAME, addr(3), false).unwrap());
    assert!(a.set_health(NAME, addr(1), false).unwrap());
    assert!(a.set_health(NAME, addr(1), true).unwrap());
    a.set_operator(NAME, addr(5), OperatorState::Drain).unwrap();

    // B: the reals in reverse order, another real that comes and goes,
    // other flaps, a weight changed and changed back, and the last step a
    // reload of the whole configuration in yet another order.
    let mut b = plane();
    b.apply(vec![spec(vec![
        real(6, 1),
        real(5, 1),
        real(8, 4),
        real(4, 3),
    ])])
    .unwrap();
    assert!(b.set_health(NAME, addr(4), false).unwrap());
    assert!(b.set_health(NAME, addr(4), true).unwrap());
    b.add_real(NAME, real(3, 1)).unwrap();
    b.set_operator(NAME, addr(5), OperatorState::Drain).unwrap();
    b.add_real(NAME, real(2, 2)).unwrap();
    b.remove_real(NAME, addr(8)).unwrap();
    b.add_real(NAME, real(1, 5)).unwrap();
    assert!(b.set_health(NAME, addr(3), false).unwrap());
    assert!(b.set_health(NAME, addr(6), false).unwrap());
    b.set_weight(NAME, addr(1), 1).unwrap();
    assert!(b.set_health(NAME, addr(6), true).unwrap());
    let mut reordered = final_reals();
    reordered.swap(0, 4);
    reordered.swap(1, 3);
    b.apply(vec![spec(reordered)]).unwrap();

    // C: a peer started afresh in the final state.
    let mut c = plane();
    c.apply(vec![spec(final_reals())]).unwrap();
    assert!(c.set_health(NAME, addr(3), false).unwrap());
    c.set_operator(NAME, addr(5), OperatorState::Drain).unwrap();

    let (slots_a, ring_a) = ring(&a);
    let (slots_b, ring_b) = ring(&b);
    let (_, ring_c) = ring(&c);

    // The set-up did what it means to: a full ring, over the reals that
    // take new flows, in slots each plane numbered its own way.
    assert_eq!(ring_a.len(), RING as usize);
    assert_ne!(slots_a, slots_b, "set-up: the planes' slots differ");
    let mut named: Vec<IpAddr> = ring_a
        .iter()
        .map(|d| IpAddr::V4(Ipv4Addr::from(d.addr[0].to_ne_bytes())))
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(named, vec![addr(1), addr(2), addr(4), addr(6)]);

    // Every entry names the same real on every plane.
    let differ = |x: &[RealDef], y: &[RealDef]| x.iter().zip(y).filter(|(p, q)| p != q).count();
    assert_eq!(differ(&ring_a, &ring_b), 0, "A and B disagree");
    assert_eq!(differ(&ring_a, &ring_c), 0, "A and the fresh C disagree");
    assert_eq!(ring_a, ring_b);
    assert_eq!(ring_a, ring_c);
}
