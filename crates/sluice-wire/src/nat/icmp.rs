//! ICMP errors of `nat` flows, sans-IO: the quoted packet is translated
//! along with the error (RFC 5508 §4.1, as Linux conntrack's
//! `nf_nat_icmp_reply_translation` does), or the receiver could not tie
//! the error to its connection.
//!
//! - An error a real (or a router on its side) sends to a client quotes
//!   the client's packet as the real saw it (client → RIP:rport): the
//!   quoted destination becomes VIP:vport again and the outer source the
//!   VIP (whoever sent it: the client only knows the VIP).
//! - An error a client (or a router on its side) sends to the VIP about a
//!   reply the LB rewrote quotes VIP:vport → client: the quoted source
//!   becomes RIP:rport and the outer destination the real.
//!
//! In both, the quoted packet's translated end is one side ([`Side`]) and
//! the outer header's is the other one, and both get the same address.
//! Every checksum the change touches is updated incrementally (RFC 1624):
//! the outer IPv4 header's, the quoted IPv4 header's, the quoted TCP/UDP
//! checksum when the quote reaches it (its pseudo-header and port
//! included; a quote often ends before a TCP checksum), and the ICMP
//! checksum over every changed word of the message (ICMPv6's also over
//! the pseudo-header, whose outer address changes).

#[cfg(doc)]
use super::v6_addr_offset;
use super::{IPV4_HDR_LEN, Side, check_offset, l4_check, v4_addr_offset};
use crate::checksum;

/// Bytes of an ICMP / ICMPv6 header before the quoted packet.
pub const ICMP_HDR_LEN: usize = 8;
/// Offset of the checksum in an ICMP / ICMPv6 header.
pub const ICMP_CHECK: usize = 2;
/// Offset of the header checksum in an IPv4 header.
const V4_CHECK: usize = 10;

/// ICMPv4 error types whose quoted packet is translated: destination
/// unreachable (port unreachable, fragmentation needed, ...), time
/// exceeded, parameter problem. Redirects are not (Linux does not
/// translate them for NAT'd flows either), nor the obsolete source quench.
#[inline(always)]
pub const fn is_error_v4(icmp_type: u8) -> bool {
    matches!(icmp_type, 3 | 11 | 12)
}

/// ICMPv6 error types whose quoted packet is translated: destination
/// unreachable, packet too big, time exceeded, parameter problem (RFC
/// 4443 §3: every error type).
#[inline(always)]
pub const fn is_error_v6(icmp_type: u8) -> bool {
    matches!(icmp_type, 1..=4)
}

/// Offset, from the ICMP header, of the quoted TCP (`udp` false) or UDP
/// checksum behind a quoted IP header of `quoted_hdr_len` bytes.
#[inline(always)]
pub const fn quoted_check_offset(quoted_hdr_len: usize, udp: bool) -> usize {
    ICMP_HDR_LEN + quoted_hdr_len + check_offset(udp)
}

/// Does an ICMP message of `icmp_len` bytes (the outer IP payload) quote
/// its packet as far as the TCP/UDP checksum? Only then is it updated: a
/// router need quote only 8 bytes past the IP header (RFC 792), which
/// holds the ports but not a TCP checksum.
#[inline(always)]
pub const fn quoted_check_present(icmp_len: usize, quoted_hdr_len: usize, udp: bool) -> bool {
    quoted_check_offset(quoted_hdr_len, udp) + 2 <= icmp_len
}

/// The fields of an ICMP error a translation changes besides the two IP
/// headers (references into the frame, as [`super::L4Fields`]).
#[derive(Debug)]
pub struct IcmpFields<'a> {
    /// The ICMP checksum.
    pub icmp_check: &'a mut [u8; 2],
    /// The quoted packet's port of the translated end.
    pub port: &'a mut [u8; 2],
    /// The quoted TCP/UDP checksum, if the quote reaches it
    /// ([`quoted_check_present`]).
    pub l4_check: Option<&'a mut [u8; 2]>,
    /// The quoted packet is UDP (else TCP).
    pub udp: bool,
}

