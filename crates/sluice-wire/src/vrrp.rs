//! The VRRPv3 advertisement (RFC 5798 section 5): its layout, building
//! one and checking a received one. Sans-IO: the caller gives the IP
//! header's source and destination (the checksum covers a pseudo-header
//! of them, for IPv4 too in version 3) and the TTL / hop limit it
//! received; the state machine that uses the result is
//! `sluice_core::vrrp`.
//!
//! ```text
//!  0                   1                   2                   3
//!  |Version| Type  | Virtual Rtr ID|   Priority    |Count IPvX Addr|
//!  |(rsvd) |     Max Adver Int     |          Checksum             |
//!  |                       IPvX Address(es)                        |
//! ```

use crate::checksum;

/// IP protocol number of VRRP.
pub const PROTO_VRRP: u8 = 112;
/// VRRP's version in this format.
pub const VERSION: u8 = 3;
/// The only packet type: an advertisement.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// The TTL / hop limit every advertisement is sent with, and the only one
/// accepted (it proves the sender is on the link).
pub const TTL: u8 = 255;
/// The fixed header's length (bytes).
pub const HEADER_LEN: usize = 8;
/// Most addresses one advertisement carries (the count is a byte).
pub const MAX_ADDRESSES: usize = 255;
/// IPv4 multicast destination of advertisements (224.0.0.18).
pub const MULTICAST_V4: [u8; 4] = [224, 0, 0, 18];
/// IPv6 multicast destination of advertisements (ff02::12).
pub const MULTICAST_V6: [u8; 16] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12];

/// An advertisement's fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Virtual router id (1..=255).
    pub vrid: u8,
    /// The sender's priority (0: it gives up mastership).
    pub priority: u8,
    /// How many addresses follow.
    pub count: u8,
    /// The sender's advertisement interval, centiseconds (12 bits).
    pub max_adver_int_cs: u16,
}

/// Why a received advertisement is discarded (RFC 5798 7.1), each a
/// counter of the receiving side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// TTL / hop limit not 255: not sent on this link.
    Ttl,
    /// Shorter than its header or its address list.
    Truncated,
    /// Not version 3.
    Version,
    /// Not an advertisement.
    Type,
    /// The checksum does not match.
    Checksum,
    /// Virtual router id 0, or an interval of 0.
    Field,
}

impl Invalid {
    /// Every reason, in a fixed order (the receiver's counters).
    pub const ALL: [Invalid; 6] = [
        Invalid::Ttl,
        Invalid::Truncated,
        Invalid::Version,
        Invalid::Type,
        Invalid::Checksum,
        Invalid::Field,
    ];

    /// Lower-case name, as the metrics and `sluice ctl` show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Invalid::Ttl => "ttl",
            Invalid::Truncated => "truncated",
            Invalid::Version => "version",
            Invalid::Type => "type",
            Invalid::Checksum => "checksum",
            Invalid::Field => "field",
        }
    }

    /// Its place in [`Invalid::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The checksum of an advertisement `packet` (its checksum field as it
/// is) from `src` to `dst` (4 or 16 bytes each): the one's complement sum
/// over the pseudo-header (addresses, protocol 112, length) and the
/// packet.
fn sum_with_pseudo(src: &[u8], dst: &[u8], packet: &[u8]) -> u16 {
    let len = packet.len() as u32;
    let mut acc = checksum::sum(src, 0);
    acc = checksum::sum(dst, acc);
    if src.len() == 16 {
        // IPv6: 32-bit length, 24 zero bits, next header.
        acc = checksum::add(acc, len >> 16);
        acc = checksum::add(acc, len & 0xffff);
    } else {
        acc = checksum::add(acc, len);
    }
    acc = checksum::add(acc, u32::from(PROTO_VRRP));
    checksum::finish(checksum::sum(packet, acc))
}

/// Writes an advertisement into `out` (at least `HEADER_LEN` + the
/// addresses' bytes): `h` and `addresses` (each 4 or 16 bytes, as `src`),
/// checksummed for `src` → `dst`. Returns its length, or `None` if `out`
/// is too short, the count does not match or the interval does not fit
/// 12 bits.
pub fn build(
    out: &mut [u8],
    h: &Header,
    addresses: &[&[u8]],
    src: &[u8],
    dst: &[u8],
) -> Option<usize> {
    if usize::from(h.count) != addresses.len() || h.max_adver_int_cs > 0x0fff {
        return None;
    }
    let alen = src.len();
    let len = HEADER_LEN + addresses.len() * alen;
    let out = out.get_mut(..len)?;
    out[0] = (VERSION << 4) | TYPE_ADVERTISEMENT;
    out[1] = h.vrid;
    out[2] = h.priority;
    out[3] = h.count;
    out[4..6].copy_from_slice(&h.max_adver_int_cs.to_be_bytes());
    out[6] = 0;
    out[7] = 0;
    for (i, a) in addresses.iter().enumerate() {
        if a.len() != alen {
            return None;
        }
        out[HEADER_LEN + i * alen..HEADER_LEN + (i + 1) * alen].copy_from_slice(a);
    }
    let c = sum_with_pseudo(src, dst, out);
    out[6..8].copy_from_slice(&c.to_be_bytes());
    Some(len)
}

