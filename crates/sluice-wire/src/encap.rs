//! The outer header of `tun` and what becomes of a packet that would be
//! too big for the egress link once encapsulated: sans-IO, shared by the
//! XDP program (which applies it to the frame in place) and its tests.
//!
//! The outer header copies the inner packet's traffic class (DSCP and
//! ECN: RFC 2003 §3.1, RFC 6040's normal mode) and an outer IPv4 header
//! has DF set, so the encapsulated packet is never fragmented on the way:
//! the egress MTU is checked here instead, and the client is told.
//!
//! IPv4 identification: the outer header's ID is 0. RFC 6864 §4.1 lets
//! the source of an *atomic* datagram (DF set, MF clear, offset 0), which
//! every outer header is, put any value there, since the field only serves
//! reassembly; a constant 0 costs nothing per packet and says so. The
//! ICMP answers below are atomic too (DF set, ID 0).
//!
//! An answer is built in the frame itself. The frame is first cut to the
//! Ethernet header and the part of the packet to quote, then grown at the
//! head by the answer's IP and ICMP headers, so the quote is already where
//! the answer needs it:
//!
//! ```text
//! grown:  | new: IP + ICMP headers' room | original Ethernet | quote: original IP header + 64 bytes |
//! answer: | Ethernet | IP | ICMP                              | quote (unchanged)                   |
//! ```

use crate::checksum;
use crate::maps::family;

const ETH_HDR_LEN: usize = 14;
const IPV4_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
/// Bytes of an ICMP / ICMPv6 header before the quoted packet.
const ICMP_HDR_LEN: usize = 8;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOO_BIG: u8 = 2;

/// The smallest egress MTU, in bytes, that `tun` runs on: IPv6's minimum
/// link MTU (RFC 8200), which every Ethernet-like link meets. A frame
/// whose encapsulated IP packet fits it fits any egress sluice accepts,
/// so the data plane asks the kernel for the real MTU (`bpf_check_mtu`,
/// about 17 ns a packet) only for larger frames: most packets toward the
/// reals (ACKs, requests) are small. `sluice run` refuses an interface
/// with a smaller MTU when a `tun` service exists.
pub const MIN_TUN_EGRESS_MTU: u32 = 1280;

/// Whether an IP packet of `ip_len` bytes with `overhead` bytes of
/// encapsulation surely fits an egress of [`MIN_TUN_EGRESS_MTU`] or more
/// (then no MTU check is needed).
#[must_use]
pub const fn surely_fits(ip_len: u32, overhead: u32) -> bool {
    ip_len.saturating_add(overhead) <= MIN_TUN_EGRESS_MTU
}

/// Bytes `tun` adds to an IPv4-addressed real's packets (the outer IPv4
/// header of IPIP).
pub const IPIP_OVERHEAD: u32 = IPV4_HDR_LEN as u32;
/// Bytes `tun` adds to an IPv6-addressed real's packets (the outer IPv6
/// header of IP6IP6).
pub const IP6IP6_OVERHEAD: u32 = IPV6_HDR_LEN as u32;
/// The DF bit of the IPv4 flags / fragment-offset word.
pub const IPV4_DF: u16 = 0x4000;
/// The flags / fragment-offset word of an outer IPv4 header: DF, offset 0.
pub const OUTER_V4_FLAGS: u16 = IPV4_DF;
/// Bytes of the offending packet's payload quoted after its IP header
/// (RFC 792 asks for 8 bytes; 64 give the client's stack the whole TCP
/// header with options, as Katran's answers do).
pub const QUOTED_PAYLOAD_LEN: usize = 64;
/// Bytes of an IPv4 packet quoted in a "fragmentation needed" answer.
pub const V4_QUOTE_LEN: usize = IPV4_HDR_LEN + QUOTED_PAYLOAD_LEN;
/// Bytes of an IPv6 packet quoted in a "packet too big" answer.
pub const V6_QUOTE_LEN: usize = IPV6_HDR_LEN + QUOTED_PAYLOAD_LEN;
/// Bytes the frame keeps before an IPv4 answer is built: its Ethernet
/// header and the quote. A shorter frame cannot be answered.
pub const V4_KEEP_LEN: usize = ETH_HDR_LEN + V4_QUOTE_LEN;
/// [`V4_KEEP_LEN`] for IPv6.
pub const V6_KEEP_LEN: usize = ETH_HDR_LEN + V6_QUOTE_LEN;
/// Bytes the frame grows at its head for an IPv4 answer (IP + ICMP).
pub const V4_GROW_LEN: usize = IPV4_HDR_LEN + ICMP_HDR_LEN;
/// Bytes the frame grows at its head for an IPv6 answer (IPv6 + ICMPv6).
pub const V6_GROW_LEN: usize = IPV6_HDR_LEN + ICMP_HDR_LEN;
/// Bytes of an IPv4 answer's frame.
pub const V4_ANSWER_LEN: usize = V4_GROW_LEN + V4_KEEP_LEN;
/// Bytes of an IPv6 answer's frame.
pub const V6_ANSWER_LEN: usize = V6_GROW_LEN + V6_KEEP_LEN;
/// TTL / hop limit of an answer.
pub const ANSWER_TTL: u8 = 64;

