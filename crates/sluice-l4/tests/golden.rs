//! Golden packet table for `sluice_xdp`, run in the kernel with
//! `BPF_PROG_TEST_RUN`: {description, input frame, expected verdict,
//! expected output frame}. Needs root (CAP_BPF); without it the test fails
//! with a message saying so.
//!
//! The cases run in order against one loaded program, so session-table
//! state carries over on purpose (a miss, then hits of the same flow).
#![allow(missing_docs, clippy::unwrap_used)]

use sluice_l4::{Dataplane, DataplaneParams, verdict};
use sluice_wire::{
    checksum,
    hash::{addr_hash, flow_hash},
    maps::{
        Addr, Counter, Method, RealDef, VipKey, VipMeta, addr_from_bytes, family, method,
        real_flags, sched, state, vip_flags,
    },
};

use sluice_testkit::frames::{CLIENT_MAC, LB_MAC, eth, ipv4_hdr, tcp, udp, v4, v6};
use sluice_testkit::services::{TUN_SRC, a4};
const RING: u32 = 13;

fn mac(i: u32) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, i as u8]
}
fn a6(last: u8, sub: u8) -> [u8; 16] {
    [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, sub, last]
}
fn w6(b: [u8; 16]) -> Addr {
    addr_from_bytes(b)
}
const VIP6: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const VIP6_TUN: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

const CLIENT: [u8; 4] = [10, 99, 0, 2];
const CLIENT6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const VIP_DR: [u8; 4] = [10, 99, 255, 1];
const VIP_TUN: [u8; 4] = [10, 99, 255, 2];
const VIP_RR: [u8; 4] = [10, 99, 255, 3];
const VIP_WLC: [u8; 4] = [10, 99, 255, 4];
const VIP_EMPTY: [u8; 4] = [10, 99, 255, 5];
const VIP_NOMAC: [u8; 4] = [10, 99, 255, 6];
const VIP_SH: [u8; 4] = [10, 99, 255, 7];
const VIP_PERSIST: [u8; 4] = [10, 99, 255, 8];
const VIP_FULLNAT: [u8; 4] = [10, 99, 255, 9];
const VIP_BAD_METHOD: [u8; 4] = [10, 99, 255, 10];
/// A method byte that names no `Method`.
const UNKNOWN_METHOD: u8 = 0xff;
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;

// === the expected rewrites ===

fn dr_out(input: &[u8], real_mac: [u8; 6]) -> Vec<u8> {
    let mut o = input.to_vec();
    o[..6].copy_from_slice(&real_mac);
    o[6..12].copy_from_slice(&LB_MAC);
    o
}

/// The outer IPv4 header copies the inner TOS (DSCP and ECN) and sets DF
/// (ID 0: RFC 6864 allows it on an atomic datagram).
fn ipip_out(input: &[u8], real: [u8; 4], real_mac: [u8; 6], src: [u8; 4]) -> Vec<u8> {
    let inner = &input[14..];
    let mut o = eth(real_mac, LB_MAC, 0x0800);
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[1] = inner[1];
    h[2..4].copy_from_slice(&((20 + inner.len()) as u16).to_be_bytes());
    h[6] = 0x40;
    h[8] = 64;
    h[9] = 4;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&real);
    let c = checksum::finish(checksum::sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    o.extend(h);
    o.extend_from_slice(inner);
    o
}

fn ip6ip6_out(
    input: &[u8],
    real: [u8; 16],
    real_mac: [u8; 6],
    src: [u8; 16],
    hash: u32,
) -> Vec<u8> {
    let inner = &input[14..];
    // The inner traffic class, copied.
    let tc = (inner[0] << 4) | (inner[1] >> 4);
    let mut o = eth(real_mac, LB_MAC, 0x86dd);
    let mut h = vec![0u8; 40];
    h[0] = 0x60 | (tc >> 4);
    h[1] = (tc << 4) | ((hash >> 16) & 0x0f) as u8;
    h[2..4].copy_from_slice(&(hash as u16).to_be_bytes());
    h[4..6].copy_from_slice(&(inner.len() as u16).to_be_bytes());
    h[6] = 41;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&real);
    o.extend(h);
    o.extend_from_slice(inner);
    o
}

// === the fixture ===

struct Fixture {
    dp: Dataplane,
    rings: std::collections::HashMap<u32, Vec<u32>>,
}

/// Real slots: 0-2 dr v4, 3-4 tun v4, 5-6 dr v6, 7 tun v6, 8-9 rr, 10-11
/// wlc, 12 no MAC, 13-14 sh, 15-16 persistence.
fn real_v4(i: u32, addr: [u8; 4], weight: u32, has_mac: bool) -> RealDef {
    RealDef {
        addr: a4(addr),
        mac: mac(i),
        family: family::V4,
        flags: real_flags::PRESENT | if has_mac { real_flags::HAS_MAC } else { 0 },
        weight,
        ..Default::default()
    }
}

