//! Golden packet table for `method = "nat"` (destination NAT with port
//! translation, one-arm), run in the kernel with `BPF_PROG_TEST_RUN`:
//! both directions, IPv4 and IPv6, TCP and UDP. Every expected frame is
//! built from scratch by etherparse (its checksums computed in full, not
//! incrementally), and every frame sent is parsed again and its IPv4 and
//! TCP/UDP checksums recomputed: the incremental updates of the program
//! are held to an independent computation. Needs root (CAP_BPF); without
//! it the test fails with a message saying so.
//!
//! The cases run in order against one loaded program, so session and
//! reverse entries carry over on purpose (a flow's first packet, then its
//! replies).
// The table reads as one `push` per case, grouped under comments.
#![allow(missing_docs, clippy::unwrap_used, clippy::vec_init_then_push)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use etherparse::PacketBuilder;
use sluice_l4::{Dataplane, DataplaneParams, verdict};
use sluice_testkit::frames::{CLIENT_MAC, LB_MAC};
use sluice_wire::checksum;
use sluice_wire::maps::{Counter, FlowKey, NatReverse, addr_v4, family, method, state};

/// The `nat` VIP (TCP 80 → 8080, UDP 53 → 8080, TCP 81 → 81, TCP 82 →
/// 9090 at a real that is later removed).
const VIP: [u8; 4] = [10, 99, 255, 9];
const VIP6: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
/// A `dr` VIP beside them.
const VIP_DR: [u8; 4] = [10, 99, 255, 1];
/// Reals by slot: 0 10.99.0.11:8080, 1 10.99.0.12 (no port: the VIP's),
/// 2 [fd99::11]:8080, 3 10.99.0.14:9090, 4 10.99.0.15 (a `dr` real).
const R0: [u8; 4] = [10, 99, 0, 11];
const R1: [u8; 4] = [10, 99, 0, 12];
const R2: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const R3: [u8; 4] = [10, 99, 0, 14];
const R4: [u8; 4] = [10, 99, 0, 15];

fn fixture(params: DataplaneParams) -> Dataplane {
    let mut dp = load(DataplaneParams {
        ring_size: RING,
        ..params
    });
    dp.set_real(0, real(0, ip4(R0), 8080)).unwrap();
    dp.set_real(1, real(1, ip4(R1), 0)).unwrap();
    dp.set_real(2, real(2, ip6(R2), 8080)).unwrap();
    dp.set_real(3, real(3, ip4(R3), 9090)).unwrap();
    dp.set_real(4, real(4, ip4(R4), 0)).unwrap();
    service(&mut dp, 0, ip4(VIP), 80, TCP, method::NAT, 0);
    service(&mut dp, 1, ip4(VIP), 53, UDP, method::NAT, 0);
    service(&mut dp, 2, ip4(VIP), 81, TCP, method::NAT, 1);
    service(&mut dp, 3, ip6(VIP6), 80, TCP, method::NAT, 2);
    service(&mut dp, 4, ip6(VIP6), 53, UDP, method::NAT, 2);
    service(&mut dp, 5, ip4(VIP), 82, TCP, method::NAT, 3);
    service(&mut dp, 6, ip4(VIP_DR), 80, TCP, method::DR, 4);
    dp
}

/// The client's packet to the VIP, as the client sends it.
fn to_vip(vip: IpAddr, cport: u16, vport: u16, tcp: Option<u8>, payload: &[u8]) -> Vec<u8> {
    let client = if vip.is_ipv4() {
        ip4(CLIENT)
    } else {
        ip6(CLIENT6)
    };
    frame(CLIENT_MAC, LB_MAC, client, cport, vip, vport, tcp, payload)
}

/// The same packet as the real must receive it: to `real:rport`, from
/// our MAC to the real's.
fn to_real(
    slot: u32,
    real: IpAddr,
    rport: u16,
    cport: u16,
    tcp: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    let client = if real.is_ipv4() {
        ip4(CLIENT)
    } else {
        ip6(CLIENT6)
    };
    frame(LB_MAC, mac(slot), client, cport, real, rport, tcp, payload)
}

