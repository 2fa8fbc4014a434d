//! What connection sync's table test and lag bench share: an L4 plane
//! loaded with one `dr` service of 4 reals (`rr`), and client addresses.
//! Included by `#[path]` (not part of `common`: other tests need no
//! session table of their own).
#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr};

use sluice_core::sched::L4Scheduler;
use sluice_core::service::OnRealDown;
use sluice_l4::{Dataplane, DataplaneParams, L4Plane, NeighbourResolver, RealSpec, ServiceSpec};
use sluice_testkit::frames::LB_MAC;
use sluice_wire::maps::Method;

pub const VIP: [u8; 4] = [10, 91, 0, 1];
pub const RING: u32 = 67;

#[derive(Debug)]
pub struct Fixed;

impl NeighbourResolver for Fixed {
    fn resolve(&mut self, _: IpAddr) -> Option<[u8; 6]> {
        Some([0x02, 0x95, 0, 0, 0, 1])
    }
}

pub fn plane(capacity: u32) -> L4Plane<Fixed> {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            session_capacity: capacity,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut p = L4Plane::new(dp, Fixed);
    p.apply(vec![ServiceSpec {
        name: "web".into(),
        vip: IpAddr::V4(Ipv4Addr::from(VIP)),
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
        reals: (1..=4)
            .map(|i| RealSpec {
                addr: IpAddr::V4(Ipv4Addr::new(10, 91, 1, i)),
                weight: 1,
                port: 0,
            })
            .collect(),
    }])
    .unwrap();
    p
}

/// The `i`-th connection's client address and port.
pub fn client(i: u32) -> ([u8; 4], u16) {
    let host = i / 50_000;
    (
        [10, 90, (host >> 8) as u8, host as u8],
        10_000 + (i % 50_000) as u16,
    )
}
