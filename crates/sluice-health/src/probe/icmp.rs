//! `icmp`: one echo request, one matching echo reply (ICMP for IPv4, ICMPv6
//! for IPv6).
//!
//! Socket: a raw ICMP socket (needs `CAP_NET_RAW`), else an unprivileged
//! "ping" datagram socket (allowed by `net.ipv4.ping_group_range`). The
//! socket is connected to the target, so the kernel only hands us packets
//! from its address. A reply matches on type, identifier (raw sockets only:
//! datagram sockets rewrite it to their own), sequence number and a random
//! token in the payload, so replies to other probes and stale replies are
//! skipped.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::time::Instant;

use super::checksum::internet_checksum;
use super::raw::AsyncSocket;
use super::{ProbeFailure, since};
use crate::rng::Rng;

/// Bytes read per received packet: IPv4 header (up to 60) plus our echo
/// (8 + [`PAYLOAD_LEN`]), rounded up. Longer packets are truncated.
const RECV_BUF_BYTES: usize = 128;
/// Echo payload: an 8-byte random token and a fixed tag.
const PAYLOAD_LEN: usize = 24;
/// Fixed tag after the token, to recognise our probes in a capture.
const PAYLOAD_TAG: &[u8; 16] = b"sluice-health\0\0\0";

const ECHO_REQUEST_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_REQUEST_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// An echo request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Echo {
    pub(crate) kind: u8,
    pub(crate) id: u16,
    pub(crate) seq: u16,
    pub(crate) token: u64,
}

/// Encodes an echo; the checksum is filled for ICMPv4 (the kernel fills it
/// for ICMPv6, whose checksum covers a pseudo-header).
pub(crate) fn encode(echo: &Echo, v6: bool) -> [u8; 8 + PAYLOAD_LEN] {
    let mut b = [0u8; 8 + PAYLOAD_LEN];
    b[0] = echo.kind;
    b[4..6].copy_from_slice(&echo.id.to_be_bytes());
    b[6..8].copy_from_slice(&echo.seq.to_be_bytes());
    b[8..16].copy_from_slice(&echo.token.to_be_bytes());
    b[16..].copy_from_slice(PAYLOAD_TAG);
    if !v6 {
        let sum = internet_checksum(&b);
        b[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    b
}

/// Decodes an ICMP message (no IP header) if it is an echo with code 0 and
/// at least the token in its payload.
pub(crate) fn decode(msg: &[u8]) -> Option<Echo> {
    let b = msg.get(..16)?;
    (b[1] == 0).then(|| Echo {
        kind: b[0],
        id: u16::from_be_bytes([b[4], b[5]]),
        seq: u16::from_be_bytes([b[6], b[7]]),
        token: u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    })
}

/// Skips the IPv4 header of a packet read from a raw IPv4 socket.
fn strip_ipv4(pkt: &[u8]) -> Option<&[u8]> {
    let first = *pkt.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    (first >> 4 == 4 && ihl >= 20)
        .then(|| pkt.get(ihl..))
        .flatten()
}

/// A raw socket if permitted, else a ping datagram socket; `true` if raw.
fn open(domain: Domain, protocol: Protocol) -> io::Result<(Socket, bool)> {
    match Socket::new(domain, Type::RAW, Some(protocol)) {
        Ok(s) => Ok((s, true)),
        Err(raw_err) => Socket::new(domain, Type::DGRAM, Some(protocol))
            .map(|s| (s, false))
            // Report the raw error: it names the missing privilege.
            .map_err(|_| raw_err),
    }
}

pub(crate) async fn probe(target: IpAddr) -> Result<Duration, ProbeFailure> {
    let io = |what: &'static str| move |e: io::Error| ProbeFailure::io(what, &e);
    let v6 = target.is_ipv6();
    let (domain, protocol) = if v6 {
        (Domain::IPV6, Protocol::ICMPV6)
    } else {
        (Domain::IPV4, Protocol::ICMPV4)
    };
    let (socket, raw) = open(domain, protocol).map_err(io("icmp socket"))?;
    socket
        .connect(&SockAddr::from(SocketAddr::new(target, 0)))
        .map_err(io("icmp connect"))?;
    let socket = AsyncSocket::new(socket).map_err(io("icmp socket"))?;

    let mut rng = Rng::from_entropy();
    let request = Echo {
        kind: if v6 { ECHO_REQUEST_V6 } else { ECHO_REQUEST_V4 },
        id: rng.next_u16(),
        seq: rng.next_u16(),
        token: rng.next_u64(),
    };
    let reply_kind = if v6 { ECHO_REPLY_V6 } else { ECHO_REPLY_V4 };
    let start = Instant::now();
    socket
        .send(&encode(&request, v6))
        .await
        .map_err(io("send echo"))?;

    let mut buf = [0u8; RECV_BUF_BYTES];
    loop {
        let n = socket.recv(&mut buf).await.map_err(io("receive"))?;
        let pkt = &buf[..n];
        // Only raw IPv4 sockets deliver the IP header.
        let msg = if raw && !v6 {
            strip_ipv4(pkt)
        } else {
            Some(pkt)
        };
        let Some(reply) = msg.and_then(decode) else {
            continue;
        };
        let ours = reply.kind == reply_kind
            && reply.seq == request.seq
            && reply.token == request.token
            && (!raw || reply.id == request.id);
        if ours {
            return Ok(since(start));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trips_with_valid_checksum() {
        let e = Echo {
            kind: ECHO_REQUEST_V4,
            id: 0x1234,
            seq: 7,
            token: 0x0102_0304_0506_0708,
        };
        let wire = encode(&e, false);
        assert_eq!(internet_checksum(&wire), 0, "checksum must verify");
        assert_eq!(decode(&wire), Some(e));
        let parsed = etherparse::Icmpv4Slice::from_slice(&wire).map(|s| s.icmp_type());
        assert_eq!(
            parsed.ok(),
            Some(etherparse::Icmpv4Type::EchoRequest(
                etherparse::IcmpEchoHeader { id: 0x1234, seq: 7 }
            ))
        );
    }

    #[test]
    fn short_or_coded_messages_are_not_echoes() {
        assert_eq!(decode(&[0; 15]), None);
        let mut m = [0u8; 16];
        m[1] = 3;
        assert_eq!(decode(&m), None);
        assert_eq!(strip_ipv4(&[0x60; 40]), None, "not IPv4");
        assert_eq!(strip_ipv4(&[0x4f; 40]), None, "header past the end");
    }
}
