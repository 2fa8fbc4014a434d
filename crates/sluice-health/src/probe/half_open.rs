//! `tcp-half-open`: SYN → SYN-ACK → RST, so the real's application never
//! `accept()`s the probe (the connection never leaves the SYN queue).
//!
//! How:
//! 1. The source address is what the kernel routes from (see
//!    [`source_for`]); an ephemeral source port is **reserved** by binding a
//!    plain TCP socket to it (never listening or connecting): no other
//!    connection can pick the port meanwhile, and the kernel still has no
//!    socket that would accept the SYN-ACK.
//! 2. A raw `IPPROTO_TCP` socket (IPv4: the kernel adds the IP header,
//!    `IP_HDRINCL` stays off; IPv6: raw sockets never carry the header), bound
//!    to the source and connected to the target so that it only receives
//!    segments from the target's address, sends a SYN with a random initial
//!    sequence number and a checksum computed over the pseudo-header.
//! 3. Segments are read (each truncated to [`RECV_BUF_BYTES`]) until one
//!    matches the 4-tuple: SYN+ACK acknowledging `isn + 1` is up; RST
//!    acknowledging it is down ("port closed"). Anything else is skipped;
//!    nothing matching before the timeout is down.
//! 4. An RST with `seq = their ack` ends the handshake on the real.
//!
//! The kernel sees the SYN-ACK too and, finding no socket for the port,
//! sends its own RST: the real receives two RSTs, the second of which it
//! ignores. That is harmless and the reason step 4 is belt and braces.
//!
//! Needs `CAP_NET_RAW`. IPv4 and IPv6.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tokio::time::Instant;

use super::checksum::{IPPROTO_TCP, tcp_checksum};
use super::raw::{AsyncSocket, source_for};
use super::{ProbeFailure, since};
use crate::rng::Rng;
use sluice_core::health::FailureReason;

/// Bytes read per received packet: the largest IPv4 header (60) plus the
/// largest TCP header (60), rounded up. Longer packets are truncated.
pub(crate) const RECV_BUF_BYTES: usize = 160;
/// TCP header length of our SYN: 20 bytes plus the 4-byte MSS option.
const SYN_LEN: usize = 24;
/// TCP header length of our RST (no options).
const RST_LEN: usize = 20;
/// MSS we announce (Ethernet MTU minus IPv6 and TCP headers; the value is
/// irrelevant since no data is ever sent).
const SYN_MSS: u16 = 1440;
/// Receive window we announce in the SYN.
const SYN_WINDOW: u16 = 64_240;

/// TCP flag bits.
pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const ACK: u8 = 0x10;

/// The fields of a TCP header the probe looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TcpView {
    pub(crate) src_port: u16,
    pub(crate) dst_port: u16,
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
}

/// Parses the fixed TCP header; `None` when shorter than 20 bytes or when
/// the data offset is impossible.
pub(crate) fn parse_tcp(seg: &[u8]) -> Option<TcpView> {
    let h = seg.get(..20)?;
    let data_offset = usize::from(h[12] >> 4) * 4;
    if data_offset < 20 {
        return None;
    }
    Some(TcpView {
        src_port: u16::from_be_bytes([h[0], h[1]]),
        dst_port: u16::from_be_bytes([h[2], h[3]]),
        seq: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ack: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        flags: h[13],
    })
}

/// The TCP payload of a raw IPv4 packet from `from`, or `None` if it is not
/// a first-fragment TCP packet from that address.
fn ipv4_tcp_payload(pkt: &[u8], from: IpAddr) -> Option<&[u8]> {
    let first = *pkt.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    let header = pkt.get(..ihl.max(20))?;
    let src = IpAddr::from([header[12], header[13], header[14], header[15]]);
    let fragment_offset = u16::from_be_bytes([header[6], header[7]]) & 0x1fff;
    (ihl >= 20 && header[9] == IPPROTO_TCP && src == from && fragment_offset == 0)
        .then(|| pkt.get(ihl..))
        .flatten()
}