impl Fixture {
    fn new() -> Self {
        let dp = match Dataplane::load(
            DataplaneParams {
                ring_size: RING,
                ..Default::default()
            },
            LB_MAC,
        ) {
            Ok(dp) => dp,
            Err(e) => panic!(
                "loading the XDP program failed: {e}\n\
                 these tests need root (CAP_BPF + CAP_NET_ADMIN); run the README's test command as root"
            ),
        };
        let mut f = Self {
            dp,
            rings: Default::default(),
        };
        for i in 0..3 {
            f.dp.set_real(i, real_v4(i, [10, 99, 0, 11 + i as u8], 1, true))
                .unwrap();
        }
        for i in 3..5 {
            f.dp.set_real(i, real_v4(i, [10, 98, 0, 18 + i as u8], 1, true))
                .unwrap();
        }
        for i in 5..7 {
            let r = RealDef {
                addr: w6(a6(0x10 + i as u8, 0)),
                mac: mac(i),
                family: family::V6,
                flags: real_flags::PRESENT | real_flags::HAS_MAC,
                weight: 1,
                ..Default::default()
            };
            f.dp.set_real(i, r).unwrap();
        }
        let r7 = RealDef {
            addr: w6(a6(0x17, 1)),
            mac: mac(7),
            family: family::V6,
            flags: real_flags::PRESENT | real_flags::HAS_MAC,
            weight: 1,
            ..Default::default()
        };
        f.dp.set_real(7, r7).unwrap();
        for i in 8..12 {
            let w = if i == 11 { 3 } else { 1 };
            f.dp.set_real(i, real_v4(i, [10, 99, 0, 20 + i as u8], w, true))
                .unwrap();
        }
        f.dp.set_real(12, real_v4(12, [10, 99, 0, 40], 1, false))
            .unwrap();
        for i in 13..17 {
            f.dp.set_real(i, real_v4(i, [10, 99, 0, 40 + i as u8], 1, true))
                .unwrap();
        }

        let hash_ring = |slots: &[u32]| -> Vec<u32> {
            (0..RING as usize).map(|i| slots[i % slots.len()]).collect()
        };
        f.service(
            0,
            VIP_DR,
            80,
            6,
            method::DR,
            sched::HASH_FLOW,
            0,
            hash_ring(&[0, 1, 2]),
        );
        f.service(
            1,
            VIP_DR,
            53,
            17,
            method::DR,
            sched::HASH_FLOW,
            0,
            hash_ring(&[0, 1, 2]),
        );
        f.service(
            2,
            VIP_TUN,
            0,
            6,
            method::TUN,
            sched::HASH_FLOW,
            0,
            hash_ring(&[3, 4]),
        );
        f.service(3, VIP_RR, 80, 6, method::DR, sched::CURSOR, 0, vec![8, 9]);
        f.service(4, VIP_WLC, 80, 6, method::DR, sched::WLC, 0, vec![]);
        f.dp.set_vip_reals(4, &[10, 11]).unwrap();
        f.service(5, VIP_EMPTY, 80, 6, method::DR, sched::HASH_FLOW, 0, vec![]);
        f.service(
            6,
            VIP_NOMAC,
            80,
            6,
            method::DR,
            sched::HASH_FLOW,
            0,
            hash_ring(&[12]),
        );
        f.service(
            7,
            VIP_SH,
            80,
            6,
            method::DR,
            sched::HASH_SRC,
            0,
            hash_ring(&[13, 14]),
        );
        f.service(
            8,
            VIP_PERSIST,
            80,
            6,
            method::DR,
            sched::HASH_FLOW,
            vip_flags::PERSIST,
            hash_ring(&[15, 16]),
        );
        // A `fullnat` service without local addresses (its new flows find
        // no port) and a byte that names no method. Their reals are usable
        // `dr` reals, so a fall-through to `dr` would show as a forwarded
        // frame.
        f.service(
            11,
            VIP_FULLNAT,
            80,
            6,
            method::FULLNAT,
            sched::HASH_FLOW,
            0,
            hash_ring(&[0, 1, 2]),
        );
        f.service(
            12,
            VIP_BAD_METHOD,
            80,
            6,
            UNKNOWN_METHOD,
            sched::HASH_FLOW,
            0,
            hash_ring(&[0, 1, 2]),
        );
        // IPv6 services.
        let ring6 = hash_ring(&[5, 6]);
        f.dp.set_ring(9, &ring6).unwrap();
        f.rings.insert(9, ring6);
        f.dp.set_service(
            VipKey {
                addr: w6(VIP6),
                port: 80,
                proto: 6,
                family: family::V6,
            },
            VipMeta {
                vip_index: 9,
                method: method::DR,
                sched: sched::HASH_FLOW,
                family: family::V6,
                ring_len: RING,
                ..Default::default()
            },
        )
        .unwrap();
        let ring7 = hash_ring(&[7]);
        f.dp.set_ring(10, &ring7).unwrap();
        f.rings.insert(10, ring7);
        f.dp.set_service(
            VipKey {
                addr: w6(VIP6_TUN),
                port: 80,
                proto: 6,
                family: family::V6,
            },
            VipMeta {
                vip_index: 10,
                method: method::TUN,
                sched: sched::HASH_FLOW,
                family: family::V6,
                ring_len: RING,
                tun_src: w6(a6(1, 0)),
                ..Default::default()
            },
        )
        .unwrap();
        f
    }

    #[allow(clippy::too_many_arguments)]
    fn service(
        &mut self,
        idx: u32,
        vip: [u8; 4],
        port: u16,
        proto: u8,
        meth: u8,
        sch: u8,
        flags: u8,
        ring: Vec<u32>,
    ) {
        self.dp.set_ring(idx, &ring).unwrap();
        let ring_len = if sch == sched::CURSOR || ring.is_empty() {
            ring.len() as u32
        } else {
            RING
        };
        self.rings.insert(idx, ring);
        self.dp
            .set_service(
                VipKey {
                    addr: a4(vip),
                    port,
                    proto,
                    family: family::V4,
                },
                VipMeta {
                    vip_index: idx,
                    method: meth,
                    sched: sch,
                    flags,
                    family: family::V4,
                    ring_len,
                    reals_len: if sch >= sched::LC { 2 } else { 0 },
                    persist_ns: 300_000_000_000,
                    tun_src: a4(TUN_SRC),
                },
            )
            .unwrap();
    }

    /// The real the kernel's flow-hash scheduler must pick.
    fn by_flow(&self, idx: u32, src: Addr, sport: u16, dport: u16, proto: u8) -> u32 {
        let ring = &self.rings[&idx];
        ring[(flow_hash(&src, sport, dport, proto, 0) % RING) as usize]
    }
}

fn real_ip4(slot: u32) -> [u8; 4] {
    match slot {
        0..=2 => [10, 99, 0, 11 + slot as u8],
        3..=4 => [10, 98, 0, 18 + slot as u8],
        _ => unreachable!(),
    }
}

struct Case {
    desc: &'static str,
    input: Vec<u8>,
    verdict: u32,
    /// `None`: the frame must come back unchanged.
    output: Option<Vec<u8>>,
    /// A counter that must have grown by one.
    counter: Option<Counter>,
}

fn case(desc: &'static str, input: Vec<u8>, v: u32, output: Option<Vec<u8>>, c: Counter) -> Case {
    Case {
        desc,
        input,
        verdict: v,
        output,
        counter: Some(c),
    }
}

