//! Helpers of the golden packet tables of the NAT methods
//! (`golden_nat.rs`, `golden_fullnat.rs`): frames built from scratch by
//! etherparse, checksums recomputed in full, the case runner.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    Icmpv4Type, Icmpv6Type, Ipv4Header, NetHeaders, PacketBuilder, PacketHeaders, TransportHeader,
    icmpv4::DestUnreachableHeader, icmpv6::DestUnreachableCode,
};
use sluice_l4::{Dataplane, DataplaneParams, verdict};
use sluice_testkit::frames::LB_MAC;
use sluice_wire::maps::{
    Addr, Counter, RealDef, VipKey, VipMeta, addr_from_bytes, addr_v4, family, real_flags, sched,
};

/// Ring entries per service (a prime; every ring names one real, so the
/// flow hash does not matter).
pub(crate) const RING: u32 = 13;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const ACK: u8 = 0x10;
pub(crate) const SYN_ACK: u8 = SYN | ACK;
pub(crate) const FIN_ACK: u8 = 0x11;
pub(crate) const RST: u8 = 0x04;
pub(crate) const TCP: u8 = 6;
pub(crate) const UDP: u8 = 17;

pub(crate) const CLIENT: [u8; 4] = [10, 99, 0, 2];
pub(crate) const CLIENT6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

pub(crate) fn mac(i: u32) -> [u8; 6] {
    [0x02, 0xaa, 0, 0, 0, i as u8]
}

pub(crate) fn ip4(a: [u8; 4]) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(a))
}

pub(crate) fn ip6(a: [u8; 16]) -> IpAddr {
    IpAddr::V6(Ipv6Addr::from(a))
}

pub(crate) fn addr(a: IpAddr) -> Addr {
    match a {
        IpAddr::V4(v) => addr_v4(v.octets()),
        IpAddr::V6(v) => addr_from_bytes(v.octets()),
    }
}

/// A frame from `smac` to `dmac`: `src:sport` → `dst:dport`, TCP with
/// `flags` (`Some`) or UDP (`None`), carrying `payload`; all checksums
/// computed by etherparse.
#[allow(clippy::too_many_arguments)]
pub(crate) fn frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    tcp: Option<u8>,
    payload: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => b.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => b.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    };
    let mut out = Vec::new();
    match tcp {
        Some(flags) => {
            let mut t = b.tcp(sport, dport, 1000, 64240);
            if flags & SYN != 0 {
                t = t.syn();
            }
            if flags & ACK != 0 {
                t = t.ack(2000);
            }
            if flags & 0x01 != 0 {
                t = t.fin();
            }
            if flags & RST != 0 {
                t = t.rst();
            }
            t.write(&mut out, payload).unwrap();
        }
        None => b.udp(sport, dport).write(&mut out, payload).unwrap(),
    }
    out
}

/// A UDP/IPv4 frame whose checksum field is 0 ("none", RFC 768).
pub(crate) fn without_udp_checksum(mut f: Vec<u8>) -> Vec<u8> {
    f[14 + 20 + 6] = 0;
    f[14 + 20 + 7] = 0;
    f
}

/// The ICMP errors of the table.
#[derive(Clone, Copy)]
pub(crate) enum IcmpError {
    /// IPv4 "fragmentation needed" / ICMPv6 "packet too big", MTU 1400.
    TooBig,
    /// Port unreachable (both families).
    PortUnreachable,
}

/// Next-hop MTU the table's too-big errors announce (bytes).
pub(crate) const ERROR_MTU: u16 = 1400;

/// An ICMP error frame from `smac` to `dmac`, `src` → `dst`, of `kind`,
/// quoting the IP packet `quoted` (etherparse computes the checksums).
pub(crate) fn icmp_error(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: IpAddr,
    dst: IpAddr,
    kind: IcmpError,
    quoted: &[u8],
) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(smac, dmac);
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let t = match kind {
                IcmpError::TooBig => DestUnreachableHeader::FragmentationNeeded {
                    next_hop_mtu: ERROR_MTU,
                },
                IcmpError::PortUnreachable => DestUnreachableHeader::Port,
            };
            b.ipv4(s.octets(), d.octets(), 64)
                .icmpv4(Icmpv4Type::DestinationUnreachable(t))
                .write(&mut out, quoted)
                .unwrap();
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let t = match kind {
                IcmpError::TooBig => Icmpv6Type::PacketTooBig {
                    mtu: u32::from(ERROR_MTU),
                },
                IcmpError::PortUnreachable => {
                    Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Port)
                }
            };
            b.ipv6(s.octets(), d.octets(), 64)
                .icmpv6(t)
                .write(&mut out, quoted)
                .unwrap();
        }
        _ => panic!("mixed families"),
    }
    out
}

/// The IP packet of an Ethernet frame, as an ICMP error quotes it.
pub(crate) fn ip_of(f: &[u8]) -> &[u8] {
    &f[14..]
}

