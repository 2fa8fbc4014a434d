//! Real slots reused through the control plane: once all `MAX_REALS`
//! slots have been handed out, a removed real's slot goes to the next new
//! real, possibly of another service, while sessions of the removed real
//! still name it. The slot's new generation keeps those sessions from
//! following it (the golden table holds the kernel's side with hand-made
//! map contents; this test goes through `L4Plane`).
//!
//! Needs root (CAP_BPF), like the golden table.
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "common/resolver.rs"]
mod resolver;

use std::net::{IpAddr, Ipv4Addr};

use resolver::Fixed;
use sluice_core::sched::L4Scheduler;
use sluice_core::service::OnRealDown;
use sluice_l4::{
    Dataplane, DataplaneParams, L4Plane, NeighbourResolver, RealSpec, ServiceSpec, verdict,
};
use sluice_testkit::frames::{LB_MAC, tcp, v4};
use sluice_wire::maps::{MAX_REALS, MAX_REALS_PER_VIP, MAX_VIPS, Method};

/// Ring size of the test program (a prime above the 64-entry `rr` cycle).
const RING: u32 = 67;
const CLIENT: [u8; 4] = [10, 94, 0, 2];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

fn vip(service: u8) -> [u8; 4] {
    [10, 96, service, 1]
}

fn real(service: u8, i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 95, service, i))
}

fn spec(service: u8) -> ServiceSpec {
    ServiceSpec {
        name: format!("s{service}"),
        vip: IpAddr::V4(Ipv4Addr::from(vip(service))),
        port: 80,
        proto: 6,
        method: Method::Dr,
        scheduler: L4Scheduler::Rr,
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
        reals: (1..=MAX_REALS_PER_VIP as u8)
            .map(|i| RealSpec {
                addr: real(service, i),
                weight: 1,
                port: 0,
            })
            .collect(),
    }
}

/// The MAC a packet of the flow from `sport` to service 0 went to.
fn sent_to(plane: &L4Plane<Fixed>, sport: u16, flags: u8) -> [u8; 6] {
    let frame = v4(CLIENT, vip(0), 6, &tcp(sport, 80, flags));
    let out = plane.dataplane().test_run(&frame, 1).unwrap();
    assert_eq!(out.verdict, verdict::TX);
    out.frame[0..6].try_into().unwrap()
}

#[test]
fn a_reused_slot_does_not_take_the_old_reals_sessions_along() {
    // Every slot in use: MAX_VIPS services of MAX_REALS_PER_VIP reals.
    assert_eq!(MAX_VIPS * MAX_REALS_PER_VIP, MAX_REALS);
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut plane = L4Plane::new(dp, Fixed);
    plane
        .apply((0..MAX_VIPS as u8).map(spec).collect())
        .unwrap();

    // A flow of service 0, on real `old`.
    const PORT: u16 = 40000;
    let old_mac = sent_to(&plane, PORT, SYN);
    let old = IpAddr::V4(Ipv4Addr::new(10, 95, old_mac[4], old_mac[5]));
    assert_eq!(old_mac[4], 0, "set-up: a real of service 0");

    // The real leaves service 0, then one of service 1's (to make room
    // there); service 1 gets a new real, which gets the slot freed first:
    // the old real's.
    plane.remove_real("s0", old).unwrap();
    plane.remove_real("s1", real(1, 1)).unwrap();
    let newcomer = real(1, 200);
    plane
        .add_real(
            "s1",
            RealSpec {
                addr: newcomer,
                weight: 1,
                port: 0,
            },
        )
        .unwrap();
    let newcomer_mac = Fixed.resolve(newcomer).unwrap();

    // The old real's session is not the newcomer's.
    let listed = plane.list().unwrap();
    let s1 = listed.iter().find(|s| s.name == "s1").unwrap();
    let n = s1
        .reals
        .iter()
        .find(|r| r.address == newcomer.to_string())
        .unwrap();
    assert_eq!(
        (n.active, n.inactive),
        (0, 0),
        "a session of the slot's previous real counted for the newcomer"
    );

    // The flow's next packet stays in service 0.
    let to = sent_to(&plane, PORT, ACK);
    assert_ne!(
        to, newcomer_mac,
        "the session followed its slot to service 1"
    );
    assert_eq!(to[4], 0, "rescheduled within service 0");
    assert_ne!(to, old_mac, "not to the removed real");
}

#[test]
fn a_real_a_reload_removes_drains_until_its_sessions_end() {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut plane = L4Plane::new(dp, Fixed);
    let mut s = spec(0);
    s.reals.truncate(3);
    plane.apply(vec![s.clone()]).unwrap();
    // A flow on one real; then a reload without that real (and without
    // another one that has no session).
    const PORT: u16 = 41000;
    let mac = sent_to(&plane, PORT, SYN);
    let busy = IpAddr::V4(Ipv4Addr::new(10, 95, mac[4], mac[5]));
    let idle = s.reals.iter().map(|r| r.addr).find(|a| *a != busy).unwrap();
    let mut reloaded = s.clone();
    reloaded.reals.retain(|r| r.addr != busy && r.addr != idle);
    plane.apply(vec![reloaded.clone()]).unwrap();
    let operators = |plane: &L4Plane<Fixed>| -> Vec<(String, &'static str)> {
        plane.list().unwrap()[0]
            .reals
            .iter()
            .map(|r| (r.address.clone(), r.operator))
            .collect()
    };
    let ops = operators(&plane);
    assert!(ops.contains(&(busy.to_string(), "leaving")), "{ops:?}");
    // The flow stays on its real; new flows avoid it.
    for _ in 0..3 {
        assert_eq!(sent_to(&plane, PORT, ACK), mac);
    }
    for p in 0..20 {
        assert_ne!(
            sent_to(&plane, 42000 + p, SYN),
            mac,
            "a new flow went to the leaving real"
        );
    }
    // The control loop retires the one without sessions and keeps the busy one.
    plane.reconcile_conns().unwrap();
    let ops = operators(&plane);
    assert!(ops.iter().all(|(a, _)| *a != idle.to_string()), "{ops:?}");
    assert!(ops.contains(&(busy.to_string(), "leaving")), "{ops:?}");
    // Back in a later reload: the same slot, the flow still on it.
    plane.apply(vec![s]).unwrap();
    assert!(operators(&plane).contains(&(busy.to_string(), "enabled")));
    assert_eq!(sent_to(&plane, PORT, ACK), mac);
}
