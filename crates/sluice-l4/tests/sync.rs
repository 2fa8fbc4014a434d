//! Connection sync between two loads of the program (two LBs): a session
//! made by a packet on plane A is read from A's sync ring, carried through
//! the datagram format (`sluice_wire::sync`), installed on plane B, and
//! B then sends the flow's next packets where A did, for `dr` and `tun`
//! (the same real), `nat` (the real's reply is rewritten back on B) and
//! `fullnat` (the reply to A's local port is translated on B, and B never
//! hands that port out again). The services use `rr`, whose choice
//! depends on the order of flows: B, which never saw the flow's first
//! packet, would send it elsewhere without sync. B is configured so that
//! its real and service slots differ from A's.
//!
//! Run in the kernel with `BPF_PROG_TEST_RUN` (no interface, no traffic
//! leaves the process). Needs root (CAP_BPF).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "common/resolver.rs"]
mod resolver;

use std::net::{IpAddr, Ipv4Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use resolver::Fixed;
use sluice_core::sched::L4Scheduler;
use sluice_core::service::OnRealDown;
use sluice_l4::sync::{Outcome, SessionFeed};
use sluice_l4::{
    Dataplane, DataplaneParams, L4Plane, NeighbourResolver, RealSpec, ServiceSpec, verdict,
};
use sluice_testkit::frames::{LB_MAC, tcp, v4};
use sluice_wire::maps::{Counter, Method, addr_v4};
use sluice_wire::sync::{Datagram, Kind, MAX_DATAGRAM, SyncEntry, Writer};

/// Ring size of the test program (a prime above the `rr` cycles).
const RING: u32 = 67;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const TCP: u8 = 6;
const REALS: u8 = 4;
/// `fullnat`'s local address.
const LOCAL: [u8; 4] = [10, 93, 9, 1];
const LOCAL_PORT_MIN: u16 = 40000;

fn ip(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

fn vip(m: Method) -> [u8; 4] {
    [10, 93, 0, m.to_byte() + 1]
}

fn real_ip(m: Method, i: u8) -> [u8; 4] {
    [10, 94, m.to_byte(), i]
}

/// The `rr` service of method `m` on TCP port 80, with [`REALS`] reals
/// (the NAT methods to port 8080); `fullnat` from [`LOCAL`], with two
/// ports for each of `ncpus` CPUs.
fn spec(m: Method, ncpus: u16) -> ServiceSpec {
    let nat = matches!(m, Method::Nat | Method::Fullnat);
    ServiceSpec {
        name: m.as_str().to_owned(),
        vip: ip(vip(m)),
        port: 80,
        proto: TCP,
        method: m,
        scheduler: L4Scheduler::Rr,
        persistence: None,
        table_size: RING,
        tun_source: Some(ip([10, 93, 8, 1])),
        tun_vary_source: false,
        local_addresses: if m == Method::Fullnat {
            vec![ip(LOCAL)]
        } else {
            Vec::new()
        },
        local_ports: (LOCAL_PORT_MIN, LOCAL_PORT_MIN + 2 * ncpus - 1),
        toa: false,
        on_real_down: OnRealDown::Keep,
        fail_open: false,
        initially_up: true,
        reals: (1..=REALS)
            .map(|i| RealSpec {
                addr: ip(real_ip(m, i)),
                weight: 1,
                port: if nat { 8080 } else { 0 },
            })
            .collect(),
    }
}

/// A service B has and A does not: it takes B's first slots, so the
/// slots of the shared services differ between the two.
fn only_on_b() -> ServiceSpec {
    let mut s = spec(Method::Dr, 1);
    s.name = "only-b".into();
    s.vip = ip([10, 93, 7, 1]);
    s.reals = (1..=5)
        .map(|i| RealSpec {
            addr: ip([10, 94, 7, i]),
            weight: 1,
            port: 0,
        })
        .collect();
    s
}

fn plane(ncpus: u16, extra: bool) -> L4Plane<Fixed> {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            ..Default::default()
        },
        LB_MAC,
    )
    .unwrap_or_else(|e| panic!("loading the XDP program (needs root): {e}"));
    let mut p = L4Plane::new(dp, Fixed);
    let mut specs: Vec<ServiceSpec> = Vec::new();
    if extra {
        specs.push(only_on_b());
    }
    specs.extend(Method::ALL.map(|m| spec(m, ncpus)));
    p.apply(specs).unwrap();
    p
}

