//! PROXY protocol v1 (text) and v2 (binary), sans-IO.
//!
//! Spec: <https://www.haproxy.org/download/2.8/doc/proxy-protocol.txt>.
//! [`parse`] works on whatever bytes have arrived so far and never panics: it
//! answers [`ParseError::Incomplete`] when more bytes are needed, and
//! [`ParseError::Invalid`] as soon as the bytes cannot start a valid header.
//! It never asks for more than [`V1_MAX_LEN_BYTES`] or
//! `V2_HEADER_LEN_BYTES + V2_MAX_PAYLOAD_BYTES` bytes, so a reader that feeds
//! it can bound its buffer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Longest v1 header, CRLF included (spec section 2.1: 107 bytes).
pub const V1_MAX_LEN_BYTES: usize = 107;

/// The 12-byte v2 signature.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Fixed part of a v2 header: signature, version/command, family, length.
pub const V2_HEADER_LEN_BYTES: usize = 16;

/// Largest v2 address-plus-TLV block accepted. The spec allows 65535; real
/// senders (HAProxy, AWS NLB, GCP) stay well below this, and the bound keeps
/// per-connection memory small.
pub const V2_MAX_PAYLOAD_BYTES: usize = 2048;

/// Largest buffer [`parse`] can need to reach a verdict.
pub const MAX_HEADER_LEN_BYTES: usize = V2_HEADER_LEN_BYTES + V2_MAX_PAYLOAD_BYTES;

const V1_PREFIX: &[u8] = b"PROXY ";

/// What a PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// A proxied connection: the original client (`src`) and the address it
    /// connected to (`dst`).
    Proxied {
        /// Original client address.
        src: SocketAddr,
        /// Original destination address.
        dst: SocketAddr,
    },
    /// v2 `LOCAL` command, v1 `UNKNOWN`, or an address family we do not carry
    /// (UNIX sockets): use the real peer address.
    Local,
}

/// Why [`parse`] gave no header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The bytes so far are a valid prefix; read more and call again.
    #[error("incomplete PROXY header")]
    Incomplete,
    /// The bytes are not a valid PROXY header.
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
}

/// Parse a v1 or v2 header at the start of `buf`.
///
/// On success returns the header and how many bytes it used; the rest of
/// `buf` is application data.
///
/// # Errors
///
/// [`ParseError::Incomplete`] if `buf` is a valid but unfinished prefix,
/// [`ParseError::Invalid`] otherwise.
pub fn parse(buf: &[u8]) -> Result<(ProxyHeader, usize), ParseError> {
    if buf.starts_with(&V2_SIGNATURE) {
        return parse_v2(buf);
    }
    if buf.starts_with(V1_PREFIX) {
        return parse_v1(buf);
    }
    let n = buf.len();
    if n < V2_SIGNATURE.len() && V2_SIGNATURE.starts_with(buf)
        || n < V1_PREFIX.len() && V1_PREFIX.starts_with(buf)
    {
        return Err(ParseError::Incomplete);
    }
    Err(ParseError::Invalid("no PROXY signature"))
}

fn parse_v1(buf: &[u8]) -> Result<(ProxyHeader, usize), ParseError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN_BYTES)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= V1_MAX_LEN_BYTES {
            return Err(ParseError::Invalid("v1 header longer than 107 bytes"));
        }
        return Err(ParseError::Incomplete);
    };
    let used = cr + 2;
    let line = std::str::from_utf8(&window[V1_PREFIX.len()..cr])
        .map_err(|_| ParseError::Invalid("v1 header not ASCII"))?;
    let mut parts = line.split(' ');
    let proto = parts
        .next()
        .ok_or(ParseError::Invalid("v1 missing protocol"))?;
    if proto == "UNKNOWN" {
        // The spec says the receiver must ignore anything after UNKNOWN.
        return Ok((ProxyHeader::Local, used));
    }
    let fields: Vec<&str> = parts.collect();
    let [src_ip, dst_ip, src_port, dst_port] = fields.as_slice() else {
        return Err(ParseError::Invalid("v1 needs exactly 4 address fields"));
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            IpAddr::V4(
                src_ip
                    .parse()
                    .map_err(|_| ParseError::Invalid("v1 bad IPv4 source"))?,
            ),
            IpAddr::V4(
                dst_ip
                    .parse()
                    .map_err(|_| ParseError::Invalid("v1 bad IPv4 destination"))?,
            ),
        ),
        "TCP6" => (
            IpAddr::V6(
                src_ip
                    .parse()
                    .map_err(|_| ParseError::Invalid("v1 bad IPv6 source"))?,
            ),
            IpAddr::V6(
                dst_ip
                    .parse()
                    .map_err(|_| ParseError::Invalid("v1 bad IPv6 destination"))?,
            ),
        ),
        _ => return Err(ParseError::Invalid("v1 unknown protocol")),
    };
    let src_port = parse_v1_port(src_port)?;
    let dst_port = parse_v1_port(dst_port)?;
    Ok((
        ProxyHeader::Proxied {
            src: SocketAddr::new(src_ip, src_port),
            dst: SocketAddr::new(dst_ip, dst_port),
        },
        used,
    ))
}

