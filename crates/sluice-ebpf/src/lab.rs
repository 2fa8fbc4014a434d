//! Helper programs of the lab and the benchmarks, loaded from the same
//! object by `sluice_l4::HelperProgram` (not part of the data path).

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_xdp_adjust_head, macros::xdp, programs::XdpContext,
};
use sluice_wire::maps::Counter;

use crate::consts::{ETH_HDR_LEN, ETH_P_IP, IPV4_HDR_LEN, PROTO_IPIP};
use crate::frame::{be16, ptr_at_mut, read};
use crate::maps::count;

/// `XDP_PASS` for everything. Native XDP_TX into a veth needs an XDP
/// program on the receiving peer (docs/platform notes), so the lab attaches
/// this to the switch-side end of the LB's veth.
#[xdp]
pub fn sluice_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark baseline (a): swap the MACs and bounce every frame with
/// `XDP_TX`, the least work an XDP forwarder can do.
#[xdp]
pub fn sluice_reflect(ctx: XdpContext) -> u32 {
    count(Counter::RxPackets);
    let Some(eth) = ptr_at_mut::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `ptr_at_mut` checked 12 bytes at offset 0.
    let macs = unsafe { *eth };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    // SAFETY: as above.
    unsafe { *eth = swapped };
    xdp_action::XDP_TX
}

/// Benchmark bouncer (the generator side of a ping-pong pps run): counts,
/// strips an outer IPIP header if there is one (so `tun` frames come back
/// as the original packet), swaps the MACs and sends the frame back.
#[xdp]
pub fn sluice_bounce(ctx: XdpContext) -> u32 {
    bounce(&ctx, false)
}

/// [`sluice_bounce`] that also adds one to the IPv4 source address each
/// time, so every bounce is a new flow for the program under test.
#[xdp]
pub fn sluice_bounce_vary(ctx: XdpContext) -> u32 {
    bounce(&ctx, true)
}

/// Benchmark sink: count and drop (the generator side of a pps run).
#[xdp]
pub fn sluice_sink(_ctx: XdpContext) -> u32 {
    count(Counter::RxPackets);
    xdp_action::XDP_DROP
}

#[inline(always)]
fn bounce(ctx: &XdpContext, vary: bool) -> u32 {
    count(Counter::RxPackets);
    let Some(eth) = read::<ETH_HDR_LEN>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    if be16([eth[12], eth[13]]) == ETH_P_IP {
        if let Some(ip) = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN) {
            if ip[9] == PROTO_IPIP {
                // SAFETY: the outer header was just read, so it is inside
                // the frame; no packet pointer is kept across the call.
                if unsafe { bpf_xdp_adjust_head(ctx.ctx, IPV4_HDR_LEN as i32) } != 0 {
                    return xdp_action::XDP_DROP;
                }
            }
        }
    }
    let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    let mut hdr = [0u8; ETH_HDR_LEN];
    hdr[..6].copy_from_slice(&eth[6..12]);
    hdr[6..12].copy_from_slice(&eth[..6]);
    hdr[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    // SAFETY: `ptr_at_mut` checked 14 bytes at the (new) start.
    unsafe { *out = hdr };
    if vary {
        if let Some(src) = ptr_at_mut::<[u8; 4]>(ctx, ETH_HDR_LEN + 12) {
            // SAFETY: `ptr_at_mut` checked these 4 bytes.
            let a = u32::from_be_bytes(unsafe { *src }).wrapping_add(1);
            // SAFETY: as above.
            unsafe { *src = a.to_be_bytes() };
        }
    }
    xdp_action::XDP_TX
}