/// A SYN (with an MSS option) or a bare RST, checksummed for `src` → `dst`.
pub(crate) fn build_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    flags: u8,
) -> Option<Vec<u8>> {
    let with_mss = flags & SYN != 0;
    let len = if with_mss { SYN_LEN } else { RST_LEN };
    let mut seg = vec![0u8; len];
    seg[0..2].copy_from_slice(&src.port().to_be_bytes());
    seg[2..4].copy_from_slice(&dst.port().to_be_bytes());
    seg[4..8].copy_from_slice(&seq.to_be_bytes());
    // ack (8..12) stays 0: neither segment carries the ACK flag.
    seg[12] = u8::try_from(len / 4).ok()? << 4;
    seg[13] = flags;
    if with_mss {
        seg[14..16].copy_from_slice(&SYN_WINDOW.to_be_bytes());
        // Option kind 2 (MSS), length 4.
        seg[20..24].copy_from_slice(&[2, 4, SYN_MSS.to_be_bytes()[0], SYN_MSS.to_be_bytes()[1]]);
    }
    let sum = tcp_checksum(src.ip(), dst.ip(), &seg)?;
    seg[16..18].copy_from_slice(&sum.to_be_bytes());
    Some(seg)
}

/// What a received segment means for a probe with initial sequence `isn`
/// from `local` port to `remote` port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// SYN-ACK acknowledging our SYN: the port listens.
    Open {
        /// Their `ack`, the sequence number our RST must carry.
        ack: u32,
    },
    /// RST acknowledging our SYN: closed.
    Closed,
    /// Not ours, or not an answer.
    Ignore,
}

pub(crate) fn classify(seg: &TcpView, local_port: u16, remote_port: u16, isn: u32) -> Verdict {
    if seg.src_port != remote_port || seg.dst_port != local_port {
        return Verdict::Ignore;
    }
    let acks_us = seg.flags & ACK != 0 && seg.ack == isn.wrapping_add(1);
    if !acks_us {
        return Verdict::Ignore;
    }
    if seg.flags & RST != 0 {
        Verdict::Closed
    } else if seg.flags & (SYN | FIN) == SYN {
        Verdict::Open { ack: seg.ack }
    } else {
        Verdict::Ignore
    }
}

