//! `tun` (L3 direct server return): an outer IPv4 (IPIP, protocol 4) or
//! IPv6 (IP6IP6, next header 41) header addressed to the real, then a new
//! Ethernet header to the next hop toward it. The real strips the outer
//! header (an `ipip` device, or `sluice_decap`) and answers the client
//! directly.
//!
//! The outer header carries the inner packet's traffic class (DSCP and
//! ECN); an outer IPv4 header has DF set and ID 0 (RFC 6864 allows any ID
//! on an atomic datagram; `sluice_wire::encap` says why). A packet that
//! would then exceed the egress MTU is not sent: [`super::too_big`]
//! answers the client or drops it.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use sluice_wire::{
    checksum, encap,
    hash::flow_hash,
    maps::{Counter, GlobalCfg, RealDef, VipMeta, addr_to_bytes, family, vip_flags},
};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, HASH_SEED, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_IPIP,
    PROTO_IPV6, TUN_TTL,
};
use crate::frame::{ptr_at_mut, read};
use crate::parse::Parsed;

use super::{Sent, too_big};

/// Prepends the outer header for real `r` of service `m` (`XDP_TX`), or,
/// when the result would exceed the egress MTU, answers the client or
/// drops the packet ([`too_big`]); `icmp` marks a forwarded ICMP error.
#[inline(always)]
pub(super) fn encap(
    ctx: &XdpContext,
    m: &VipMeta,
    r: &RealDef,
    p: &Parsed,
    icmp: bool,
    c: &GlobalCfg,
) -> Result<(u32, Sent), Counter> {
    let overhead = if r.family == family::V4 {
        encap::IPIP_OVERHEAD
    } else {
        encap::IP6IP6_OVERHEAD
    };
    let inner_len = (ctx.data_end() - ctx.data()) as u64 - p.l3_len as u64;
    // The kernel is asked for the egress MTU only when the packet could
    // exceed it: anything that fits the smallest MTU `tun` runs on fits.
    if !encap::surely_fits(inner_len as u32, overhead)
        && let Some(mtu) = too_big::exceeds_mtu(ctx, overhead)
    {
        let verdict = too_big::answer(ctx, p, icmp, mtu, overhead)?;
        return Ok((verdict, Sent::AnsweredTooBig));
    }
    let Some(first) = read::<2>(ctx, p.l3_len as usize) else {
        return Err(Counter::DropTruncated);
    };
    let tc = encap::traffic_class(p.key.family, first);
    let h = flow_hash(&p.key.src, p.key.sport, p.key.dport, p.key.proto, HASH_SEED);
    let vary = m.flags & vip_flags::TUN_VARY_SOURCE != 0;
    if r.family == family::V4 {
        let grow = IPV4_HDR_LEN as i32;
        // SAFETY: the helper is called with the program's own context; it
        // only moves `data` and invalidates earlier packet pointers, none of
        // which are used after this point.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN + IPV4_HDR_LEN]>(ctx, 0) else {
            return Err(Counter::DropEncapFailed);
        };
        let mut b = [0u8; ETH_HDR_LEN + IPV4_HDR_LEN];
        b[..6].copy_from_slice(&r.mac);
        b[6..12].copy_from_slice(&c.iface_mac);
        b[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        let total = (inner_len + IPV4_HDR_LEN as u64) as u16;
        let ip = &mut b[ETH_HDR_LEN..];
        ip[0] = 0x45;
        ip[1] = tc;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6..8].copy_from_slice(&encap::OUTER_V4_FLAGS.to_be_bytes());
        ip[8] = TUN_TTL;
        ip[9] = PROTO_IPIP;
        ip[12..16].copy_from_slice(&m.tun_src[0].to_ne_bytes());
        if vary {
            ip[14..16].copy_from_slice(&(h as u16).to_be_bytes());
        }
        ip[16..20].copy_from_slice(&r.addr[0].to_ne_bytes());
        let csum = checksum::finish(checksum::sum(ip, 0));
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        // SAFETY: `ptr_at_mut` checked the whole 34-byte range after the
        // head adjustment.
        unsafe { *out = b };
    } else {
        let grow = IPV6_HDR_LEN as i32;
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN + IPV6_HDR_LEN]>(ctx, 0) else {
            return Err(Counter::DropEncapFailed);
        };
        let mut b = [0u8; ETH_HDR_LEN + IPV6_HDR_LEN];
        b[..6].copy_from_slice(&r.mac);
        b[6..12].copy_from_slice(&c.iface_mac);
        b[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        let ip = &mut b[ETH_HDR_LEN..];
        // Version 6, the traffic class across the next 8 bits, and the
        // flow label from the flow hash, so ECMP/RSS on the way spread flows.
        ip[0] = 0x60 | (tc >> 4);
        ip[1] = (tc << 4) | ((h >> 16) & 0x0f) as u8;
        ip[2..4].copy_from_slice(&(h as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
        ip[6] = PROTO_IPV6;
        ip[7] = TUN_TTL;
        ip[8..24].copy_from_slice(&addr_to_bytes(m.tun_src));
        if vary {
            ip[20..24].copy_from_slice(&h.to_be_bytes());
        }
        ip[24..40].copy_from_slice(&addr_to_bytes(r.addr));
        // SAFETY: `ptr_at_mut` checked the whole 54-byte range.
        unsafe { *out = b };
    }
    Ok((xdp_action::XDP_TX, Sent::Forwarded))
}
