//! Golden packet table for `method = "fullnat"` (source and destination
//! NAT from local addresses), run in the kernel with `BPF_PROG_TEST_RUN`:
//! both directions, IPv4 and IPv6, TCP and UDP, the per-CPU port shares
//! and their exhaustion, replies without a session. Frames are built and
//! checked as in `golden_nat.rs` (`common`). Needs root (CAP_BPF).
//!
//! The test pins itself to CPU 0, so every port it expects is CPU 0's
//! share of the local address's range (`sluice_wire::fullnat::cpu_port`).
#![allow(missing_docs, clippy::unwrap_used, clippy::vec_init_then_push)]

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::*;
use etherparse::PacketBuilder;
use sluice_l4::{Dataplane, DataplaneParams, verdict};
use sluice_testkit::frames::{CLIENT_MAC, LB_MAC};
use sluice_wire::fullnat::{LocalAddr, cpu_port, cpu_port_count};
use sluice_wire::maps::{Counter, family, method, vip_flags};
use sluice_wire::toa::{encode_v4, encode_v6};

/// The `fullnat` VIP: TCP 80 and UDP 53 → 10.99.0.11:8080, TCP 81 →
/// 10.99.0.12:81 (a second real), and on the IPv6 VIP TCP 80 →
/// [fd99::11]:8080.
const VIP: [u8; 4] = [10, 99, 255, 9];
const VIP6: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
/// Reals by slot: 0 10.99.0.11:8080, 1 [fd99::11]:8080, 2 10.99.0.12.
const R0: [u8; 4] = [10, 99, 0, 11];
const R1: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
const R2: [u8; 4] = [10, 99, 0, 12];
/// Local addresses (slots 0 and 1), each with ports 40000–40007: a small
/// range, so that CPU 0's share runs out within the table.
const LOCAL: [u8; 4] = [10, 99, 0, 200];
const LOCAL6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x20];
const PORT_MIN: u16 = 40000;
const PORT_MAX: u16 = 40007;

fn fixture(params: DataplaneParams) -> Dataplane {
    let mut dp = load(DataplaneParams {
        ring_size: RING,
        ..params
    });
    dp.set_real(0, real(0, ip4(R0), 8080)).unwrap();
    dp.set_real(1, real(1, ip6(R1), 8080)).unwrap();
    dp.set_real(2, real(2, ip4(R2), 0)).unwrap();
    for (slot, a, fam) in [(0, ip4(LOCAL), family::V4), (1, ip6(LOCAL6), family::V6)] {
        dp.set_local_addr(
            slot,
            LocalAddr {
                addr: addr(a),
                family: fam,
                port_min: PORT_MIN,
                port_max: PORT_MAX,
                ..Default::default()
            },
        )
        .unwrap();
    }
    // TOA on for TCP 80 (both families); TCP 81 goes without.
    for (idx, vip, port, proto, real_slot, local, flags) in [
        (0, ip4(VIP), 80, TCP, 0, 0, vip_flags::TOA),
        (1, ip4(VIP), 53, UDP, 0, 0, 0),
        (2, ip4(VIP), 81, TCP, 2, 0, 0),
        (3, ip6(VIP6), 80, TCP, 1, 1, vip_flags::TOA),
    ] {
        dp.set_vip_locals(idx, &[local]).unwrap();
        service_with_flags(
            &mut dp,
            idx,
            vip,
            port,
            proto,
            method::FULLNAT,
            real_slot,
            flags,
        );
    }
    dp
}

/// The TOA bytes the LB inserts for the table's client at `cport`.
fn toa_of(vip: IpAddr, cport: u16) -> Vec<u8> {
    if vip.is_ipv4() {
        encode_v4(CLIENT, cport).to_vec()
    } else {
        encode_v6(CLIENT6, cport).to_vec()
    }
}

/// [`to_real`] of a TCP segment with `flags` whose options are `options`.
fn to_real_with_options(
    slot: u32,
    real: IpAddr,
    rport: u16,
    lport: u16,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    tcp_frame(
        LB_MAC,
        mac(slot),
        local_of(real),
        lport,
        real,
        rport,
        flags,
        options,
        payload,
    )
}

