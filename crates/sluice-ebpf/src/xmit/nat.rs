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
//!   (`session::nat_session`; the reply moves the session's TCP state on),
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
    maps::{
        Addr, Counter, FlowKey, FlowVal, GlobalCfg, NatReverse, addr_to_bytes, family, nat_prog,
        tx_port,
    },
    nat::{
        self, L4Fields, Side,
        icmp::{
            ICMP_CHECK, IcmpFields, is_error_v4, is_error_v6, quoted_check_offset,
            quoted_check_present,
        },
    },
};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, ICMP_HDR_LEN, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_ICMP,
    PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_HDR_LEN, UDP_HDR_LEN,
};
use crate::forward::forwarded;
use crate::frame::{be16, ptr_at_mut, read, v4_addr, v6_addr};
use crate::icmp::quoted_flow;
use crate::maps::{
    NatForwardArgs, SLUICE_NAT_ARGS, SLUICE_NAT_PROGS, SLUICE_NAT_REVERSE, SLUICE_TX_PORTS, cfg,
    count, real,
};
use crate::session;

use super::dr::set_macs;

/// Sends the client's packet (of family `fam`) to the real in slot
/// `chosen`: hands over to [`sluice_nat_forward`], which rewrites, counts
/// and returns `XDP_TX` itself (`new_session`: the flow's session was
/// just made, so its reverse entry is due; `icmp`: the packet is an ICMP
/// error about the flow, whose quoted packet is translated). Returns only if the tail call
/// fails: a loader that did not install the program, counted as a method
/// this program cannot send with.
#[inline(always)]
pub(super) fn forward(
    ctx: &XdpContext,
    chosen: u32,
    fam: u8,
    new_session: bool,
    icmp: bool,
) -> Result<u32, Counter> {
    tail_args(chosen, fam, new_session, icmp, 0)?;
    // SAFETY: the context is this program's own and the map is a program
    // array; on success control never comes back here.
    unsafe { SLUICE_NAT_PROGS.tail_call(ctx, nat_prog::FORWARD) };
    Err(Counter::DropUnknownMethod)
}

/// Leaves the arguments of a forward program (`nat`'s or `fullnat`'s) in
/// this CPU's `SLUICE_NAT_ARGS` slot: the real's slot `chosen`, the
/// family, whether the session is new, whether the packet is an ICMP
/// error, and the service's index (`fullnat`).
#[inline(always)]
pub(super) fn tail_args(
    chosen: u32,
    fam: u8,
    new_session: bool,
    icmp: bool,
    vip_index: u32,
) -> Result<(), Counter> {
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
            icmp: u8::from(icmp),
            // Fits: vip_index < MAX_VIPS (64), checked by the loader.
            vip_slot: (vip_index + 1) as u8,
        }
    };
    Ok(())
}

/// A TCP/UDP/ICMP packet that is not for a VIP, while some service uses
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
/// new; or an ICMP error about the flow, translated for the real
/// (`icmp_forwarded`).
#[xdp]
pub fn sluice_nat_forward(ctx: XdpContext) -> u32 {
    let Some(a) = forward_args() else {
        count(Counter::DropUnknownMethod);
        return xdp_action::XDP_DROP;
    };
    let len = (ctx.data_end() - ctx.data()) as u64;
    let done = if a.icmp() {
        icmp_forward_in_frame(&ctx, a.chosen, a.family)
    } else {
        forward_in_frame(&ctx, a.chosen, a.family, a.new_session())
    };
    forward_verdict(done, &a, len)
}

/// The arguments `sluice_xdp` left for a forward program (`nat`'s or
/// `fullnat`'s) in this CPU's `SLUICE_NAT_ARGS` slot.
#[inline(always)]
pub(super) fn forward_args() -> Option<NatForwardArgs> {
    SLUICE_NAT_ARGS.get(0).copied()
}

