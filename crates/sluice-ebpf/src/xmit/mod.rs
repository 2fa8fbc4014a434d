//! How a packet leaves for its real, one module per forwarding method:
//! [`dr`] (L2 DSR, MAC rewrite), [`tun`] (L3 DSR, IPIP / IP6IP6) and
//! [`nat`] (destination NAT with port translation, and its replies: two
//! programs of their own, tail-called), with
//! [`too_big`] for a `tun` packet that would exceed the egress MTU, and
//! [`fullnat`] (source and destination NAT from local addresses, also
//! two programs of its own). Packets of a byte that names no method are
//! dropped and counted (`drop_unknown_method`).
//! Adding one means a module here and its arm in the matches below; they
//! are exhaustive, so the compiler points at each.

mod add_toa;
mod dr;
mod fullnat;
mod nat;
mod too_big;
mod tun;

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::{Counter, GlobalCfg, Method, RealDef, VipMeta};

use crate::parse::Parsed;

pub(crate) use nat::reply as nat_reply;

/// Why this program cannot send packets of service `m` (its flows' own
/// or forwarded ICMP errors about them), if it cannot: the counter of the drop. Asked
/// before a session is made for it.
#[inline(always)]
pub(crate) fn refuse(m: &VipMeta) -> Option<Counter> {
    match Method::from_byte(m.method) {
        // `nat` translates a forwarded error's quoted packet as well;
        // `fullnat` passes it to the kernel.
        Some(Method::Dr | Method::Tun | Method::Nat | Method::Fullnat) => None,
        // A record from a loader of another version.
        None => Some(Counter::DropUnknownMethod),
    }
}

/// Does service `m`'s method record a new flow's session itself (in its
/// own program, where it chooses the flow's local end: `fullnat`)?
#[inline(always)]
pub(crate) fn makes_own_session(m: &VipMeta) -> bool {
    match Method::from_byte(m.method) {
        Some(Method::Fullnat) => true,
        Some(Method::Dr | Method::Tun | Method::Nat) | None => false,
    }
}

/// What became of a packet that got a verdict to send.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sent {
    /// Rewritten for its real.
    Forwarded,
    /// Too big for the egress MTU once encapsulated: turned into an ICMP
    /// answer to the client (`tx_icmp_too_big`), not forwarded.
    AnsweredTooBig,
}

/// Rewrites the frame for real `r` (in slot `chosen`) of service `m` by
/// the service's method (`icmp`: a forwarded ICMP error; `new_session`:
/// the flow's session was just made); the verdict and what was sent, or
/// the counter of a drop.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn transmit(
    ctx: &XdpContext,
    m: &VipMeta,
    r: &RealDef,
    chosen: u32,
    new_session: bool,
    p: &Parsed,
    icmp: bool,
    c: &GlobalCfg,
) -> Result<(u32, Sent), Counter> {
    match Method::from_byte(m.method) {
        Some(Method::Dr) => dr::rewrite_macs(ctx, r, c).map(|v| (v, Sent::Forwarded)),
        Some(Method::Tun) => tun::encap(ctx, m, r, p, icmp, c),
        Some(Method::Nat) => {
            nat::forward(ctx, chosen, p.key.family, new_session, icmp).map(|v| (v, Sent::Forwarded))
        }
        Some(Method::Fullnat) => fullnat::forward(ctx, m, chosen, p.key.family, new_session, icmp)
            .map(|v| (v, Sent::Forwarded)),
        // [`refuse`] turned these away before the session was made.
        None => Err(Counter::DropUnknownMethod),
    }
}