/// A TCP frame like `common::frame`'s, with TCP options.
#[allow(clippy::too_many_arguments)]
fn tcp_frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    flags: u8,
    options: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut t = b.tcp(sport, dport, 1000, 64240);
    if flags & SYN != 0 {
        t = t.syn();
    }
    if flags & ACK != 0 {
        t = t.ack(2000);
    }
    let t = t.options_raw(options).unwrap();
    let mut out = Vec::new();
    t.write(&mut out, payload).unwrap();
    out
}

/// CPU 0's `k`-th port of the local range.
fn port(dp: &Dataplane, k: u32) -> u16 {
    cpu_port(PORT_MIN, dp.possible_cpus() as u32, 0, k)
}

/// How many ports CPU 0 hands out per real.
fn share(dp: &Dataplane) -> u32 {
    cpu_port_count(PORT_MIN, PORT_MAX, dp.possible_cpus() as u32, 0)
}

fn client_of(vip: IpAddr) -> IpAddr {
    if vip.is_ipv4() {
        ip4(CLIENT)
    } else {
        ip6(CLIENT6)
    }
}

fn local_of(vip: IpAddr) -> IpAddr {
    if vip.is_ipv4() {
        ip4(LOCAL)
    } else {
        ip6(LOCAL6)
    }
}

/// The client's packet to the VIP.
fn to_vip(vip: IpAddr, cport: u16, vport: u16, tcp: Option<u8>, payload: &[u8]) -> Vec<u8> {
    frame(
        CLIENT_MAC,
        LB_MAC,
        client_of(vip),
        cport,
        vip,
        vport,
        tcp,
        payload,
    )
}

/// The same packet as the real must receive it: from the local address
/// and port `lport`, to `real:rport`.
fn to_real(
    slot: u32,
    real: IpAddr,
    rport: u16,
    lport: u16,
    tcp: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    frame(
        LB_MAC,
        mac(slot),
        local_of(real),
        lport,
        real,
        rport,
        tcp,
        payload,
    )
}

/// A real's reply, to the local address and port.
fn from_real(
    slot: u32,
    real: IpAddr,
    rport: u16,
    lport: u16,
    tcp: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    frame(
        mac(slot),
        LB_MAC,
        real,
        rport,
        local_of(real),
        lport,
        tcp,
        payload,
    )
}

/// The reply as the client must receive it: from VIP:vport.
fn to_client(vip: IpAddr, vport: u16, cport: u16, tcp: Option<u8>, payload: &[u8]) -> Vec<u8> {
    frame(
        LB_MAC,
        CLIENT_MAC,
        vip,
        vport,
        client_of(vip),
        cport,
        tcp,
        payload,
    )
}

