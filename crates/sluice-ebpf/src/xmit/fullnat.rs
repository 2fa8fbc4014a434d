//! `fullnat`: source and destination NAT. The client's packet to VIP:vport
//! leaves from one of the service's local addresses and a local port to
//! the real at RIP:rport; the real answers the LB (no route to clients
//! needed), and its reply leaves from VIP:vport to the client. One-arm
//! (`XDP_TX`), or two-arm like `nat` (`SLUICE_TX_PORTS`).
//!
//! - A new flow gets its local end here, not in `forward`: the first
//!   local address of the service (in its order) with a free port in this
//!   CPU's share (`sluice_wire::fullnat::cpu_port`; [`PORT_PROBES`]
//!   candidates: the one at this CPU's cursor, then others a random stride
//!   apart). A port is free when no reverse
//!   entry holds it for this real and port, or the entry's session is
//!   gone (expired, replaced, or using another port now) and its
//!   quarantine after the real's last reply is over (the real's
//!   TIME_WAIT: `sluice_wire::fullnat::in_use`). Claiming it is
//!   an insert with `BPF_NOEXIST` (or, over a dead entry, `BPF_EXIST`):
//!   the hash's bucket lock makes it atomic, and the per-CPU shares mean
//!   that two CPUs never race for one port anyway. No free port: the
//!   packet is dropped, counted (`drop_fullnat_no_port`), no session made.
//! - The session (`SLUICE_SESSIONS`, keyed by the client's 5-tuple) keeps
//!   the local end, so the flow's later packets take the same one; the
//!   reverse entry (`SLUICE_FULLNAT_REVERSE`, keyed by the real's reply)
//!   keeps the client end. Both are read by any CPU.
//! - A reply to a local address is matched to its reverse entry, then to
//!   a live session that still uses that real and that local end
//!   (`session::fullnat_session`), moves the session on, and is sent
//!   back; anything else is passed to the kernel untouched.
//!
//! - A TCP service with TOA on (`vip_flags::TOA`) inserts the client's
//!   address and port into each connection's first ACK ([`add_toa`]).
//!
//! - ICMP errors about a flow are translated both ways: a client's about
//!   a reply (to the VIP) goes to the real as an error about the real's
//!   own reply, and one from the reals' side to a local address goes to
//!   the client as an error about the client's packet, from the VIP.

use aya_ebpf::{
    bindings::{BPF_EXIST, BPF_NOEXIST, xdp_action},
    helpers::{bpf_get_prandom_u32, bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns},
    macros::xdp,
    programs::XdpContext,
};
use sluice_wire::{
    fullnat::{
        self, FullnatKey, FullnatReverse, LocalAddr, MAX_LOCAL_ADDRS_PER_VIP, PORT_PROBES,
        cpu_port, cpu_port_count,
    },
    maps::{
        AddrKey, Counter, FlowKey, GlobalCfg, RealDef, VipMeta, family, nat_prog, tx_port,
        vip_flags,
    },
    nat::{
        self, Side,
        icmp::{is_error_v4, is_error_v6},
    },
};

use crate::consts::{
    ETH_HDR_LEN, ICMP_HDR_LEN, LAST_SEEN_GRANULARITY_NS, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_RST,
    TCP_SYN,
};
use crate::forward::forwarded;
use crate::frame::read;
use crate::icmp::quoted_flow;
use crate::maps::{
    SLUICE_FULLNAT_REVERSE, SLUICE_LOCAL_ADDRS, SLUICE_LOCAL_CURSOR, SLUICE_LOCAL_INDEX,
    SLUICE_NAT_ARGS, SLUICE_NAT_PROGS, SLUICE_SESSIONS, SLUICE_VIP_BY_INDEX, SLUICE_VIP_LOCALS,
    cfg, count, real,
};
use crate::session::{self, LocalEnd};

use super::add_toa::{self, Toa};
use super::dr::set_macs;
use super::nat::{
    flow, l4_offset, leave_by, reply_frame, reply_verdict, rewrite, tail_args, translate_icmp,
};

