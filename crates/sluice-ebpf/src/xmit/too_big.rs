//! A `tun` packet that would exceed the egress MTU once encapsulated.
//! Sent anyway, the driver would drop it after it was counted as
//! forwarded, and the client would never learn why. Instead the client
//! is told the MTU it may use, as a router would: ICMP "fragmentation
//! needed" for IPv4 with DF, ICMPv6 "packet too big", built in the frame
//! and sent back with `XDP_TX` (Katran's `send_icmp_too_big`). What may
//! not be answered is dropped and counted. The decision and the answer's
//! bytes are `sluice_wire::encap`'s (sans-IO, unit-tested); this module
//! applies them to the frame.
//!
//! The answer is a *global* BPF function ([`sluice_too_big`]): the
//! verifier checks it once, on its own, instead of once for every path
//! of `sluice_xdp` that reaches `tun` (inlined, it took the program past
//! the verifier's budget of 1,000,000 processed instructions). A global
//! function gets only the context and scalars, so it reads what it needs
//! from the frame and the configuration itself, and hands back the
//! counter of its outcome.

use aya_ebpf::{
    bindings::{bpf_check_mtu_ret, xdp_action, xdp_md},
    cty::c_void,
    helpers::{bpf_check_mtu, bpf_csum_diff, bpf_xdp_adjust_head, bpf_xdp_adjust_tail},
    programs::XdpContext,
};
use sluice_wire::{
    encap::{
        self, Oversize, V4_ANSWER_LEN, V4_GROW_LEN, V4_KEEP_LEN, V6_ANSWER_LEN, V6_GROW_LEN,
        V6_KEEP_LEN,
    },
    maps::{Counter, family},
};

use crate::consts::ETH_HDR_LEN;
use crate::frame::{be16, ptr_at_mut, read};
use crate::maps::cfg;
use crate::parse::Parsed;

/// The egress MTU, if the frame grown by `overhead` bytes would exceed it.
/// `XDP_TX` leaves through the interface the frame came in on, which is
/// the one `bpf_check_mtu` looks at with interface index 0. If the kernel
/// cannot tell (an error), the frame is sent as before.
#[inline(always)]
pub(super) fn exceeds_mtu(ctx: &XdpContext, overhead: u32) -> Option<u32> {
    // In: 0, i.e. measure the frame itself; out: the interface's MTU.
    let mut mtu: u32 = 0;
    // SAFETY: the helper is called with the program's own context and a
    // pointer to a live, aligned u32 on the stack, which it only writes;
    // flags 0 is the only value XDP accepts.
    let ret = unsafe { bpf_check_mtu(ctx.ctx as *mut c_void, 0, &mut mtu, overhead as i32, 0) };
    if ret == i64::from(bpf_check_mtu_ret::BPF_MTU_CHK_RET_FRAG_NEEDED) {
        Some(mtu)
    } else {
        None
    }
}

/// Answers or drops packet `p`, too big for `egress_mtu` with `overhead`
/// bytes of encapsulation; `icmp` marks a forwarded ICMP error. The
/// verdict of an answer (`XDP_TX`), or the counter of a drop.
#[inline(always)]
pub(super) fn answer(
    ctx: &XdpContext,
    p: &Parsed,
    icmp: bool,
    egress_mtu: u32,
    overhead: u32,
) -> Result<u32, Counter> {
    let outcome = sluice_too_big(
        ctx.ctx,
        egress_mtu,
        overhead,
        u32::from(p.key.family),
        u32::from(icmp),
    );
    if outcome == Counter::TxIcmpTooBig as u32 {
        Ok(xdp_action::XDP_TX)
    } else if outcome == Counter::DropEncapFailed as u32 {
        Err(Counter::DropEncapFailed)
    } else if outcome == Counter::DropTruncated as u32 {
        Err(Counter::DropTruncated)
    } else {
        Err(Counter::DropTooBig)
    }
}

/// The global BPF function behind [`answer`] (see the module
/// documentation): the frame behind `ctx` (inner packet of `family`,
/// `icmp` != 0 for a forwarded ICMP error) is too big for `egress_mtu`
/// with `overhead` bytes of encapsulation. Returns the slot of the
/// counter of what it did: `TxIcmpTooBig` (the frame is now the answer,
/// to be sent with `XDP_TX`), or the drop's.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn sluice_too_big(
    ctx: *mut xdp_md,
    egress_mtu: u32,
    overhead: u32,
    family: u32,
    icmp: u32,
) -> u32 {
    match answer_in_frame(
        &XdpContext::new(ctx),
        egress_mtu,
        overhead,
        family as u8,
        icmp != 0,
    ) {
        Ok(()) => Counter::TxIcmpTooBig as u32,
        Err(c) => c as u32,
    }
}

