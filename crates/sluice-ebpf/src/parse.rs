//! Ethernet → IPv4/IPv6 → TCP/UDP: what a frame is and whether it is for a
//! service. Ends in a [`Step`]: pass the frame to the kernel, drop it
//! (`Err(counter)`), or forward it ([`crate::forward`]).
//!
//! Two paths per family: [`fast_v4`] / [`fast_v6`] take the common case (a
//! well-formed, unfragmented TCP/UDP packet of an existing session or a
//! service) with one hash lookup; everything else takes [`process_v4`] /
//! [`process_v6`], which tell non-VIP traffic (passed, untouched) from
//! malformed VIP traffic (dropped, counted); while some service uses
//! `nat`, well-formed TCP/UDP/ICMP non-VIP traffic may be a real's reply
//! (or an ICMP error from the reals' side) and is handed to
//! `xmit::nat_reply` instead ([`Step::NatReply`]).

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::{Addr, Counter, FlowKey, VipMeta, family};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_ICMP, PROTO_ICMPV6,
    PROTO_TCP, PROTO_UDP, PROTO_V6_DEST_OPTS, PROTO_V6_FRAGMENT, PROTO_V6_HOP_BY_HOP,
    PROTO_V6_ROUTING, TCP_HDR_LEN, UDP_HDR_LEN,
};
use crate::frame::{be16, read, v4_addr, v6_addr};
use crate::icmp::{icmp_v4, icmp_v6};
use crate::maps::{is_vip_addr, lookup_service, nat_replies};
use crate::session::{Session, session_first};

/// Outcome of parsing: hand the frame to the kernel, or forward it.
pub(crate) enum Step {
    /// `XDP_PASS`, counting the reason.
    Pass(Counter),
    /// Forward a VIP packet; `true` marks a quoted flow of an ICMP error.
    /// The service is filled in when the fast path already looked it up,
    /// and what the fast path learnt of the session.
    Forward(Parsed, bool, Option<&'static VipMeta>, Session),
    /// A well-formed TCP/UDP/ICMP packet that is not for a VIP, while
    /// some service uses `nat`: maybe a real's reply or ICMP error
    /// ([`crate::xmit::nat_reply`]).
    NatReply,
}

/// What the L3/L4 parse found about a VIP packet.
pub(crate) struct Parsed {
    pub(crate) key: FlowKey,
    /// TCP flags (0 for UDP).
    pub(crate) tcp_flags: u8,
    /// Offset of the L3 header (always `ETH_HDR_LEN`).
    pub(crate) l3_len: u16,
}

/// Returns the verdict, or `Err(counter)` for a counted drop.
#[inline(always)]
pub(crate) fn process(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let Some(ethertype) = read::<2>(ctx, 12) else {
        return Err(Counter::DropTruncated);
    };
    match be16(ethertype) {
        ETH_P_IP => {
            if let Some(step) = fast_v4(ctx, len) {
                return Ok(step);
            }
            process_v4(ctx, len)
        }
        ETH_P_IPV6 => {
            if let Some(step) = fast_v6(ctx, len) {
                return Ok(step);
            }
            process_v6(ctx, len)
        }
        _ => Ok(Step::Pass(Counter::PassNonIp)),
    }
}

/// The common case in one service lookup: a well-formed, unfragmented
/// IPv4 TCP/UDP packet whose destination is a service. Anything else
/// (including every packet that is not for a service) returns `None` and
/// takes [`process_v4`], which tells non-VIP traffic from malformed VIP
/// traffic.
#[inline(always)]
fn fast_v4(ctx: &XdpContext, len: u64) -> Option<Step> {
    let hdr = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN)?;
    let total = be16([hdr[2], hdr[3]]) as u64;
    if hdr[0] != 0x45
        || be16([hdr[6], hdr[7]]) & 0x3fff != 0
        || total < IPV4_HDR_LEN as u64
        || total + (ETH_HDR_LEN as u64) > len
    {
        return None;
    }
    let proto = hdr[9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let src = v4_addr(&hdr, 12);
    let dst = v4_addr(&hdr, 16);
    let parsed = parse_l4(ctx, ETH_HDR_LEN + IPV4_HDR_LEN, src, dst, proto, family::V4).ok()?;
    let session = match session_first(&parsed.key) {
        Ok((meta, sp)) => {
            return Some(Step::Forward(parsed, false, Some(meta), Session::Found(sp)));
        }
        Err(s) => s,
    };
    let meta = lookup_service(&parsed.key)?;
    Some(Step::Forward(parsed, false, Some(meta), session))
}

/// [`fast_v4`] for IPv6: TCP/UDP directly after the fixed header.
#[inline(always)]
fn fast_v6(ctx: &XdpContext, len: u64) -> Option<Step> {
    let hdr = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN)?;
    let payload = be16([hdr[4], hdr[5]]) as u64;
    let next = hdr[6];
    if hdr[0] >> 4 != 6
        || payload + (ETH_HDR_LEN + IPV6_HDR_LEN) as u64 > len
        || (next != PROTO_TCP && next != PROTO_UDP)
    {
        return None;
    }
    let src = v6_addr(&hdr, 8);
    let dst = v6_addr(&hdr, 24);
    let parsed = parse_l4(ctx, ETH_HDR_LEN + IPV6_HDR_LEN, src, dst, next, family::V6).ok()?;
    let session = match session_first(&parsed.key) {
        Ok((meta, sp)) => {
            return Some(Step::Forward(parsed, false, Some(meta), Session::Found(sp)));
        }
        Err(s) => s,
    };
    let meta = lookup_service(&parsed.key)?;
    Some(Step::Forward(parsed, false, Some(meta), session))
}