pub(crate) async fn probe(target: SocketAddr) -> Result<Duration, ProbeFailure> {
    let io = |what: &'static str| move |e: std::io::Error| ProbeFailure::io(what, &e);
    let src_ip = source_for(target.ip()).map_err(io("route lookup"))?;
    let domain = Domain::for_address(target);

    // Reserve the source port (see the module docs).
    let reserve =
        Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(io("reserve port"))?;
    reserve
        .bind(&SockAddr::from(SocketAddr::new(src_ip, 0)))
        .map_err(io("reserve port"))?;
    let local = reserve
        .local_addr()
        .map_err(io("reserve port"))?
        .as_socket()
        .ok_or_else(|| ProbeFailure::other("reserved socket has no IP address"))?;

    let raw = Socket::new(domain, Type::RAW, Some(Protocol::TCP)).map_err(io("raw socket"))?;
    raw.bind(&SockAddr::from(SocketAddr::new(src_ip, 0)))
        .map_err(io("raw bind"))?;
    // Receive only from the target's address (raw sockets honour connect).
    raw.connect(&SockAddr::from(SocketAddr::new(target.ip(), 0)))
        .map_err(io("raw connect"))?;
    let raw = AsyncSocket::new(raw).map_err(io("raw socket"))?;

    let isn = Rng::from_entropy().next_u32();
    let syn = build_segment(local, target, isn, SYN)
        .ok_or_else(|| ProbeFailure::other("cannot build SYN"))?;
    let start = Instant::now();
    raw.send(&syn).await.map_err(io("send SYN"))?;

    let mut buf = [0u8; RECV_BUF_BYTES];
    loop {
        let n = raw.recv(&mut buf).await.map_err(io("receive"))?;
        let pkt = &buf[..n];
        let seg = match target.ip() {
            IpAddr::V4(_) => ipv4_tcp_payload(pkt, target.ip()),
            IpAddr::V6(_) => Some(pkt),
        };
        let Some(view) = seg.and_then(parse_tcp) else {
            continue;
        };
        match classify(&view, local.port(), target.port(), isn) {
            Verdict::Ignore => {}
            Verdict::Closed => {
                return Err(ProbeFailure::new(
                    FailureReason::Refused,
                    "port closed (RST to SYN)",
                ));
            }
            Verdict::Open { ack } => {
                let latency = since(start);
                // Best effort: the kernel's own RST (module docs) closes the
                // embryonic connection on the real anyway.
                if let Some(rst) = build_segment(local, target, ack, RST) {
                    let _ = raw.send(&rst).await;
                }
                drop(reserve);
                return Ok(latency);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn syn_matches_etherparse_checksum_v4_and_v6() {
        for (src, dst) in [
            (sa("10.1.2.3:40000"), sa("10.9.8.7:80")),
            (sa("[fd00::1]:40000"), sa("[fd00::2]:443")),
        ] {
            let seg = build_segment(src, dst, 0xdead_beef, SYN).unwrap_or_default();
            let parsed = etherparse::TcpHeaderSlice::from_slice(&seg).map(|h| h.to_header());
            let Ok(h) = parsed else {
                panic!("etherparse rejects our SYN: {parsed:?}");
            };
            assert!(h.syn && !h.ack && !h.rst);
            assert_eq!((h.source_port, h.destination_port), (40000, dst.port()));
            assert_eq!(h.sequence_number, 0xdead_beef);
            let expect = match (src.ip(), dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    h.calc_checksum_ipv4_raw(s.octets(), d.octets(), &[])
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &[])
                }
                _ => unreachable!(),
            };
            assert_eq!(Ok(h.checksum), expect);
        }
    }

    #[test]
    fn classification() {
        let isn = u32::MAX; // wraps: they must ack 0
        let v = |flags, ack, src_port| TcpView {
            src_port,
            dst_port: 5000,
            seq: 7,
            ack,
            flags,
        };
        assert_eq!(
            classify(&v(SYN | ACK, 0, 80), 5000, 80, isn),
            Verdict::Open { ack: 0 }
        );
        assert_eq!(
            classify(&v(RST | ACK, 0, 80), 5000, 80, isn),
            Verdict::Closed
        );
        assert_eq!(
            classify(&v(SYN | ACK, 1, 80), 5000, 80, isn),
            Verdict::Ignore
        );
        assert_eq!(
            classify(&v(SYN | ACK, 0, 81), 5000, 80, isn),
            Verdict::Ignore
        );
        assert_eq!(classify(&v(SYN, 0, 80), 5000, 80, isn), Verdict::Ignore);
        assert_eq!(classify(&v(RST, 0, 80), 5000, 80, isn), Verdict::Ignore);
    }

    #[test]
    fn truncated_or_foreign_packets_are_skipped() {
        let from: IpAddr = [127, 0, 0, 1].into();
        assert_eq!(parse_tcp(&[0; 19]), None);
        assert_eq!(ipv4_tcp_payload(&[], from), None);
        assert_eq!(ipv4_tcp_payload(&[0x45; 10], from), None);
        // IPv4 header, protocol UDP.
        let mut pkt = [0u8; 40];
        pkt[0] = 0x45;
        pkt[9] = 17;
        pkt[12..16].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(ipv4_tcp_payload(&pkt, from), None);
        pkt[9] = IPPROTO_TCP;
        assert_eq!(ipv4_tcp_payload(&pkt, from).map(<[u8]>::len), Some(20));
        assert_eq!(ipv4_tcp_payload(&pkt, [127, 0, 0, 2].into()), None);
        // A header length past the end.
        pkt[0] = 0x4f;
        assert_eq!(ipv4_tcp_payload(&pkt, from), None);
    }
}