fn pin_to_one_cpu() {
    // The `rr` cursor and `fullnat`'s port shares are per CPU.
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

/// What the program did with a frame: verdict, destination MAC, and the
/// IPv4 source and destination with their ports (of the outer header for
/// `tun`).
#[derive(Debug)]
struct Sent {
    verdict: u32,
    dmac: [u8; 6],
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
}

fn run(dp: &Dataplane, frame: &[u8]) -> Sent {
    let out = dp.test_run(frame, 1).unwrap();
    let f = &out.frame;
    let p = SlicedPacket::from_ethernet(f).unwrap();
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(h)) => (h.header().source(), h.header().destination()),
        _ => ([0; 4], [0; 4]),
    };
    let (sport, dport) = match &p.transport {
        Some(TransportSlice::Tcp(t)) => (t.source_port(), t.destination_port()),
        _ => (0, 0),
    };
    Sent {
        verdict: out.verdict,
        dmac: f[0..6].try_into().unwrap(),
        src: (src, sport),
        dst: (dst, dport),
    }
}

fn client(i: u8) -> [u8; 4] {
    [10, 92, 0, i]
}

/// A client's TCP segment to the service of `m`.
fn to_vip(m: Method, c: u8, cport: u16, flags: u8) -> Vec<u8> {
    let mut f = v4(client(c), vip(m), TCP, &tcp(cport, 80, flags));
    // Frames from the client's MAC (the replies' next hop).
    f[6..12].copy_from_slice(&sluice_testkit::frames::CLIENT_MAC);
    f
}

/// Every entry A's feed has ready, through one datagram and back.
fn carry(feed: &mut SessionFeed) -> Vec<SyncEntry> {
    let mut entries = Vec::new();
    feed.drain(1024, &mut |e| entries.push(e));
    let mut buf = [0u8; MAX_DATAGRAM];
    let mut w = Writer::new(&mut buf, Kind::Sessions, 1).unwrap();
    for e in &entries {
        assert!(w.push(e), "the test's entries fit one datagram");
    }
    let n = w.finish();
    Datagram::parse(&buf[..n]).unwrap().entries().collect()
}

/// The real a dr/tun frame went to (by the resolver's MAC).
fn mac_of(a: [u8; 4]) -> [u8; 6] {
    Fixed.resolve(ip(a)).unwrap()
}

