//! From a parsed VIP packet to a verdict: the service, the method it is
//! sent with, the real (session, else persistence and the scheduler), the
//! neighbour check and the accounting; the rewrite itself is [`xmit`]'s.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_ktime_get_coarse_ns, programs::XdpContext};
use sluice_wire::maps::{Counter, NO_REAL, VipMeta, real_flags};

use crate::maps::{SLUICE_REAL_STATS, SLUICE_VIP_STATS, cfg, count, lookup_service, real, traffic};
use crate::parse::Parsed;
use crate::session::{self, Session};
use crate::xmit::Sent;
use crate::{sched, xmit};

/// Session lookup / scheduling and the rewrite. `icmp` marks a forwarded
/// ICMP error: it uses an existing session (or the scheduler's answer) but
/// never creates or updates one.
#[inline(always)]
pub(crate) fn forward(
    ctx: &XdpContext,
    len: u64,
    p: Parsed,
    icmp: bool,
    meta: Option<&'static VipMeta>,
    session: Session,
) -> Result<u32, Counter> {
    let Some(m) = meta.or_else(|| lookup_service(&p.key)) else {
        if icmp {
            count(Counter::PassIcmp);
        } else {
            count(Counter::PassNoService);
        }
        return Ok(xdp_action::XDP_PASS);
    };
    // A service this program cannot send for is dropped before the
    // session table is touched: it leaves no session, persistence entry or
    // connection count behind.
    if let Some(refused) = xmit::refuse(m) {
        return Err(refused);
    }
    let Some(c) = cfg() else {
        return Err(Counter::DropNoReal);
    };
    // The coarse monotonic clock (tick resolution, a few ms) is plenty for
    // timeouts of seconds and much cheaper per packet than the precise one.
    // SAFETY: reading the kernel's clock has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };

    let hit = match session.resolve(&p.key) {
        Some(sp) => session::refresh(c, m, sp, &p, icmp, now),
        None => None,
    };
    let (chosen, r, new_session) = match hit {
        Some((chosen, r)) => (chosen, r, false),
        None => {
            let chosen = sched::choose(m, &p.key, c.ring_size, now);
            if chosen == NO_REAL {
                return Err(Counter::DropNoReal);
            }
            let Some(r) = real(chosen) else {
                return Err(Counter::DropNoReal);
            };
            // `fullnat` records its session where its local port is
            // chosen (`xmit::fullnat`).
            if !icmp && !xmit::makes_own_session(m) {
                session::create(m, &p.key, p.tcp_flags, chosen, r.generation, None, now);
            }
            (chosen, r, !icmp)
        }
    };
    if r.flags & real_flags::HAS_MAC == 0 {
        return Err(Counter::DropNoNeighbour);
    }
    traffic(&SLUICE_VIP_STATS, m.vip_index, len, new_session);

    let (verdict, sent) = xmit::transmit(ctx, m, r, chosen, new_session, &p, icmp, c)?;
    match sent {
        Sent::Forwarded => forwarded(chosen, len, new_session, icmp),
        Sent::AnsweredTooBig => count(Counter::TxIcmpTooBig),
    }
    Ok(verdict)
}

/// Accounts a packet of `len` bytes sent to the real in slot `chosen`
/// (`icmp`: a forwarded ICMP error): the real's traffic is what reached
/// it. Also called by the `nat` program `forward` tail-calls, which
/// never returns here.
#[inline(always)]
pub(crate) fn forwarded(chosen: u32, len: u64, new_session: bool, icmp: bool) {
    traffic(&SLUICE_REAL_STATS, chosen, len, new_session);
    if icmp {
        count(Counter::IcmpForwarded);
    } else {
        count(Counter::TxForwarded);
    }
}