/// The new quoted TCP/UDP checksum (if the quote has it) and the ICMP
/// checksum `icmp_check` moved on by the quoted address `old` → `new`,
/// the port and that checksum; nothing is written. Every translation
/// computes first and stores last: between stores into the frame the XDP
/// compiler cannot keep frame bytes in registers (the stores might alias
/// them) and spilled them past the 512-byte stack.
#[inline(always)]
fn quoted_l4_checks<const N: usize>(
    f: &IcmpFields<'_>,
    v4: bool,
    old: &[u8; N],
    new: &[u8; N],
    port: u16,
    icmp_check: u16,
) -> (Option<u16>, u16) {
    let old_port = u16::from_be_bytes(*f.port);
    let mut ic = checksum::update16(checksum::update_bytes(icmp_check, old, new), old_port, port);
    let l4 = match &f.l4_check {
        Some(c) => {
            let before = u16::from_be_bytes(**c);
            let after = l4_check(before, f.udp, v4, old, new, old_port, port);
            ic = checksum::update16(ic, before, after);
            Some(after)
        }
        None => None,
    };
    (l4, ic)
}

/// Stores the quoted port, the quoted TCP/UDP checksum and the ICMP
/// checksum [`quoted_l4_checks`] computed.
#[inline(always)]
fn store_l4(f: IcmpFields<'_>, port: u16, l4: Option<u16>, ic: u16) {
    *f.port = port.to_be_bytes();
    if let (Some(c), Some(v)) = (f.l4_check, l4) {
        *c = v.to_be_bytes();
    }
    *f.icmp_check = ic.to_be_bytes();
}

/// Translates an ICMPv4 error: the quoted IPv4 header's `quoted_side`
/// address becomes `addr` and its port (in `f`) `port`; the outer
/// header's other side's address becomes `addr` too. Updates the outer
/// and quoted header checksums, the quoted TCP/UDP checksum if present
/// and the ICMP checksum (ICMPv4 has no pseudo-header: the outer header
/// is not part of it).
#[inline(always)]
pub fn translate_v4(
    outer: &mut [u8; IPV4_HDR_LEN],
    quoted: &mut [u8; IPV4_HDR_LEN],
    f: IcmpFields<'_>,
    quoted_side: Side,
    addr: [u8; 4],
    port: u16,
) {
    let q = v4_addr_offset(quoted_side);
    let old = [quoted[q], quoted[q + 1], quoted[q + 2], quoted[q + 3]];
    let qc_old = u16::from_be_bytes([quoted[V4_CHECK], quoted[V4_CHECK + 1]]);
    let qc_new = checksum::update_bytes(qc_old, &old, &addr);
    // The quoted header checksum is a word of the ICMP message too.
    let ic = checksum::update16(u16::from_be_bytes(*f.icmp_check), qc_old, qc_new);
    let (l4, ic) = quoted_l4_checks(&f, true, &old, &addr, port, ic);
    let o = v4_addr_offset(quoted_side.other());
    let old_outer = [outer[o], outer[o + 1], outer[o + 2], outer[o + 3]];
    let c = u16::from_be_bytes([outer[V4_CHECK], outer[V4_CHECK + 1]]);
    let c = checksum::update_bytes(c, &old_outer, &addr);

    quoted[V4_CHECK..V4_CHECK + 2].copy_from_slice(&qc_new.to_be_bytes());
    quoted[q..q + 4].copy_from_slice(&addr);
    store_l4(f, port, l4, ic);
    outer[V4_CHECK..V4_CHECK + 2].copy_from_slice(&c.to_be_bytes());
    outer[o..o + 4].copy_from_slice(&addr);
}

