//! sluice's XDP programs, one object built for `bpfel-unknown-none`.
//!
//! `sluice_xdp`, the L4 DSR data path, is defined here; per packet:
//! 1. [`parse`]: Ethernet → IPv4/IPv6 (anything else: `XDP_PASS`, counted);
//!    destination not a VIP address → `XDP_PASS`; VIP traffic is validated
//!    (IPv4 options / IPv6 extension headers, fragments and truncated
//!    headers are dropped, counted).
//! 2. [`icmp`]: "fragmentation needed" / "packet too big" quoting a VIP
//!    flow is forwarded to the real serving that flow; other ICMP is passed.
//! 3. [`forward`]: the service (exact port, then port 0 = all ports) and
//!    its method; [`session`] lookup, else persistence and the scheduler
//!    ([`sched`]: ring hash, per-CPU cursor, or connection counts).
//! 4. [`xmit`]: `dr` (MAC rewrite), `tun` (IPIP / IP6IP6) or `nat`
//!    (destination address and port rewritten), `XDP_TX`; a `tun` packet
//!    too big for the egress MTU is answered with ICMP (`XDP_TX` back to
//!    the client) or dropped, counted.
//! 5. While some service uses `nat`, a TCP/UDP packet that is not for a
//!    VIP may be a real's reply, and an ICMP one an error from the reals'
//!    side about a flow: [`xmit::nat_reply`] sends it back to the client
//!    from the VIP (an error translated with its quoted packet) if it
//!    belongs to a live session, else passes it.
//!
//! The other programs of the object: `sluice_decap` ([`decap`], the real
//! server's side of `tun`), `sluice_toa` ([`toa`], the real server's TOA
//! reader for `fullnat`) and the lab's and benchmarks' helpers ([`lab`]).
//! [`maps`] holds every map, [`consts`] the wire constants, [`frame`] the
//! bounds-checked packet access.
//!
//! Shape (after aya-template): a thin `#[xdp]` entry calls code that
//! returns a verdict; every header read is bounds-checked against
//! `data_end` first. No per-packet logging; counters are per-CPU slots (see
//! `sluice_wire::maps::Counter`).
//!
//! Everything the data path calls is `#[inline(always)]` except the `lc`
//! family's loop (`sched::least_loaded`) and the `tun` too-big answer (a
//! global function the verifier checks once: `xmit/too_big.rs`); the two
//! directions of `nat` are programs of their own that `sluice_xdp`
//! tail-calls (`xmit/nat.rs`), so
//! `sluice_xdp` is essentially one BPF function, as it was in one file: the split into modules is for readers,
//! not for the verifier. The verifier walks every path of that function and
//! stops at 1,000,000 processed instructions; docs/ARCHITECTURE.md records
//! how much of that budget the program uses. Check it when adding paths (a
//! new method): the golden test fails to load the program past it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod consts;
#[cfg(target_arch = "bpf")]
mod decap;
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod frame;
#[cfg(target_arch = "bpf")]
mod icmp;
#[cfg(target_arch = "bpf")]
mod lab;
#[cfg(target_arch = "bpf")]
mod maps;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod sched;
#[cfg(target_arch = "bpf")]
mod session;
#[cfg(target_arch = "bpf")]
mod toa;
#[cfg(target_arch = "bpf")]
mod xmit;

#[cfg(target_arch = "bpf")]
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
#[cfg(target_arch = "bpf")]
use sluice_wire::maps::Counter;

/// The L4 data path (see the crate documentation).
#[cfg(target_arch = "bpf")]
#[xdp]
pub fn sluice_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    maps::count(Counter::RxPackets);
    maps::count_n(Counter::RxBytes, len);
    // One call site of `forward` keeps the verifier's work linear in the
    // number of parse paths instead of multiplying them.
    let r = match parse::process(&ctx, len) {
        Ok(parse::Step::Pass(c)) => {
            maps::count(c);
            return xdp_action::XDP_PASS;
        }
        Ok(parse::Step::Forward(p, icmp, meta, session)) => {
            forward::forward(&ctx, len, p, icmp, meta, session)
        }
        // Counts its own outcome (a reply sent back, or passed).
        Ok(parse::Step::NatReply) => return xmit::nat_reply(&ctx),
        Err(c) => Err(c),
    };
    match r {
        Ok(verdict) => verdict,
        Err(c) => {
            maps::count(c);
            xdp_action::XDP_DROP
        }
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this never runs;
    // `loop {}` keeps it a valid `!` without unsafe.
    loop {}
}

/// Host builds (clippy, `cargo build --workspace`) get an empty binary; the
/// real object is only meaningful for the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
