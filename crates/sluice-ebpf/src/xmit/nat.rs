//! `nat` (destination NAT with port translation). Both directions of a
//! flow cross the LB. One-arm (the reals on the LB's segment with their
//! default route via it), they leave with `XDP_TX` by the interface they
//! came in on; two-arm (`SLUICE_TX_PORTS` filled: a client-side and a
//! real-side interface), they are redirected to the other one
//! ([`leave_by`]).
//!
//! - A client's packet to VIP:vport goes to the real at RIP:rport (the
//!   real's port, or vport when it has none): destination address and
//!   port rewritten, MACs to the real's next hop as `dr` does. A new
//!   session also records its reverse entry (`SLUICE_NAT_REVERSE`): keyed
//!   by the 5-tuple of the real's replies, it holds VIP:vport and the MAC
//!   the client's packet came from.
//! - A real's reply (RIP:rport → client) that finds its reverse entry,
//!   and through it a live session that sends to that real
//!   (`session::nat_reply`, which also moves the session's TCP state on),
//!   goes back to the client from VIP:vport, to that MAC. A reply without
//!   a live session is passed to the kernel, never rewritten.
//!
//! The rewrites and their checksums are `sluice_wire::nat`'s (sans-IO,
//! unit-tested). Both directions are XDP programs of their own
//! ([`sluice_nat_forward`], [`sluice_nat_reply`]) that `sluice_xdp`
//! tail-calls through `SLUICE_NAT_PROGS`: a tail-called program gets a
//! stack of its own, where a BPF function's frame would add to
//! `sluice_xdp`'s (the kernel allows 512 bytes for a whole call chain,
//! and `sluice_xdp` uses 408), and the verifier checks each once. A tail
//! call carries no arguments, so each program reads the headers it needs
//! from the frame again (`parse` has checked their shape: no IPv4 options
//! or IPv6 extension headers, no fragments, TCP or UDP), and the forward
//! program takes the real's slot from `SLUICE_NAT_ARGS`. Neither returns
//! to `sluice_xdp`: each counts its own outcome.

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, macros::xdp, programs::XdpContext,
};
use sluice_wire::{
    maps::{Addr, Counter, FlowKey, NatReverse, addr_to_bytes, family, nat_prog, tx_port},
    nat::{self, L4Fields, Side},
};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_TCP, PROTO_UDP,
    TCP_HDR_LEN, UDP_HDR_LEN,
};
use crate::forward::forwarded;
use crate::frame::{be16, ptr_at_mut, read, v4_addr, v6_addr};
use crate::maps::{
    NatForwardArgs, SLUICE_NAT_ARGS, SLUICE_NAT_PROGS, SLUICE_NAT_REVERSE, SLUICE_TX_PORTS, cfg,
    count, real,
};
use crate::session;

use super::dr::set_macs;

/// Sends the client's packet (of family `fam`) to the real in slot
/// `chosen`: hands over to [`sluice_nat_forward`], which rewrites, counts
/// and returns `XDP_TX` itself (`new_session`: the flow's session was
/// just made, so its reverse entry is due). Returns only if the tail call
/// fails: a loader that did not install the program, counted as a method
/// this program cannot send with.
#[inline(always)]
pub(super) fn forward(
    ctx: &XdpContext,
    chosen: u32,
    fam: u8,
    new_session: bool,
) -> Result<u32, Counter> {
    let Some(args) = SLUICE_NAT_ARGS.get_ptr_mut(0) else {
        return Err(Counter::DropUnknownMethod);
    };
    // SAFETY: this CPU's slot of a per-CPU array, from a successful
    // lookup; nothing else uses it while this program runs.
    unsafe {
        *args = NatForwardArgs {
            chosen,
            family: fam,
            new_session: u8::from(new_session),
            _pad: 0,
        }
    };
    // SAFETY: the context is this program's own and the map is a program
    // array; on success control never comes back here.
    unsafe { SLUICE_NAT_PROGS.tail_call(ctx, nat_prog::FORWARD) };
    Err(Counter::DropUnknownMethod)
}

/// A TCP/UDP packet that is not for a VIP, while some service uses
/// `nat`: hands over to [`sluice_nat_reply`]. Returns (passing the packet
/// as non-VIP traffic) only if the tail call fails.
#[inline(always)]
pub(crate) fn reply(ctx: &XdpContext) -> u32 {
    // SAFETY: as in `forward`.
    unsafe { SLUICE_NAT_PROGS.tail_call(ctx, nat_prog::REPLY) };
    count(Counter::PassNonVip);
    xdp_action::XDP_PASS
}