/// Sends the client's packet (of family `fam`, service `m`) to the real
/// in slot `chosen`: hands over to [`sluice_fullnat_forward`] (which
/// counts its own outcome). Returns only if the tail call fails.
#[inline(always)]
pub(super) fn forward(
    ctx: &XdpContext,
    m: &VipMeta,
    chosen: u32,
    fam: u8,
    new_session: bool,
    icmp: bool,
) -> Result<u32, Counter> {
    tail_args(chosen, fam, new_session, icmp, m.vip_index)?;
    // SAFETY: the context is this program's own and the map is a program
    // array; on success control never comes back here.
    unsafe { SLUICE_NAT_PROGS.tail_call(ctx, nat_prog::FULLNAT_FORWARD) };
    Err(Counter::DropUnknownMethod)
}

/// In `nat`'s reply program: a TCP/UDP packet (family `fam`) to one of
/// the local addresses is `fullnat`'s; hands over to
/// [`sluice_fullnat_reply`]. Returns if it is not one (or the tail call
/// fails), for `nat`'s own lookup.
#[inline(always)]
pub(super) fn reply_if_local(ctx: &XdpContext, fam: u8) {
    let dst = if fam == family::V4 {
        read::<4>(ctx, ETH_HDR_LEN + nat::v4_addr_offset(Side::Destination))
            .map(|a| crate::frame::v4_addr(&a, 0))
    } else {
        read::<16>(ctx, ETH_HDR_LEN + nat::v6_addr_offset(Side::Destination))
            .map(|a| crate::frame::v6_addr(&a, 0))
    };
    let Some(addr) = dst else { return };
    let k = AddrKey {
        addr,
        family: u32::from(fam),
    };
    if SLUICE_LOCAL_INDEX.get_ptr(&k).is_some() {
        // SAFETY: as in `forward`.
        unsafe { SLUICE_NAT_PROGS.tail_call(ctx, nat_prog::FULLNAT_REPLY) };
    }
}