fn pin_to_one_cpu() {
    // The round-robin cursor is per CPU: pin so consecutive runs share it.
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

#[test]
fn golden_packet_table() {
    pin_to_one_cpu();
    let mut fx = Fixture::new();
    let mut cases = Vec::new();

    // --- not for us: untouched ---
    cases.push(case(
        "non-VIP IPv4 TCP passes",
        v4(CLIENT, [10, 99, 0, 50], 6, &tcp(1000, 80, SYN)),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    cases.push(case(
        "non-VIP IPv6 TCP passes",
        v6(CLIENT6, a6(0x50, 0), 6, &tcp(1000, 80, SYN)),
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));
    let mut arp = eth([0xff; 6], CLIENT_MAC, 0x0806);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0u8; 20]);
    cases.push(case(
        "ARP passes",
        arp,
        verdict::PASS,
        None,
        Counter::PassNonIp,
    ));
    let mut vlan = eth(LB_MAC, CLIENT_MAC, 0x8100);
    vlan.extend_from_slice(&[0, 10, 8, 0]);
    cases.push(case(
        "802.1Q frame passes (no VLAN parsing)",
        vlan,
        verdict::PASS,
        None,
        Counter::PassNonIp,
    ));
    cases.push(case(
        "non-VIP IPv4 with options passes",
        {
            let mut f = v4(CLIENT, [10, 99, 0, 50], 6, &tcp(1, 2, SYN));
            f[14] = 0x46;
            f
        },
        verdict::PASS,
        None,
        Counter::PassNonVip,
    ));

    // --- truncated and garbage ---
    // (BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, and
    // so does every driver, so the shortest frame tested is a bare header.)
    cases.push(case(
        "bare Ethernet header claiming IPv4",
        eth(LB_MAC, CLIENT_MAC, 0x0800),
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "bare Ethernet header claiming IPv6",
        eth(LB_MAC, CLIENT_MAC, 0x86dd),
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "IPv4 header cut short",
        {
            let mut f = eth(LB_MAC, CLIENT_MAC, 0x0800);
            f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]);
            f
        },
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "IPv6 header cut short",
        {
            let mut f = eth(LB_MAC, CLIENT_MAC, 0x86dd);
            f.extend_from_slice(&[0x60; 30]);
            f
        },
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "VIP IPv4 total length beyond the frame",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, SYN));
            f[16..18].copy_from_slice(&1400u16.to_be_bytes());
            f
        },
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "VIP TCP header cut short",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, SYN));
            f.truncate(14 + 20 + 10);
            f[16..18].copy_from_slice(&30u16.to_be_bytes());
            f
        },
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "VIP UDP header cut short",
        {
            let mut f = v4(CLIENT, VIP_DR, 17, &udp(5000, 53));
            f.truncate(14 + 20 + 4);
            f[16..18].copy_from_slice(&24u16.to_be_bytes());
            f
        },
        verdict::DROP,
        None,
        Counter::DropTruncated,
    ));
    cases.push(case(
        "VIP IPv4 with version 5 (garbage)",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, SYN));
            f[14] = 0x55;
            f
        },
        verdict::DROP,
        None,
        Counter::DropMalformed,
    ));
    cases.push(case(
        "VIP IPv4 with IHL 3 (garbage)",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, SYN));
            f[14] = 0x43;
            f
        },
        verdict::DROP,
        None,
        Counter::DropMalformed,
    ));
    cases.push(case(
        "VIP IPv6 with version 4 in the header (garbage)",
        {
            let mut f = v6(CLIENT6, VIP6, 6, &tcp(1000, 80, SYN));
            f[14] = 0x40;
            f
        },
        verdict::DROP,
        None,
        Counter::DropMalformed,
    ));

    // --- options and fragments ---
    cases.push(case(
        "VIP IPv4 with options",
        {
            let l4 = tcp(1000, 80, SYN);
            let mut f = eth(LB_MAC, CLIENT_MAC, 0x0800);
            let mut h = ipv4_hdr(CLIENT, VIP_DR, 6, l4.len() + 4, 0x4000);
            h[0] = 0x46;
            f.extend(h);
            f.extend_from_slice(&[1, 1, 1, 0]);
            f.extend(l4);
            f
        },
        verdict::DROP,
        None,
        Counter::DropIpOptions,
    ));
    cases.push(case(
        "VIP IPv4 first fragment (MF set)",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, ACK));
            f[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
            f
        },
        verdict::DROP,
        None,
        Counter::DropFragment,
    ));
    cases.push(case(
        "VIP IPv4 non-first fragment",
        {
            let mut f = v4(CLIENT, VIP_DR, 6, &tcp(1000, 80, ACK));
            f[20..22].copy_from_slice(&0x00b9u16.to_be_bytes());
            f
        },
        verdict::DROP,
        None,
        Counter::DropFragment,
    ));
    cases.push(case(
        "VIP IPv6 fragment header",
        v6(CLIENT6, VIP6, 44, &[6, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 0]),
        verdict::DROP,
        None,
        Counter::DropFragment,
    ));
    cases.push(case(
        "VIP IPv6 hop-by-hop header",
        v6(CLIENT6, VIP6, 0, &[6, 0, 1, 4, 0, 0, 0, 0]),
        verdict::DROP,
        None,
        Counter::DropIpOptions,
    ));

    // --- VIP address, no service ---
    cases.push(case(
        "VIP address, port without a service",
        v4(CLIENT, VIP_DR, 6, &tcp(1000, 81, SYN)),
        verdict::PASS,
        None,
        Counter::PassNoService,
    ));
    cases.push(case(
        "VIP address, GRE",
        v4(CLIENT, VIP_DR, 47, &[0u8; 8]),
        verdict::PASS,
        None,
        Counter::PassNoService,
    ));
    cases.push(case(
        "ICMP echo to a VIP passes",
        v4(CLIENT, VIP_DR, 1, &[8, 0, 0, 0, 0, 1, 0, 1]),
        verdict::PASS,
        None,
        Counter::PassIcmp,
    ));
    cases.push(case(
        "ICMPv6 echo to a VIP passes",
        v6(CLIENT6, VIP6, 58, &[128, 0, 0, 0, 0, 1, 0, 1]),
        verdict::PASS,
        None,
        Counter::PassIcmp,
    ));

    // --- dr: session miss, then hits ---
    let syn = v4(CLIENT, VIP_DR, 6, &tcp(40000, 80, SYN));
    let r = fx.by_flow(0, a4(CLIENT), 40000, 80, 6);
    cases.push(case(
        "dr IPv4 TCP SYN: session miss, MACs rewritten",
        syn.clone(),
        verdict::TX,
        Some(dr_out(&syn, mac(r))),
        Counter::SessionMiss,
    ));
    let ack = v4(CLIENT, VIP_DR, 6, &tcp(40000, 80, ACK));
    cases.push(case(
        "dr IPv4 TCP ACK: session hit, same real",
        ack.clone(),
        verdict::TX,
        Some(dr_out(&ack, mac(r))),
        Counter::SessionHit,
    ));
    let r2 = fx.by_flow(0, a4(CLIENT), 40001, 80, 6);
    let mid = v4(CLIENT, VIP_DR, 6, &tcp(40001, 80, ACK));
    cases.push(case(
        "dr IPv4 mid-flow ACK without a session is scheduled like a SYN",
        mid.clone(),
        verdict::TX,
        Some(dr_out(&mid, mac(r2))),
        Counter::SessionMiss,
    ));
    let fin = v4(CLIENT, VIP_DR, 6, &tcp(40000, 80, FIN_ACK));
    cases.push(case(
        "dr IPv4 FIN: session hit",
        fin.clone(),
        verdict::TX,
        Some(dr_out(&fin, mac(r))),
        Counter::SessionHit,
    ));
    let rst = v4(CLIENT, VIP_DR, 6, &tcp(40000, 80, RST));
    cases.push(case(
        "dr IPv4 RST after FIN: still the same real",
        rst.clone(),
        verdict::TX,
        Some(dr_out(&rst, mac(r))),
        Counter::SessionHit,
    ));
    let u = v4(CLIENT, VIP_DR, 17, &udp(5353, 53));
    let ru = fx.by_flow(1, a4(CLIENT), 5353, 53, 17);
    cases.push(case(
        "dr IPv4 UDP",
        u.clone(),
        verdict::TX,
        Some(dr_out(&u, mac(ru))),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "dr IPv4 UDP again: session hit",
        u.clone(),
        verdict::TX,
        Some(dr_out(&u, mac(ru))),
        Counter::SessionHit,
    ));

    // --- ICMP too big for a VIP flow goes to the flow's real ---
    let quoted = {
        // The real's reply VIP:80 -> client:40000, as a router quotes it.
        let mut q = ipv4_hdr(VIP_DR, CLIENT, 6, 20, 0x4000);
        q.extend_from_slice(&tcp(80, 40000, ACK)[..8]);
        q
    };
    let mut icmp = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    icmp.extend_from_slice(&quoted);
    let fneed = v4([10, 99, 0, 254], VIP_DR, 1, &icmp);
    cases.push(case(
        "ICMP frag-needed quoting a VIP flow goes to its real",
        fneed.clone(),
        verdict::TX,
        Some(dr_out(&fneed, mac(r))),
        Counter::IcmpForwarded,
    ));

    // --- IPv6 dr ---
    let s6 = v6(CLIENT6, VIP6, 6, &tcp(41000, 80, SYN));
    let r6 = fx.by_flow(9, w6(CLIENT6), 41000, 80, 6);
    cases.push(case(
        "dr IPv6 TCP SYN",
        s6.clone(),
        verdict::TX,
        Some(dr_out(&s6, mac(r6))),
        Counter::SessionMiss,
    ));
    let a6p = v6(CLIENT6, VIP6, 6, &tcp(41000, 80, ACK));
    cases.push(case(
        "dr IPv6 TCP ACK: session hit",
        a6p.clone(),
        verdict::TX,
        Some(dr_out(&a6p, mac(r6))),
        Counter::SessionHit,
    ));
    let mut icmp6 = vec![2, 0, 0, 0, 0, 0, 0x05, 0x00];
    {
        let mut q = vec![0u8; 40];
        q[0] = 0x60;
        q[4..6].copy_from_slice(&1400u16.to_be_bytes());
        q[6] = 6;
        q[7] = 64;
        q[8..24].copy_from_slice(&VIP6);
        q[24..40].copy_from_slice(&CLIENT6);
        icmp6.extend(q);
        icmp6.extend_from_slice(&tcp(80, 41000, ACK)[..8]);
    }
    let ptb = v6(a6(0xfe, 0), VIP6, 58, &icmp6);
    cases.push(case(
        "ICMPv6 packet-too-big quoting a VIP flow goes to its real",
        ptb.clone(),
        verdict::TX,
        Some(dr_out(&ptb, mac(r6))),
        Counter::IcmpForwarded,
    ));

    // --- tun ---
    let t = v4(CLIENT, VIP_TUN, 6, &tcp(42000, 8443, SYN));
    let rt = fx.by_flow(2, a4(CLIENT), 42000, 8443, 6);
    cases.push(case(
        "tun IPv4 (all-ports service): IPIP to the real",
        t.clone(),
        verdict::TX,
        Some(ipip_out(&t, real_ip4(rt), mac(rt), TUN_SRC)),
        Counter::SessionMiss,
    ));
    let t2 = v4(CLIENT, VIP_TUN, 6, &tcp(42000, 8443, ACK));
    cases.push(case(
        "tun IPv4: session hit",
        t2.clone(),
        verdict::TX,
        Some(ipip_out(&t2, real_ip4(rt), mac(rt), TUN_SRC)),
        Counter::SessionHit,
    ));
    let t6 = v6(CLIENT6, VIP6_TUN, 6, &tcp(43000, 80, SYN));
    let h6 = flow_hash(&w6(CLIENT6), 43000, 80, 6, 0);
    cases.push(case(
        "tun IPv6: IP6IP6 to the real",
        t6.clone(),
        verdict::TX,
        Some(ip6ip6_out(&t6, a6(0x17, 1), mac(7), a6(1, 0), h6)),
        Counter::SessionMiss,
    ));

    // --- schedulers ---
    let rr1 = v4(CLIENT, VIP_RR, 6, &tcp(44000, 80, SYN));
    let rr2 = v4(CLIENT, VIP_RR, 6, &tcp(44001, 80, SYN));
    let rr3 = v4(CLIENT, VIP_RR, 6, &tcp(44002, 80, SYN));
    cases.push(case(
        "rr: first new flow to the first real",
        rr1.clone(),
        verdict::TX,
        Some(dr_out(&rr1, mac(8))),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "rr: second new flow to the second real",
        rr2.clone(),
        verdict::TX,
        Some(dr_out(&rr2, mac(9))),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "rr: third new flow wraps around",
        rr3.clone(),
        verdict::TX,
        Some(dr_out(&rr3, mac(8))),
        Counter::SessionMiss,
    ));
    let w1 = v4(CLIENT, VIP_WLC, 6, &tcp(45000, 80, SYN));
    cases.push(case(
        "wlc: 0/1 vs 5/3 active: the idle real",
        w1.clone(),
        verdict::TX,
        Some(dr_out(&w1, mac(10))),
        Counter::SessionMiss,
    ));
    let w2 = v4(CLIENT, VIP_WLC, 6, &tcp(45001, 80, SYN));
    cases.push(case(
        "wlc: 1/1 < 5/3 active per weight: still the weight-1 real",
        w2.clone(),
        verdict::TX,
        Some(dr_out(&w2, mac(10))),
        Counter::SessionMiss,
    ));
    let w3 = v4(CLIENT, VIP_WLC, 6, &tcp(45002, 80, SYN));
    cases.push(case(
        "wlc: 2/1 vs 5/3 active: the weight-3 real",
        w3.clone(),
        verdict::TX,
        Some(dr_out(&w3, mac(11))),
        Counter::SessionMiss,
    ));
    let s1 = v4(CLIENT, VIP_SH, 6, &tcp(46000, 80, SYN));
    let s2 = v4(CLIENT, VIP_SH, 6, &tcp(46001, 80, SYN));
    let rs = fx.rings[&7][(addr_hash(&a4(CLIENT), 0) % RING) as usize];
    cases.push(case(
        "sh: source hash picks the real",
        s1.clone(),
        verdict::TX,
        Some(dr_out(&s1, mac(rs))),
        Counter::SessionMiss,
    ));
    cases.push(case(
        "sh: another port of the same client, same real",
        s2.clone(),
        verdict::TX,
        Some(dr_out(&s2, mac(rs))),
        Counter::SessionMiss,
    ));
    let p1 = v4(CLIENT, VIP_PERSIST, 6, &tcp(47000, 80, SYN));
    let rp = fx.by_flow(8, a4(CLIENT), 47000, 80, 6);
    cases.push(case(
        "persistence: first flow by flow hash",
        p1.clone(),
        verdict::TX,
        Some(dr_out(&p1, mac(rp))),
        Counter::SessionMiss,
    ));
    // Find a port that the flow hash alone would send elsewhere.
    let other_port = (47001..48000u16)
        .find(|p| fx.by_flow(8, a4(CLIENT), *p, 80, 6) != rp)
        .unwrap();
    let p2 = v4(CLIENT, VIP_PERSIST, 6, &tcp(other_port, 80, SYN));
    cases.push(case(
        "persistence: a second flow of the client sticks to the same real",
        p2.clone(),
        verdict::TX,
        Some(dr_out(&p2, mac(rp))),
        Counter::SessionMiss,
    ));

    // --- no real / no neighbour ---
    cases.push(case(
        "service without reals drops",
        v4(CLIENT, VIP_EMPTY, 6, &tcp(1000, 80, SYN)),
        verdict::DROP,
        None,
        Counter::DropNoReal,
    ));
    cases.push(case(
        "real without a resolved MAC drops",
        v4(CLIENT, VIP_NOMAC, 6, &tcp(1000, 80, SYN)),
        verdict::DROP,
        None,
        Counter::DropNoNeighbour,
    ));

    // --- services this program cannot send for ---
    cases.push(case(
        "fullnat service without local addresses: dropped, counted, not sent as dr",
        v4(CLIENT, VIP_FULLNAT, 6, &tcp(48000, 80, SYN)),
        verdict::DROP,
        None,
        Counter::DropFullnatNoPort,
    ));
    cases.push(case(
        "service with an unknown method byte: dropped, not sent as dr",
        v4(CLIENT, VIP_BAD_METHOD, 6, &tcp(48000, 80, SYN)),
        verdict::DROP,
        None,
        Counter::DropUnknownMethod,
    ));

    // The wlc expectations above assume these counters.
    fx.dp.set_real_conns(10, 0).unwrap();
    fx.dp.set_real_conns(11, 5).unwrap();

    let mut failures = Vec::new();
    for c in &cases {
        let before = c.counter.map(|k| fx.dp.counter(k).unwrap());
        let out = match fx.dp.test_run(&c.input, 1) {
            Ok(o) => o,
            Err(e) => {
                failures.push(format!("{}: test run failed: {e}", c.desc));
                continue;
            }
        };
        let want = c.output.clone().unwrap_or_else(|| c.input.clone());
        let mut problems = Vec::new();
        if out.verdict != c.verdict {
            problems.push(format!("verdict {} (want {})", out.verdict, c.verdict));
        }
        if c.verdict != verdict::DROP && out.frame != want {
            problems.push(format!(
                "frame\n   got  {:02x?}\n   want {:02x?}",
                out.frame, want
            ));
        }
        if let (Some(k), Some(b)) = (c.counter, before) {
            let after = fx.dp.counter(k).unwrap();
            if after != b + 1 {
                problems.push(format!(
                    "counter {} went {b} -> {after} (want +1)",
                    k.name()
                ));
            }
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.desc, problems.join("; ")));
        }
    }
    assert!(cases.len() >= 40, "only {} golden cases", cases.len());
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Drain and removal against live sessions.
    let ack = v4(CLIENT, VIP_DR, 6, &tcp(40001, 80, ACK));
    let mut drained = real_v4(r2, real_ip4(r2), 0, true);
    drained.weight = 0;
    fx.dp.set_real(r2, drained).unwrap();
    let out = fx.dp.test_run(&ack, 1).unwrap();
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::TX, dr_out(&ack, mac(r2))),
        "a drained real keeps its sessions"
    );
    let mut gone = drained;
    gone.flags = 0;
    fx.dp.set_real(r2, gone).unwrap();
    // The ring still names the removed slot in this fixture, so point the
    // ring away from it like the control plane would.
    let ring: Vec<u32> = fx.rings[&0]
        .iter()
        .map(|s| if *s == r2 { (r2 + 1) % 3 } else { *s })
        .collect();
    fx.dp.set_ring(0, &ring).unwrap();
    let out = fx.dp.test_run(&ack, 1).unwrap();
    let moved = ring[(flow_hash(&a4(CLIENT), 40001, 80, 6, 0) % RING) as usize];
    assert_ne!(moved, r2);
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::TX, dr_out(&ack, mac(moved))),
        "a removed real's flows move"
    );
}

