//! Hand-built frames for the golden tests and the test-run benchmarks (we
//! own these bytes, so malformed variants are easy to make). Every frame
//! goes from [`CLIENT_MAC`] to [`LB_MAC`].

use sluice_wire::checksum;

/// MAC of the load balancer's interface in the fixtures.
pub const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the client in the fixtures.
pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// An Ethernet header: `dst`, `src`, EtherType `ty`.
#[must_use]
pub fn eth(dst: [u8; 6], src: [u8; 6], ty: u16) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ty.to_be_bytes());
    f
}

/// A TCP segment with `flags` and a short HTTP request as payload (the
/// checksum is left 0: XDP never checks it).
#[must_use]
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4;
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(b"GET / HTTP/1.1\r\n");
    t
}

/// A UDP datagram carrying `ping`.
#[must_use]
pub fn udp(sport: u16, dport: u16) -> Vec<u8> {
    let mut u = vec![0u8; 8];
    u[0..2].copy_from_slice(&sport.to_be_bytes());
    u[2..4].copy_from_slice(&dport.to_be_bytes());
    u[4..6].copy_from_slice(&(8u16 + 4).to_be_bytes());
    u.extend_from_slice(b"ping");
    u
}

/// An IPv4 header without options, with a valid checksum, for a payload of
/// `payload_len` bytes; `frag` is the flags-and-offset field.
#[must_use]
pub fn ipv4_hdr(src: [u8; 4], dst: [u8; 4], proto: u8, payload_len: usize, frag: u16) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0] = 0x45;
    h[2..4].copy_from_slice(&((20 + payload_len) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h[8] = 64;
    h[9] = proto;
    h[12..16].copy_from_slice(&src);
    h[16..20].copy_from_slice(&dst);
    let c = checksum::finish(checksum::sum(&h, 0));
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h
}

/// A whole IPv4 frame (don't-fragment set) around the L4 bytes `l4`.
#[must_use]
pub fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(LB_MAC, CLIENT_MAC, 0x0800);
    f.extend(ipv4_hdr(src, dst, proto, l4.len(), 0x4000));
    f.extend_from_slice(l4);
    f
}

/// A whole IPv6 frame with next header `next` around the L4 bytes `l4`.
#[must_use]
pub fn v6(src: [u8; 16], dst: [u8; 16], next: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = eth(LB_MAC, CLIENT_MAC, 0x86dd);
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64;
    h[8..24].copy_from_slice(&src);
    h[24..40].copy_from_slice(&dst);
    f.extend(h);
    f.extend_from_slice(l4);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_frames_have_a_valid_header_checksum() {
        let f = v4([10, 99, 0, 2], [10, 99, 255, 1], 6, &tcp(40000, 80, 0x10));
        assert_eq!(f.len(), 14 + 20 + 20 + 16);
        assert_eq!(&f[..6], &LB_MAC);
        // Summing a header with its checksum in place gives 0xffff.
        assert_eq!(checksum::finish(checksum::sum(&f[14..34], 0)), 0);
        assert_eq!(u16::from_be_bytes([f[16], f[17]]), 56);
    }

    #[test]
    fn ipv6_frames_carry_the_payload_length() {
        let f = v6([1; 16], [2; 16], 17, &udp(5353, 53));
        assert_eq!(&f[12..14], &[0x86, 0xdd]);
        assert_eq!(u16::from_be_bytes([f[18], f[19]]), 12);
        assert_eq!(&f[f.len() - 4..], b"ping");
    }
}
