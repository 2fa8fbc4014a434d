//! `nat` (destination NAT with port translation), sans-IO: the in-place
//! rewrite of one end (address and port) of a TCP or UDP packet, with its
//! checksums updated incrementally (RFC 1624), and the keys that tie a
//! real's reply to its flow.
//!
//! A client's packet to `VIP:vport` leaves for `RIP:rport` (the
//! destination is rewritten); the real's reply from `RIP:rport` leaves
//! for the client from `VIP:vport` again (the source is rewritten). The
//! TCP and UDP checksums cover a pseudo-header with both addresses, so an
//! address change updates them as well as the IPv4 header checksum (IPv6
//! has none); a port change updates only the TCP/UDP checksum.
//!
//! The functions work on a copy of the IP header and on the two TCP/UDP
//! fields that change ([`L4Fields`]), and never fail: the caller has
//! already checked that the headers are there.

use crate::checksum;
use crate::maps::{Addr, FlowKey, NatReverse};

pub mod icmp;

/// Bytes of an IPv4 header without options.
pub const IPV4_HDR_LEN: usize = 20;
/// Bytes of the fixed IPv6 header.
pub const IPV6_HDR_LEN: usize = 40;
/// Offset of the checksum in a TCP header.
const TCP_CHECK: usize = 16;
/// Offset of the checksum in a UDP header.
const UDP_CHECK: usize = 6;
/// Offset of the header checksum in an IPv4 header.
const V4_CHECK: usize = 10;
/// Offsets of the source and destination addresses in an IPv4 header.
const V4_SRC: usize = 12;
const V4_DST: usize = 16;
/// Offsets of the source and destination addresses in an IPv6 header.
const V6_SRC: usize = 8;
const V6_DST: usize = 24;

/// Which end of a packet a rewrite changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The source address and port (a real's reply, sent back as the VIP).
    Source,
    /// The destination address and port (a client's packet, sent to the real).
    Destination,
}

impl Side {
    /// The other end: an ICMP error travels the opposite way of the
    /// packet it quotes, so its outer header's other end is translated.
    #[inline(always)]
    pub const fn other(self) -> Side {
        match self {
            Side::Source => Side::Destination,
            Side::Destination => Side::Source,
        }
    }
}

/// The two fields of a TCP or UDP header a rewrite changes: the port of
/// the rewritten end and the checksum (the XDP program hands references
/// into the frame; the rest of the header is never copied).
#[derive(Debug)]
pub struct L4Fields<'a> {
    /// The port of the rewritten end ([`port_offset`]).
    pub port: &'a mut [u8; 2],
    /// The checksum ([`check_offset`]).
    pub check: &'a mut [u8; 2],
    /// UDP (else TCP): a UDP checksum has its own rules ([`l4_check`]).
    pub udp: bool,
}

/// Offset of `side`'s port in a TCP or UDP header (source at 0,
/// destination at 2, in both).
#[inline(always)]
pub const fn port_offset(side: Side) -> usize {
    match side {
        Side::Source => 0,
        Side::Destination => 2,
    }
}

/// Offset of the checksum in a UDP (`udp`) or TCP header.
#[inline(always)]
pub const fn check_offset(udp: bool) -> usize {
    if udp { UDP_CHECK } else { TCP_CHECK }
}

/// Offset of `side`'s address in an IPv4 header.
#[inline(always)]
pub const fn v4_addr_offset(side: Side) -> usize {
    match side {
        Side::Source => V4_SRC,
        Side::Destination => V4_DST,
    }
}

/// Offset of `side`'s address in an IPv6 header.
#[inline(always)]
pub const fn v6_addr_offset(side: Side) -> usize {
    match side {
        Side::Source => V6_SRC,
        Side::Destination => V6_DST,
    }
}

/// The TCP or UDP checksum `check` after one end's address changed from
/// `old_addr` to `new_addr` (the pseudo-header's part) and its port from
/// `old_port` to `new_port` (RFC 1624). UDP's rules (RFC 768): over IPv4
/// (`v4`) a checksum of 0 means "none" and stays 0; a computed 0 is sent
/// as 0xffff, its other one's-complement form.
#[inline(always)]
pub fn l4_check<const N: usize>(
    check: u16,
    udp: bool,
    v4: bool,
    old_addr: &[u8; N],
    new_addr: &[u8; N],
    old_port: u16,
    new_port: u16,
) -> u16 {
    if udp && v4 && check == 0 {
        return 0;
    }
    let c = checksum::update16(
        checksum::update_bytes(check, old_addr, new_addr),
        old_port,
        new_port,
    );
    if udp && c == 0 { 0xffff } else { c }
}

#[inline(always)]
fn update_l4<const N: usize>(
    l4: L4Fields<'_>,
    v4: bool,
    old_addr: &[u8; N],
    new_addr: &[u8; N],
    port: u16,
) {
    let check = u16::from_be_bytes(*l4.check);
    let old_port = u16::from_be_bytes(*l4.port);
    *l4.check = l4_check(check, l4.udp, v4, old_addr, new_addr, old_port, port).to_be_bytes();
    *l4.port = port.to_be_bytes();
}