/// A service whose method byte names no method is dropped before the
/// session table is touched: a new flow leaves no session, and an
/// established flow of a service whose method becomes one is dropped on
/// the session-hit path too. A `fullnat` flow that finds no local port
/// leaves no session either.
#[test]
fn unknown_methods_leave_no_session() {
    pin_to_one_cpu();
    let mut fx = Fixture::new();
    let count = |fx: &Fixture, c: Counter| fx.dp.counter(c).unwrap();
    assert!(Method::from_byte(UNKNOWN_METHOD).is_none());

    for (vip, dropped) in [
        (VIP_BAD_METHOD, Counter::DropUnknownMethod),
        (VIP_FULLNAT, Counter::DropFullnatNoPort),
    ] {
        let syn = v4(CLIENT, vip, 6, &tcp(49000, 80, SYN));
        let (misses, drops) = (count(&fx, Counter::SessionMiss), count(&fx, dropped));
        assert_eq!(fx.dp.test_run(&syn, 1).unwrap().verdict, verdict::DROP);
        assert_eq!(fx.dp.test_run(&syn, 1).unwrap().verdict, verdict::DROP);
        assert_eq!(count(&fx, Counter::SessionMiss), misses, "no session made");
        assert_eq!(count(&fx, dropped), drops + 2, "{}", dropped.name());
    }

    // A dr flow with a session; then its service's record names no method.
    let flow = v4(CLIENT, VIP_DR, 6, &tcp(49001, 80, ACK));
    assert_eq!(fx.dp.test_run(&flow, 1).unwrap().verdict, verdict::TX);
    let ring: Vec<u32> = fx.rings[&0].clone();
    fx.service(0, VIP_DR, 80, 6, UNKNOWN_METHOD, sched::HASH_FLOW, 0, ring);
    let (hits, drops) = (
        count(&fx, Counter::SessionHit),
        count(&fx, Counter::DropUnknownMethod),
    );
    assert_eq!(fx.dp.test_run(&flow, 1).unwrap().verdict, verdict::DROP);
    assert_eq!(
        count(&fx, Counter::SessionHit),
        hits,
        "not counted as a hit"
    );
    assert_eq!(count(&fx, Counter::DropUnknownMethod), drops + 1);
}

