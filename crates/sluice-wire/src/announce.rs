//! The frames a new VRRP master sends so that its segment's neighbours
//! point the virtual addresses at its MAC at once instead of after their
//! cache entries age out: a gratuitous ARP for IPv4 (RFC 5227's ARP
//! announcement, which RFC 5798 8.1.2 asks for) and an unsolicited
//! neighbour advertisement for IPv6 (RFC 4861 7.2.6, override flag set).
//! Sans-IO: whole Ethernet frames, written into the caller's buffer.

use crate::checksum;

/// Length of a gratuitous ARP frame (Ethernet + ARP, no padding: the NIC
/// pads it to the minimum frame).
pub const GARP_LEN: usize = 14 + 28;
/// Length of an unsolicited neighbour advertisement frame (Ethernet, IPv6,
/// the advertisement, one target link-layer address option).
pub const NA_LEN: usize = 14 + 40 + 24 + 8;

/// Broadcast MAC.
const BROADCAST: [u8; 6] = [0xff; 6];
/// ff02::1, all nodes: where an unsolicited advertisement goes.
const ALL_NODES: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// The MAC of ff02::1 (RFC 2464 7: 33:33 and the address's low 32 bits).
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARP_HW_ETHERNET: u16 = 1;
const ETH_P_IP: u16 = 0x0800;
/// ARP operation: request (a gratuitous ARP is a request for one's own
/// address, which every implementation updates its cache from).
const ARP_REQUEST: u16 = 1;
const PROTO_ICMPV6: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERT: u8 = 136;
/// The advertisement's override flag: replace what the cache holds.
const NA_FLAG_OVERRIDE: u8 = 0x20;
/// Neighbour discovery option: target link-layer address (length in
/// units of 8 bytes: one).
const ND_OPT_TARGET_LLADDR: u8 = 2;
/// Hop limit neighbour discovery requires (RFC 4861 7.1.2).
const ND_HOP_LIMIT: u8 = 255;

/// Writes a gratuitous ARP for `ip` at `mac` into `out`; its length, or
/// `None` if `out` is shorter than [`GARP_LEN`].
pub fn garp(out: &mut [u8], mac: [u8; 6], ip: [u8; 4]) -> Option<usize> {
    let f = out.get_mut(..GARP_LEN)?;
    f[0..6].copy_from_slice(&BROADCAST);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let a = &mut f[14..];
    a[0..2].copy_from_slice(&ARP_HW_ETHERNET.to_be_bytes());
    a[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    a[4] = 6;
    a[5] = 4;
    a[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    a[8..14].copy_from_slice(&mac);
    a[14..18].copy_from_slice(&ip);
    // Target MAC unknown (zero), target address our own: an announcement.
    a[18..24].fill(0);
    a[24..28].copy_from_slice(&ip);
    Some(GARP_LEN)
}

/// Writes an unsolicited neighbour advertisement of `ip` at `mac`, from
/// `ip` to all nodes, into `out`; its length, or `None` if `out` is
/// shorter than [`NA_LEN`].
pub fn unsolicited_na(out: &mut [u8], mac: [u8; 6], ip: [u8; 16]) -> Option<usize> {
    let f = out.get_mut(..NA_LEN)?;
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    let payload_len: u16 = 24 + 8;
    let (ip6, icmp) = f[14..].split_at_mut(40);
    ip6[0] = 0x60;
    ip6[1..4].fill(0);
    ip6[4..6].copy_from_slice(&payload_len.to_be_bytes());
    ip6[6] = PROTO_ICMPV6;
    ip6[7] = ND_HOP_LIMIT;
    ip6[8..24].copy_from_slice(&ip);
    ip6[24..40].copy_from_slice(&ALL_NODES);
    icmp[0] = ICMPV6_NEIGHBOR_ADVERT;
    icmp[1] = 0;
    icmp[2..4].fill(0);
    icmp[4] = NA_FLAG_OVERRIDE;
    icmp[5..8].fill(0);
    icmp[8..24].copy_from_slice(&ip);
    icmp[24] = ND_OPT_TARGET_LLADDR;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&mac);
    // ICMPv6 checksum: pseudo-header (addresses, 32-bit length, next
    // header) and the message.
    let mut acc = checksum::sum(&ip, 0);
    acc = checksum::sum(&ALL_NODES, acc);
    acc = checksum::add(acc, u32::from(payload_len));
    acc = checksum::add(acc, u32::from(PROTO_ICMPV6));
    let c = checksum::finish(checksum::sum(icmp, acc));
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    Some(NA_LEN)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];

    #[test]
    fn a_gratuitous_arp_announces_the_address() {
        let mut b = [0u8; 64];
        let n = garp(&mut b, MAC, [10, 99, 255, 1]).unwrap();
        assert_eq!(n, 42);
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0x11, 0x08, 0x06, // ethernet
            0, 1, 0x08, 0, 6, 4, 0, 1, // htype, ptype, lengths, request
            2, 0, 0, 0, 0, 0x11, 10, 99, 255, 1, // sender
            0, 0, 0, 0, 0, 0, 10, 99, 255, 1, // target
        ];
        assert_eq!(b[..n], want);
        assert_eq!(garp(&mut b[..41], MAC, [10, 99, 255, 1]), None);
    }

    #[test]
    fn an_unsolicited_advertisement_checks_out() {
        let vip = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 1];
        let mut b = [0u8; 128];
        let n = unsolicited_na(&mut b, MAC, vip).unwrap();
        assert_eq!(n, 86);
        assert_eq!(b[..6], ALL_NODES_MAC);
        assert_eq!(b[20], PROTO_ICMPV6);
        assert_eq!(b[21], 255);
        let icmp = &b[54..86];
        assert_eq!((icmp[0], icmp[4]), (136, 0x20));
        assert_eq!(icmp[8..24], vip);
        assert_eq!(icmp[24..32], [2, 1, 2, 0, 0, 0, 0, 0x11]);
        // The checksum over pseudo-header and message folds to zero,
        // summed here word by word independently of the builder.
        let mut acc = 0u32;
        for pair in vip
            .chunks(2)
            .chain(ALL_NODES.chunks(2))
            .chain(icmp.chunks(2))
        {
            acc += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        acc += 32 + 58;
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        assert_eq!(acc, 0xffff);
        assert_eq!(unsolicited_na(&mut b[..85], MAC, vip), None);
    }
}
