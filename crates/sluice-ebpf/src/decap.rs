//! `sluice_decap`, the real-server side of `tun`: strips an outer IPv4
//! (IPIP) or IPv6 (IP6IP6) header and passes the inner packet to the
//! kernel, which delivers it to the VIP on `lo`. The kernel here has no
//! ipip module, hence this program; a kernel with one can use an `ipip`
//! device instead (docs/REALSERVER.md). Everything else passes untouched.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_IPIP, PROTO_IPV6,
};
use crate::frame::{be16, ptr_at_mut, read};

#[xdp]
pub fn sluice_decap(ctx: XdpContext) -> u32 {
    match try_decap(&ctx) {
        Some(v) => v,
        None => xdp_action::XDP_PASS,
    }
}

/// The verdict for an encapsulated frame, `None` for anything else.
#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Option<u32> {
    let eth = read::<ETH_HDR_LEN>(ctx, 0)?;
    let (strip, inner_type) = match be16([eth[12], eth[13]]) {
        ETH_P_IP => {
            let ip = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            if ip[9] != PROTO_IPIP || ip[0] != 0x45 {
                return None;
            }
            // The inner packet must be a plain IPv4 header too.
            let inner = read::<1>(ctx, ETH_HDR_LEN + IPV4_HDR_LEN)?;
            if inner[0] >> 4 != 4 {
                return Some(xdp_action::XDP_DROP);
            }
            (IPV4_HDR_LEN, ETH_P_IP)
        }
        ETH_P_IPV6 => {
            let ip = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            if ip[6] != PROTO_IPV6 {
                return None;
            }
            let inner = read::<1>(ctx, ETH_HDR_LEN + IPV6_HDR_LEN)?;
            if inner[0] >> 4 != 6 {
                return Some(xdp_action::XDP_DROP);
            }
            (IPV6_HDR_LEN, ETH_P_IPV6)
        }
        _ => return None,
    };
    // SAFETY: shrinking the head by the outer header's length, which the
    // reads above proved is inside the frame; earlier packet pointers are
    // not used afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
        return Some(xdp_action::XDP_DROP);
    }
    let out = ptr_at_mut::<[u8; ETH_HDR_LEN]>(ctx, 0)?;
    let mut hdr = eth;
    hdr[12..14].copy_from_slice(&inner_type.to_be_bytes());
    // SAFETY: `ptr_at_mut` checked 14 bytes at the new start of the frame.
    unsafe { *out = hdr };
    Some(xdp_action::XDP_PASS)
}