/// Rewrites `side`'s address of the IPv4 header `ip` to `addr` and its
/// port in `l4` to `port`, updating the IPv4 header checksum and the
/// TCP/UDP checksum (pseudo-header included) incrementally.
#[inline(always)]
pub fn rewrite_v4(
    ip: &mut [u8; IPV4_HDR_LEN],
    l4: L4Fields<'_>,
    side: Side,
    addr: [u8; 4],
    port: u16,
) {
    let o = v4_addr_offset(side);
    let old = [ip[o], ip[o + 1], ip[o + 2], ip[o + 3]];
    let ip_check = u16::from_be_bytes([ip[V4_CHECK], ip[V4_CHECK + 1]]);
    let ip_check = checksum::update_bytes(ip_check, &old, &addr);
    ip[V4_CHECK..V4_CHECK + 2].copy_from_slice(&ip_check.to_be_bytes());
    ip[o..o + 4].copy_from_slice(&addr);
    update_l4(l4, true, &old, &addr, port);
}

/// [`rewrite_v4`] for IPv6 (no header checksum; the UDP checksum is
/// mandatory, so every value is updated).
#[inline(always)]
pub fn rewrite_v6(
    ip: &mut [u8; IPV6_HDR_LEN],
    l4: L4Fields<'_>,
    side: Side,
    addr: [u8; 16],
    port: u16,
) {
    let o = v6_addr_offset(side);
    let mut old = [0u8; 16];
    old.copy_from_slice(&ip[o..o + 16]);
    ip[o..o + 16].copy_from_slice(&addr);
    update_l4(l4, false, &old, &addr, port);
}

/// The port a `nat` flow to service port `vport` uses at a real whose
/// configured port is `real_port`: 0 (none configured) keeps the VIP's.
#[inline(always)]
pub const fn real_port(real_port: u16, vport: u16) -> u16 {
    if real_port == 0 { vport } else { real_port }
}

/// The key of [`crate::maps::MAP_NAT_REVERSE`] for the replies of flow
/// `fwd` (client → VIP) sent to a real at `real:rport`: the 5-tuple of the
/// reply as the real sends it (real → client).
#[inline(always)]
pub const fn reverse_key(fwd: &FlowKey, real: Addr, rport: u16) -> FlowKey {
    FlowKey {
        src: real,
        dst: fwd.src,
        sport: rport,
        dport: fwd.sport,
        proto: fwd.proto,
        family: fwd.family,
        _pad: 0,
    }
}