/// [`translate_v4`] for ICMPv6, given the two addresses that change (the
/// outer header's of the side other than the quoted one's, and the quoted
/// header's; [`v6_addr_offset`]): IPv6 has no header checksums, so the
/// headers need not be copied (the XDP program's stack is small), but the
/// ICMPv6 checksum covers a pseudo-header with the outer addresses (RFC
/// 4443 §2.3), one of which changes.
#[inline(always)]
pub fn translate_v6(
    outer_addr: &mut [u8; 16],
    quoted_addr: &mut [u8; 16],
    f: IcmpFields<'_>,
    addr: [u8; 16],
    port: u16,
) {
    let ic = checksum::update_bytes(u16::from_be_bytes(*f.icmp_check), outer_addr, &addr);
    let (l4, ic) = quoted_l4_checks(&f, false, quoted_addr, &addr, port, ic);
    *outer_addr = addr;
    *quoted_addr = addr;
    store_l4(f, port, l4, ic);
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{vec, vec::Vec};

    use super::*;
    use crate::nat::{port_offset, v6_addr_offset};

    fn fold(acc: u32) -> u16 {
        checksum::finish(acc)
    }

    /// A TCP (or UDP) segment `src:sport` → `dst:dport` with `payload`,
    /// its checksum computed in full over the pseudo-header.
    fn segment(
        src: &[u8],
        dst: &[u8],
        udp: bool,
        sport: u16,
        dport: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut seg = vec![0u8; if udp { 8 } else { 20 }];
        seg[0..2].copy_from_slice(&sport.to_be_bytes());
        seg[2..4].copy_from_slice(&dport.to_be_bytes());
        if udp {
            seg[4..6].copy_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        } else {
            seg[12] = 5 << 4;
            seg[13] = 0x10;
        }
        seg.extend_from_slice(payload);
        let c = l4_sum(src, dst, if udp { 17 } else { 6 }, &seg);
        let o = check_offset(udp);
        seg[o..o + 2].copy_from_slice(&c.to_be_bytes());
        seg
    }

    fn l4_sum(src: &[u8], dst: &[u8], proto: u8, seg: &[u8]) -> u16 {
        let mut acc = checksum::sum(src, 0);
        acc = checksum::sum(dst, acc);
        acc = checksum::add(acc, u32::from(proto));
        acc = checksum::add(acc, seg.len() as u32);
        fold(checksum::sum(seg, acc))
    }

    fn v4_header(src: [u8; 4], dst: [u8; 4], proto: u8, len: usize) -> [u8; 20] {
        let mut h = [0u8; 20];
        h[0] = 0x45;
        h[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        h[6] = 0x40;
        h[8] = 64;
        h[9] = proto;
        h[12..16].copy_from_slice(&src);
        h[16..20].copy_from_slice(&dst);
        let c = fold(checksum::sum(&h, 0));
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// An ICMPv4 error of type 3 code 3 whose message quotes `quoted` cut
    /// to `quote_len` bytes: (outer header, ICMP message).
    fn icmp_v4(from: [u8; 4], to: [u8; 4], quoted: &[u8], quote_len: usize) -> ([u8; 20], Vec<u8>) {
        let mut m = vec![3u8, 3, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&quoted[..quote_len.min(quoted.len())]);
        let c = fold(checksum::sum(&m, 0));
        m[2..4].copy_from_slice(&c.to_be_bytes());
        (v4_header(from, to, 1, 20 + m.len()), m)
    }

    /// Applies a translation to `m` as the XDP program does: the header
    /// copies whole, the fields in place.
    fn apply_v4(outer: &mut [u8; 20], m: &mut [u8], side: Side, addr: [u8; 4], port: u16) {
        let mut quoted = [0u8; 20];
        quoted.copy_from_slice(&m[8..28]);
        let udp = quoted[9] == 17;
        let l4 = 28;
        let po = l4 + port_offset(side);
        let co = quoted_check_offset(20, udp);
        let mut ic = [m[2], m[3]];
        let mut p = [m[po], m[po + 1]];
        let present = quoted_check_present(m.len(), 20, udp);
        let mut c = if present { [m[co], m[co + 1]] } else { [0, 0] };
        translate_v4(
            outer,
            &mut quoted,
            IcmpFields {
                icmp_check: &mut ic,
                port: &mut p,
                l4_check: if present { Some(&mut c) } else { None },
                udp,
            },
            side,
            addr,
            port,
        );
        m[8..28].copy_from_slice(&quoted);
        m[2..4].copy_from_slice(&ic);
        m[po..po + 2].copy_from_slice(&p);
        if present {
            m[co..co + 2].copy_from_slice(&c);
        }
    }

    const CLIENT: [u8; 4] = [10, 99, 0, 2];
    const VIP: [u8; 4] = [10, 99, 255, 9];
    const REAL: [u8; 4] = [10, 99, 0, 11];
    const ROUTER: [u8; 4] = [10, 99, 0, 1];

    #[test]
    fn error_types() {
        assert!(is_error_v4(3) && is_error_v4(11) && is_error_v4(12));
        assert!(!is_error_v4(0) && !is_error_v4(5) && !is_error_v4(8));
        assert!((1..=4).all(is_error_v6));
        assert!(!is_error_v6(128) && !is_error_v6(135));
    }

    #[test]
    fn quote_reaches_the_checksum_only_when_long_enough() {
        // 8 bytes of TCP quoted: ports, no checksum (at 16).
        assert!(!quoted_check_present(8 + 20 + 8, 20, false));
        assert!(quoted_check_present(8 + 20 + 18, 20, false));
        // UDP's checksum is within the first 8 bytes.
        assert!(quoted_check_present(8 + 20 + 8, 20, true));
        assert!(quoted_check_present(8 + 40 + 8, 40, true));
        assert!(!quoted_check_present(8 + 40 + 7, 40, true));
    }

    /// The real's error to the client (port unreachable) comes out as the
    /// VIP's, byte for byte what the VIP would have sent, for every quote
    /// length and both protocols; every checksum valid.
    #[test]
    fn v4_real_to_client_equals_an_error_the_vip_sent() {
        for udp in [true, false] {
            let proto = if udp { 17 } else { 6 };
            let payload = b"0123456789abcdef0123456789";
            let seg = segment(&CLIENT, &REAL, udp, 40000, 8080, payload);
            let mut as_real = v4_header(CLIENT, REAL, proto, 20 + seg.len()).to_vec();
            as_real.extend_from_slice(&seg);
            let seg = segment(&CLIENT, &VIP, udp, 40000, 80, payload);
            let mut as_vip = v4_header(CLIENT, VIP, proto, 20 + seg.len()).to_vec();
            as_vip.extend_from_slice(&seg);
            for quote in [28, 36, 40, 48, as_real.len()] {
                for from in [REAL, ROUTER] {
                    let (mut outer, mut m) = icmp_v4(from, CLIENT, &as_real, quote);
                    apply_v4(&mut outer, &mut m, Side::Destination, VIP, 80);
                    let (want_outer, want_m) = icmp_v4(VIP, CLIENT, &as_vip, quote);
                    assert_eq!(outer, want_outer, "udp {udp} quote {quote}");
                    let present = quoted_check_present(m.len(), 20, udp);
                    if present {
                        assert_eq!(m, want_m, "udp {udp} quote {quote}");
                    } else {
                        // The TCP checksum is not in the quote: the rest is.
                        assert_eq!(&m[8..], &want_m[8..], "udp {udp} quote {quote}");
                    }
                    assert_eq!(fold(checksum::sum(&m, 0)), 0, "icmp checksum");
                    assert_eq!(fold(checksum::sum(&m[8..28], 0)), 0, "quoted header");
                    assert_eq!(fold(checksum::sum(&outer, 0)), 0, "outer header");
                }
            }
        }
    }

    /// A client's frag-needed about a reply the LB rewrote, toward the
    /// real: the quoted source VIP:80 becomes REAL:8080, the outer
    /// destination the real.
    #[test]
    fn v4_client_to_real() {
        let seg = segment(&VIP, &CLIENT, false, 80, 40000, b"HTTP/1.1 200 OK");
        let mut sent = v4_header(VIP, CLIENT, 6, 20 + seg.len()).to_vec();
        sent.extend_from_slice(&seg);
        let seg = segment(&REAL, &CLIENT, false, 8080, 40000, b"HTTP/1.1 200 OK");
        let mut by_real = v4_header(REAL, CLIENT, 6, 20 + seg.len()).to_vec();
        by_real.extend_from_slice(&seg);
        let (mut outer, mut m) = icmp_v4(ROUTER, VIP, &sent, sent.len());
        apply_v4(&mut outer, &mut m, Side::Source, REAL, 8080);
        let (want_outer, want_m) = icmp_v4(ROUTER, REAL, &by_real, by_real.len());
        assert_eq!((outer, m), (want_outer, want_m));
    }

    #[test]
    fn v4_udp_quote_without_checksum_keeps_none() {
        let mut seg = segment(&CLIENT, &REAL, true, 5353, 8080, b"q");
        seg[6..8].copy_from_slice(&[0, 0]);
        let mut as_real = v4_header(CLIENT, REAL, 17, 20 + seg.len()).to_vec();
        as_real.extend_from_slice(&seg);
        let (mut outer, mut m) = icmp_v4(REAL, CLIENT, &as_real, as_real.len());
        apply_v4(&mut outer, &mut m, Side::Destination, VIP, 53);
        assert_eq!(&m[28 + 6..28 + 8], &[0, 0]);
        assert_eq!(&m[28 + 2..28 + 4], &53u16.to_be_bytes());
        assert_eq!(fold(checksum::sum(&m, 0)), 0);
    }

    const C6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    const V6: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
    const R6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11];
    const RT6: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];

    fn v6_header(src: [u8; 16], dst: [u8; 16], next: u8, payload: usize) -> [u8; 40] {
        let mut h = [0u8; 40];
        h[0] = 0x60;
        h[4..6].copy_from_slice(&(payload as u16).to_be_bytes());
        h[6] = next;
        h[7] = 64;
        h[8..24].copy_from_slice(&src);
        h[24..40].copy_from_slice(&dst);
        h
    }

    /// An ICMPv6 packet-too-big from `from` to `to` quoting `quoted`.
    fn icmp_v6(from: [u8; 16], to: [u8; 16], quoted: &[u8]) -> ([u8; 40], Vec<u8>) {
        let mut m = vec![2u8, 0, 0, 0, 0, 0, 0x05, 0x00];
        m.extend_from_slice(quoted);
        let c = l4_sum(&from, &to, 58, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        (v6_header(from, to, 58, m.len()), m)
    }

    fn apply_v6(outer: &mut [u8; 40], m: &mut [u8], side: Side, addr: [u8; 16], port: u16) {
        let mut quoted = [0u8; 40];
        quoted.copy_from_slice(&m[8..48]);
        let udp = quoted[6] == 17;
        let po = 48 + port_offset(side);
        let co = quoted_check_offset(40, udp);
        let mut ic = [m[2], m[3]];
        let mut p = [m[po], m[po + 1]];
        let mut c = [m[co], m[co + 1]];
        let (oo, qo) = (v6_addr_offset(side.other()), v6_addr_offset(side));
        let mut oa = [0u8; 16];
        oa.copy_from_slice(&outer[oo..oo + 16]);
        let mut qa = [0u8; 16];
        qa.copy_from_slice(&quoted[qo..qo + 16]);
        translate_v6(
            &mut oa,
            &mut qa,
            IcmpFields {
                icmp_check: &mut ic,
                port: &mut p,
                l4_check: Some(&mut c),
                udp,
            },
            addr,
            port,
        );
        outer[oo..oo + 16].copy_from_slice(&oa);
        quoted[qo..qo + 16].copy_from_slice(&qa);
        m[8..48].copy_from_slice(&quoted);
        m[2..4].copy_from_slice(&ic);
        m[po..po + 2].copy_from_slice(&p);
        m[co..co + 2].copy_from_slice(&c);
    }

    #[test]
    fn v6_both_ways_equal_errors_built_in_full() {
        for udp in [true, false] {
            let next = if udp { 17 } else { 6 };
            let seg = segment(&C6, &R6, udp, 40002, 8080, b"data data");
            let mut as_real = v6_header(C6, R6, next, seg.len()).to_vec();
            as_real.extend_from_slice(&seg);
            let seg = segment(&C6, &V6, udp, 40002, 80, b"data data");
            let mut as_vip = v6_header(C6, V6, next, seg.len()).to_vec();
            as_vip.extend_from_slice(&seg);
            for from in [R6, RT6] {
                let (mut outer, mut m) = icmp_v6(from, C6, &as_real);
                apply_v6(&mut outer, &mut m, Side::Destination, V6, 80);
                assert_eq!((outer, m), icmp_v6(V6, C6, &as_vip), "udp {udp}");
            }
            // And back: the client's router about the VIP's reply.
            let seg = segment(&V6, &C6, udp, 80, 40002, b"reply");
            let mut sent = v6_header(V6, C6, next, seg.len()).to_vec();
            sent.extend_from_slice(&seg);
            let seg = segment(&R6, &C6, udp, 8080, 40002, b"reply");
            let mut by_real = v6_header(R6, C6, next, seg.len()).to_vec();
            by_real.extend_from_slice(&seg);
            let (mut outer, mut m) = icmp_v6(RT6, V6, &sent);
            apply_v6(&mut outer, &mut m, Side::Source, R6, 8080);
            assert_eq!((outer, m), icmp_v6(RT6, R6, &by_real), "udp {udp}");
        }
    }
}