/// The verdict of a forward program that did (`Ok`) or did not send the
/// packet of `a` (`len` bytes) to its real: forwarded and counted so
/// (to the real's traffic too), passed to the kernel (`pass_icmp`: an
/// ICMP error of a flow without the state to translate it), or dropped
/// and counted.
#[inline(always)]
pub(super) fn forward_verdict(done: Result<(), Counter>, a: &NatForwardArgs, len: u64) -> u32 {
    match done {
        Ok(()) => {
            forwarded(a.chosen, len, a.new_session(), a.icmp());
            leave_by(tx_port::REAL_SIDE)
        }
        Err(Counter::PassIcmp) => {
            count(Counter::PassIcmp);
            xdp_action::XDP_PASS
        }
        Err(c) => {
            count(c);
            xdp_action::XDP_DROP
        }
    }
}

/// `nat`, the real's direction: a real's reply sent back to its client
/// (`XDP_TX`, `tx_nat_reply`), an ICMP error from the reals' side about
/// a flow translated for its client (`tx_nat_icmp_reply`), or either
/// passed to the kernel untouched (`pass_non_vip` without a reverse
/// entry, `pass_nat_no_session` without a live session). A packet to a
/// local address is `fullnat`'s.
#[xdp]
pub fn sluice_nat_reply(ctx: XdpContext) -> u32 {
    let Some((fam, icmp)) = reply_frame(&ctx) else {
        count(Counter::PassNonVip);
        return xdp_action::XDP_PASS;
    };
    // A reply (or an ICMP error) to a local address is `fullnat`'s (no
    // return if so).
    super::fullnat::reply_if_local(&ctx, fam);
    if icmp {
        reply_verdict(icmp_reply_in_frame(&ctx, fam), Counter::TxNatIcmpReply)
    } else {
        reply_verdict(reply_in_frame(&ctx, fam), Counter::TxNatReply)
    }
}

/// The family of a frame a reply program got, and whether it carries
/// ICMP; `None` for a frame that is not IPv4/IPv6.
#[inline(always)]
pub(super) fn reply_frame(ctx: &XdpContext) -> Option<(u8, bool)> {
    let (fam, proto_at, icmp_proto) = match read::<2>(ctx, 12).map(be16) {
        Some(ETH_P_IP) => (family::V4, ETH_HDR_LEN + V4_PROTO, PROTO_ICMP),
        Some(ETH_P_IPV6) => (family::V6, ETH_HDR_LEN + V6_NEXT, PROTO_ICMPV6),
        _ => return None,
    };
    Some((fam, read::<1>(ctx, proto_at) == Some([icmp_proto])))
}