/// Checks a received advertisement `packet` (the IP payload) from `src`
/// to `dst` (4 or 16 bytes each), received with TTL / hop limit `ttl`:
/// its header, or why it is discarded. The addresses follow the header
/// (`count` of `src.len()` bytes each).
pub fn parse(packet: &[u8], src: &[u8], dst: &[u8], ttl: u8) -> Result<Header, Invalid> {
    if ttl != TTL {
        return Err(Invalid::Ttl);
    }
    let Some(head) = packet.get(..HEADER_LEN) else {
        return Err(Invalid::Truncated);
    };
    if head[0] >> 4 != VERSION {
        return Err(Invalid::Version);
    }
    if head[0] & 0x0f != TYPE_ADVERTISEMENT {
        return Err(Invalid::Type);
    }
    let h = Header {
        vrid: head[1],
        priority: head[2],
        count: head[3],
        max_adver_int_cs: u16::from_be_bytes([head[4], head[5]]) & 0x0fff,
    };
    let len = HEADER_LEN + usize::from(h.count) * src.len();
    let Some(whole) = packet.get(..len) else {
        return Err(Invalid::Truncated);
    };
    // A correct checksum makes the sum over everything fold to zero.
    if sum_with_pseudo(src, dst, whole) != 0 {
        return Err(Invalid::Checksum);
    }
    if h.vrid == 0 || h.max_adver_int_cs == 0 {
        return Err(Invalid::Field);
    }
    Ok(h)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;

    use super::*;

    const SRC4: [u8; 4] = [10, 99, 0, 1];
    const VIP4: [u8; 4] = [10, 99, 255, 1];

    fn header() -> Header {
        Header {
            vrid: 51,
            priority: 100,
            count: 1,
            max_adver_int_cs: 100,
        }
    }

    #[test]
    fn an_advertisement_round_trips_and_its_checksum_holds() {
        let mut buf = [0u8; 64];
        let n = build(&mut buf, &header(), &[&VIP4], &SRC4, &MULTICAST_V4).unwrap();
        assert_eq!(n, 12);
        assert_eq!(buf[0], 0x31);
        assert_eq!(parse(&buf[..n], &SRC4, &MULTICAST_V4, 255), Ok(header()));
        // Received from another source: the pseudo-header differs.
        assert_eq!(
            parse(&buf[..n], &[10, 99, 0, 2], &MULTICAST_V4, 255),
            Err(Invalid::Checksum)
        );
        let src6 = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let vip6 = [0xfd, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
        let n6 = build(&mut buf, &header(), &[&vip6], &src6, &MULTICAST_V6).unwrap();
        assert_eq!(n6, 24);
        assert_eq!(parse(&buf[..n6], &src6, &MULTICAST_V6, 255), Ok(header()));
    }

    #[test]
    fn a_known_packet_checks_out() {
        // An advert for VRID 51, priority 100, 1 s, one address
        // 10.99.255.1, from 10.99.0.1 to 224.0.0.18, laid out by hand
        // after RFC 5798 5.1; its checksum summed word by word here,
        // independently of `sum_with_pseudo`. (Interop with keepalived's
        // own packets is issue 17's lab test.)
        let mut p = [0x31, 51, 100, 1, 0x00, 0x64, 0, 0, 10, 99, 255, 1];
        let mut acc = 0u32;
        for w in [
            0x0a63u32, 0x0001, 0xe000, 0x0012, 112, 12, 0x3133, 0x6401, 0x0064, 0x0a63, 0xff01,
        ] {
            acc += w;
        }
        while acc > 0xffff {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        let c = !(acc as u16);
        p[6..8].copy_from_slice(&c.to_be_bytes());
        assert_eq!(parse(&p, &SRC4, &MULTICAST_V4, 255), Ok(header()));
        let mut buf = [0u8; 12];
        build(&mut buf, &header(), &[&VIP4], &SRC4, &MULTICAST_V4).unwrap();
        assert_eq!(buf, p);
    }

    #[test]
    fn bad_advertisements_are_discarded_with_their_reason() {
        let mut buf = [0u8; 64];
        let n = build(&mut buf, &header(), &[&VIP4], &SRC4, &MULTICAST_V4).unwrap();
        let p = &buf[..n];
        assert_eq!(parse(p, &SRC4, &MULTICAST_V4, 254), Err(Invalid::Ttl));
        assert_eq!(
            parse(&p[..7], &SRC4, &MULTICAST_V4, 255),
            Err(Invalid::Truncated)
        );
        assert_eq!(
            parse(&p[..11], &SRC4, &MULTICAST_V4, 255),
            Err(Invalid::Truncated)
        );
        let mut v2 = p.to_vec();
        v2[0] = 0x21;
        assert_eq!(parse(&v2, &SRC4, &MULTICAST_V4, 255), Err(Invalid::Version));
        let mut t = p.to_vec();
        t[0] = 0x32;
        assert_eq!(parse(&t, &SRC4, &MULTICAST_V4, 255), Err(Invalid::Type));
        let mut c = p.to_vec();
        c[2] = 101;
        assert_eq!(parse(&c, &SRC4, &MULTICAST_V4, 255), Err(Invalid::Checksum));
        let zero = Header {
            vrid: 0,
            ..header()
        };
        let n = build(&mut buf, &zero, &[&VIP4], &SRC4, &MULTICAST_V4).unwrap();
        assert_eq!(
            parse(&buf[..n], &SRC4, &MULTICAST_V4, 255),
            Err(Invalid::Field)
        );
        // Garbage never panics.
        for len in 0..40 {
            let junk = [0x31u8; 40];
            let _ = parse(&junk[..len], &SRC4, &MULTICAST_V4, 255);
        }
        // Building refuses a count that does not match, a 13-bit interval
        // and a short buffer.
        assert_eq!(build(&mut buf, &header(), &[], &SRC4, &MULTICAST_V4), None);
        let long = Header {
            max_adver_int_cs: 0x1000,
            ..header()
        };
        assert_eq!(build(&mut buf, &long, &[&VIP4], &SRC4, &MULTICAST_V4), None);
        assert_eq!(
            build(&mut buf[..11], &header(), &[&VIP4], &SRC4, &MULTICAST_V4),
            None
        );
    }
}
