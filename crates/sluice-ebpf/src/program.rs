//! BPF-target code of `sluice_xdp`.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use sluice_wire::maps::Counter;

/// Per-CPU counters, one slot per [`Counter`].
#[map(name = "SLUICE_STATS")]
static SLUICE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;

#[inline(always)]
fn count(c: Counter, n: u64) {
    if let Some(slot) = SLUICE_STATS.get_ptr_mut(c as u32) {
        // SAFETY: the pointer comes from the map lookup of an in-range index
        // of a per-CPU array, so it is valid, aligned and only this CPU
        // touches it while this program runs (no preemption inside XDP).
        unsafe { *slot += n };
    }
}

/// Returns a pointer to a `T` at `offset` from the start of the frame, or
/// `None` if the frame is shorter. The explicit comparison against
/// `data_end` is what lets the verifier accept the later dereference.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[xdp]
pub fn sluice_xdp(ctx: XdpContext) -> u32 {
    try_sluice_xdp(&ctx)
}

#[inline(always)]
fn try_sluice_xdp(ctx: &XdpContext) -> u32 {
    count(Counter::RxPackets, 1);
    count(Counter::RxBytes, (ctx.data_end() - ctx.data()) as u64);
    let Some(ethertype) = ptr_at::<[u8; 2]>(ctx, ETH_HDR_LEN - 2) else {
        count(Counter::DropTruncated, 1);
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `ptr_at` checked that two bytes at this offset are inside the frame.
    let ethertype = u16::from_be_bytes(unsafe { *ethertype });
    match ethertype {
        ETH_P_IP | ETH_P_IPV6 => {
            count(Counter::PassNonVip, 1);
            xdp_action::XDP_PASS
        }
        _ => {
            count(Counter::PassNonIp, 1);
            xdp_action::XDP_PASS
        }
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never run;
    // `loop {}` keeps it a valid `!` without unsafe.
    loop {}
}