/// A session hit finds its service by the index kept in the session, not
/// by a hash lookup; once the service is removed, or its index is given to
/// another VIP, the old session no longer forwards the flow.
#[test]
fn session_hits_follow_service_removal_and_index_reuse() {
    pin_to_one_cpu();
    let mut fx = Fixture::new();
    let hits = |fx: &Fixture| fx.dp.counter(Counter::SessionHit).unwrap();
    let vip_key = |vip: [u8; 4]| VipKey {
        addr: a4(vip),
        port: 80,
        proto: 6,
        family: family::V4,
    };
    let flow = v4(CLIENT, VIP_DR, 6, &tcp(41000, 80, ACK));
    // A miss creates the session, then hits forward it.
    assert_eq!(fx.dp.test_run(&flow, 1).unwrap().verdict, verdict::TX);
    let before = hits(&fx);
    assert_eq!(fx.dp.test_run(&flow, 1).unwrap().verdict, verdict::TX);
    assert_eq!(hits(&fx), before + 1, "second packet is a session hit");

    // The service goes (its address stays known): no forwarding, no hit.
    fx.dp.remove_service(vip_key(VIP_DR), true).unwrap();
    let before = hits(&fx);
    let out = fx.dp.test_run(&flow, 1).unwrap();
    assert_eq!(
        out.verdict,
        verdict::PASS,
        "removed service still forwarded"
    );
    assert_eq!(hits(&fx), before);

    // Index 0 now serves another VIP: the old flow's session names index
    // 0, but the slot's key no longer matches, so it is not forwarded.
    fx.service(
        0,
        VIP_EMPTY,
        80,
        6,
        method::DR,
        sched::HASH_FLOW,
        0,
        (0..RING).map(|i| i % 3).collect(),
    );
    let out = fx.dp.test_run(&flow, 1).unwrap();
    assert_eq!(
        out.verdict,
        verdict::PASS,
        "session used under a reused index"
    );

    // The service comes back under index 0: the flow is forwarded again.
    fx.service(
        0,
        VIP_DR,
        80,
        6,
        method::DR,
        sched::HASH_FLOW,
        0,
        (0..RING).map(|i| i % 3).collect(),
    );
    let before = hits(&fx);
    assert_eq!(fx.dp.test_run(&flow, 1).unwrap().verdict, verdict::TX);
    assert_eq!(hits(&fx), before + 1, "the surviving session is used again");
}