/// `nat`, the client's direction: the packet `sluice_xdp` chose the real
/// in `SLUICE_NAT_ARGS` for goes there (`XDP_TX`, counted as forwarded,
/// to the real's traffic too), with its reverse entry if its session is
/// new.
#[xdp]
pub fn sluice_nat_forward(ctx: XdpContext) -> u32 {
    let Some(args) = SLUICE_NAT_ARGS.get(0) else {
        count(Counter::DropUnknownMethod);
        return xdp_action::XDP_DROP;
    };
    let a = *args;
    let len = (ctx.data_end() - ctx.data()) as u64;
    let new_session = a.new_session != 0;
    match forward_in_frame(&ctx, a.chosen, a.family, new_session) {
        Ok(()) => {
            forwarded(a.chosen, len, new_session, false);
            leave_by(tx_port::REAL_SIDE)
        }
        Err(c) => {
            count(c);
            xdp_action::XDP_DROP
        }
    }
}

/// `nat`, the real's direction: a real's reply sent back to its client
/// (`XDP_TX`, `tx_nat_reply`), or passed to the kernel untouched
/// (`pass_non_vip` without a reverse entry, `pass_nat_no_session` without
/// a live session).
#[xdp]
pub fn sluice_nat_reply(ctx: XdpContext) -> u32 {
    let fam = match read::<2>(&ctx, 12).map(be16) {
        Some(ETH_P_IP) => family::V4,
        Some(ETH_P_IPV6) => family::V6,
        _ => {
            count(Counter::PassNonVip);
            return xdp_action::XDP_PASS;
        }
    };
    match reply_in_frame(&ctx, fam) {
        Ok(()) => {
            count(Counter::TxNatReply);
            leave_by(tx_port::CLIENT_SIDE)
        }
        Err(c @ (Counter::PassNonVip | Counter::PassNatNoSession)) => {
            count(c);
            xdp_action::XDP_PASS
        }
        Err(c) => {
            count(c);
            xdp_action::XDP_DROP
        }
    }
}

/// The verdict of a rewritten packet: redirected to the interface in
/// `SLUICE_TX_PORTS` slot `port` (two-arm), or, with the slot empty
/// (one-arm), `XDP_TX` by the interface it came in on: the helper returns
/// the low bits of its flags when the lookup fails.
#[inline(always)]
fn leave_by(port: u32) -> u32 {
    match SLUICE_TX_PORTS.redirect(port, u64::from(xdp_action::XDP_TX)) {
        Ok(v) | Err(v) => v,
    }
}

#[inline(always)]
fn forward_in_frame(
    ctx: &XdpContext,
    chosen: u32,
    fam: u8,
    new_session: bool,
) -> Result<(), Counter> {
    let (Some(c), Some(r)) = (cfg(), real(chosen)) else {
        return Err(Counter::DropNoReal);
    };
    let Some(eth) = read::<ETH_HDR_LEN>(ctx, 0) else {
        return Err(Counter::DropTruncated);
    };
    let (key, _) = flow(ctx, fam)?;
    let rport = nat::real_port(r.port, key.dport);
    if new_session {
        let rev = NatReverse {
            vip: key.dst,
            vport: key.dport,
            client_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
        };
        // A full table evicts the least recently used entry of this CPU's
        // list; without its entry the flow's replies are passed to the
        // kernel (`pass_non_vip`), which costs the flow, not the LB.
        let _ = SLUICE_NAT_REVERSE.insert(&nat::reverse_key(&key, r.addr, rport), &rev, 0);
    }
    rewrite(
        ctx,
        key.family,
        key.proto,
        Side::Destination,
        &r.addr,
        rport,
    )?;
    set_macs(ctx, r.mac, c.real_side_mac)
}

#[inline(always)]
fn reply_in_frame(ctx: &XdpContext, fam: u8) -> Result<(), Counter> {
    // Not a VIP's traffic: a frame too short for its TCP/UDP header is
    // not ours to judge, and passes untouched like any non-VIP packet.
    let (key, flags) = flow(ctx, fam).map_err(|_| Counter::PassNonVip)?;
    let Some(rev) = SLUICE_NAT_REVERSE.get_ptr(&key) else {
        return Err(Counter::PassNonVip);
    };
    // SAFETY: value pointer from a successful lookup, valid for this run;
    // copied out.
    let rev = unsafe { *rev };
    let Some(c) = cfg() else {
        return Err(Counter::PassNatNoSession);
    };
    // SAFETY: reading the kernel's clock has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let fwd = nat::forward_key(&key, &rev);
    if !session::nat_reply(c, &fwd, &key.src, key.sport, flags, now) {
        return Err(Counter::PassNatNoSession);
    }
    rewrite(ctx, fam, key.proto, Side::Source, &rev.vip, rev.vport)?;
    set_macs(ctx, rev.client_mac, c.iface_mac)
}

