//! `dr` (L2 direct server return): the destination MAC becomes the real's,
//! the source MAC ours; the IP packet is not touched, because the real
//! holds the VIP on its loopback and answers the client directly.

use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use sluice_wire::maps::{Counter, GlobalCfg, RealDef};

use crate::frame::ptr_at_mut;

/// Destination MAC := the real's, source MAC := ours; `XDP_TX`.
#[inline(always)]
pub(super) fn rewrite_macs(ctx: &XdpContext, r: &RealDef, c: &GlobalCfg) -> Result<u32, Counter> {
    set_macs(ctx, r.mac, c.iface_mac)?;
    Ok(xdp_action::XDP_TX)
}

/// Writes the frame's destination and source MACs (also `nat`'s, both
/// ways: to the real's next hop, and back to the client's).
#[inline(always)]
pub(super) fn set_macs(ctx: &XdpContext, dst: [u8; 6], src: [u8; 6]) -> Result<(), Counter> {
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return Err(Counter::DropTruncated);
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(&dst);
    macs[6..].copy_from_slice(&src);
    // SAFETY: `ptr_at_mut` checked that 12 bytes at offset 0 are in the frame.
    unsafe { *eth = macs };
    Ok(())
}