#[test]
fn sessions_made_on_a_continue_on_b_in_every_method() {
    pin_to_one_cpu();
    let probe = plane(1, false);
    let ncpus = probe.dataplane().possible_cpus() as u16;
    drop(probe);
    let mut a = plane(ncpus, false);
    let b = plane(ncpus, true);
    a.dataplane_mut().set_sync(true).unwrap();
    let mut feed = a.dataplane().sync_feed().unwrap();
    let mut installer = b.dataplane().sync_installer(b.sync_directory()).unwrap();

    const CPORT: u16 = 5555;
    for m in Method::ALL {
        // Two other flows first: A's `rr` cursor is then at the third
        // real, where B's (which never saw them) is at the first.
        for c in [1, 2] {
            assert_eq!(
                run(a.dataplane(), &to_vip(m, c, 1000, SYN)).verdict,
                verdict::TX
            );
        }
        let first = run(a.dataplane(), &to_vip(m, 9, CPORT, SYN));
        assert_eq!(first.verdict, verdict::TX, "{m}: A forwards the SYN");
        let entries = carry(&mut feed);
        assert_eq!(entries.len(), 3, "{m}: one entry per new session");
        for e in &entries {
            assert_eq!(
                installer.install(e).unwrap(),
                Outcome::Installed,
                "{m}: {e:?}"
            );
        }

        // The flow's next segment on B: to A's real.
        let next = run(b.dataplane(), &to_vip(m, 9, CPORT, ACK));
        assert_eq!(next.verdict, verdict::TX, "{m}: B forwards the ACK");
        match m {
            Method::Dr => assert_eq!(next.dmac, first.dmac, "dr: the same real"),
            Method::Tun => assert_eq!(next.dst, first.dst, "tun: the same real"),
            Method::Nat => assert_eq!(next.dst, first.dst, "nat: the same real and port"),
            Method::Fullnat => {
                assert_eq!(next.dst, first.dst, "fullnat: the same real and port");
                assert_eq!(
                    next.src, first.src,
                    "fullnat: from A's local address and port"
                );
            }
        }
        // Without sync, B would have chosen another real: a flow B never
        // heard of goes to its cursor's real.
        let unsynced = run(b.dataplane(), &to_vip(m, 10, CPORT, ACK));
        assert_ne!(
            (unsynced.dmac, unsynced.dst.0),
            (next.dmac, next.dst.0),
            "{m}: the test would not tell sync from luck"
        );

        // The real's reply, on B, goes back to the client as the VIP.
        let (real, rport) = first.dst;
        let reply = match m {
            Method::Nat => Some(v4(real, client(9), TCP, &tcp(rport, CPORT, ACK))),
            Method::Fullnat => {
                let (l, lport) = first.src;
                Some(v4(real, l, TCP, &tcp(rport, lport, ACK)))
            }
            Method::Dr | Method::Tun => None,
        };
        if let Some(reply) = reply {
            let back = run(b.dataplane(), &reply);
            assert_eq!(back.verdict, verdict::TX, "{m}: B translates the reply");
            assert_eq!(back.src, (vip(m), 80), "{m}: from the VIP");
            assert_eq!(back.dst, (client(9), CPORT), "{m}: to the client");
            assert_eq!(
                back.dmac,
                sluice_testkit::frames::CLIENT_MAC,
                "{m}: to the client's next hop"
            );
        }
        if m == Method::Dr {
            assert_eq!(
                first.dmac,
                mac_of(real_ip(m, 3)),
                "set-up: A chose the third real"
            );
        }
    }
}

#[test]
fn b_never_hands_out_a_port_a_claimed() {
    pin_to_one_cpu();
    let probe = plane(1, false);
    let ncpus = probe.dataplane().possible_cpus() as u16;
    drop(probe);
    let mut a = plane(ncpus, false);
    let b = plane(ncpus, true);
    a.dataplane_mut().set_sync(true).unwrap();
    let mut feed = a.dataplane().sync_feed().unwrap();
    let mut installer = b.dataplane().sync_installer(b.sync_directory()).unwrap();
    let m = Method::Fullnat;

    // A's flow to the first real takes a port of CPU 0's two.
    let first = run(a.dataplane(), &to_vip(m, 9, 5555, SYN));
    assert_eq!(first.verdict, verdict::TX);
    assert_eq!(first.dst.0, real_ip(m, 1));
    for e in carry(&mut feed) {
        assert_eq!(installer.install(&e).unwrap(), Outcome::Installed);
    }

    // B's new flows: every fourth goes to the first real. CPU 0 has two
    // ports, A holds one: B gives out the other once, then has none.
    let before = b.dataplane().counter(Counter::DropFullnatNoPort).unwrap();
    let mut ports = Vec::new();
    for i in 0..8u16 {
        let s = run(b.dataplane(), &to_vip(m, 20, 6000 + i, SYN));
        if s.verdict == verdict::TX && s.dst.0 == real_ip(m, 1) {
            ports.push(s.src.1);
        }
    }
    assert!(
        !ports.contains(&first.src.1),
        "B handed out A's port {} again: {ports:?}",
        first.src.1
    );
    assert_eq!(ports.len(), 1, "B's other port: {ports:?}");
    let after = b.dataplane().counter(Counter::DropFullnatNoPort).unwrap();
    assert_eq!(
        after - before,
        1,
        "the second flow to that real finds no port"
    );
}