#[test]
fn fullnat_golden_packet_table() {
    pin_to_one_cpu();
    let dp = fixture(DataplaneParams::default());
    let (vip, vip6) = (ip4(VIP), ip6(VIP6));
    let (r0, r1, r2) = (ip4(R0), ip6(R1), ip4(R2));
    let get = b"GET / HTTP/1.1\r\n\r\n";
    let body = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
    let share = share(&dp);
    assert!(share >= 3, "the table needs three ports per real on CPU 0");
    let (p0, p1) = (port(&dp, 0), port(&dp, 1));
    let mut cases = Vec::new();

    // --- IPv4 TCP: client:41000 -> VIP:80 becomes LOCAL:p0 -> R0:8080 ---
    cases.push(case(
        "v4 tcp SYN: source the local address and CPU 0's first port, destination the real's",
        to_vip(vip, 41000, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, p0, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v4 tcp SYN-ACK to LOCAL:p0: back to the client from VIP:80",
        from_real(0, r0, 8080, p0, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 80, 41000, Some(SYN_ACK), b"")),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v4 tcp first ACK (with the request): the client's TOA inserted, same local port",
        to_vip(vip, 41000, 80, Some(ACK), get),
        verdict::TX,
        Some(to_real_with_options(
            0,
            r0,
            8080,
            p0,
            ACK,
            &toa_of(vip, 41000),
            get,
        )),
        Counter::TxToa,
    ));
    cases.push(case(
        "v4 tcp later ACKs carry no TOA",
        to_vip(vip, 41000, 80, Some(ACK), get),
        verdict::TX,
        Some(to_real(0, r0, 8080, p0, Some(ACK), get)),
        Counter::SessionHit,
    ));
    cases.push(case(
        "v4 tcp response",
        from_real(0, r0, 8080, p0, Some(ACK), body),
        verdict::TX,
        Some(to_client(vip, 80, 41000, Some(ACK), body)),
        Counter::TxFullnatReply,
    ));
    // --- a second connection takes the next port of CPU 0's share ---
    cases.push(case(
        "v4 tcp SYN of a second client port: CPU 0's next port",
        to_vip(vip, 41001, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, p1, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v4 reply on the second port goes to the second client port",
        from_real(0, r0, 8080, p1, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 80, 41001, Some(SYN_ACK), b"")),
        Counter::TxFullnatReply,
    ));
    // 40 bytes of options already (timestamps and padding): no room.
    let full = [1u8; 40];
    cases.push(case(
        "v4 tcp first ACK whose options are full: no TOA, counted, forwarded untruncated",
        tcp_frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            41001,
            vip,
            80,
            ACK,
            &full,
            b"",
        ),
        verdict::TX,
        Some(to_real_with_options(0, r0, 8080, p1, ACK, &full, b"")),
        Counter::ToaNoRoom,
    ));
    cases.push(case(
        "v4 tcp first ACK with 32 bytes of options: the TOA fits after them",
        tcp_frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            41009,
            vip,
            80,
            SYN,
            &[1u8; 32],
            b"",
        ),
        verdict::TX,
        Some(to_real_with_options(
            0,
            r0,
            8080,
            port(&dp, 2),
            SYN,
            &[1u8; 32],
            b"",
        )),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "the ACK: the TOA first, then its 32 bytes of options, 40 in all",
        tcp_frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            41009,
            vip,
            80,
            ACK,
            &[1u8; 32],
            get,
        ),
        verdict::TX,
        Some(to_real_with_options(
            0,
            r0,
            8080,
            port(&dp, 2),
            ACK,
            &[&toa_of(vip, 41009)[..], &[1u8; 32]].concat(),
            get,
        )),
        Counter::TxToa,
    ));
    // --- the rest of the share, then exhaustion ---
    for k in 3..share {
        cases.push(case(
            "v4 tcp SYN filling CPU 0's share",
            to_vip(vip, 41000 + k as u16, 80, Some(SYN), b""),
            verdict::TX,
            Some(to_real(0, r0, 8080, port(&dp, k), Some(SYN), b"")),
            Counter::SessionMiss,
        ));
    }
    cases.push(case(
        "v4 tcp SYN with every port of the share taken for this real: dropped, counted",
        to_vip(vip, 42000, 80, Some(SYN), b""),
        verdict::DROP,
        None,
        Counter::DropFullnatNoPort,
    ));
    cases.push(case(
        "a second SYN of the refused flow is refused again (no session was made)",
        to_vip(vip, 42000, 80, Some(SYN), b""),
        verdict::DROP,
        None,
        Counter::DropFullnatNoPort,
    ));
    // --- ports are per real: another real still has every port ---
    cases.push(case(
        "v4 tcp SYN to a service of another real: that real's ports are all free",
        to_vip(vip, 42000, 81, Some(SYN), b""),
        verdict::TX,
        Some(to_real(2, r2, 81, p0, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "its reply to LOCAL:p0 from the other real finds its own session",
        from_real(2, r2, 81, p0, Some(SYN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 81, 42000, Some(SYN_ACK), b"")),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "a service without TOA sends its first ACK as it came",
        to_vip(vip, 42000, 81, Some(ACK), get),
        verdict::TX,
        Some(to_real(2, r2, 81, p0, Some(ACK), get)),
        Counter::SessionHit,
    ));
    // --- replies that are not a session's ---
    cases.push(case(
        "a packet to the local address on a port never handed out: passed untouched",
        from_real(0, r0, 8080, 39999, Some(ACK), body),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "a packet to LOCAL:p0 from another port of the real: passed untouched",
        from_real(0, r0, 9999, p0, Some(ACK), body),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    // --- UDP ---
    // The search starts at this CPU's cursor (after the port just given
    // for the other real: p1), and UDP's ports are its own: p1 is free.
    cases.push(case(
        "v4 udp to VIP:53: from the local address, to R0:8080 (UDP has ports of its own)",
        to_vip(vip, 5353, 53, None, b"query"),
        verdict::TX,
        Some(to_real(0, r0, 8080, p1, None, b"query")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v4 udp reply back from VIP:53",
        from_real(0, r0, 8080, p1, None, b"answer"),
        verdict::TX,
        Some(to_client(vip, 53, 5353, None, b"answer")),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v4 udp without a checksum stays without one",
        without_udp_checksum(to_vip(vip, 5353, 53, None, b"again")),
        verdict::TX,
        Some(without_udp_checksum(to_real(
            0, r0, 8080, p1, None, b"again",
        ))),
        Counter::SessionHit,
    ));
    // --- the real's SYN-ACK announces an MSS that leaves room for the TOA ---
    let mss = |v: u16| {
        let b = v.to_be_bytes();
        [2u8, 4, b[0], b[1]]
    };
    let syn_ack_from = |slot, real: IpAddr, rport, lport, opts: &[u8]| {
        tcp_frame(
            mac(slot),
            LB_MAC,
            real,
            rport,
            local_of(real),
            lport,
            SYN_ACK,
            opts,
            b"",
        )
    };
    let syn_ack_to = |vip: IpAddr, vport, cport, opts: &[u8]| {
        tcp_frame(
            LB_MAC,
            CLIENT_MAC,
            vip,
            vport,
            client_of(vip),
            cport,
            SYN_ACK,
            opts,
            b"",
        )
    };
    cases.push(case(
        "v4 SYN of a flow whose SYN-ACK carries an MSS",
        to_vip(vip, 41100, 81, Some(SYN), b""),
        verdict::TX,
        // CPU 0's cursor stands at 2 now (R2's first flow took 0, UDP 1).
        Some(to_real(2, r2, 81, port(&dp, 2), Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "a service without TOA keeps the real's MSS",
        syn_ack_from(2, r2, 81, port(&dp, 2), &mss(1460)),
        verdict::TX,
        Some(syn_ack_to(vip, 81, 41100, &mss(1460))),
        Counter::TxFullnatReply,
    ));
    // SYN-ACKs (retransmitted) of the TOA service's flows 41000 (on p0)
    // and 41001 (on p1), with different option layouts.
    let (p_a, p_b) = (p0, p1);
    cases.push(case(
        "v4 SYN-ACK with the MSS first: lowered by the TOA's 8 bytes",
        syn_ack_from(0, r0, 8080, p_a, &[&mss(1460)[..], &[1, 3, 3, 7]].concat()),
        verdict::TX,
        Some(syn_ack_to(
            vip,
            80,
            41000,
            &[&mss(1452)[..], &[1, 3, 3, 7]].concat(),
        )),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v4 SYN-ACK with a NOP before the MSS (an odd offset): lowered, checksum right",
        syn_ack_from(
            0,
            r0,
            8080,
            p_b,
            &[&[1u8][..], &mss(1400), &[1, 1, 1]].concat(),
        ),
        verdict::TX,
        Some(syn_ack_to(
            vip,
            80,
            41001,
            &[&[1u8][..], &mss(1392), &[1, 1, 1]].concat(),
        )),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v4 SYN-ACK whose MSS is not the first option: left as it is",
        syn_ack_from(
            0,
            r0,
            8080,
            p_a,
            &[&[4u8, 2][..], &mss(1460), &[1, 1]].concat(),
        ),
        verdict::TX,
        Some(syn_ack_to(
            vip,
            80,
            41000,
            &[&[4u8, 2][..], &mss(1460), &[1, 1]].concat(),
        )),
        Counter::TxFullnatReply,
    ));
    // --- IPv6 ---
    cases.push(case(
        "v6 tcp SYN: from the IPv6 local address",
        to_vip(vip6, 41000, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(1, r1, 8080, p0, Some(SYN), b"")),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "v6 tcp SYN-ACK back from [VIP6]:80, its MSS lowered by the TOA's 20 bytes",
        tcp_frame(
            mac(1),
            LB_MAC,
            r1,
            8080,
            local_of(r1),
            p0,
            SYN_ACK,
            &mss(1440),
            b"",
        ),
        verdict::TX,
        Some(tcp_frame(
            LB_MAC,
            CLIENT_MAC,
            vip6,
            80,
            client_of(vip6),
            41000,
            SYN_ACK,
            &mss(1420),
            b"",
        )),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v6 tcp first ACK: the client's TOA (20 bytes) inserted",
        to_vip(vip6, 41000, 80, Some(ACK), get),
        verdict::TX,
        Some(to_real_with_options(
            1,
            r1,
            8080,
            p0,
            ACK,
            &toa_of(vip6, 41000),
            get,
        )),
        Counter::TxToa,
    ));
    cases.push(case(
        "v6 tcp response",
        from_real(1, r1, 8080, p0, Some(ACK), body),
        verdict::TX,
        Some(to_client(vip6, 80, 41000, Some(ACK), body)),
        Counter::TxFullnatReply,
    ));
    // --- ICMP errors about a flow, both ways ---
    cases.push(case(
        "the client's too-big about a reply (to the VIP): to the real, about the real's own reply",
        icmp_error(
            CLIENT_MAC,
            LB_MAC,
            ip4(CLIENT),
            vip,
            IcmpError::TooBig,
            ip_of(&to_client(vip, 80, 41000, Some(ACK), body)),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            mac(0),
            ip4(LOCAL),
            r0,
            IcmpError::TooBig,
            ip_of(&from_real(0, r0, 8080, p0, Some(ACK), body)),
        )),
        Counter::IcmpForwarded,
    ));
    cases.push(case(
        "the real's port unreachable to the local address: to the client, from the VIP",
        icmp_error(
            mac(0),
            LB_MAC,
            r0,
            ip4(LOCAL),
            IcmpError::PortUnreachable,
            ip_of(&to_real(0, r0, 8080, p1, None, b"again")),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            CLIENT_MAC,
            vip,
            ip4(CLIENT),
            IcmpError::PortUnreachable,
            ip_of(&to_vip(vip, 5353, 53, None, b"again")),
        )),
        Counter::TxNatIcmpReply,
    ));
    cases.push(case(
        "an error to the local address about a flow it never sent: passed untouched",
        icmp_error(
            mac(0),
            LB_MAC,
            r0,
            ip4(LOCAL),
            IcmpError::PortUnreachable,
            ip_of(&to_real(0, r0, 8080, 39999, None, b"x")),
        ),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "v6: the real's packet too big to the local address, to the client from [VIP6]",
        icmp_error(
            mac(1),
            LB_MAC,
            r1,
            ip6(LOCAL6),
            IcmpError::TooBig,
            ip_of(&to_real(1, r1, 8080, p0, Some(ACK), get)),
        ),
        verdict::TX,
        Some(icmp_error(
            LB_MAC,
            CLIENT_MAC,
            vip6,
            ip6(CLIENT6),
            IcmpError::TooBig,
            ip_of(&to_vip(vip6, 41000, 80, Some(ACK), get)),
        )),
        Counter::TxNatIcmpReply,
    ));
    // --- RST and FIN from either side keep translating ---
    cases.push(case(
        "v4 FIN from the real is translated and closes the session",
        from_real(0, r0, 8080, p0, Some(FIN_ACK), b""),
        verdict::TX,
        Some(to_client(vip, 80, 41000, Some(FIN_ACK), b"")),
        Counter::TxFullnatReply,
    ));
    cases.push(case(
        "v4 RST from the client on the closing session is still translated",
        to_vip(vip, 41000, 80, Some(RST), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, p0, Some(RST), b"")),
        Counter::SessionHit,
    ));

    let failures = run(&dp, &cases);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A port is free again once its session is over and its quarantine
/// has passed: with every port of CPU 0's share taken, a flow that ends
/// (RST) and whose session times out gives its port to the next new
/// flow; a reply to the old flow's port then belongs to the new session
/// only.
#[test]
fn fullnat_ports_are_reused_once_their_session_is_over() {
    pin_to_one_cpu();
    const CLOSING: Duration = Duration::from_millis(300);
    let dp = fixture(DataplaneParams {
        tcp_closing_timeout: CLOSING,
        fullnat_port_quarantine: CLOSING,
        ..Default::default()
    });
    let vip = ip4(VIP);
    let r0 = ip4(R0);
    let share = share(&dp);
    let mut cases = Vec::new();
    for k in 0..share {
        cases.push(case(
            "SYN taking a port",
            to_vip(vip, 43000 + k as u16, 80, Some(SYN), b""),
            verdict::TX,
            Some(to_real(0, r0, 8080, port(&dp, k), Some(SYN), b"")),
            Counter::SessionMiss,
        ));
    }
    cases.push(case(
        "the share is used up",
        to_vip(vip, 44000, 80, Some(SYN), b""),
        verdict::DROP,
        None,
        Counter::DropFullnatNoPort,
    ));
    cases.push(case(
        "the first flow is reset by its client",
        to_vip(vip, 43000, 80, Some(RST), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, port(&dp, 0), Some(RST), b"")),
        Counter::SessionHit,
    ));
    let mut failures = run(&dp, &cases);
    // The coarse clock ticks every few ms; wait the closing timeout out.
    std::thread::sleep(CLOSING * 2);
    let after = [
        case(
            "a new flow gets the port of the session that is over",
            to_vip(vip, 44000, 80, Some(SYN), b""),
            verdict::TX,
            Some(to_real(0, r0, 8080, port(&dp, 0), Some(SYN), b"")),
            Counter::SessionMiss,
        ),
        case(
            "a reply on that port goes to the new flow's client port",
            from_real(0, r0, 8080, port(&dp, 0), Some(SYN_ACK), b""),
            verdict::TX,
            Some(to_client(vip, 80, 44000, Some(SYN_ACK), b"")),
            Counter::TxFullnatReply,
        ),
    ];
    failures.extend(run(&dp, &after));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A client that reuses its 4-tuple right after a connection ended (the
/// real closed first, so only the real keeps TIME_WAIT) gets a new
/// session and a new port; the old port stays taken for the quarantine
/// after its last reply, even though no session holds it any more, so it
/// is not handed to the next flow toward the same real (PAWS would drop
/// that SYN at the real: BENCHMARKS.md §4).
#[test]
fn fullnat_a_port_is_quarantined_after_its_last_reply() {
    pin_to_one_cpu();
    const CLOSING: Duration = Duration::from_millis(200);
    const QUARANTINE: Duration = Duration::from_millis(1500);
    let dp = fixture(DataplaneParams {
        tcp_closing_timeout: CLOSING,
        fullnat_port_quarantine: QUARANTINE,
        ..Default::default()
    });
    let vip = ip4(VIP);
    let r0 = ip4(R0);
    let share = share(&dp);
    let mut cases = vec![
        case(
            "a flow takes port 0",
            to_vip(vip, 45000, 80, Some(SYN), b""),
            verdict::TX,
            Some(to_real(0, r0, 8080, port(&dp, 0), Some(SYN), b"")),
            Counter::SessionMiss,
        ),
        case(
            "the real answers and closes first",
            from_real(0, r0, 8080, port(&dp, 0), Some(FIN_ACK), b""),
            verdict::TX,
            Some(to_client(vip, 80, 45000, Some(FIN_ACK), b"")),
            Counter::TxFullnatReply,
        ),
    ];
    let mut failures = run(&dp, &cases);
    // The session's closing timeout passes, the quarantine does not.
    std::thread::sleep(CLOSING * 2);
    cases = Vec::new();
    for k in 1..share {
        cases.push(case(
            "new flows take the other ports, not the quarantined one",
            to_vip(vip, 45001 + k as u16, 80, Some(SYN), b""),
            verdict::TX,
            Some(to_real(0, r0, 8080, port(&dp, k), Some(SYN), b"")),
            Counter::SessionMiss,
        ));
    }
    cases.push(case(
        "with the rest taken, the quarantined port is not handed out",
        to_vip(vip, 46000, 80, Some(SYN), b""),
        verdict::DROP,
        None,
        Counter::DropFullnatNoPort,
    ));
    failures.extend(run(&dp, &cases));
    std::thread::sleep(QUARANTINE);
    let after = [case(
        "after the quarantine it is free again",
        to_vip(vip, 46000, 80, Some(SYN), b""),
        verdict::TX,
        Some(to_real(0, r0, 8080, port(&dp, 0), Some(SYN), b"")),
        Counter::SessionMiss,
    )];
    failures.extend(run(&dp, &after));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A flood of new flows to three reals through two local addresses: the
/// first address is used up for each real before the second takes over,
/// and no flow is refused while either still has a free port for its
/// real. (With candidates only in order from the shared cursor, one real's
/// ports lay behind it in runs longer than the probes, and new flows were
/// refused with free ports left: BENCHMARKS.md §5.)
#[test]
fn fullnat_a_flood_of_new_flows_finds_every_free_port() {
    pin_to_one_cpu();
    /// Ports per local address, lowest and highest.
    const FLOOD_PORTS: (u16, u16) = (1024, 65535);
    let vip = [10, 99, 255, 5];
    let mut dp = load(DataplaneParams {
        ring_size: RING,
        session_capacity: 1 << 20,
        ..Default::default()
    });
    for i in 0..3u32 {
        dp.set_real(i, real(i, ip4([10, 99, 0, 11 + i as u8]), 0))
            .unwrap();
    }
    for (slot, a) in [(1u32, [10, 99, 0, 201]), (2, [10, 99, 0, 202])] {
        dp.set_local_addr(
            slot,
            LocalAddr {
                addr: addr(ip4(a)),
                family: family::V4,
                port_min: FLOOD_PORTS.0,
                port_max: FLOOD_PORTS.1,
                ..Default::default()
            },
        )
        .unwrap();
    }
    dp.set_vip_locals(0, &[1, 2]).unwrap();
    service(&mut dp, 0, ip4(vip), 80, TCP, method::FULLNAT, 0);
    // Every ring entry in turn: 5, 4 and 4 of 13 to the three reals.
    dp.set_ring(0, &(0..RING).map(|i| i % 3).collect::<Vec<_>>())
        .unwrap();
    let share = cpu_port_count(FLOOD_PORTS.0, FLOOD_PORTS.1, dp.possible_cpus() as u32, 0);
    // 3.5 shares in all: the busiest real needs 1.35 of them (more than
    // the first address holds for it), the others 1.08; under 2 each.
    let flows = share * 7 / 2;
    let mut x: u32 = 0x2545_f491;
    for _ in 0..flows {
        // xorshift32: distinct client addresses in a fixed order.
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let f = frame(
            CLIENT_MAC,
            LB_MAC,
            ip4(x.to_be_bytes()),
            40000,
            ip4(vip),
            80,
            Some(SYN),
            b"",
        );
        dp.test_run(&f, 1).unwrap();
    }
    assert_eq!(dp.counter(Counter::DropFullnatNoPort).unwrap(), 0);
    assert_eq!(dp.counter(Counter::SessionMiss).unwrap(), u64::from(flows));
    let mut first = [0u32; 3];
    for (k, _) in dp.fullnat_reverse().unwrap() {
        if k.local_slot == 1 {
            first[(k.real[0].to_be() & 0xff) as usize - 11] += 1;
        }
    }
    // The busiest real used up (nearly) every port of the first address.
    assert!(first[0] * 100 >= share * 99, "{first:?} of {share}");
}