/// A real's slot is reused (the control plane does so once all
/// `MAX_REALS` slots have been handed out) while sessions and persistence
/// entries of the real that had it still name it. Every allocation of a
/// slot has a new generation, which those entries recorded: an entry of
/// another generation is treated like one whose real was removed (the flow
/// is scheduled anew in its own service), never forwarded to the slot's
/// new owner.
#[test]
fn a_reused_real_slot_is_not_followed_into_another_service() {
    pin_to_one_cpu();
    let mut fx = Fixture::new();
    let count = |fx: &Fixture, c: Counter| fx.dp.counter(c).unwrap();
    /// MAC and address of the real that takes over a slot.
    const NEW_OWNER_MAC: [u8; 6] = [0x02, 0xbb, 0, 0, 0, 0x77];
    const NEW_OWNER: [u8; 4] = [10, 99, 0, 77];
    let reuse = |fx: &mut Fixture, slot: u32| {
        // What `L4Plane` does: the slot leaves its service (retired, and
        // out of its ring), then a real of another service gets it with
        // the slot's next generation.
        fx.dp.set_real(slot, RealDef::default()).unwrap();
        let mut r = real_v4(slot, NEW_OWNER, 1, true);
        r.mac = NEW_OWNER_MAC;
        r.generation = 1;
        fx.dp.set_real(slot, r).unwrap();
        let ring = vec![slot; RING as usize];
        fx.service(7, VIP_SH, 80, 6, method::DR, sched::HASH_SRC, 0, ring);
    };

    // A dr flow of service 0 with its session on slot `r` (generation 0).
    const PORT: u16 = 52000;
    let syn = v4(CLIENT, VIP_DR, 6, &tcp(PORT, 80, SYN));
    let r = fx.by_flow(0, a4(CLIENT), PORT, 80, 6);
    assert_eq!(
        fx.dp.test_run(&syn, 1).unwrap().frame,
        dr_out(&syn, mac(r)),
        "set-up: the flow's first packet"
    );
    let ring: Vec<u32> = fx.rings[&0]
        .iter()
        .map(|s| if *s == r { (r + 1) % 3 } else { *s })
        .collect();
    fx.service(
        0,
        VIP_DR,
        80,
        6,
        method::DR,
        sched::HASH_FLOW,
        0,
        ring.clone(),
    );
    reuse(&mut fx, r);

    // The flow's next packet: not to the slot's new owner, but scheduled
    // anew in its own service, with a fresh session.
    let ack = v4(CLIENT, VIP_DR, 6, &tcp(PORT, 80, ACK));
    let moved = ring[(flow_hash(&a4(CLIENT), PORT, 80, 6, 0) % RING) as usize];
    assert_ne!(moved, r);
    let (hits, misses) = (
        count(&fx, Counter::SessionHit),
        count(&fx, Counter::SessionMiss),
    );
    let out = fx.dp.test_run(&ack, 1).unwrap();
    assert_ne!(
        out.frame,
        dr_out(&ack, NEW_OWNER_MAC),
        "the session followed its slot into another service"
    );
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::TX, dr_out(&ack, mac(moved))),
        "the flow is scheduled anew in its own service"
    );
    assert_eq!(count(&fx, Counter::SessionHit), hits, "not a session hit");
    assert_eq!(count(&fx, Counter::SessionMiss), misses + 1);
    let session = fx
        .dp
        .sessions()
        .unwrap()
        .into_iter()
        .find(|(k, _)| k.sport == PORT && k.dst == a4(VIP_DR))
        .map(|(_, v)| (v.real, v.real_gen, v.vip_slot));
    assert_eq!(session, Some((moved, 0, 1)), "the session was replaced");

    // The slot's new owner serves its own service's flows.
    let own = v4(CLIENT, VIP_SH, 6, &tcp(PORT, 80, SYN));
    assert_eq!(
        fx.dp.test_run(&own, 1).unwrap().frame,
        dr_out(&own, NEW_OWNER_MAC),
        "the new owner's own flows"
    );

    // Persistence: a client's entry names slot `rp` of service 8; the
    // slot goes to another service; the client's next flow stays in
    // service 8.
    let p1 = v4(CLIENT, VIP_PERSIST, 6, &tcp(PORT, 80, SYN));
    let rp = fx.by_flow(8, a4(CLIENT), PORT, 80, 6);
    assert_eq!(
        fx.dp.test_run(&p1, 1).unwrap().frame,
        dr_out(&p1, mac(rp)),
        "set-up: the client's first flow"
    );
    let other = if rp == 15 { 16 } else { 15 };
    fx.service(
        8,
        VIP_PERSIST,
        80,
        6,
        method::DR,
        sched::HASH_FLOW,
        vip_flags::PERSIST,
        vec![other; RING as usize],
    );
    reuse(&mut fx, rp);
    let p2 = v4(CLIENT, VIP_PERSIST, 6, &tcp(PORT + 1, 80, SYN));
    assert_eq!(
        fx.dp.test_run(&p2, 1).unwrap().frame,
        dr_out(&p2, mac(other)),
        "the persistence entry followed its slot into another service"
    );
}