// Every sum the builders ask for covers a multiple of 4 bytes (what the
// kernel's `bpf_csum_diff` accepts).
const _: () = assert!((V4_ANSWER_LEN - ETH_HDR_LEN - IPV4_HDR_LEN).is_multiple_of(4));
const _: () = assert!((V6_ANSWER_LEN - ETH_HDR_LEN - IPV6_HDR_LEN).is_multiple_of(4));

/// The traffic class of an inner packet from its first two bytes: the
/// IPv4 TOS byte, or the IPv6 traffic class (which straddles them).
pub const fn traffic_class(inner_family: u8, first: [u8; 2]) -> u8 {
    if inner_family == family::V6 {
        (first[0] << 4) | (first[1] >> 4)
    } else {
        first[1]
    }
}

/// What becomes of a packet that would exceed the egress MTU once
/// encapsulated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Oversize {
    /// Answer the client with ICMP "fragmentation needed" (type 3 code 4)
    /// carrying this next-hop MTU.
    FragNeeded(u16),
    /// Answer the client with ICMPv6 "packet too big" (type 2) carrying
    /// this MTU.
    PacketTooBig(u32),
    /// Drop it (counted): an IPv4 packet without DF, whose sender allowed
    /// fragmentation, which XDP cannot do and the outer DF forbids on the
    /// way (its path-MTU discovery is off, so an answer would not help);
    /// or an ICMP error being forwarded to a real, which is never
    /// answered with another ICMP error (RFC 1122 §3.2.2, RFC 4443 §2.4).
    Drop,
}

/// The fate of an oversize packet of `inner_family` whose IPv4 flags /
/// fragment-offset word is `inner_v4_flags` (ignored for IPv6), leaving
/// through a link of `egress_mtu` bytes with `overhead` bytes of
/// encapsulation; `quoted_error` marks a forwarded ICMP error. The MTU
/// announced is what the inner packet may be: `egress_mtu - overhead`.
pub const fn oversize(
    inner_family: u8,
    inner_v4_flags: u16,
    quoted_error: bool,
    egress_mtu: u32,
    overhead: u32,
) -> Oversize {
    if quoted_error {
        return Oversize::Drop;
    }
    let mtu = egress_mtu.saturating_sub(overhead);
    if inner_family == family::V6 {
        Oversize::PacketTooBig(mtu)
    } else if inner_v4_flags & IPV4_DF == 0 {
        Oversize::Drop
    } else if mtu > u16::MAX as u32 {
        Oversize::FragNeeded(u16::MAX)
    } else {
        Oversize::FragNeeded(mtu as u16)
    }
}