/// The session key (client → VIP) of a real's reply with 5-tuple `reply`
/// (real → client), given its reverse entry.
#[inline(always)]
pub const fn forward_key(reply: &FlowKey, rev: &NatReverse) -> FlowKey {
    FlowKey {
        src: reply.dst,
        dst: rev.vip,
        sport: reply.dport,
        dport: rev.vport,
        proto: reply.proto,
        family: reply.family,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::maps::{addr_v4, family};

    /// The full RFC 1071 checksum of a TCP/UDP segment over its
    /// pseudo-header: an independent computation to hold the incremental
    /// updates to.
    fn l4_sum(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
        let mut acc = checksum::sum(src, 0);
        acc = checksum::sum(dst, acc);
        acc = checksum::add(acc, u32::from(proto));
        acc = checksum::add(acc, seg.len() as u32);
        checksum::finish(checksum::sum(seg, acc))
    }

    /// Xorshift: many deterministic values without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn bytes<const N: usize>(&mut self) -> [u8; N] {
            let mut b = [0u8; N];
            for x in &mut b {
                *x = self.next() as u8;
            }
            b
        }
    }

    fn v4_packet(r: &mut Rng, proto: u8, payload: &[u8]) -> ([u8; 20], Vec<u8>) {
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((20 + 20 + payload.len()) as u16).to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&r.bytes::<4>());
        ip[16..20].copy_from_slice(&r.bytes::<4>());
        let c = checksum::finish(checksum::sum(&ip, 0));
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let hl = if proto == 6 { 20 } else { 8 };
        let mut seg = vec![0u8; hl];
        seg[0..4].copy_from_slice(&r.bytes::<4>());
        if proto == 6 {
            seg[12] = 5 << 4;
            seg[13] = 0x18;
        } else {
            seg[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        }
        seg.extend_from_slice(payload);
        let mut c = l4_sum(&ip[12..16], &ip[16..20], proto, &seg);
        if proto == 17 && c == 0 {
            // 0 would mean "no checksum" (RFC 768).
            c = 0xffff;
        }
        let o = if proto == 6 { 16 } else { 6 };
        seg[o..o + 2].copy_from_slice(&c.to_be_bytes());
        (ip, seg)
    }

    /// Applies a rewrite to `seg`'s fields as the XDP program does (the
    /// port and checksum fields in place, the IP header as a copy).
    fn apply(seg: &mut [u8], udp: bool, side: Side, f: impl FnOnce(L4Fields<'_>)) {
        let (po, co) = (port_offset(side), check_offset(udp));
        let mut port = [seg[po], seg[po + 1]];
        let mut check = [seg[co], seg[co + 1]];
        f(L4Fields {
            port: &mut port,
            check: &mut check,
            udp,
        });
        seg[po..po + 2].copy_from_slice(&port);
        seg[co..co + 2].copy_from_slice(&check);
    }

    fn apply_v4(ip: &mut [u8; 20], seg: &mut [u8], side: Side, addr: [u8; 4], port: u16) {
        let udp = ip[9] == 17;
        apply(seg, udp, side, |l4| rewrite_v4(ip, l4, side, addr, port));
    }

    #[test]
    fn v4_rewrites_keep_both_checksums_valid_both_ways() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        for i in 0..2000 {
            let proto = if i % 2 == 0 { 6 } else { 17 };
            let payload: Vec<u8> = (0..(i % 37)).map(|_| r.next() as u8).collect();
            let (mut ip, mut seg) = v4_packet(&mut r, proto, &payload);
            let side = if i % 3 == 0 {
                Side::Source
            } else {
                Side::Destination
            };
            let addr = r.bytes::<4>();
            let port = r.next() as u16;
            apply_v4(&mut ip, &mut seg, side, addr, port);
            assert_eq!(checksum::finish(checksum::sum(&ip, 0)), 0, "ip header");
            let o = if side == Side::Source { 12 } else { 16 };
            assert_eq!(&ip[o..o + 4], &addr);
            let po = if side == Side::Source { 0 } else { 2 };
            assert_eq!(u16::from_be_bytes([seg[po], seg[po + 1]]), port);
            // Summing a segment with its checksum in place folds to zero.
            assert_eq!(l4_sum(&ip[12..16], &ip[16..20], proto, &seg), 0, "case {i}");
            if proto == 17 {
                assert_ne!(&seg[6..8], &[0, 0], "a computed 0 is sent as 0xffff");
            }
        }
    }

    #[test]
    fn v4_udp_without_checksum_keeps_none() {
        let mut r = Rng(7);
        let (mut ip, mut seg) = v4_packet(&mut r, 17, b"ping");
        seg[6..8].copy_from_slice(&[0, 0]);
        apply_v4(&mut ip, &mut seg, Side::Destination, [10, 0, 0, 9], 8080);
        assert_eq!(&seg[6..8], &[0, 0]);
        assert_eq!(&seg[2..4], &8080u16.to_be_bytes());
        assert_eq!(checksum::finish(checksum::sum(&ip, 0)), 0);
    }

    #[test]
    fn v6_rewrites_keep_the_checksum_valid() {
        let mut r = Rng(0x1234_5678);
        for i in 0..1000 {
            let proto: u8 = if i % 2 == 0 { 6 } else { 17 };
            let mut ip = [0u8; 40];
            ip[0] = 0x60;
            ip[6] = proto;
            ip[8..24].copy_from_slice(&r.bytes::<16>());
            ip[24..40].copy_from_slice(&r.bytes::<16>());
            let hl = if proto == 6 { 20 } else { 8 };
            let mut seg = vec![0u8; hl];
            seg[0..4].copy_from_slice(&r.bytes::<4>());
            seg.extend((0..(i % 23)).map(|_| r.next() as u8));
            let o = if proto == 6 { 16 } else { 6 };
            let c = l4_sum(&ip[8..24], &ip[24..40], proto, &seg);
            seg[o..o + 2].copy_from_slice(&c.to_be_bytes());
            let side = if i % 2 == 1 {
                Side::Source
            } else {
                Side::Destination
            };
            let addr = r.bytes::<16>();
            let port = r.next() as u16;
            apply(&mut seg, proto == 17, side, |l4| {
                rewrite_v6(&mut ip, l4, side, addr, port)
            });
            let ao = if side == Side::Source { 8 } else { 24 };
            assert_eq!(&ip[ao..ao + 16], &addr);
            assert_eq!(l4_sum(&ip[8..24], &ip[24..40], proto, &seg), 0, "case {i}");
        }
    }

    #[test]
    fn real_port_zero_keeps_the_vip_port() {
        assert_eq!(real_port(0, 80), 80);
        assert_eq!(real_port(8080, 80), 8080);
    }

    #[test]
    fn reverse_and_forward_keys_are_each_others_mirror() {
        let fwd = FlowKey {
            src: addr_v4([10, 99, 0, 2]),
            dst: addr_v4([10, 99, 255, 1]),
            sport: 40000,
            dport: 80,
            proto: 6,
            family: family::V4,
            _pad: 0,
        };
        let rk = reverse_key(&fwd, addr_v4([10, 99, 0, 11]), 8080);
        assert_eq!(
            (rk.src, rk.dst, rk.sport, rk.dport),
            (addr_v4([10, 99, 0, 11]), fwd.src, 8080, 40000)
        );
        let rev = NatReverse {
            vip: fwd.dst,
            vport: fwd.dport,
            client_mac: [2, 0, 0, 0, 0, 2],
        };
        assert_eq!(forward_key(&rk, &rev), fwd);
    }
}