/// The 5-tuple and TCP flags (0 for UDP) of the frame's TCP/UDP packet of
/// family `fam`, as sent.
#[inline(always)]
fn flow(ctx: &XdpContext, fam: u8) -> Result<(FlowKey, u8), Counter> {
    let (src, dst, proto, l4): (Addr, Addr, u8, usize) = if fam == family::V4 {
        let Some(h) = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN) else {
            return Err(Counter::DropTruncated);
        };
        (
            v4_addr(&h, 12),
            v4_addr(&h, 16),
            h[9],
            ETH_HDR_LEN + IPV4_HDR_LEN,
        )
    } else {
        let Some(h) = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN) else {
            return Err(Counter::DropTruncated);
        };
        (
            v6_addr(&h, 8),
            v6_addr(&h, 24),
            h[6],
            ETH_HDR_LEN + IPV6_HDR_LEN,
        )
    };
    let (ports, flags) = if proto == PROTO_TCP {
        let Some(t) = read::<TCP_HDR_LEN>(ctx, l4) else {
            return Err(Counter::DropTruncated);
        };
        ([t[0], t[1], t[2], t[3]], t[13])
    } else {
        let Some(u) = read::<UDP_HDR_LEN>(ctx, l4) else {
            return Err(Counter::DropTruncated);
        };
        ([u[0], u[1], u[2], u[3]], 0)
    };
    let key = FlowKey {
        src,
        dst,
        sport: be16([ports[0], ports[1]]),
        dport: be16([ports[2], ports[3]]),
        proto,
        family: fam,
        _pad: 0,
    };
    Ok((key, flags))
}

/// Rewrites `side`'s address and port of the frame's packet (family
/// `fam`, TCP or UDP) to `addr`:`port`, checksums included. Only the IP
/// header is copied; the port and checksum are changed in place, so the
/// program's stack stays small.
#[inline(always)]
fn rewrite(
    ctx: &XdpContext,
    fam: u8,
    proto: u8,
    side: Side,
    addr: &Addr,
    port: u16,
) -> Result<(), Counter> {
    let a = addr_to_bytes(*addr);
    let udp = proto == PROTO_UDP;
    let l4 = if fam == family::V4 {
        ETH_HDR_LEN + IPV4_HDR_LEN
    } else {
        ETH_HDR_LEN + IPV6_HDR_LEN
    };
    let (Some(pp), Some(cp)) = (
        ptr_at_mut::<[u8; 2]>(ctx, l4 + nat::port_offset(side)),
        ptr_at_mut::<[u8; 2]>(ctx, l4 + nat::check_offset(udp)),
    ) else {
        return Err(Counter::DropTruncated);
    };
    // SAFETY: `ptr_at_mut` checked that both fields are inside the frame;
    // `[u8; 2]` has alignment 1, and the two fields (a port, the
    // checksum) never overlap each other or the IP header.
    let l4f = unsafe {
        L4Fields {
            port: &mut *pp,
            check: &mut *cp,
            udp,
        }
    };
    if fam == family::V4 {
        let Some(ip) = ptr_at_mut::<[u8; IPV4_HDR_LEN]>(ctx, ETH_HDR_LEN) else {
            return Err(Counter::DropTruncated);
        };
        // SAFETY: `ptr_at_mut` checked that the header is inside the
        // frame; copied in and written back whole.
        let mut h = unsafe { *ip };
        nat::rewrite_v4(&mut h, l4f, side, [a[0], a[1], a[2], a[3]], port);
        // SAFETY: as above.
        unsafe { *ip = h };
    } else {
        let Some(ip) = ptr_at_mut::<[u8; IPV6_HDR_LEN]>(ctx, ETH_HDR_LEN) else {
            return Err(Counter::DropTruncated);
        };
        // SAFETY: as above.
        let mut h = unsafe { *ip };
        nat::rewrite_v6(&mut h, l4f, side, a, port);
        // SAFETY: as above.
        unsafe { *ip = h };
    }
    Ok(())
}