/// `fullnat`, the client's direction: a local end for a new flow (and its
/// session), both ends rewritten, `XDP_TX` (counted as forwarded, to the
/// real's traffic too); or a counted drop. An ICMP error about a flow is
/// passed to the kernel.
#[xdp]
pub fn sluice_fullnat_forward(ctx: XdpContext) -> u32 {
    let Some(args) = SLUICE_NAT_ARGS.get(0) else {
        count(Counter::DropUnknownMethod);
        return xdp_action::XDP_DROP;
    };
    let a = *args;
    let len = (ctx.data_end() - ctx.data()) as u64;
    let icmp = a.icmp != 0;
    // `forward` never makes a session for an ICMP error.
    let new_session = a.new_session != 0 && !icmp;
    let done = if icmp {
        icmp_forward_in_frame(&ctx, a.chosen, a.family)
    } else {
        forward_in_frame(&ctx, a.chosen, a.family, new_session, a.vip_slot)
    };
    // Written out, not `nat::forward_verdict`: that shape of the same
    // code took this program's stack past 512 bytes.
    match done {
        Ok(()) => {
            forwarded(a.chosen, len, new_session, icmp);
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

/// `fullnat`, the real's direction: a reply to a local address sent back
/// to its client from VIP:vport (`tx_fullnat_reply`), or passed untouched
/// (`pass_non_vip` without a reverse entry, `pass_nat_no_session` without
/// a live session).
#[xdp]
pub fn sluice_fullnat_reply(ctx: XdpContext) -> u32 {
    let Some((fam, icmp)) = reply_frame(&ctx) else {
        count(Counter::PassNonVip);
        return xdp_action::XDP_PASS;
    };
    if icmp {
        reply_verdict(icmp_reply_in_frame(&ctx, fam), Counter::TxNatIcmpReply)
    } else {
        reply_verdict(reply_in_frame(&ctx, fam), Counter::TxFullnatReply)
    }
}

/// The client's packet to the real in slot `chosen` (service `vip_slot`).
#[inline(always)]
fn forward_in_frame(
    ctx: &XdpContext,
    chosen: u32,
    fam: u8,
    new_session: bool,
    vip_slot: u8,
) -> Result<(), Counter> {
    let (Some(c), Some(r)) = (cfg(), real(chosen)) else {
        return Err(Counter::DropNoReal);
    };
    let (key, flags) = flow(ctx, fam)?;
    let rport = nat::real_port(r.port, key.dport);
    let local = if new_session {
        let Some(vs) = u32::from(vip_slot)
            .checked_sub(1)
            .and_then(|i| SLUICE_VIP_BY_INDEX.get(i))
        else {
            return Err(Counter::DropNoReal);
        };
        let Some(eth) = read::<ETH_HDR_LEN>(ctx, 0) else {
            return Err(Counter::DropTruncated);
        };
        // SAFETY: reading the kernel's clock has no preconditions.
        let now = unsafe { bpf_ktime_get_coarse_ns() };
        let rev = FullnatReverse {
            client: key.src,
            cport: key.sport,
            vport: key.dport,
            client_mac: [eth[6], eth[7], eth[8], eth[9], eth[10], eth[11]],
            vip_slot,
            _pad: 0,
            last_seen_ns: now,
        };
        let local = claim_port(c, &vs.meta, r, rport, &key, &rev, now)?;
        session::create(
            &vs.meta,
            &key,
            flags,
            chosen,
            r.generation,
            Some(local),
            now,
        );
        local
    } else {
        // The session `forward` found (and refreshed) for this packet.
        let Some(sp) = SLUICE_SESSIONS.get_ptr_mut(&key) else {
            return Err(Counter::DropNoReal);
        };
        // SAFETY: value pointer from a successful lookup; copied out.
        let (slot, port, toa_sent) =
            unsafe { ((*sp).local_slot, (*sp).local_port, (*sp).toa_sent) };
        let Some(slot) = slot.checked_sub(1) else {
            return Err(Counter::DropFullnatNoPort);
        };
        // The connection's first ACK (the handshake's last segment)
        // carries the TOA, once.
        if toa_sent == 0
            && key.proto == PROTO_TCP
            && flags & (TCP_SYN | TCP_RST | TCP_ACK) == TCP_ACK
            && wants_toa(vip_slot)
        {
            // SAFETY: as above; a concurrent writer of the same flow can
            // only write the same 1.
            unsafe { (*sp).toa_sent = 1 };
            match add_toa::insert(ctx, fam, &key.src, key.sport)? {
                Toa::Inserted => count(Counter::TxToa),
                Toa::NoRoom => count(Counter::ToaNoRoom),
            }
        }
        LocalEnd { slot, port }
    };
    // A slot cleared since (its local address removed from the
    // configuration) has no address to send from: the flow's connection
    // is lost with it, its packets dropped and counted, never sent from
    // 0.0.0.0.
    let la = match SLUICE_LOCAL_ADDRS.get(u32::from(local.slot)) {
        Some(la) if la.family == fam => la,
        _ => return Err(Counter::DropFullnatNoPort),
    };
    rewrite(ctx, fam, key.proto, Side::Destination, &r.addr, rport)?;
    rewrite(ctx, fam, key.proto, Side::Source, &la.addr, local.port)?;
    set_macs(ctx, r.mac, c.real_side_mac)
}

/// An ICMP error to a VIP about the `fullnat` flow `sluice_xdp` chose
/// the real in slot `chosen` for (frag-needed / packet-too-big about a
/// reply the LB sent, quoting VIP:vport → client:cport): the quoted
/// packet becomes the real's reply as the real sent it (RIP:rport →
/// local address:port), the outer header goes from the local address to
/// the real, and it leaves as the flow's packets do. Without a session
/// (so without a local end) it is the kernel's (`pass_icmp`).
#[inline(always)]
fn icmp_forward_in_frame(ctx: &XdpContext, chosen: u32, fam: u8) -> Result<(), Counter> {
    let (Some(c), Some(r)) = (cfg(), real(chosen)) else {
        return Err(Counter::DropNoReal);
    };
    // The session key (client → VIP:vport), as `sluice_xdp` read it.
    let key = quoted_flow(ctx, l4_offset(fam), fam)?;
    let Some(sp) = SLUICE_SESSIONS.get_ptr(&key) else {
        return Err(Counter::PassIcmp);
    };
    // SAFETY: value pointer from a successful lookup; copied out.
    let (slot, lport) = unsafe { ((*sp).local_slot, (*sp).local_port) };
    let Some(la) = slot
        .checked_sub(1)
        .and_then(|s| SLUICE_LOCAL_ADDRS.get(u32::from(s)))
        .filter(|la| la.family == fam)
    else {
        return Err(Counter::PassIcmp);
    };
    let rport = nat::real_port(r.port, key.dport);
    translate_icmp(ctx, fam, key.proto, Side::Source, &r.addr, rport)?;
    translate_icmp(ctx, fam, key.proto, Side::Destination, &la.addr, lport)?;
    set_macs(ctx, r.mac, c.real_side_mac)
}

/// An ICMP error to a local address (port unreachable, frag-needed, ...
/// from a real or a router on its side) quoting a packet of a live
/// `fullnat` session as the LB sent it (local address:port → RIP:rport):
/// translated to come from the VIP about the client's own packet
/// (client:cport → VIP:vport), and sent to the client as the session's
/// replies are. The session is asked, not moved on.
#[inline(always)]
fn icmp_reply_in_frame(ctx: &XdpContext, fam: u8) -> Result<(), Counter> {
    let l4 = l4_offset(fam);
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
    // The quoted packet mirrored: real:rport → local address:port.
    let q = quoted_flow(ctx, l4, fam).map_err(|_| Counter::PassNonVip)?;
    if q.proto != PROTO_TCP && q.proto != PROTO_UDP {
        return Err(Counter::PassNonVip);
    }
    let found = reply_of(&q, fam)?;
    let (rev, vip, c) = (found.rev, found.vip, found.cfg);
    translate_icmp(ctx, fam, q.proto, Side::Source, &rev.client, rev.cport)?;
    translate_icmp(ctx, fam, q.proto, Side::Destination, &vip, rev.vport)?;
    set_macs(ctx, rev.client_mac, c.iface_mac)
}

/// Does service `vip_slot` (its index + 1) insert TOAs?
#[inline(always)]
fn wants_toa(vip_slot: u8) -> bool {
    u32::from(vip_slot)
        .checked_sub(1)
        .and_then(|i| SLUICE_VIP_BY_INDEX.get(i))
        .is_some_and(|vs| vs.meta.flags & vip_flags::TOA != 0)
}

/// Claims a local end for a new flow `key` of service `m` to real `r` at
/// port `rport`, recording `rev` as its reverse entry: see the module
/// documentation. `drop_fullnat_no_port` when every candidate is taken.
#[inline(always)]
fn claim_port(
    c: &GlobalCfg,
    m: &VipMeta,
    r: &RealDef,
    rport: u16,
    key: &FlowKey,
    rev: &FullnatReverse,
    now: u64,
) -> Result<LocalEnd, Counter> {
    // SAFETY: the helper has no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let ncpus = if c.ncpus == 0 { 1 } else { c.ncpus };
    let base = m.vip_index * MAX_LOCAL_ADDRS_PER_VIP;
    for i in 0..MAX_LOCAL_ADDRS_PER_VIP {
        let Some(s1) = SLUICE_VIP_LOCALS.get(base + i) else {
            break;
        };
        let Some(slot) = s1.checked_sub(1) else {
            break;
        };
        let Some(la) = SLUICE_LOCAL_ADDRS.get(slot) else {
            continue;
        };
        if let Some(port) = claim_on(c, la, slot, cpu, ncpus, r, rport, key, rev, now) {
            // Fits: slots < MAX_LOCAL_ADDRS (64), checked by the loader.
            return Ok(LocalEnd {
                slot: slot as u8,
                port,
            });
        }
    }
    Err(Counter::DropFullnatNoPort)
}

/// [`claim_port`] on one local address (`la`, in slot `slot`): the port
/// claimed, if any.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn claim_on(
    c: &GlobalCfg,
    la: &LocalAddr,
    slot: u32,
    cpu: u32,
    ncpus: u32,
    r: &RealDef,
    rport: u16,
    key: &FlowKey,
    rev: &FullnatReverse,
    now: u64,
) -> Option<u16> {
    if la.family != key.family {
        return None;
    }
    let share = cpu_port_count(la.port_min, la.port_max, ncpus, cpu);
    if share == 0 {
        return None;
    }
    let cursor = SLUICE_LOCAL_CURSOR.get_ptr_mut(slot)?;
    // SAFETY: this CPU's slot of a per-CPU array from a successful lookup;
    // nothing else uses it while this program runs.
    let start = unsafe { *cursor };
    // The cursor's port first: in order, ports come back in the order they
    // were taken, oldest (longest out of quarantine) first. The other
    // candidates a random stride apart: the cursor is shared by every
    // real, so behind it one real's taken ports can lie in runs longer than
    // `PORT_PROBES` while the share still has room for that real (a flood
    // of new flows found that: BENCHMARKS.md §5). A share no larger than
    // the probes is walked whole (stride 1). One stride per search, not a
    // random number per probe: a branch in the loop body doubled what the
    // verifier walks.
    let stride = if share <= PORT_PROBES {
        1
    } else {
        // SAFETY: the helper has no preconditions.
        let r = unsafe { bpf_get_prandom_u32() };
        r | 1
    };
    for j in 0..PORT_PROBES {
        if j >= share {
            break;
        }
        let k = start.wrapping_add(j.wrapping_mul(stride)) % share;
        let port = cpu_port(la.port_min, ncpus, cpu, k);
        let rk = fullnat::reverse_key(r.addr, rport, slot as u8, port, key.proto, key.family);
        // A free port is the common case: claim it with one insert, and
        // only when that finds the key taken, look at whether its entry is
        // dead (and take it over).
        let claimed = SLUICE_FULLNAT_REVERSE
            .insert(&rk, rev, u64::from(BPF_NOEXIST))
            .is_ok()
            || match SLUICE_FULLNAT_REVERSE.get_ptr(&rk) {
                // SAFETY: value pointer from a successful lookup, valid for
                // this run; read in place (a copy would not fit the stack).
                Some(old) if !alive(c, &rk, unsafe { &*old }, now) => SLUICE_FULLNAT_REVERSE
                    .insert(&rk, rev, u64::from(BPF_EXIST))
                    .is_ok(),
                _ => false,
            };
        if claimed {
            // SAFETY: as above.
            unsafe { *cursor = k.wrapping_add(1) };
            return Some(port);
        }
    }
    None
}

/// Is the port of reverse entry `rev` (key `rk`) still taken: by a live
/// session that uses it, or in its quarantine after its last reply
/// (`sluice_wire::fullnat::in_use`)?
#[inline(always)]
fn alive(c: &GlobalCfg, rk: &FullnatKey, rev: &FullnatReverse, now: u64) -> bool {
    let holds = match u32::from(rev.vip_slot)
        .checked_sub(1)
        .and_then(|i| SLUICE_VIP_BY_INDEX.get(i))
    {
        Some(vs) => {
            let fwd = fullnat::forward_key(rk, rev, vs.key.addr);
            match SLUICE_SESSIONS.get_ptr(&fwd) {
                Some(sp) => {
                    // SAFETY: value pointer from a successful lookup,
                    // valid for this run; read in place.
                    let s = unsafe { &*sp };
                    fullnat::holds(rk, s) && session::fresh(c, s, now)
                }
                None => false,
            }
        }
        None => false,
    };
    fullnat::in_use(holds, rev.last_seen_ns, now, c.port_quarantine_ns)
}

/// What a packet from a real's side to a local address found: its
/// reverse entry (in place, and a copy), the service's VIP, the
/// configuration, the live session, and the time of the lookup.
struct Reply {
    entry: *mut FullnatReverse,
    rev: FullnatReverse,
    vip: sluice_wire::maps::Addr,
    /// The service inserts TOAs.
    toa: bool,
    cfg: &'static GlobalCfg,
    session: *mut sluice_wire::maps::FlowVal,
    now: u64,
}

/// The reverse entry and live session of flow `key` (real:rport → local
/// address:port, as a reply travels; for an ICMP error, the mirror of
/// its quoted packet), or why the packet is not a session's: no such
/// local address or reverse entry (`pass_non_vip`), no live session that
/// uses that real and local end (`pass_nat_no_session`).
#[inline(always)]
fn reply_of(key: &FlowKey, fam: u8) -> Result<Reply, Counter> {
    let ak = AddrKey {
        addr: key.dst,
        family: u32::from(fam),
    };
    let Some(slot) = SLUICE_LOCAL_INDEX.get_ptr(&ak) else {
        return Err(Counter::PassNonVip);
    };
    // SAFETY: value pointer from a successful lookup; copied out.
    let slot = unsafe { *slot } as u8;
    let rk = fullnat::reverse_key(key.src, key.sport, slot, key.dport, key.proto, fam);
    let Some(entry) = SLUICE_FULLNAT_REVERSE.get_ptr_mut(&rk) else {
        return Err(Counter::PassNonVip);
    };
    // SAFETY: value pointer from a successful lookup; copied out.
    let rev = unsafe { *entry };
    let (Some(c), Some(vs)) = (
        cfg(),
        u32::from(rev.vip_slot)
            .checked_sub(1)
            .and_then(|i| SLUICE_VIP_BY_INDEX.get(i)),
    ) else {
        return Err(Counter::PassNatNoSession);
    };
    // SAFETY: reading the kernel's clock has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let fwd = fullnat::forward_key(&rk, &rev, vs.key.addr);
    let Some(session) = session::fullnat_session(c, &fwd, &key.src, key.sport, &rk, now) else {
        return Err(Counter::PassNatNoSession);
    };
    Ok(Reply {
        entry,
        rev,
        vip: vs.key.addr,
        toa: vs.meta.flags & vip_flags::TOA != 0,
        cfg: c,
        session,
        now,
    })
}

/// A real's reply to a local address.
#[inline(always)]
fn reply_in_frame(ctx: &XdpContext, fam: u8) -> Result<(), Counter> {
    // Not a VIP's traffic: a frame too short for its TCP/UDP header is
    // not ours to judge, and passes untouched like any non-VIP packet.
    let (key, flags) = flow(ctx, fam).map_err(|_| Counter::PassNonVip)?;
    let found = reply_of(&key, fam)?;
    let (revp, rev, vip, c, sp, now) = (
        found.entry,
        found.rev,
        found.vip,
        found.cfg,
        found.session,
        found.now,
    );
    session::reply_advance(sp, key.proto, flags, now);
    // The port's quarantine runs from the real's last reply.
    if now.saturating_sub(rev.last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
        // SAFETY: as above; a concurrent writer of the same flow writes a
        // time as recent.
        unsafe { (*revp).last_seen_ns = now };
    }
    // The real's SYN-ACK announces an MSS that leaves room for the TOA in
    // the client's segments.
    if key.proto == PROTO_TCP && flags & (TCP_SYN | TCP_ACK) == TCP_SYN | TCP_ACK && found.toa {
        add_toa::clamp_mss(ctx, fam);
    }
    rewrite(ctx, fam, key.proto, Side::Source, &vip, rev.vport)?;
    rewrite(
        ctx,
        fam,
        key.proto,
        Side::Destination,
        &rev.client,
        rev.cport,
    )?;
    set_macs(ctx, rev.client_mac, c.iface_mac)
}
