//! `tun` (L3 direct server return): an outer IPv4 (IPIP, protocol 4) or
//! IPv6 (IP6IP6, next header 41) header addressed to the real, then a new
//! Ethernet header to the next hop toward it. The real strips the outer
//! header (an `ipip` device, or `sluice_decap`) and answers the client
//! directly.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_xdp_adjust_head, programs::XdpContext};
use sluice_wire::{
    checksum,
    hash::flow_hash,
    maps::{Counter, GlobalCfg, RealDef, VipMeta, addr_to_bytes, family, vip_flags},
};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, HASH_SEED, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_IPIP,
    PROTO_IPV6, TUN_TTL,
};
use crate::frame::ptr_at_mut;
use crate::parse::Parsed;

/// Prepends the outer header for real `r` of service `m`; `XDP_TX`.
#[inline(always)]
pub(super) fn encap(
    ctx: &XdpContext,
    m: &VipMeta,
    r: &RealDef,
    p: &Parsed,
    c: &GlobalCfg,
) -> Result<u32, Counter> {
    let inner_len = (ctx.data_end() - ctx.data()) as u64 - p.l3_len as u64;
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
        ip[2..4].copy_from_slice(&total.to_be_bytes());
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
        ip[0] = 0x60;
        // Flow label from the flow hash, so ECMP/RSS on the way spread flows.
        ip[1] = ((h >> 16) & 0x0f) as u8;
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
    Ok(xdp_action::XDP_TX)
}