#[test]
fn entries_for_what_b_does_not_have_write_nothing() {
    pin_to_one_cpu();
    let mut a = plane(1, false);
    let b = plane(1, true);
    a.dataplane_mut().set_sync(true).unwrap();
    let mut feed = a.dataplane().sync_feed().unwrap();
    let mut installer = b.dataplane().sync_installer(b.sync_directory()).unwrap();
    run(a.dataplane(), &to_vip(Method::Nat, 9, 5555, SYN));
    let e = carry(&mut feed).pop().unwrap();

    let mut other_service = e;
    other_service.service_port = 81;
    let mut other_real = e;
    other_real.real_port = 9090;
    let mut other_method = e;
    other_method.method = Method::Dr;
    let mut no_local = e;
    no_local.key.dst = addr_v4(vip(Method::Fullnat));
    no_local.method = Method::Fullnat;
    no_local.real = addr_v4(real_ip(Method::Fullnat, 1));
    for (x, want) in [
        (other_service, Outcome::UnknownService),
        (other_real, Outcome::UnknownReal),
        (other_method, Outcome::OtherMethod),
        (no_local, Outcome::UnknownLocal),
    ] {
        assert_eq!(installer.install(&x).unwrap(), want);
    }
    assert!(
        b.dataplane().sessions().unwrap().is_empty(),
        "nothing written"
    );
    assert!(
        b.dataplane().nat_reverse().unwrap().is_empty(),
        "nothing written"
    );
}

#[test]
fn a_walk_finds_what_the_ring_missed() {
    pin_to_one_cpu();
    let a = plane(1, false);
    // Sync off while the session is made: the ring stays empty.
    let mut feed = a.dataplane().sync_feed().unwrap();
    let mut walker = a.dataplane().sync_walker().unwrap();
    run(a.dataplane(), &to_vip(Method::Tun, 9, 5555, SYN));
    let mut drained = Vec::new();
    feed.drain(16, &mut |e| drained.push(e));
    assert!(drained.is_empty(), "no announcement without sync");
    let mut walked = Vec::new();
    walker.walk(true, &mut |e| walked.push(e));
    assert_eq!(walked.len(), 1);
    assert_eq!(walked[0].key.sport, 5555);
    assert_eq!(walked[0].method, Method::Tun);
    // The session goes idle for longer than the walk's look-back
    // (`LAST_SEEN_GRANULARITY_NS`, 100 ms): the first incremental walk
    // sends it, the next one, which looks back to the first, does not.
    std::thread::sleep(std::time::Duration::from_millis(250));
    let mut again = Vec::new();
    walker.walk(false, &mut |e| again.push(e));
    assert_eq!(again.len(), 1, "the first incremental walk sends all");
    let mut idle = Vec::new();
    walker.walk(false, &mut |e| idle.push(e));
    assert!(
        idle.is_empty(),
        "an idle session is not sent again: {idle:?}"
    );
}

#[test]
fn installed_sessions_are_not_sent_back_until_seen_here() {
    pin_to_one_cpu();
    let mut a = plane(1, false);
    let b = plane(1, true);
    a.dataplane_mut().set_sync(true).unwrap();
    let mut feed = a.dataplane().sync_feed().unwrap();
    let mut installer = b.dataplane().sync_installer(b.sync_directory()).unwrap();
    let mut b_walker = b.dataplane().sync_walker().unwrap();
    run(a.dataplane(), &to_vip(Method::Dr, 9, 5555, SYN));
    for e in carry(&mut feed) {
        assert_eq!(installer.install(&e).unwrap(), Outcome::Installed);
    }
    let mut back = Vec::new();
    b_walker.walk(true, &mut |e| back.push(e));
    assert!(back.is_empty(), "B sent A's session back: {back:?}");

    // A packet of the flow on B, once `last_seen` is due to move
    // (LAST_SEEN_GRANULARITY_NS after the install): the session is B's.
    std::thread::sleep(std::time::Duration::from_millis(250));
    assert_eq!(
        run(b.dataplane(), &to_vip(Method::Dr, 9, 5555, ACK)).verdict,
        verdict::TX
    );
    b_walker.walk(true, &mut |e| back.push(e));
    assert_eq!(back.len(), 1, "B's own now: {back:?}");
}