fn parse_v1_port(s: &str) -> Result<u16, ParseError> {
    // The spec forbids leading zeros and signs; `u16::from_str` accepts '+'.
    if s.is_empty()
        || s.len() > 5
        || !s.bytes().all(|b| b.is_ascii_digit())
        || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(ParseError::Invalid("v1 bad port"));
    }
    s.parse().map_err(|_| ParseError::Invalid("v1 bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<(ProxyHeader, usize), ParseError> {
    let Some(fixed) = buf.get(..V2_HEADER_LEN_BYTES) else {
        return Err(ParseError::Incomplete);
    };
    let ver_cmd = fixed[12];
    let family = fixed[13];
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(ParseError::Invalid("v2 bad version"));
    }
    if len > V2_MAX_PAYLOAD_BYTES {
        return Err(ParseError::Invalid("v2 payload too long"));
    }
    let total = V2_HEADER_LEN_BYTES + len;
    let Some(payload) = buf.get(V2_HEADER_LEN_BYTES..total) else {
        return Err(ParseError::Incomplete);
    };
    match ver_cmd & 0x0f {
        // LOCAL: health checks from the proxy itself; addresses are ignored.
        0x0 => return Ok((ProxyHeader::Local, total)),
        0x1 => {}
        _ => return Err(ParseError::Invalid("v2 unknown command")),
    }
    let header = match family >> 4 {
        0x1 => {
            let a = payload
                .get(..12)
                .ok_or(ParseError::Invalid("v2 IPv4 block too short"))?;
            let ip = |o: usize| Ipv4Addr::new(a[o], a[o + 1], a[o + 2], a[o + 3]);
            ProxyHeader::Proxied {
                src: SocketAddr::new(IpAddr::V4(ip(0)), u16::from_be_bytes([a[8], a[9]])),
                dst: SocketAddr::new(IpAddr::V4(ip(4)), u16::from_be_bytes([a[10], a[11]])),
            }
        }
        0x2 => {
            let a = payload
                .get(..36)
                .ok_or(ParseError::Invalid("v2 IPv6 block too short"))?;
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&a[o..o + 16]);
                Ipv6Addr::from(b)
            };
            ProxyHeader::Proxied {
                src: SocketAddr::new(IpAddr::V6(ip(0)), u16::from_be_bytes([a[32], a[33]])),
                dst: SocketAddr::new(IpAddr::V6(ip(16)), u16::from_be_bytes([a[34], a[35]])),
            }
        }
        // UNSPEC or AF_UNIX: the spec says to accept and use the real addresses.
        0x0 | 0x3 => ProxyHeader::Local,
        _ => return Err(ParseError::Invalid("v2 unknown address family")),
    };
    Ok((header, total))
}

/// Encode a v1 header. Mixed families are sent as IPv6 (IPv4-mapped), since
/// v1 carries one family per line.
pub fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let line = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            format!("PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port())
        }
        (s, d) => format!(
            "PROXY TCP6 {} {} {} {}\r\n",
            to_v6(s),
            to_v6(d),
            src.port(),
            dst.port()
        ),
    };
    line.into_bytes()
}