#[inline(always)]
fn answer_in_frame(
    ctx: &XdpContext,
    egress_mtu: u32,
    overhead: u32,
    inner_family: u8,
    icmp: bool,
) -> Result<(), Counter> {
    let Some(c) = cfg() else {
        return Err(Counter::DropTooBig);
    };
    let v4_flags = if inner_family == family::V4 {
        // Flags / fragment offset of the inner IPv4 header.
        match read::<2>(ctx, ETH_HDR_LEN + 6) {
            Some(b) => be16(b),
            None => return Err(Counter::DropTruncated),
        }
    } else {
        0
    };
    match encap::oversize(inner_family, v4_flags, icmp, egress_mtu, overhead) {
        Oversize::Drop => Err(Counter::DropTooBig),
        Oversize::FragNeeded(mtu) => {
            reshape(ctx, V4_KEEP_LEN, V4_GROW_LEN)?;
            let Some(f) = ptr_at_mut::<[u8; V4_ANSWER_LEN]>(ctx, 0) else {
                return Err(Counter::DropEncapFailed);
            };
            // SAFETY: `ptr_at_mut` checked that the whole answer is inside
            // the frame; nothing else refers to it while it is rewritten.
            encap::frag_needed_v4(unsafe { &mut *f }, c.iface_mac, mtu, frame_sum);
            Ok(())
        }
        Oversize::PacketTooBig(mtu) => {
            reshape(ctx, V6_KEEP_LEN, V6_GROW_LEN)?;
            let Some(f) = ptr_at_mut::<[u8; V6_ANSWER_LEN]>(ctx, 0) else {
                return Err(Counter::DropEncapFailed);
            };
            // SAFETY: as above.
            encap::packet_too_big_v6(unsafe { &mut *f }, c.iface_mac, mtu, frame_sum);
            Ok(())
        }
    }
}

/// Cuts the frame to its first `keep` bytes (the Ethernet header and the
/// quote), then grows its head by `grow` (the answer's IP and ICMP
/// headers).
#[inline(always)]
fn reshape(ctx: &XdpContext, keep: usize, grow: usize) -> Result<(), Counter> {
    let len = ctx.data_end() - ctx.data();
    // Too short to quote: only with an egress MTU below what IPv4 and
    // IPv6 allow for the answer (about 100 bytes).
    if len < keep {
        return Err(Counter::DropTooBig);
    }
    // Frames are far below 2 GiB: the cut fits an i32.
    let cut = (len - keep) as i32;
    // SAFETY: the helper is called with the program's own context; it
    // only moves `data_end` and invalidates earlier packet pointers, none
    // of which are used after this point.
    if unsafe { bpf_xdp_adjust_tail(ctx.ctx, -cut) } != 0 {
        return Err(Counter::DropEncapFailed);
    }
    // SAFETY: as above, for `data`.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(grow as i32)) } != 0 {
        return Err(Counter::DropEncapFailed);
    }
    Ok(())
}

/// The one's complement sum of `bytes` of the frame as big-endian words,
/// summed by the kernel in place (a loop over packet memory would need a
/// bounds proof per step). `bytes.len()` is a multiple of 4, a constant
/// after inlining, as the helper requires.
#[inline(always)]
fn frame_sum(bytes: &[u8]) -> u32 {
    // SAFETY: `bytes` lies inside the frame (a sub-slice of the answer
    // that `ptr_at_mut` checked); the helper only reads `bytes.len()`
    // bytes from it, and a null `from` of size 0 is its documented way to
    // sum `to` alone.
    let s = unsafe {
        bpf_csum_diff(
            core::ptr::null_mut(),
            0,
            bytes.as_ptr() as *mut u32,
            bytes.len() as u32,
            0,
        )
    };
    // A negative value is an error (a size the helper refuses), which the
    // sizes used here never are; it sums to garbage, never to a crash.
    let mut acc = s as u32;
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    // The kernel sums 16-bit words in memory order; a one's complement
    // sum of byte-swapped words is the byte-swapped sum (RFC 1071 §2 B).
    u32::from(u16::from_be(acc as u16))
}