/// A real's reply as it sends it (to the client, through the LB: its
/// default route).
fn from_real(
    slot: u32,
    real: IpAddr,
    rport: u16,
    cport: u16,
    tcp: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    let client = if real.is_ipv4() {
        ip4(CLIENT)
    } else {
        ip6(CLIENT6)
    };
    frame(mac(slot), LB_MAC, real, rport, client, cport, tcp, payload)
}

/// The reply as the client must receive it: from the VIP, to the MAC its
/// own packet came from.
fn to_client(vip: IpAddr, vport: u16, cport: u16, tcp: Option<u8>, payload: &[u8]) -> Vec<u8> {
    let client = if vip.is_ipv4() {
        ip4(CLIENT)
    } else {
        ip6(CLIENT6)
    };
    frame(LB_MAC, CLIENT_MAC, vip, vport, client, cport, tcp, payload)
}

/// Runs `cases` in order; every failure is collected and reported.

#[test]
fn nat_golden_packet_table() {
    pin_to_one_cpu();
    let mut dp = fixture(DataplaneParams::default());
    let (vip, vip6) = (ip4(VIP), ip6(VIP6));
    let (r0, r1, r2, r3) = (ip4(R0), ip4(R1), ip6(R2), ip4(R3));
    let get = b"GET / HTTP/1.1\r\n\r\n";
    let body = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let mut cases = Vec::new();

    // --- IPv4 TCP, VIP:80 -> 10.99.0.11:8080 ---
    cases.push(case(
        "v4 tcp SYN to the VIP: destination rewritten to the real's address and port",
        to_vip(vip, 40000, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, 40000, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v4 tcp SYN-ACK from real:8080: source rewritten back to VIP:80, to the client's MAC",
        from_real(0, r0, 8080, 40000, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 80, 40000, Some(SYN_ACK), b"")),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v4 tcp request on the session",
        to_vip(vip, 40000, 80, Some(ACK), get),
        verdict::TX,
        Some(to_real(0, r0, 8080, 40000, Some(ACK), get)),
        Counter::SessionHit,
    ));
    cases.push(case(
        "v4 tcp response with data",
        from_real(0, r0, 8080, 40000, Some(ACK), body),
        verdict::TX,
        Some(to_client(vip, 80, 40000, Some(ACK), body)),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v4 tcp from the real's other port: no reverse entry, passed untouched",
        from_real(0, r0, 8081, 40000, Some(ACK), body),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "v4 tcp from another real on the flow's ports: passed untouched",
        from_real(1, r1, 8080, 40000, Some(ACK), body),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "reply to a client port no session has: passed untouched",
        from_real(0, r0, 8080, 55555, Some(ACK), body),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    let mut short = from_real(0, r0, 8080, 40000, Some(ACK), b"");
    short.truncate(14 + 20 + 10);
    short[16..18].copy_from_slice(&30u16.to_be_bytes());
    short[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::finish(checksum::sum(&short[14..34], 0));
    short[24..26].copy_from_slice(&c.to_be_bytes());
    cases.push(case(
        "non-VIP TCP too short for its header while nat is on: passed untouched, not dropped",
        short,
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "non-VIP traffic while nat is on: passed untouched",
        frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            1000,
            ip4([10, 99, 0, 50]),
            22,
            Some(SYN),
            b"",
        ),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));

    // --- IPv4 TCP without a real port: VIP:81 -> 10.99.0.12:81 ---
    cases.push(case(
        "v4 tcp to a real without a port keeps the VIP's port",
        to_vip(vip, 40001, 81, Some(SYN), b""),
        verdict::TX,
        Some(to_real(1, r1, 81, 40001, Some(SYN), b"")),
        Counter::TxForwarded,
    ));
    cases.push(case(
        "v4 tcp reply from that real's port 81",
        from_real(1, r1, 81, 40001, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 81, 40001, Some(SYN_ACK), b"")),
        Counter::TxNatReply,
    ));

    // --- IPv4 UDP, VIP:53 -> 10.99.0.11:8080 ---
    cases.push(case(
        "v4 udp to the VIP: destination and checksum rewritten",
        to_vip(vip, 5353, 53, None, b"query"),
        verdict::TX,
        Some(to_real(0, r0, 8080, 5353, None, b"query")),
        Counter::TxForwarded,
    ));
    cases.push(case(
        "v4 udp reply back from VIP:53",
        from_real(0, r0, 8080, 5353, None, b"answer"),
        verdict::TX,
        Some(to_client(vip, 53, 5353, None, b"answer")),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v4 udp without a checksum: stays without one",
        without_udp_checksum(to_vip(vip, 5354, 53, None, b"query")),
        verdict::TX,
        Some(without_udp_checksum(to_real(
            0, r0, 8080, 5354, None, b"query",
        ))),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v4 udp reply without a checksum: stays without one",
        without_udp_checksum(from_real(0, r0, 8080, 5354, None, b"answer")),
        verdict::TX,
        Some(without_udp_checksum(to_client(
            vip, 53, 5354, None, b"answer",
        ))),
        Counter::TxNatReply,
    ));

    // --- IPv6 TCP and UDP, [VIP6]:80 and :53 -> [fd99::11]:8080 ---
    cases.push(case(
        "v6 tcp SYN to the VIP: destination rewritten",
        to_vip(vip6, 40002, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(2, r2, 8080, 40002, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v6 tcp SYN-ACK back from [VIP6]:80",
        from_real(2, r2, 8080, 40002, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip6, 80, 40002, Some(SYN_ACK), b"")),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v6 tcp data on the session",
        to_vip(vip6, 40002, 80, Some(ACK), get),
        verdict::TX,
        Some(to_real(2, r2, 8080, 40002, Some(ACK), get)),
        Counter::SessionHit,
    ));
    cases.push(case(
        "v6 tcp response with data",
        from_real(2, r2, 8080, 40002, Some(ACK), body),
        verdict::TX,
        Some(to_client(vip6, 80, 40002, Some(ACK), body)),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v6 udp to the VIP",
        to_vip(vip6, 5353, 53, None, b"query"),
        verdict::TX,
        Some(to_real(2, r2, 8080, 5353, None, b"query")),
        Counter::TxForwarded,
    ));
    cases.push(case(
        "v6 udp reply",
        from_real(2, r2, 8080, 5353, None, b"answer"),
        verdict::TX,
        Some(to_client(vip6, 53, 5353, None, b"answer")),
        Counter::TxNatReply,
    ));
    cases.push(case(
        "v6 reply for an unknown session: passed untouched",
        from_real(2, r2, 8080, 5999, None, b"answer"),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));

    // --- what nat leaves alone ---
    cases.push(case(
        "dr beside nat: only the MACs change",
        frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            40003,
            ip4(VIP_DR),
            80,
            Some(SYN),
            b"",
        ),
        verdict::TX,
        Some(frame(
            LB_MAC,
            mac(4),
            ip4(CLIENT),
            40003,
            ip4(VIP_DR),
            80,
            Some(SYN),
            b"",
        )),
        Counter::TxForwarded,
    ));

    // --- ICMP errors of nat flows, both ways ---
    let router = ip4([10, 99, 0, 1]);
    let router6 = ip6([0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    let real_side_router = ip4([10, 99, 0, 254]);
    cases.push(case(
        "v4 frag-needed to the VIP quoting the VIP:80 reply: to the real, quoted source real:8080",
        icmp_error(
            CLIENT_MAC,
            LB_MAC,
            router,
            vip,
            IcmpError::TooBig,
            ip_of(&to_client(vip, 80, 40000, Some(ACK), body)),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            mac(0),
            router,
            r0,
            IcmpError::TooBig,
            ip_of(&from_real(0, r0, 8080, 40000, Some(ACK), body)),
        )),
        Counter::IcmpForwarded,
    ));
    cases.push(case(
        "v4 port unreachable from the real: from the VIP, quoting the client's datagram to VIP:53",
        icmp_error(
            mac(0),
            LB_MAC,
            r0,
            ip4(CLIENT),
            IcmpError::PortUnreachable,
            ip_of(&to_real(0, r0, 8080, 5353, None, b"query")),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            CLIENT_MAC,
            vip,
            ip4(CLIENT),
            IcmpError::PortUnreachable,
            ip_of(&to_vip(vip, 5353, 53, None, b"query")),
        )),
        Counter::TxNatIcmpReply,
    ));
    cases.push(case(
        "v4 frag-needed from a router on the reals' side, 8-byte TCP quote (no TCP checksum): from the VIP",
        icmp_error(
            mac(9),
            LB_MAC,
            real_side_router,
            ip4(CLIENT),
            IcmpError::TooBig,
            &ip_of(&to_real(0, r0, 8080, 40000, Some(ACK), get))[..28],
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            CLIENT_MAC,
            vip,
            ip4(CLIENT),
            IcmpError::TooBig,
            &ip_of(&to_vip(vip, 40000, 80, Some(ACK), get))[..28],
        )),
        Counter::TxNatIcmpReply,
    ));
    cases.push(case(
        "v6 packet too big to [VIP6] quoting its :80 reply: to the real, quoted source [real]:8080",
        icmp_error(
            CLIENT_MAC,
            LB_MAC,
            router6,
            vip6,
            IcmpError::TooBig,
            ip_of(&to_client(vip6, 80, 40002, Some(ACK), body)),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            mac(2),
            router6,
            r2,
            IcmpError::TooBig,
            ip_of(&from_real(2, r2, 8080, 40002, Some(ACK), body)),
        )),
        Counter::IcmpForwarded,
    ));
    cases.push(case(
        "v6 port unreachable from the real: from [VIP6], quoting the datagram to [VIP6]:53",
        icmp_error(
            mac(2),
            LB_MAC,
            r2,
            ip6(CLIENT6),
            IcmpError::PortUnreachable,
            ip_of(&to_real(2, r2, 8080, 5353, None, b"query")),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            CLIENT_MAC,
            vip6,
            ip6(CLIENT6),
            IcmpError::PortUnreachable,
            ip_of(&to_vip(vip6, 5353, 53, None, b"query")),
        )),
        Counter::TxNatIcmpReply,
    ));
    cases.push(case(
        "v4 port unreachable quoting a flow without a reverse entry: passed untouched",
        icmp_error(
            mac(0),
            LB_MAC,
            r0,
            ip4(CLIENT),
            IcmpError::PortUnreachable,
            ip_of(&to_real(0, r0, 8080, 5999, None, b"query")),
        ),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "v4 error quoting a nat flow but sent to another host than its client: passed untouched",
        icmp_error(
            mac(0),
            LB_MAC,
            r0,
            ip4([10, 99, 0, 50]),
            IcmpError::PortUnreachable,
            ip_of(&to_real(0, r0, 8080, 5353, None, b"query")),
        ),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    {
        let mut echo = Vec::new();
        PacketBuilder::ethernet2(mac(0), LB_MAC)
            .ipv4(R0, CLIENT, 64)
            .icmpv4_echo_request(1, 1)
            .write(&mut echo, b"ping")
            .unwrap();
        cases.push(case(
            "ICMP echo request from a real to a client: not an error, passed untouched",
            echo,
            verdict::PASS,
            None,
            Counter::PassNonVip,
        ));
    }

    // --- a removed real: its session's replies are not rewritten ---
    cases.push(case(
        "v4 tcp to VIP:82 -> 10.99.0.14:9090",
        to_vip(vip, 40004, 82, Some(SYN), b""),
        verdict::TX,
        Some(to_real(3, r3, 9090, 40004, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    let failures = run(&dp, &cases);
    let n = cases.len();

    // The reverse entry of the first flow: keyed by the reply's 5-tuple.
    let rev = dp.nat_reverse().unwrap();
    let key = FlowKey {
        src: addr(r0),
        dst: addr(ip4(CLIENT)),
        sport: 8080,
        dport: 40000,
        proto: TCP,
        family: family::V4,
        _pad: 0,
    };
    assert_eq!(
        rev.iter().find(|(k, _)| *k == key).map(|(_, v)| *v),
        Some(NatReverse {
            vip: addr(vip),
            vport: 80,
            client_mac: CLIENT_MAC,
        }),
        "reverse entry of the first flow"
    );

    let mut gone = real(3, r3, 9090);
    gone.flags = 0;
    dp.set_real(3, gone).unwrap();
    let more = [
        case(
            "reply of a session whose real was removed: passed untouched",
            from_real(3, r3, 9090, 40004, Some(SYN_ACK), b""),
            verdict::PASS,
            None,
            Counter::PassNatNoSession,
        ),
        case(
            "ICMP error quoting a session whose real was removed: passed untouched",
            icmp_error(
                mac(3),
                LB_MAC,
                r3,
                ip4(CLIENT),
                IcmpError::PortUnreachable,
                ip_of(&to_real(3, r3, 9090, 40004, Some(SYN), b"")),
            ),
            verdict::PASS,
            None,
            Counter::PassNatNoSession,
        ),
    ];
    let failures: Vec<String> = failures.into_iter().chain(run(&dp, &more)).collect();
    assert!(
        n + more.len() >= 20,
        "only {} nat golden cases",
        n + more.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        n + more.len(),
        failures.join("\n")
    );
}

/// The state of the session of flow `cport` → `vip:80`.
fn session_state(dp: &Dataplane, vip: [u8; 4], cport: u16) -> Option<u8> {
    dp.sessions()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.dst == addr_v4(vip) && k.sport == cport && k.src == addr_v4(CLIENT))
        .map(|(_, v)| v.state)
}

/// A RST or FIN from either side closes a `nat` session as the client's
/// own would (its state machine is the `dr` one, fed by both directions);
/// once the closing timeout has passed, the real's replies are no longer
/// rewritten and the client's next SYN makes a fresh session.
#[test]
fn nat_rst_and_fin_end_sessions() {
    pin_to_one_cpu();
    // A short closing timeout so that the test can wait for it.
    const CLOSING: Duration = Duration::from_secs(1);
    let dp = fixture(DataplaneParams {
        tcp_closing_timeout: CLOSING,
        ..Default::default()
    });
    let (vip, r0) = (ip4(VIP), ip4(R0));
    let count = |c: Counter| dp.counter(c).unwrap();
    let tx = |f: &[u8]| {
        let out = dp.test_run(f, 1).unwrap();
        assert_eq!(out.verdict, verdict::TX);
        checksums_valid(&out.frame).unwrap();
        out.frame
    };

    // RST from the real.
    tx(&to_vip(vip, 41000, 80, Some(SYN), b""));
    tx(&from_real(0, r0, 8080, 41000, Some(SYN_ACK), b""));
    tx(&to_vip(vip, 41000, 80, Some(ACK), b""));
    assert_eq!(session_state(&dp, VIP, 41000), Some(state::TCP_ESTABLISHED));
    assert_eq!(
        tx(&from_real(0, r0, 8080, 41000, Some(RST), b"")),
        to_client(vip, 80, 41000, Some(RST), b""),
        "the RST itself reaches the client"
    );
    assert_eq!(session_state(&dp, VIP, 41000), Some(state::TCP_CLOSING));

    // FIN from the client, FIN from the real.
    tx(&to_vip(vip, 41001, 80, Some(SYN), b""));
    tx(&to_vip(vip, 41001, 80, Some(FIN_ACK), b""));
    assert_eq!(session_state(&dp, VIP, 41001), Some(state::TCP_CLOSING));
    tx(&to_vip(vip, 41002, 80, Some(SYN), b""));
    tx(&to_vip(vip, 41002, 80, Some(ACK), b""));
    tx(&from_real(0, r0, 8080, 41002, Some(FIN_ACK), b""));
    assert_eq!(session_state(&dp, VIP, 41002), Some(state::TCP_CLOSING));

    // After the closing timeout the RST-ended session is over: a late
    // reply is passed untouched, and a new SYN makes a fresh session.
    std::thread::sleep(CLOSING + Duration::from_millis(200));
    let late = from_real(0, r0, 8080, 41000, Some(ACK), b"");
    let passed = count(Counter::PassNatNoSession);
    let out = dp.test_run(&late, 1).unwrap();
    assert_eq!((out.verdict, &out.frame), (verdict::PASS, &late));
    assert_eq!(count(Counter::PassNatNoSession), passed + 1);
    let misses = count(Counter::SessionMiss);
    assert_eq!(
        tx(&to_vip(vip, 41000, 80, Some(SYN), b"")),
        to_real(0, r0, 8080, 41000, Some(SYN), b"")
    );
    assert_eq!(count(Counter::SessionMiss), misses + 1, "a fresh session");
    assert_eq!(session_state(&dp, VIP, 41000), Some(state::TCP_SYN));
}

/// Two-arm `nat`: with a client-side and a real-side interface in
/// `SLUICE_TX_PORTS`, the client's packets are redirected to the real side
/// (from that interface's MAC) and the replies to the client side,
/// instead of leaving with `XDP_TX` by the interface they came in on.
/// The interfaces are a veth pair in a namespace of the test's own, their
/// indexes resolved and written from inside it; the test runs there too
/// (`BPF_PROG_TEST_RUN` only reports a redirect, it sends nothing).
#[test]
fn nat_two_arm_redirects_between_the_interfaces() {
    /// MAC of the real-side interface in this test.
    const REAL_SIDE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
    pin_to_one_cpu();
    let mut dp = fixture(DataplaneParams::default());
    let label = sluice_testkit::netns::unique_label("nat2arm");
    let ns = sluice_testkit::netns::Netns::create(&format!("sl-{label}"))
        .unwrap_or_else(|e| panic!("this test needs root: {e}"));
    ns.ip(&["link", "add", "lbc", "type", "veth", "peer", "name", "lbr"])
        .unwrap();
    let index = |name: &str| nix::net::if_::if_nametoindex(name).unwrap();
    ns.in_netns(|| dp.set_two_arm(index("lbc"), index("lbr"), REAL_SIDE_MAC))
        .unwrap()
        .unwrap();
    let run = |frame: &[u8]| ns.in_netns(|| dp.test_run(frame, 1)).unwrap().unwrap();
    let (vip, r0, vip6, r2) = (ip4(VIP), ip4(R0), ip6(VIP6), ip6(R2));
    let forwarded = dp.counter(Counter::TxForwarded).unwrap();
    let replies = dp.counter(Counter::TxNatReply).unwrap();
    for (vip, real, slot, tcp) in [(vip, r0, 0, Some(SYN)), (vip6, r2, 2, None)] {
        let vport = if tcp.is_some() { 80 } else { 53 };
        let out = run(&to_vip(vip, 42000, vport, tcp, b"query"));
        let mut want = to_real(slot, real, 8080, 42000, tcp, b"query");
        want[6..12].copy_from_slice(&REAL_SIDE_MAC);
        assert_eq!(
            (out.verdict, &out.frame),
            (verdict::REDIRECT, &want),
            "{vip}: to the real side, from its MAC"
        );
        checksums_valid(&out.frame).unwrap();
        let reply = tcp.map(|_| SYN_ACK);
        let out = run(&from_real(slot, real, 8080, 42000, reply, b"answer"));
        assert_eq!(
            (out.verdict, &out.frame),
            (
                verdict::REDIRECT,
                &to_client(vip, vport, 42000, reply, b"answer")
            ),
            "{vip}: the reply to the client side"
        );
        checksums_valid(&out.frame).unwrap();
    }
    assert_eq!(dp.counter(Counter::TxForwarded).unwrap(), forwarded + 2);
    assert_eq!(dp.counter(Counter::TxNatReply).unwrap(), replies + 2);
    // ICMP errors of the flows leave by the same sides as their packets.
    let out = run(&icmp_error(
        mac(0),
        LB_MAC,
        r0,
        ip4(CLIENT),
        IcmpError::TooBig,
        ip_of(&to_real(0, r0, 8080, 42000, Some(SYN), b"query")),
    ));
    let want = icmp_error(
        LB_MAC,
        CLIENT_MAC,
        vip,
        ip4(CLIENT),
        IcmpError::TooBig,
        ip_of(&to_vip(vip, 42000, 80, Some(SYN), b"query")),
    );
    assert_eq!((out.verdict, &out.frame), (verdict::REDIRECT, &want));
    let out = run(&icmp_error(
        CLIENT_MAC,
        LB_MAC,
        ip4([10, 99, 0, 1]),
        vip,
        IcmpError::TooBig,
        ip_of(&to_client(vip, 80, 42000, Some(ACK), b"answer")),
    ));
    let mut want = icmp_error(
        LB_MAC,
        mac(0),
        ip4([10, 99, 0, 1]),
        r0,
        IcmpError::TooBig,
        ip_of(&from_real(0, r0, 8080, 42000, Some(ACK), b"answer")),
    );
    want[6..12].copy_from_slice(&REAL_SIDE_MAC);
    assert_eq!((out.verdict, &out.frame), (verdict::REDIRECT, &want));
    // `dr` is not redirected: it still leaves by the interface it came in on.
    let dr = frame(
        CLIENT_MAC,
        LB_MAC,
        ip4(CLIENT),
        42001,
        ip4(VIP_DR),
        80,
        Some(SYN),
        b"",
    );
    assert_eq!(run(&dr).verdict, verdict::TX);
}

/// An ICMP error about a `nat` flow, either way, is translated but is no
/// segment of the connection: the session's TCP state stays where the
/// segments left it (a SYN-only session would otherwise turn ESTABLISHED,
/// with that state's long timeout).
#[test]
fn nat_icmp_errors_do_not_move_the_session() {
    pin_to_one_cpu();
    let dp = fixture(DataplaneParams::default());
    let (vip, r0) = (ip4(VIP), ip4(R0));
    let out = dp
        .test_run(&to_vip(vip, 41500, 80, Some(SYN), b""), 1)
        .unwrap();
    assert_eq!(out.verdict, verdict::TX);
    assert_eq!(session_state(&dp, VIP, 41500), Some(state::TCP_SYN));
    let from_reals_side = icmp_error(
        mac(9),
        LB_MAC,
        ip4([10, 99, 0, 254]),
        ip4(CLIENT),
        IcmpError::TooBig,
        ip_of(&to_real(0, r0, 8080, 41500, Some(SYN), b"")),
    );
    let out = dp.test_run(&from_reals_side, 1).unwrap();
    assert_eq!(out.verdict, verdict::TX);
    checksums_valid(&out.frame).unwrap();
    let from_clients_side = icmp_error(
        CLIENT_MAC,
        LB_MAC,
        ip4([10, 99, 0, 1]),
        vip,
        IcmpError::TooBig,
        ip_of(&to_client(vip, 80, 41500, Some(SYN_ACK), b"")),
    );
    let out = dp.test_run(&from_clients_side, 1).unwrap();
    assert_eq!(out.verdict, verdict::TX);
    checksums_valid(&out.frame).unwrap();
    assert_eq!(session_state(&dp, VIP, 41500), Some(state::TCP_SYN));
}