/// Encode a v2 `PROXY` command over TCP, without TLVs. Mixed families are
/// sent as IPv6 (IPv4-mapped).
pub fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(V2_HEADER_LEN_BYTES + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21); // version 2, PROXY
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // TCP over IPv4
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(0x21); // TCP over IPv6
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&to_v6(s).octets());
            out.extend_from_slice(&to_v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn v1_tcp4_roundtrip_with_trailing_data() {
        let mut buf = encode_v1(sa("192.0.2.1:5000"), sa("198.51.100.2:80"));
        assert_eq!(buf, b"PROXY TCP4 192.0.2.1 198.51.100.2 5000 80\r\n");
        let hdr_len = buf.len();
        buf.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (h, used) = parse(&buf).unwrap();
        assert_eq!(used, hdr_len);
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                src: sa("192.0.2.1:5000"),
                dst: sa("198.51.100.2:80")
            }
        );
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let buf = encode_v1(sa("[2001:db8::1]:1"), sa("[2001:db8::2]:65535"));
        let (h, _) = parse(&buf).unwrap();
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                src: sa("[2001:db8::1]:1"),
                dst: sa("[2001:db8::2]:65535")
            }
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n").unwrap(),
            (ProxyHeader::Local, 15)
        );
        assert_eq!(
            parse(b"PROXY UNKNOWN ff 1 2 3\r\nxx").unwrap(),
            (ProxyHeader::Local, 24)
        );
    }

    #[test]
    fn v1_mixed_family_encodes_as_v6() {
        let buf = encode_v1(sa("192.0.2.1:5000"), sa("[2001:db8::2]:80"));
        let (h, _) = parse(&buf).unwrap();
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                src: sa("[::ffff:192.0.2.1]:5000"),
                dst: sa("[2001:db8::2]:80")
            }
        );
    }

    #[test]
    fn v1_every_prefix_is_incomplete() {
        let buf = encode_v1(sa("192.0.2.1:5000"), sa("198.51.100.2:80"));
        for n in 0..buf.len() {
            assert_eq!(parse(&buf[..n]), Err(ParseError::Incomplete), "prefix {n}");
        }
    }

    #[test]
    fn v1_malformed() {
        let cases: &[&[u8]] = &[
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY \xff\xfe\r\n",
            b"PROXY\r\n",
            b"GET / HTTP/1.1\r\n",
        ];
        for c in cases {
            assert!(
                matches!(parse(c), Err(ParseError::Invalid(_))),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(200, b'1');
        assert!(matches!(parse(&long), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn v2_ipv4_fixture() {
        // Built by hand from the spec, not by encode_v2.
        let mut buf = V2_SIGNATURE.to_vec();
        buf.extend_from_slice(&[
            0x21, 0x11, 0x00, 0x0c, 10, 0, 0, 1, 10, 0, 0, 2, 0x1f, 0x90, 0x00, 0x50,
        ]);
        buf.extend_from_slice(b"rest");
        let (h, used) = parse(&buf).unwrap();
        assert_eq!(used, 28);
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                src: sa("10.0.0.1:8080"),
                dst: sa("10.0.0.2:80")
            }
        );
        assert_eq!(encode_v2(sa("10.0.0.1:8080"), sa("10.0.0.2:80")), buf[..28]);
    }

    #[test]
    fn v2_ipv6_with_tlvs_and_local() {
        let mut buf = encode_v2(sa("[2001:db8::1]:1234"), sa("[2001:db8::2]:443"));
        // Append a 5-byte TLV (type 0x04 NOOP) and fix the length: TLVs are skipped.
        buf.extend_from_slice(&[0x04, 0x00, 0x02, 0xaa, 0xbb]);
        buf[14..16].copy_from_slice(&(36u16 + 5).to_be_bytes());
        let (h, used) = parse(&buf).unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(
            h,
            ProxyHeader::Proxied {
                src: sa("[2001:db8::1]:1234"),
                dst: sa("[2001:db8::2]:443")
            }
        );
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        assert_eq!(parse(&local).unwrap(), (ProxyHeader::Local, 16));
    }

    #[test]
    fn v2_every_prefix_is_incomplete() {
        let buf = encode_v2(sa("[2001:db8::1]:1234"), sa("[2001:db8::2]:443"));
        for n in 0..buf.len() {
            assert_eq!(parse(&buf[..n]), Err(ParseError::Incomplete), "prefix {n}");
        }
    }

    #[test]
    fn v2_malformed() {
        let with = |ver_cmd: u8, fam: u8, len: u16, body: &[u8]| {
            let mut b = V2_SIGNATURE.to_vec();
            b.push(ver_cmd);
            b.push(fam);
            b.extend_from_slice(&len.to_be_bytes());
            b.extend_from_slice(body);
            b
        };
        let cases = [
            with(0x11, 0x11, 12, &[0; 12]),  // version 1
            with(0x22, 0x11, 12, &[0; 12]),  // command 2
            with(0x21, 0x11, 4, &[0; 4]),    // IPv4 block too short
            with(0x21, 0x21, 12, &[0; 12]),  // IPv6 block too short
            with(0x21, 0x41, 12, &[0; 12]),  // family 4
            with(0x21, 0x11, u16::MAX, &[]), // over the payload bound
            with(0x21, 0x11, (V2_MAX_PAYLOAD_BYTES + 1) as u16, &[]),
        ];
        for c in &cases {
            assert!(matches!(parse(c), Err(ParseError::Invalid(_))), "{c:?}");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: xorshift bytes, with and without signatures.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 64) as usize;
            let mut buf: Vec<u8> = (0..len)
                .map(|j| (x >> (j % 8 * 8)) as u8 ^ j as u8)
                .collect();
            let prefix: &[u8] = match i % 3 {
                0 => &V2_SIGNATURE,
                1 => V1_PREFIX,
                _ => &[],
            };
            buf.splice(0..0, prefix.iter().copied());
            if let Ok((_, used)) = parse(&buf) {
                assert!(used <= buf.len());
            }
        }
    }
}