#[test]
fn a_syn_on_a_closing_session_starts_a_fresh_one() {
    pin_to_one_cpu();
    let fx = Fixture::new();
    let misses = |fx: &Fixture| fx.dp.counter(Counter::SessionMiss).unwrap();
    let state_of = |fx: &Fixture, sport: u16| {
        fx.dp
            .sessions()
            .unwrap()
            .into_iter()
            .find(|(k, _)| k.sport == sport && k.dst == a4(VIP_DR))
            .map(|(_, v)| v.state)
    };
    const PORT: u16 = 42000;
    let syn = v4(CLIENT, VIP_DR, 6, &tcp(PORT, 80, SYN));
    assert_eq!(fx.dp.test_run(&syn, 1).unwrap().verdict, verdict::TX);
    assert_eq!(state_of(&fx, PORT), Some(state::TCP_SYN));
    let fin = v4(CLIENT, VIP_DR, 6, &tcp(PORT, 80, FIN_ACK));
    assert_eq!(fx.dp.test_run(&fin, 1).unwrap().verdict, verdict::TX);
    assert_eq!(state_of(&fx, PORT), Some(state::TCP_CLOSING));
    // A later segment of the closing connection keeps it closing ...
    let ack = v4(CLIENT, VIP_DR, 6, &tcp(PORT, 80, ACK));
    assert_eq!(fx.dp.test_run(&ack, 1).unwrap().verdict, verdict::TX);
    assert_eq!(state_of(&fx, PORT), Some(state::TCP_CLOSING));
    // ... but a new connection on the same tuple starts a fresh session.
    let before = misses(&fx);
    assert_eq!(fx.dp.test_run(&syn, 1).unwrap().verdict, verdict::TX);
    assert_eq!(misses(&fx), before + 1, "the SYN was not scheduled anew");
    assert_eq!(state_of(&fx, PORT), Some(state::TCP_SYN));
}

/// A TCP segment of `flags` from `sport` to `dport` whose IP payload
/// (TCP header and data) is `len` bytes.
fn tcp_of_len(sport: u16, dport: u16, flags: u8, len: usize) -> Vec<u8> {
    let mut t = tcp(sport, dport, flags);
    t.truncate(20);
    t.extend((0..len - 20).map(|i| i as u8));
    t
}

/// DSCP EF-ish 0xb8 plus ECN ECT(1): a traffic class whose every bit the
/// outer header must carry.
const TRAFFIC_CLASS: u8 = 0xb9;

/// The outer header of `tun` carries the inner traffic class (DSCP and
/// ECN), and an outer IPv4 header has DF set and ID 0.
#[test]
fn tun_outer_header_copies_the_traffic_class_and_sets_df() {
    pin_to_one_cpu();
    let fx = Fixture::new();
    let mut t = v4(CLIENT, VIP_TUN, 6, &tcp(53000, 8443, SYN));
    t[15] = TRAFFIC_CLASS;
    // The inner checksum is not the LB's business, but keep the frame valid.
    t[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::finish(checksum::sum(&t[14..34], 0));
    t[24..26].copy_from_slice(&c.to_be_bytes());
    let rt = fx.by_flow(2, a4(CLIENT), 53000, 8443, 6);
    let out = fx.dp.test_run(&t, 1).unwrap();
    assert_eq!(out.verdict, verdict::TX);
    let outer = &out.frame[14..34];
    assert_eq!(outer[1], TRAFFIC_CLASS, "outer TOS/ECN");
    assert_eq!(&outer[4..8], &[0, 0, 0x40, 0], "ID 0, DF, offset 0");
    assert_eq!(
        checksum::finish(checksum::sum(outer, 0)),
        0,
        "outer checksum"
    );
    assert_eq!(out.frame, ipip_out(&t, real_ip4(rt), mac(rt), TUN_SRC));

    let mut t6 = v6(CLIENT6, VIP6_TUN, 6, &tcp(53000, 80, SYN));
    t6[14] = 0x60 | (TRAFFIC_CLASS >> 4);
    t6[15] = (TRAFFIC_CLASS << 4) | 0x0a;
    let h6 = flow_hash(&w6(CLIENT6), 53000, 80, 6, 0);
    let out = fx.dp.test_run(&t6, 1).unwrap();
    assert_eq!(out.verdict, verdict::TX);
    let tc = (out.frame[14] << 4) | (out.frame[15] >> 4);
    assert_eq!(tc, TRAFFIC_CLASS, "outer IPv6 traffic class");
    assert_eq!(
        out.frame,
        ip6ip6_out(&t6, a6(0x17, 1), mac(7), a6(1, 0), h6)
    );
}

/// With an egress MTU of 1500 bytes: a `tun` packet that would exceed it
/// once encapsulated is answered with ICMP "fragmentation needed" (IPv4
/// with DF; next-hop MTU 1480) or ICMPv6 "packet too big" (MTU 1460),
/// sent back to the client with `XDP_TX`; IPv4 without DF is dropped; a
/// packet that just fits is forwarded as usual.
///
/// `BPF_PROG_TEST_RUN` runs the program as if the frame came in on the
/// loopback interface of the caller's namespace, whose MTU is what
/// `bpf_check_mtu` sees; the test runs in a namespace of its own with
/// `lo` at 1500 bytes (the root namespace's `lo`, 65,536 bytes, lets
/// every frame of the golden table fit).
#[test]
fn tun_too_big_for_the_egress_mtu_is_answered_with_icmp() {
    /// The egress MTU of the test (bytes).
    const MTU: usize = 1500;
    pin_to_one_cpu();
    let fx = Fixture::new();
    let label = sluice_testkit::netns::unique_label("mtu");
    let ns = sluice_testkit::netns::Netns::create(&format!("sl-{label}"))
        .unwrap_or_else(|e| panic!("this test needs root: {e}"));
    ns.ip(&["link", "set", "lo", "mtu", &MTU.to_string()])
        .unwrap();
    let run = |frame: &[u8]| ns.in_netns(|| fx.dp.test_run(frame, 1)).unwrap().unwrap();
    let count = |c: Counter| fx.dp.counter(c).unwrap();

    // --- IPv4 ---
    const PORT: u16 = 54000;
    let rt = fx.by_flow(2, a4(CLIENT), PORT, 8443, 6);
    // Inner total length 1480: with the 20-byte outer header, exactly 1500.
    let fits = v4(
        CLIENT,
        VIP_TUN,
        6,
        &tcp_of_len(PORT, 8443, ACK, MTU - 20 - 20),
    );
    let (fwd, answered) = (count(Counter::TxForwarded), count(Counter::TxIcmpTooBig));
    let out = run(&fits);
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::TX, ipip_out(&fits, real_ip4(rt), mac(rt), TUN_SRC)),
        "a packet that fits exactly is forwarded"
    );
    assert_eq!(count(Counter::TxForwarded), fwd + 1);
    assert_eq!(count(Counter::TxIcmpTooBig), answered);

    let mut big = v4(
        CLIENT,
        VIP_TUN,
        6,
        &tcp_of_len(PORT, 8443, ACK, MTU - 20 - 20 + 1),
    );
    big[15] = TRAFFIC_CLASS;
    let (fwd, answered) = (count(Counter::TxForwarded), count(Counter::TxIcmpTooBig));
    let out = run(&big);
    assert_eq!(out.verdict, verdict::TX, "the answer goes back out");
    assert_eq!(
        count(Counter::TxIcmpTooBig),
        answered + 1,
        "tx_icmp_too_big"
    );
    assert_eq!(count(Counter::TxForwarded), fwd, "not counted as forwarded");
    let a = &out.frame;
    assert_eq!(
        a.len(),
        14 + 20 + 8 + 20 + 64,
        "IP header + 64 bytes quoted"
    );
    assert_eq!(&a[..6], &CLIENT_MAC, "back to the client's MAC");
    assert_eq!(&a[6..12], &LB_MAC);
    assert_eq!(&a[12..14], &[0x08, 0x00]);
    let (ip, icmp) = etherparse::Ipv4Header::from_slice(&a[14..]).unwrap();
    assert_eq!(ip.header_checksum, ip.calc_header_checksum(), "IP checksum");
    assert_eq!(ip.source, VIP_TUN, "from the VIP");
    assert_eq!(ip.destination, CLIENT, "to the client");
    assert_eq!(ip.protocol, etherparse::IpNumber::ICMP);
    assert_eq!(usize::from(ip.total_len), a.len() - 14);
    assert!(ip.dont_fragment, "the answer is atomic (ID 0 allowed)");
    assert_eq!(ip.identification, 0);
    assert_eq!(&icmp[..2], &[3, 4], "type 3 code 4");
    let mtu = u16::from_be_bytes([icmp[6], icmp[7]]);
    assert_eq!(
        usize::from(mtu),
        MTU - 20,
        "next-hop MTU = egress MTU - IPIP"
    );
    assert_eq!(&icmp[4..6], &[0, 0]);
    let quote = &icmp[8..];
    assert_eq!(quote, &big[14..14 + 20 + 64], "the quoted header and data");
    let want = etherparse::Icmpv4Type::DestinationUnreachable(
        etherparse::icmpv4::DestUnreachableHeader::FragmentationNeeded { next_hop_mtu: mtu },
    )
    .calc_checksum(quote);
    assert_eq!(
        u16::from_be_bytes([icmp[2], icmp[3]]),
        want,
        "ICMP checksum"
    );

    // IPv4 without DF: the sender allowed fragmentation, which the LB
    // does not do; dropped and counted.
    let mut no_df = big.clone();
    no_df[20..22].copy_from_slice(&[0, 0]);
    no_df[24..26].copy_from_slice(&[0, 0]);
    let c = checksum::finish(checksum::sum(&no_df[14..34], 0));
    no_df[24..26].copy_from_slice(&c.to_be_bytes());
    let dropped = count(Counter::DropTooBig);
    assert_eq!(run(&no_df).verdict, verdict::DROP, "IPv4 without DF");
    assert_eq!(count(Counter::DropTooBig), dropped + 1, "drop_too_big");

    // --- IPv6 ---
    let h6 = flow_hash(&w6(CLIENT6), PORT, 80, 6, 0);
    // Inner 40 + 1420 = 1460 bytes: with the 40-byte outer header, 1500.
    let fits6 = v6(
        CLIENT6,
        VIP6_TUN,
        6,
        &tcp_of_len(PORT, 80, ACK, MTU - 40 - 40),
    );
    let out = run(&fits6);
    assert_eq!(
        (out.verdict, out.frame),
        (
            verdict::TX,
            ip6ip6_out(&fits6, a6(0x17, 1), mac(7), a6(1, 0), h6)
        ),
        "an IPv6 packet that fits exactly is forwarded"
    );
    let big6 = v6(
        CLIENT6,
        VIP6_TUN,
        6,
        &tcp_of_len(PORT, 80, ACK, MTU - 40 - 40 + 1),
    );
    let answered = count(Counter::TxIcmpTooBig);
    let out = run(&big6);
    assert_eq!(out.verdict, verdict::TX);
    assert_eq!(count(Counter::TxIcmpTooBig), answered + 1);
    let a = &out.frame;
    assert_eq!(a.len(), 14 + 40 + 8 + 40 + 64);
    assert_eq!(&a[..6], &CLIENT_MAC);
    assert_eq!(&a[6..12], &LB_MAC);
    assert_eq!(&a[12..14], &[0x86, 0xdd]);
    let (ip6, icmp6) = etherparse::Ipv6Header::from_slice(&a[14..]).unwrap();
    assert_eq!(ip6.source, VIP6_TUN, "from the VIP");
    assert_eq!(ip6.destination, CLIENT6, "to the client");
    assert_eq!(ip6.next_header, etherparse::IpNumber::IPV6_ICMP);
    assert_eq!(usize::from(ip6.payload_length), icmp6.len());
    assert_eq!(&icmp6[..2], &[2, 0], "packet too big");
    let mtu6 = u32::from_be_bytes([icmp6[4], icmp6[5], icmp6[6], icmp6[7]]);
    assert_eq!(mtu6 as usize, MTU - 40, "MTU = egress MTU - IP6IP6");
    let quote6 = &icmp6[8..];
    assert_eq!(quote6, &big6[14..14 + 40 + 64]);
    let want6 = etherparse::Icmpv6Type::PacketTooBig { mtu: mtu6 }
        .calc_checksum(ip6.source, ip6.destination, quote6)
        .unwrap();
    assert_eq!(
        u16::from_be_bytes([icmp6[2], icmp6[3]]),
        want6,
        "ICMPv6 checksum"
    );
    drop(ns);
}

