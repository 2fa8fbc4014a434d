//! The Internet checksum (RFC 1071) and the TCP pseudo-headers.

use std::net::IpAddr;

/// IP protocol number of TCP.
pub(crate) const IPPROTO_TCP: u8 = 6;

/// One's-complement sum of `data` as big-endian 16-bit words, folded and
/// complemented. An odd trailing byte is padded with zero.
pub(crate) fn internet_checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    // The fold above leaves a 16-bit value.
    !(u16::try_from(sum).unwrap_or(u16::MAX))
}

/// Checksum of a TCP segment (its checksum field zero) with the IPv4 or
/// IPv6 pseudo-header of `src` → `dst`. Mixed families yield `None`.
pub(crate) fn tcp_checksum(src: IpAddr, dst: IpAddr, segment: &[u8]) -> Option<u16> {
    let len = u32::try_from(segment.len()).ok()?;
    let mut buf = Vec::with_capacity(40 + segment.len());
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            buf.extend_from_slice(&s.octets());
            buf.extend_from_slice(&d.octets());
            buf.extend_from_slice(&[0, IPPROTO_TCP]);
            buf.extend_from_slice(&u16::try_from(len).ok()?.to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            buf.extend_from_slice(&s.octets());
            buf.extend_from_slice(&d.octets());
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[0, 0, 0, IPPROTO_TCP]);
        }
        _ => return None,
    }
    buf.extend_from_slice(segment);
    Some(internet_checksum(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2
        // (after the end-around carry); the checksum is its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(internet_checksum(&data), !0xddf2);
        // A message with its checksum inserted sums to zero.
        let mut with = data.to_vec();
        with.extend_from_slice(&internet_checksum(&data).to_be_bytes());
        assert_eq!(internet_checksum(&with), 0);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(internet_checksum(&[0xab]), internet_checksum(&[0xab, 0]));
    }

    #[test]
    fn mixed_families_have_no_checksum() {
        let v4: IpAddr = "127.0.0.1".parse().unwrap_or(IpAddr::from([0u8; 4]));
        let v6: IpAddr = "::1".parse().unwrap_or(IpAddr::from([0u8; 16]));
        assert_eq!(tcp_checksum(v4, v6, &[0; 20]), None);
    }
}