/// Turns `f` into an ICMP "fragmentation needed" answer to the sender of
/// the original IPv4 packet, from the address it sent to (the VIP), with
/// next-hop MTU `mtu`, sent from `our_mac` to the MAC it came from.
///
/// On entry `f` holds [`V4_GROW_LEN`] bytes of anything, the original
/// Ethernet header, then the first [`V4_QUOTE_LEN`] bytes of the original
/// IPv4 packet (a header without options). `sum(bytes)` is the one's
/// complement sum of `bytes` as big-endian 16-bit words, unfolded or
/// folded ([`checksum::sum`]`(bytes, 0)`; the XDP program passes the
/// kernel's helper, which sums the frame in place); it is only asked for
/// multiples of 4 bytes.
#[inline(always)]
pub fn frag_needed_v4(
    f: &mut [u8; V4_ANSWER_LEN],
    our_mac: [u8; 6],
    mtu: u16,
    sum: impl Fn(&[u8]) -> u32,
) {
    let orig_eth = V4_GROW_LEN;
    let quote = V4_GROW_LEN + ETH_HDR_LEN;
    // Read what the new headers overwrite (the original Ethernet header)
    // or need (the original addresses) first.
    let mut peer_mac = [0u8; 6];
    peer_mac.copy_from_slice(&f[orig_eth + 6..orig_eth + 12]);
    let mut client = [0u8; 4];
    client.copy_from_slice(&f[quote + 12..quote + 16]);
    let mut vip = [0u8; 4];
    vip.copy_from_slice(&f[quote + 16..quote + 20]);

    f[..6].copy_from_slice(&peer_mac);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());

    let ip = ETH_HDR_LEN;
    let total = (V4_ANSWER_LEN - ETH_HDR_LEN) as u16;
    let mut h = [0u8; IPV4_HDR_LEN];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[6..8].copy_from_slice(&IPV4_DF.to_be_bytes());
    h[8] = ANSWER_TTL;
    h[9] = PROTO_ICMP;
    h[12..16].copy_from_slice(&vip);
    h[16..20].copy_from_slice(&client);
    let c = checksum::finish(checksum::sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    f[ip..ip + IPV4_HDR_LEN].copy_from_slice(&h);

    let icmp = ip + IPV4_HDR_LEN;
    f[icmp] = ICMP_DEST_UNREACH;
    f[icmp + 1] = ICMP_FRAG_NEEDED;
    f[icmp + 2..icmp + 6].copy_from_slice(&[0; 4]);
    f[icmp + 6..icmp + 8].copy_from_slice(&mtu.to_be_bytes());
    let c = checksum::finish(sum(&f[icmp..]));
    f[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
}

/// Turns `f` into an ICMPv6 "packet too big" answer with MTU `mtu`, as
/// [`frag_needed_v4`] does for IPv4. On entry `f` holds [`V6_GROW_LEN`]
/// bytes of anything, the original Ethernet header, then the first
/// [`V6_QUOTE_LEN`] bytes of the original IPv6 packet.
#[inline(always)]
pub fn packet_too_big_v6(
    f: &mut [u8; V6_ANSWER_LEN],
    our_mac: [u8; 6],
    mtu: u32,
    sum: impl Fn(&[u8]) -> u32,
) {
    let orig_eth = V6_GROW_LEN;
    let quote = V6_GROW_LEN + ETH_HDR_LEN;
    let mut peer_mac = [0u8; 6];
    peer_mac.copy_from_slice(&f[orig_eth + 6..orig_eth + 12]);
    // The original's source (the client) and destination (the VIP): the
    // answer's destination and source, in that order.
    let mut addrs = [0u8; 32];
    addrs[..16].copy_from_slice(&f[quote + 24..quote + 40]);
    addrs[16..].copy_from_slice(&f[quote + 8..quote + 24]);

    f[..6].copy_from_slice(&peer_mac);
    f[6..12].copy_from_slice(&our_mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());

    let ip = ETH_HDR_LEN;
    let payload = (V6_ANSWER_LEN - ETH_HDR_LEN - IPV6_HDR_LEN) as u16;
    f[ip..ip + 4].copy_from_slice(&[0x60, 0, 0, 0]);
    f[ip + 4..ip + 6].copy_from_slice(&payload.to_be_bytes());
    f[ip + 6] = PROTO_ICMPV6;
    f[ip + 7] = ANSWER_TTL;
    f[ip + 8..ip + 40].copy_from_slice(&addrs);

    let icmp = ip + IPV6_HDR_LEN;
    f[icmp] = ICMPV6_PKT_TOO_BIG;
    f[icmp + 1] = 0;
    f[icmp + 2..icmp + 4].copy_from_slice(&[0; 2]);
    f[icmp + 4..icmp + 8].copy_from_slice(&mtu.to_be_bytes());
    // RFC 4443 §2.3: the pseudo-header (addresses, upper-layer length,
    // next header) and the message.
    let mut acc = checksum::add(fold(sum(&f[ip + 8..ip + 40])), u32::from(payload));
    acc = checksum::add(acc, u32::from(PROTO_ICMPV6));
    acc = checksum::add(acc, fold(sum(&f[icmp..])));
    let c = checksum::finish(acc);
    f[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
}

/// Folds a 32-bit one's complement sum to 16 bits (without inverting), so
/// that adding to it stays within `checksum::add`'s range (a sum from the
/// kernel's helper may use all 32 bits).
#[inline(always)]
const fn fold(mut acc: u32) -> u32 {
    acc = (acc & 0xffff) + (acc >> 16);
    (acc & 0xffff) + (acc >> 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xc1];
    const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x1b];
    const CLIENT4: [u8; 4] = [10, 99, 0, 2];
    const VIP4: [u8; 4] = [10, 99, 255, 2];

    fn sum(d: &[u8]) -> u32 {
        checksum::sum(d, 0)
    }

    /// An original frame: Ethernet, then the IP packet `ip` (whole).
    fn frame(ethertype: u16, ip: &[u8]) -> [u8; 1500] {
        let mut f = [0u8; 1500];
        f[..6].copy_from_slice(&LB_MAC);
        f[6..12].copy_from_slice(&CLIENT_MAC);
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14..14 + ip.len()].copy_from_slice(ip);
        f
    }

    fn ipv4_packet(tos: u8, flags: u16) -> [u8; 1000] {
        let mut p = [0u8; 1000];
        p[0] = 0x45;
        p[1] = tos;
        p[2..4].copy_from_slice(&1000u16.to_be_bytes());
        p[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        p[6..8].copy_from_slice(&flags.to_be_bytes());
        p[8] = 63;
        p[9] = 6;
        p[12..16].copy_from_slice(&CLIENT4);
        p[16..20].copy_from_slice(&VIP4);
        let c = checksum::finish(checksum::sum(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
        for (i, b) in p[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    #[test]
    fn traffic_class_of_either_family() {
        // IPv4: the TOS byte (DSCP AF41, ECN CE).
        assert_eq!(traffic_class(family::V4, [0x45, 0x8b]), 0x8b);
        // IPv6: version 6, traffic class 0xb9, then the flow label.
        assert_eq!(traffic_class(family::V6, [0x6b, 0x95]), 0xb9);
    }

    #[test]
    fn oversize_answers_df_and_ipv6_and_drops_the_rest() {
        assert_eq!(
            oversize(family::V4, IPV4_DF, false, 1500, IPIP_OVERHEAD),
            Oversize::FragNeeded(1480)
        );
        assert_eq!(
            oversize(family::V4, 0, false, 1500, IPIP_OVERHEAD),
            Oversize::Drop,
            "IPv4 without DF"
        );
        assert_eq!(
            oversize(family::V6, 0, false, 1500, IP6IP6_OVERHEAD),
            Oversize::PacketTooBig(1460)
        );
        assert_eq!(
            oversize(family::V6, 0, true, 1500, IP6IP6_OVERHEAD),
            Oversize::Drop,
            "a forwarded ICMP error"
        );
        assert_eq!(
            oversize(family::V4, IPV4_DF, true, 1500, IPIP_OVERHEAD),
            Oversize::Drop
        );
        assert_eq!(
            oversize(family::V4, IPV4_DF, false, 70_000, IPIP_OVERHEAD),
            Oversize::FragNeeded(u16::MAX),
            "the IPv4 field is 16 bits"
        );
        assert_eq!(
            oversize(family::V4, IPV4_DF, false, 10, IPIP_OVERHEAD),
            Oversize::FragNeeded(0)
        );
    }

    #[test]
    fn frag_needed_answer_is_valid_and_quotes_the_original() {
        let ip = ipv4_packet(0xb8, IPV4_DF);
        let orig = frame(ETH_P_IP, &ip);
        let mut f = [0xeeu8; V4_ANSWER_LEN];
        f[V4_GROW_LEN..].copy_from_slice(&orig[..V4_KEEP_LEN]);
        frag_needed_v4(&mut f, LB_MAC, 1480, sum);

        assert_eq!(&f[..6], &CLIENT_MAC);
        assert_eq!(&f[6..12], &LB_MAC);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        let h = &f[14..34];
        assert_eq!(h[0], 0x45);
        assert_eq!(u16::from_be_bytes([h[2], h[3]]) as usize, 20 + 8 + 84);
        assert_eq!(&h[4..8], &[0, 0, 0x40, 0], "ID 0, DF");
        assert_eq!((h[8], h[9]), (ANSWER_TTL, PROTO_ICMP));
        assert_eq!(&h[12..16], &VIP4, "from the VIP");
        assert_eq!(&h[16..20], &CLIENT4, "to the client");
        assert_eq!(checksum::finish(checksum::sum(h, 0)), 0, "IP checksum");
        let icmp = &f[34..];
        assert_eq!(&icmp[..2], &[3, 4]);
        assert_eq!(&icmp[4..8], &[0, 0, 0x05, 0xc8], "next-hop MTU 1480");
        assert_eq!(checksum::finish(checksum::sum(icmp, 0)), 0, "ICMP checksum");
        assert_eq!(&icmp[8..], &ip[..V4_QUOTE_LEN], "the quote");
    }

    #[test]
    fn packet_too_big_answer_is_valid_and_quotes_the_original() {
        let client: [u8; 16] = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let vip: [u8; 16] = [0xfd, 0x99, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut ip = [0u8; 1200];
        ip[0] = 0x6b;
        ip[1] = 0x80;
        ip[4..6].copy_from_slice(&1160u16.to_be_bytes());
        ip[6] = 6;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&client);
        ip[24..40].copy_from_slice(&vip);
        for (i, b) in ip[40..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let orig = frame(ETH_P_IPV6, &ip);
        let mut f = [0xeeu8; V6_ANSWER_LEN];
        f[V6_GROW_LEN..].copy_from_slice(&orig[..V6_KEEP_LEN]);
        packet_too_big_v6(&mut f, LB_MAC, 1460, sum);

        assert_eq!(&f[..6], &CLIENT_MAC);
        assert_eq!(&f[6..12], &LB_MAC);
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        let h = &f[14..54];
        assert_eq!(&h[..4], &[0x60, 0, 0, 0]);
        let payload = u16::from_be_bytes([h[4], h[5]]);
        assert_eq!(payload as usize, 8 + 104);
        assert_eq!((h[6], h[7]), (PROTO_ICMPV6, ANSWER_TTL));
        assert_eq!(&h[8..24], &vip, "from the VIP");
        assert_eq!(&h[24..40], &client, "to the client");
        let icmp = &f[54..];
        assert_eq!(&icmp[..2], &[2, 0]);
        assert_eq!(&icmp[4..8], &1460u32.to_be_bytes());
        // The checksum, recomputed over the pseudo-header and the message.
        let mut acc = checksum::sum(&h[8..40], 0);
        acc = checksum::add(acc, u32::from(payload));
        acc = checksum::add(acc, u32::from(PROTO_ICMPV6));
        acc = checksum::sum(icmp, acc);
        assert_eq!(checksum::finish(acc), 0, "ICMPv6 checksum");
        assert_eq!(&icmp[8..], &ip[..V6_QUOTE_LEN], "the quote");
    }

    #[test]
    fn sums_may_come_folded_or_not() {
        // The kernel helper's sum comes unfolded (32 bits); the answer's
        // checksum must not depend on it.
        let ip = ipv4_packet(0, IPV4_DF);
        let orig = frame(ETH_P_IP, &ip);
        let mut a = [0u8; V4_ANSWER_LEN];
        a[V4_GROW_LEN..].copy_from_slice(&orig[..V4_KEEP_LEN]);
        let mut b = a;
        frag_needed_v4(&mut a, LB_MAC, 1480, sum);
        frag_needed_v4(&mut b, LB_MAC, 1480, |d| {
            // Unfolded: plain 32-bit addition of the words.
            d.chunks_exact(2)
                .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
                .sum()
        });
        assert_eq!(a, b);
    }

    #[test]
    fn small_packets_surely_fit_and_large_ones_are_checked() {
        assert!(surely_fits(1260, IPIP_OVERHEAD));
        assert!(!surely_fits(1261, IPIP_OVERHEAD));
        assert!(surely_fits(1240, IP6IP6_OVERHEAD));
        assert!(!surely_fits(1241, IP6IP6_OVERHEAD));
        assert!(!surely_fits(u32::MAX, IPIP_OVERHEAD));
    }
}