#[inline(always)]
fn process_v4(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let o = ETH_HDR_LEN;
    let Some(hdr) = read::<IPV4_HDR_LEN>(ctx, o) else {
        return Err(Counter::DropTruncated);
    };
    let dst = v4_addr(&hdr, 16);
    if !is_vip_addr(&dst, family::V4) {
        let total = be16([hdr[2], hdr[3]]) as u64;
        let reply_shaped = hdr[0] == 0x45
            && be16([hdr[6], hdr[7]]) & 0x3fff == 0
            && total >= IPV4_HDR_LEN as u64
            && total + (ETH_HDR_LEN as u64) <= len
            && (hdr[9] == PROTO_TCP || hdr[9] == PROTO_UDP || hdr[9] == PROTO_ICMP);
        return Ok(not_for_a_vip(reply_shaped));
    }
    if hdr[0] >> 4 != 4 || hdr[0] & 0x0f < 5 {
        return Err(Counter::DropMalformed);
    }
    if hdr[0] & 0x0f != 5 {
        return Err(Counter::DropIpOptions);
    }
    let total = be16([hdr[2], hdr[3]]) as u64;
    if total < IPV4_HDR_LEN as u64 || total + (ETH_HDR_LEN as u64) > len {
        return Err(Counter::DropTruncated);
    }
    // More-fragments flag or a non-zero offset.
    if be16([hdr[6], hdr[7]]) & 0x3fff != 0 {
        return Err(Counter::DropFragment);
    }
    let src = v4_addr(&hdr, 12);
    let proto = hdr[9];
    let l4 = o + IPV4_HDR_LEN;
    match proto {
        PROTO_TCP | PROTO_UDP => {
            let parsed = parse_l4(ctx, l4, src, dst, proto, family::V4)?;
            Ok(Step::Forward(parsed, false, None, Session::Unknown))
        }
        PROTO_ICMP => icmp_v4(ctx, l4),
        _ => Ok(Step::Pass(Counter::PassNoService)),
    }
}

#[inline(always)]
fn process_v6(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let o = ETH_HDR_LEN;
    let Some(hdr) = read::<IPV6_HDR_LEN>(ctx, o) else {
        return Err(Counter::DropTruncated);
    };
    let dst = v6_addr(&hdr, 24);
    if !is_vip_addr(&dst, family::V6) {
        let payload = be16([hdr[4], hdr[5]]) as u64;
        let reply_shaped = hdr[0] >> 4 == 6
            && payload + (ETH_HDR_LEN + IPV6_HDR_LEN) as u64 <= len
            && (hdr[6] == PROTO_TCP || hdr[6] == PROTO_UDP || hdr[6] == PROTO_ICMPV6);
        return Ok(not_for_a_vip(reply_shaped));
    }
    if hdr[0] >> 4 != 6 {
        return Err(Counter::DropMalformed);
    }
    let payload = be16([hdr[4], hdr[5]]) as u64;
    if payload + (ETH_HDR_LEN + IPV6_HDR_LEN) as u64 > len {
        return Err(Counter::DropTruncated);
    }
    let src = v6_addr(&hdr, 8);
    let next = hdr[6];
    let l4 = o + IPV6_HDR_LEN;
    match next {
        PROTO_TCP | PROTO_UDP => {
            let parsed = parse_l4(ctx, l4, src, dst, next, family::V6)?;
            Ok(Step::Forward(parsed, false, None, Session::Unknown))
        }
        PROTO_ICMPV6 => icmp_v6(ctx, l4),
        PROTO_V6_FRAGMENT => Err(Counter::DropFragment),
        // Extension headers are not walked (see docs/L4.md).
        PROTO_V6_HOP_BY_HOP | PROTO_V6_ROUTING | PROTO_V6_DEST_OPTS => Err(Counter::DropIpOptions),
        _ => Ok(Step::Pass(Counter::PassNoService)),
    }
}

/// A packet not for a VIP: passed, untouched, unless it has the shape of
/// a `nat` real's reply (`reply_shaped`: TCP/UDP, or ICMP that may be an
/// error about a `nat` flow, without IPv4 options, IPv6 extension
/// headers or fragments) while some service uses `nat`.
#[inline(always)]
fn not_for_a_vip(reply_shaped: bool) -> Step {
    if reply_shaped && nat_replies() {
        Step::NatReply
    } else {
        Step::Pass(Counter::PassNonVip)
    }
}

/// Parses the TCP/UDP ports (and TCP flags) at `l4`.
#[inline(always)]
fn parse_l4(
    ctx: &XdpContext,
    l4: usize,
    src: Addr,
    dst: Addr,
    proto: u8,
    fam: u8,
) -> Result<Parsed, Counter> {
    let (ports, flags) = match proto {
        PROTO_TCP => {
            let Some(h) = read::<TCP_HDR_LEN>(ctx, l4) else {
                return Err(Counter::DropTruncated);
            };
            ([h[0], h[1], h[2], h[3]], h[13])
        }
        PROTO_UDP => {
            let Some(h) = read::<UDP_HDR_LEN>(ctx, l4) else {
                return Err(Counter::DropTruncated);
            };
            ([h[0], h[1], h[2], h[3]], 0)
        }
        // Callers only pass TCP or UDP.
        _ => return Err(Counter::DropMalformed),
    };
    Ok(Parsed {
        key: FlowKey {
            src,
            dst,
            sport: be16([ports[0], ports[1]]),
            dport: be16([ports[2], ports[3]]),
            proto,
            family: fam,
            _pad: 0,
        },
        tcp_flags: flags,
        l3_len: ETH_HDR_LEN as u16,
    })
}
