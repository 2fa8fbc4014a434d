//! `tun` without `tun_source` sends from the interface's own address (as
//! docs/CONFIG.md promises), never from `0.0.0.0`; with no address to use,
//! the service is refused. Runs the control plane over the loaded XDP
//! program with `BPF_PROG_TEST_RUN` (root).
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};

use sluice_core::sched::L4Scheduler;
use sluice_core::service::OnRealDown;
use sluice_l4::{
    Dataplane, DataplaneParams, L4Plane, NeighbourResolver, RealSpec, ServiceSpec, verdict,
};
use sluice_testkit::frames::{LB_MAC, tcp, v4};
use sluice_wire::maps::Method;

const VIP: [u8; 4] = [10, 96, 255, 1];
const CLIENT: [u8; 4] = [10, 96, 0, 2];
const IFACE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 1);
const EXPLICIT: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 9);
/// Maglev table size of the test service (a small prime).
const TABLE: u32 = 251;
/// Offset of the outer IPv4 source address in an encapsulated frame.
const OUTER_SRC: std::ops::Range<usize> = 26..30;

#[derive(Debug)]
struct Fixed;

impl NeighbourResolver for Fixed {
    fn resolve(&mut self, _: IpAddr) -> Option<[u8; 6]> {
        Some([0x02, 0x96, 0, 0, 0, 1])
    }
}

fn spec(tun_source: Option<Ipv4Addr>) -> ServiceSpec {
    ServiceSpec {
        name: "t".into(),
        vip: IpAddr::V4(Ipv4Addr::from(VIP)),
        port: 80,
        proto: 6,
        method: Method::Tun,
        scheduler: L4Scheduler::Mh,
        persistence: None,
        table_size: TABLE,
        tun_source: tun_source.map(IpAddr::V4),
        tun_vary_source: false,
        local_addresses: Vec::new(),
        local_ports: (1024, 32767),
        toa: false,
        on_real_down: OnRealDown::Keep,
        fail_open: false,
        initially_up: true,
        reals: vec![RealSpec {
            addr: IpAddr::V4(Ipv4Addr::new(10, 96, 1, 11)),
            weight: 1,
            port: 0,
        }],
    }
}

/// The outer source of the encapsulated SYN from client port `sport`.
fn outer_source(plane: &L4Plane<Fixed>, sport: u16) -> [u8; 4] {
    let out = plane
        .dataplane()
        .test_run(&v4(CLIENT, VIP, 6, &tcp(sport, 80, 0x02)), 1)
        .unwrap();
    assert_eq!(out.verdict, verdict::TX);
    out.frame[OUTER_SRC].try_into().unwrap()
}

#[test]
fn tun_sends_from_the_interface_address_unless_told_otherwise() {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: TABLE,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut plane = L4Plane::new(dp, Fixed);
    // No address to send from: refused, not sent from 0.0.0.0.
    let err = plane.apply(vec![spec(None)]).unwrap_err().to_string();
    assert!(err.contains("tun needs an outer source"), "{err}");
    plane.set_outer_sources(Some(IFACE_ADDR), None);
    plane.apply(vec![spec(None)]).unwrap();
    assert_eq!(outer_source(&plane, 1000), IFACE_ADDR.octets());
    // An explicit tun_source wins.
    plane.apply(vec![spec(Some(EXPLICIT))]).unwrap();
    assert_eq!(outer_source(&plane, 1001), EXPLICIT.octets());
}