/// The verdict of a reply program that did (`Ok`) or did not send the
/// packet back to its client: sent and counted as `sent`, passed to the
/// kernel untouched (no reverse entry, no live session), or dropped and
/// counted.
#[inline(always)]
pub(super) fn reply_verdict(done: Result<(), Counter>, sent: Counter) -> u32 {
    match done {
        Ok(()) => {
            count(sent);
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
pub(super) fn leave_by(port: u32) -> u32 {
    match SLUICE_TX_PORTS.redirect(port, u64::from(xdp_action::XDP_TX)) {
        Ok(v) | Err(v) => v,
    }
}

/// The client's packet to the real.
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

/// A real's TCP/UDP reply to its client.
#[inline(always)]
fn reply_in_frame(ctx: &XdpContext, fam: u8) -> Result<(), Counter> {
    // Not a VIP's traffic: a frame too short for its TCP/UDP header is
    // not ours to judge, and passes untouched like any non-VIP packet.
    let (key, flags) = flow(ctx, fam).map_err(|_| Counter::PassNonVip)?;
    let (rev, c, sp, now) = reply_of(&key)?;
    session::reply_advance(sp, key.proto, flags, now);
    rewrite(ctx, fam, key.proto, Side::Source, &rev.vip, rev.vport)?;
    set_macs(ctx, rev.client_mac, c.iface_mac)
}

/// The reverse entry of flow `key` (real:rport → client:cport, as a
/// reply travels; for an ICMP error, the mirror of its quoted packet) and
/// its live `nat` session, with the configuration and the time of the
/// lookup; or why the packet is not a session's: no reverse entry
/// (`pass_non_vip`), no live session sent to that real (`pass_nat_no_session`).
#[inline(always)]
fn reply_of(key: &FlowKey) -> Result<(NatReverse, &'static GlobalCfg, *mut FlowVal, u64), Counter> {
    let Some(rev) = SLUICE_NAT_REVERSE.get_ptr(key) else {
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
    let fwd = nat::forward_key(key, &rev);
    let Some(sp) = session::nat_session(c, &fwd, &key.src, key.sport, now) else {
        return Err(Counter::PassNatNoSession);
    };
    Ok((rev, c, sp, now))
}

/// Offset of the protocol in an IPv4 header, of the next header in an
/// IPv6 one.
const V4_PROTO: usize = 9;
const V6_NEXT: usize = 6;
/// Offset of the total length in an IPv4 header.
const V4_TOTAL_LEN: usize = 2;
/// Offset of the payload length in an IPv6 header.
const V6_PAYLOAD_LEN: usize = 4;

/// Offset of the L4 (here: ICMP) header of a frame of family `fam`
/// (`parse` has checked: no IPv4 options, no IPv6 extension headers).
#[inline(always)]
pub(super) fn l4_offset(fam: u8) -> usize {
    if fam == family::V4 {
        ETH_HDR_LEN + IPV4_HDR_LEN
    } else {
        ETH_HDR_LEN + IPV6_HDR_LEN
    }
}

/// An ICMP error to a VIP about the `nat` flow `sluice_xdp` chose the
/// real in slot `chosen` for (frag-needed / packet-too-big about a reply
/// the LB rewrote, quoting VIP:vport → client): the quoted source becomes
/// the real's address and port, the outer destination the real, and the
/// error goes to it as the flow's packets do. The session (or the
/// scheduler's answer) is `forward`'s; nothing is recorded.
#[inline(always)]
fn icmp_forward_in_frame(ctx: &XdpContext, chosen: u32, fam: u8) -> Result<(), Counter> {
    let (Some(c), Some(r)) = (cfg(), real(chosen)) else {
        return Err(Counter::DropNoReal);
    };
    // The session key (client → VIP:vport), as `sluice_xdp` read it.
    let key = quoted_flow(ctx, l4_offset(fam), fam)?;
    let rport = nat::real_port(r.port, key.dport);
    translate_icmp(ctx, fam, key.proto, Side::Source, &r.addr, rport)?;
    set_macs(ctx, r.mac, c.real_side_mac)
}

/// An ICMP error not for a VIP (port unreachable, frag-needed, ...): if
/// it quotes a client's packet as a real received it (client →
/// RIP:rport) of a live `nat` session and goes to that client, it is
/// translated to come from the VIP about VIP:vport, and leaves for the
/// client as the session's replies do. The session is asked, not moved
/// on: an error is no segment of the connection.
#[inline(always)]
fn icmp_reply_in_frame(ctx: &XdpContext, fam: u8) -> Result<(), Counter> {
    let (rev, proto) = icmp_reply_session(ctx, fam)?;
    let Some(c) = cfg() else {
        return Err(Counter::PassNatNoSession);
    };
    translate_icmp(ctx, fam, proto, Side::Destination, &rev.vip, rev.vport)?;
    set_macs(ctx, rev.client_mac, c.iface_mac)
}

/// The reverse entry (and the quoted protocol) of the live `nat` session
/// the frame's ICMP error is about, if it is one ([`icmp_reply_in_frame`]).
#[inline(always)]
fn icmp_reply_session(ctx: &XdpContext, fam: u8) -> Result<(NatReverse, u8), Counter> {
    let l4 = l4_offset(fam);
    // Anything but an error about a flow of ours is not ours to judge:
    // passed untouched like any non-VIP packet.
    let Some(h) = read::<ICMP_HDR_LEN>(ctx, l4) else {
        return Err(Counter::PassNonVip);
    };
    let error = if fam == family::V4 {
        is_error_v4(h[0])
    } else {
        is_error_v6(h[0])
    };
    if !error {
        return Err(Counter::PassNonVip);
    }
    // The reply direction of the quoted packet: a reverse entry's key.
    let key = quoted_flow(ctx, l4, fam).map_err(|_| Counter::PassNonVip)?;
    if key.proto != PROTO_TCP && key.proto != PROTO_UDP {
        return Err(Counter::PassNonVip);
    }
    // An error goes to the quoted packet's source; one to anyone else is
    // not the client's to receive.
    let to = if fam == family::V4 {
        read::<4>(ctx, ETH_HDR_LEN + nat::v4_addr_offset(Side::Destination)).map(|a| v4_addr(&a, 0))
    } else {
        read::<16>(ctx, ETH_HDR_LEN + nat::v6_addr_offset(Side::Destination))
            .map(|a| v6_addr(&a, 0))
    };
    if to != Some(key.dst) {
        return Err(Counter::PassNonVip);
    }
    let (rev, _, _, _) = reply_of(&key)?;
    Ok((rev, key.proto))
}

/// Translates the frame's ICMP error (family `fam`, quoting a TCP/UDP
/// packet of protocol `proto`): the quoted packet's `side` becomes
/// `addr`:`port`, the outer header's other side `addr`, checksums
/// included (`sluice_wire::nat::icmp`).
#[inline(always)]
pub(super) fn translate_icmp(
    ctx: &XdpContext,
    fam: u8,
    proto: u8,
    side: Side,
    addr: &Addr,
    port: u16,
) -> Result<(), Counter> {
    let udp = proto == PROTO_UDP;
    if fam == family::V4 {
        translate_icmp_v4(ctx, udp, side, addr, port)
    } else {
        translate_icmp_v6(ctx, udp, side, addr, port)
    }
}

/// [`translate_icmp`] for IPv4: the two IP headers are changed in place
/// (copies of them were split into their bytes by the compiler and
/// spilled past the 512-byte stack; `sluice_wire::nat::icmp` computes
/// every checksum before its first store for the same reason), the ICMP
/// checksum and the quoted port and checksum through copies
/// ([`with_icmp_fields`]).
#[inline(always)]
fn translate_icmp_v4(
    ctx: &XdpContext,
    udp: bool,
    side: Side,
    addr: &Addr,
    port: u16,
) -> Result<(), Counter> {
    let a = addr_to_bytes(*addr);
    let icmp = ETH_HDR_LEN + IPV4_HDR_LEN;
    let (Some(total), Some(op), Some(qp)) = (
        read::<2>(ctx, ETH_HDR_LEN + V4_TOTAL_LEN),
        ptr_at_mut::<[u8; IPV4_HDR_LEN]>(ctx, ETH_HDR_LEN),
        ptr_at_mut::<[u8; IPV4_HDR_LEN]>(ctx, icmp + ICMP_HDR_LEN),
    ) else {
        return Err(Counter::DropTruncated);
    };
    let icmp_len = usize::from(be16(total)).saturating_sub(IPV4_HDR_LEN);
    with_icmp_fields(
        ctx,
        icmp,
        icmp_len,
        IPV4_HDR_LEN,
        side,
        udp,
        #[inline(always)]
        |f| {
            // SAFETY: `ptr_at_mut` checked that both headers are inside the
            // frame; `[u8; 20]` has alignment 1; they do not overlap each
            // other or the copies in `f`. In place, not copied: a copy is
            // split into its bytes, spilled to the stack.
            unsafe {
                nat::icmp::translate_v4(&mut *op, &mut *qp, f, side, [a[0], a[1], a[2], a[3]], port)
            }
        },
    )
}

/// [`translate_icmp`] for IPv6: only the two addresses change (no header
/// checksums), in place as in [`translate_icmp_v4`].
#[inline(always)]
fn translate_icmp_v6(
    ctx: &XdpContext,
    udp: bool,
    side: Side,
    addr: &Addr,
    port: u16,
) -> Result<(), Counter> {
    let a = addr_to_bytes(*addr);
    let icmp = ETH_HDR_LEN + IPV6_HDR_LEN;
    let (Some(len), Some(op), Some(qp)) = (
        read::<2>(ctx, ETH_HDR_LEN + V6_PAYLOAD_LEN),
        ptr_at_mut::<[u8; 16]>(ctx, ETH_HDR_LEN + nat::v6_addr_offset(side.other())),
        ptr_at_mut::<[u8; 16]>(ctx, icmp + ICMP_HDR_LEN + nat::v6_addr_offset(side)),
    ) else {
        return Err(Counter::DropTruncated);
    };
    with_icmp_fields(
        ctx,
        icmp,
        usize::from(be16(len)),
        IPV6_HDR_LEN,
        side,
        udp,
        #[inline(always)]
        |f| {
            // SAFETY: `ptr_at_mut` checked that both addresses are inside the
            // frame; `[u8; 16]` has alignment 1; they do not overlap each
            // other or the copies in `f`.
            unsafe { nat::icmp::translate_v6(&mut *op, &mut *qp, f, a, port) }
        },
    )
}

/// Runs `translate` on copies of the fields of the ICMP error at `icmp`
/// (an `icmp_len`-byte message quoting an IP header of `quoted_hdr_len`
/// bytes) that a translation of the quoted packet's `side` changes (the
/// quoted TCP/UDP checksum only if the quote reaches it), and writes them
/// back: six bytes, and `translate` may store them in any order.
#[inline(always)]
fn with_icmp_fields(
    ctx: &XdpContext,
    icmp: usize,
    icmp_len: usize,
    quoted_hdr_len: usize,
    side: Side,
    udp: bool,
    translate: impl FnOnce(IcmpFields<'_>),
) -> Result<(), Counter> {
    let quoted_l4 = icmp + ICMP_HDR_LEN + quoted_hdr_len;
    let (Some(ic), Some(pp)) = (
        ptr_at_mut::<[u8; 2]>(ctx, icmp + ICMP_CHECK),
        ptr_at_mut::<[u8; 2]>(ctx, quoted_l4 + nat::port_offset(side)),
    ) else {
        return Err(Counter::DropTruncated);
    };
    let cp = if quoted_check_present(icmp_len, quoted_hdr_len, udp) {
        ptr_at_mut::<[u8; 2]>(ctx, icmp + quoted_check_offset(quoted_hdr_len, udp))
    } else {
        None
    };
    // SAFETY: `ptr_at_mut` checked that every field is inside the frame;
    // `[u8; 2]` has alignment 1.
    let (mut check, mut port) = unsafe { (*ic, *pp) };
    let mut l4_check = match cp {
        // SAFETY: as above.
        Some(p) => unsafe { *p },
        None => [0; 2],
    };
    translate(IcmpFields {
        icmp_check: &mut check,
        port: &mut port,
        l4_check: if cp.is_some() {
            Some(&mut l4_check)
        } else {
            None
        },
        udp,
    });
    // SAFETY: as above; the fields (ICMP checksum, quoted port, quoted
    // checksum) never overlap each other or the two IP headers.
    unsafe {
        *ic = check;
        *pp = port;
        if let Some(p) = cp {
            *p = l4_check;
        }
    }
    Ok(())
}

/// The 5-tuple and TCP flags (0 for UDP) of the frame's TCP/UDP packet of
/// family `fam`, as sent.
#[inline(always)]
pub(super) fn flow(ctx: &XdpContext, fam: u8) -> Result<(FlowKey, u8), Counter> {
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
pub(super) fn rewrite(
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
