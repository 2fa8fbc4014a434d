//! sluice-core's one rule for what a real gets (health × operator state ×
//! `on_real_down` × `fail_open`, `sluice_core::service`), run through the
//! L4 control plane and the XDP program: for every case of the rule's
//! table, the control plane applies the state and `BPF_PROG_TEST_RUN`
//! shows whether the real keeps an established flow and whether it gets
//! new ones. The checker and the proxy run the same table
//! (sluice-health's `tests/checker.rs`, sluice-proxy's `tests/service_rule.rs`).
//!
//! Needs root (CAP_BPF), like the golden table.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{IpAddr, Ipv4Addr};

use sluice_core::health::Health;
use sluice_core::sched::L4Scheduler;
use sluice_core::service::table;
use sluice_l4::{
    Dataplane, DataplaneParams, L4Plane, NeighbourResolver, RealSpec, ServiceSpec, verdict,
};
use sluice_testkit::frames::{LB_MAC, tcp, v4};
use sluice_wire::maps::Method;

const VIP: [u8; 4] = [10, 97, 255, 1];
const REAL: [u8; 4] = [10, 97, 0, 11];
const PEER: [u8; 4] = [10, 97, 0, 12];
const CLIENT: [u8; 4] = [10, 97, 0, 2];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
/// Maglev table size of the test service (a small prime: fast to build).
const TABLE: u32 = 251;
/// New flows sent to see whether a real gets any: with two equal reals
/// on a Maglev table, the chance that all of them miss one is 2^-64.
const NEW_FLOWS: u16 = 64;
/// Client ports tried to find a flow that reaches the real under test.
const SEARCH_PORTS: u16 = 1000;
/// Client ports each case owns (search, then new flows): cases share one
/// loaded program and its session table, so their flows must differ.
const PORTS_PER_CASE: u16 = SEARCH_PORTS + NEW_FLOWS + 36;
/// First client port of the first case.
const FIRST_PORT: u16 = 1024;

/// Every real's MAC is its address, padded: the output frame names the real.
#[derive(Debug)]
struct Fixed;

impl NeighbourResolver for Fixed {
    fn resolve(&mut self, addr: IpAddr) -> Option<[u8; 6]> {
        mac_of(addr)
    }
}

fn mac_of(addr: IpAddr) -> Option<[u8; 6]> {
    match addr {
        IpAddr::V4(a) => {
            let o = a.octets();
            Some([0x02, 0x97, o[0], o[1], o[2], o[3]])
        }
        IpAddr::V6(_) => None,
    }
}

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

/// The real a packet of the flow from `sport` went to, if it was forwarded.
fn sent_to(plane: &L4Plane<Fixed>, sport: u16, flags: u8) -> Option<[u8; 6]> {
    let frame = v4(CLIENT, VIP, 6, &tcp(sport, 80, flags));
    let out = plane.dataplane().test_run(&frame, 1).unwrap();
    (out.verdict == verdict::TX).then(|| out.frame[0..6].try_into().unwrap())
}

#[test]
fn the_l4_plane_follows_the_service_table() {
    let real_mac = mac_of(ip(REAL)).unwrap();
    let mut failures = Vec::new();
    // One program for all cases (loading and verifying it takes seconds);
    // each case is a service of its own name, so no state carries over.
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: TABLE,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut plane = L4Plane::new(dp, Fixed);
    for (i, c) in table::cases().into_iter().enumerate() {
        let name = format!("case{i}");
        let base = FIRST_PORT + u16::try_from(i).unwrap() * PORTS_PER_CASE;
        let mut reals = vec![RealSpec {
            addr: ip(REAL),
            weight: 1,
            port: 0,
        }];
        if c.with_healthy_peer {
            reals.push(RealSpec {
                addr: ip(PEER),
                weight: 1,
                port: 0,
            });
        }
        plane
            .apply(vec![ServiceSpec {
                name: name.clone(),
                vip: ip(VIP),
                port: 80,
                proto: 6,
                method: Method::Dr,
                scheduler: L4Scheduler::Mh,
                persistence: None,
                table_size: TABLE,
                tun_source: None,
                tun_vary_source: false,
                local_addresses: Vec::new(),
                local_ports: (1024, 32767),
                toa: false,
                on_real_down: c.policy.on_real_down,
                fail_open: c.policy.fail_open,
                initially_up: true,
                reals,
            }])
            .unwrap();
        // An established flow to the real under test, while all serve.
        let sport = (base..base + SEARCH_PORTS)
            .find(|&p| sent_to(&plane, p, SYN) == Some(real_mac))
            .expect("no flow reached the real");
        plane
            .set_health(&name, ip(REAL), c.real.health == Health::Up)
            .unwrap();
        plane
            .set_operator(&name, ip(REAL), c.real.operator)
            .unwrap();
        let keeps = sent_to(&plane, sport, ACK) == Some(real_mac);
        let gets_new = (0..NEW_FLOWS).any(|i| sent_to(&plane, 20_000 + i, SYN) == Some(real_mac));
        if (keeps, gets_new) != (c.expect.keeps_flows(), c.expect.new_flows()) {
            failures.push(format!("{c:?}: keeps {keeps}, gets new flows {gets_new}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