#[test]
fn decap_strips_ipip_and_ip6ip6() {
    use sluice_l4::{AttachMode, Helper, HelperProgram};
    // Attach to loopback of a private namespace: test runs need a loaded
    // program, and loading the helper goes through the attach API.
    let label = sluice_testkit::netns::unique_label("decap");
    let ns = sluice_testkit::netns::Netns::create(&format!("sl-{label}"))
        .unwrap_or_else(|e| panic!("this test needs root: {e}"));
    let prog = ns
        .in_netns(|| HelperProgram::attach(Helper::Decap, "lo", AttachMode::Generic))
        .unwrap()
        .unwrap();
    // IPIP as the LB's tun emits it.
    let inner = v4(CLIENT, VIP_TUN, 6, &tcp(42000, 80, SYN));
    let outer = ipip_out(&inner, [10, 98, 0, 21], mac(3), TUN_SRC);
    let out = prog.test_run(&outer).unwrap();
    let mut want = outer[..12].to_vec();
    want.extend_from_slice(&0x0800u16.to_be_bytes());
    want.extend_from_slice(&inner[14..]);
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::PASS, want),
        "IPIP decap"
    );
    // IP6IP6.
    let inner6 = v6(CLIENT6, VIP6_TUN, 6, &tcp(43000, 80, SYN));
    let outer6 = ip6ip6_out(&inner6, a6(0x17, 1), mac(7), a6(1, 0), 0x1234);
    let out = prog.test_run(&outer6).unwrap();
    let mut want6 = outer6[..12].to_vec();
    want6.extend_from_slice(&0x86ddu16.to_be_bytes());
    want6.extend_from_slice(&inner6[14..]);
    assert_eq!(
        (out.verdict, out.frame),
        (verdict::PASS, want6),
        "IP6IP6 decap"
    );
    // Plain traffic is untouched.
    let plain = v4(CLIENT, [10, 99, 0, 11], 6, &tcp(1, 80, SYN));
    let out = prog.test_run(&plain).unwrap();
    assert_eq!((out.verdict, out.frame), (verdict::PASS, plain));
    // IPIP whose inner packet is not IPv4 is dropped.
    let mut bad = outer.clone();
    bad[34] = 0x65;
    assert_eq!(prog.test_run(&bad).unwrap().verdict, verdict::DROP);
}
