//! Oracle of the `proxy_protocol` fuzz target, shared with the replay test
//! `crates/sluice-proxy/tests/fuzz_replay.rs` (included there by path, so
//! the fuzzer and `cargo test` judge an input by the very same code).
//!
//! Each input is used twice:
//!
//! 1. As bytes off the wire, into [`parse`]: it must never panic; a header it
//!    accepts must be accepted alike with the trailing data cut off, every
//!    shorter prefix of it must be `Incomplete` (a reader that gets it one
//!    byte at a time waits, never rejects), and re-encoding its addresses as
//!    v1 and as v2 must parse back to the same header. `Incomplete` is only
//!    answered below the documented buffer bound, and `Invalid` is final
//!    (more bytes never turn it into a header).
//! 2. As the material for two socket addresses, round-tripped through
//!    [`encode_v1`] / [`encode_v2`] and [`parse`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use sluice_proxy::proxy_protocol::{
    MAX_HEADER_LEN_BYTES, ParseError, ProxyHeader, V1_MAX_LEN_BYTES, encode_v1, encode_v2, parse,
};

/// Bytes appended to a rejected input to check that the verdict is final:
/// a CRLF (ends a v1 line) followed by a v2-sized block of zeros.
const TAIL: &[u8] = &[b'\r', b'\n', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// Bytes of address material: family selector, two IPv6-sized addresses,
/// two ports.
const ADDR_MATERIAL_BYTES: usize = 1 + 16 + 16 + 2 + 2;

/// Runs every invariant on `data`; panics when one breaks.
pub(crate) fn check(data: &[u8]) {
    check_parse(data);
    check_roundtrip(data);
}

fn check_parse(data: &[u8]) {
    match parse(data) {
        Ok((header, used)) => {
            assert!(
                used > 0 && used <= data.len(),
                "used {used} of {} bytes",
                data.len()
            );
            assert_eq!(
                parse(&data[..used]),
                Ok((header, used)),
                "trailing data changed the header"
            );
            for n in 0..used {
                assert_eq!(
                    parse(&data[..n]),
                    Err(ParseError::Incomplete),
                    "prefix of {n} bytes of an accepted header"
                );
            }
            if let ProxyHeader::Proxied { src, dst } = header {
                assert_eq!(
                    src.is_ipv4(),
                    dst.is_ipv4(),
                    "one header, two families: {src} {dst}"
                );
                expect_roundtrip(src, dst, header);
            }
        }
        Err(ParseError::Incomplete) => assert!(
            data.len() < MAX_HEADER_LEN_BYTES,
            "Incomplete after {} bytes, past the {MAX_HEADER_LEN_BYTES}-byte bound",
            data.len()
        ),
        Err(ParseError::Invalid(why)) => {
            let mut more = data.to_vec();
            more.extend_from_slice(TAIL);
            assert!(
                matches!(parse(&more), Err(ParseError::Invalid(_))),
                "Invalid ({why}) became {:?} with more bytes",
                parse(&more)
            );
        }
    }
}

/// Encodes `src`/`dst` both ways; each must parse back to `expected`, use
/// exactly the encoded bytes, and ignore data after them.
fn expect_roundtrip(src: SocketAddr, dst: SocketAddr, expected: ProxyHeader) {
    for (version, mut wire) in [("v1", encode_v1(src, dst)), ("v2", encode_v2(src, dst))] {
        let len = wire.len();
        if version == "v1" {
            assert!(len <= V1_MAX_LEN_BYTES, "v1 encoding of {len} bytes");
        }
        assert_eq!(
            parse(&wire),
            Ok((expected, len)),
            "{version} round trip of {src} {dst}"
        );
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse(&wire),
            Ok((expected, len)),
            "{version} round trip of {src} {dst} with data after it"
        );
    }
}

/// Two socket addresses from the input (zero-padded when it is short): the
/// first byte picks the families (v4/v4, v6/v6 and both mixes).
fn check_roundtrip(data: &[u8]) {
    let mut m = [0u8; ADDR_MATERIAL_BYTES];
    let n = data.len().min(ADDR_MATERIAL_BYTES);
    m[..n].copy_from_slice(&data[..n]);
    let v4 = |at: usize| IpAddr::V4(Ipv4Addr::new(m[at], m[at + 1], m[at + 2], m[at + 3]));
    let v6 = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&m[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(b))
    };
    let (src_ip, dst_ip) = match m[0] % 4 {
        0 => (v4(1), v4(17)),
        1 => (v6(1), v6(17)),
        2 => (v4(1), v6(17)),
        _ => (v6(1), v4(17)),
    };
    let src = SocketAddr::new(src_ip, u16::from_be_bytes([m[33], m[34]]));
    let dst = SocketAddr::new(dst_ip, u16::from_be_bytes([m[35], m[36]]));
    // One line carries one family: a mixed pair is sent as IPv6, the IPv4
    // side mapped (`::ffff:a.b.c.d`).
    let expected = if src.is_ipv4() == dst.is_ipv4() {
        ProxyHeader::Proxied { src, dst }
    } else {
        ProxyHeader::Proxied {
            src: SocketAddr::new(IpAddr::V6(to_v6(src.ip())), src.port()),
            dst: SocketAddr::new(IpAddr::V6(to_v6(dst.ip())), dst.port()),
        }
    };
    expect_roundtrip(src, dst, expected);
}

fn to_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}