/// Parses a frame the program sent and recomputes its checksums from
/// scratch: the IPv4 header's and TCP/UDP's (a UDP/IPv4 checksum of 0 is
/// "none"), or for an ICMP error the ICMP checksum (ICMPv6's over its
/// pseudo-header) and the quoted IPv4 header's.
pub(crate) fn checksums_valid(f: &[u8]) -> Result<(), String> {
    let h = PacketHeaders::from_ethernet_slice(f).map_err(|e| format!("unparsable: {e}"))?;
    let payload = h.payload.slice();
    match (&h.net, &h.transport) {
        (Some(NetHeaders::Ipv4(ip, _)), Some(TransportHeader::Icmpv4(icmp))) => {
            if ip.header_checksum != ip.calc_header_checksum() {
                return Err("IPv4 header checksum".into());
            }
            if icmp.checksum != icmp.icmp_type.calc_checksum(payload) {
                return Err("ICMP checksum".into());
            }
            let (quoted, _) =
                Ipv4Header::from_slice(payload).map_err(|e| format!("quoted header: {e}"))?;
            if quoted.header_checksum != quoted.calc_header_checksum() {
                return Err("quoted IPv4 header checksum".into());
            }
            Ok(())
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(TransportHeader::Icmpv6(icmp))) => {
            let want = icmp
                .icmp_type
                .calc_checksum(ip.source, ip.destination, payload)
                .unwrap();
            if icmp.checksum != want {
                return Err("ICMPv6 checksum".into());
            }
            Ok(())
        }
        (Some(NetHeaders::Ipv4(ip, _)), Some(t)) => {
            if ip.header_checksum != ip.calc_header_checksum() {
                return Err("IPv4 header checksum".into());
            }
            match t {
                TransportHeader::Tcp(t)
                    if t.checksum != t.calc_checksum_ipv4(ip, payload).unwrap() =>
                {
                    Err("TCP checksum".into())
                }
                TransportHeader::Udp(u)
                    if u.checksum != 0
                        && u.checksum != u.calc_checksum_ipv4(ip, payload).unwrap() =>
                {
                    Err("UDP checksum".into())
                }
                _ => Ok(()),
            }
        }
        (Some(NetHeaders::Ipv6(ip, _)), Some(t)) => match t {
            TransportHeader::Tcp(t) if t.checksum != t.calc_checksum_ipv6(ip, payload).unwrap() => {
                Err("TCP checksum".into())
            }
            TransportHeader::Udp(u) if u.checksum != u.calc_checksum_ipv6(ip, payload).unwrap() => {
                Err("UDP checksum".into())
            }
            _ => Ok(()),
        },
        _ => Err("not TCP/UDP over IP".into()),
    }
}

pub(crate) struct Case {
    pub(crate) desc: &'static str,
    pub(crate) input: Vec<u8>,
    pub(crate) verdict: u32,
    /// `None`: the frame must come back unchanged.
    pub(crate) output: Option<Vec<u8>>,
    /// A counter that must have grown by one.
    pub(crate) counter: Counter,
}

pub(crate) fn case(
    desc: &'static str,
    input: Vec<u8>,
    v: u32,
    output: Option<Vec<u8>>,
    c: Counter,
) -> Case {
    Case {
        desc,
        input,
        verdict: v,
        output,
        counter: c,
    }
}

pub(crate) fn pin_to_one_cpu() {
    // Per-CPU LRU lists: one CPU keeps the runs' entries on one list.
    let mut set = nix::sched::CpuSet::new();
    set.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).unwrap();
}

pub(crate) fn load(params: DataplaneParams) -> Dataplane {
    match Dataplane::load(params, LB_MAC) {
        Ok(dp) => dp,
        Err(e) => panic!(
            "loading the XDP program failed: {e}\n\
             these tests need root (CAP_BPF + CAP_NET_ADMIN); run the README's test command as root"
        ),
    }
}

pub(crate) fn real(i: u32, a: IpAddr, port: u16) -> RealDef {
    RealDef {
        addr: addr(a),
        mac: mac(i),
        family: if a.is_ipv4() { family::V4 } else { family::V6 },
        flags: real_flags::PRESENT | real_flags::HAS_MAC,
        weight: 1,
        port,
        generation: 1,
    }
}

/// Service `idx` on `vip:port/proto` with method `m`, every ring entry
/// naming `slot`.
pub(crate) fn service(
    dp: &mut Dataplane,
    idx: u32,
    vip: IpAddr,
    port: u16,
    proto: u8,
    m: u8,
    slot: u32,
) {
    service_with_flags(dp, idx, vip, port, proto, m, slot, 0);
}

/// [`service`] with `vip_flags` bits `flags`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn service_with_flags(
    dp: &mut Dataplane,
    idx: u32,
    vip: IpAddr,
    port: u16,
    proto: u8,
    m: u8,
    slot: u32,
    flags: u8,
) {
    dp.set_ring(idx, &vec![slot; RING as usize]).unwrap();
    let fam = if vip.is_ipv4() {
        family::V4
    } else {
        family::V6
    };
    dp.set_service(
        VipKey {
            addr: addr(vip),
            port,
            proto,
            family: fam,
        },
        VipMeta {
            vip_index: idx,
            method: m,
            sched: sched::HASH_FLOW,
            flags,
            family: fam,
            ring_len: RING,
            ..Default::default()
        },
    )
    .unwrap();
}

pub(crate) fn run(dp: &Dataplane, cases: &[Case]) -> Vec<String> {
    let mut failures = Vec::new();
    for c in cases {
        let before = dp.counter(c.counter).unwrap();
        let out = match dp.test_run(&c.input, 1) {
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
        if c.verdict == verdict::TX
            && let Err(e) = checksums_valid(&out.frame)
        {
            problems.push(format!("bad {e} in the frame sent"));
        }
        let after = dp.counter(c.counter).unwrap();
        if after != before + 1 {
            problems.push(format!(
                "counter {} went {before} -> {after} (want +1)",
                c.counter.name()
            ));
        }
        if !problems.is_empty() {
            failures.push(format!("{}: {}", c.desc, problems.join("; ")));
        }
    }
    failures
}
