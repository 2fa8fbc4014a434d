//! How a packet leaves for its real, one module per forwarding method:
//! [`dr`] (L2 DSR, MAC rewrite) and [`tun`] (L3 DSR, IPIP / IP6IP6), with
//! [`too_big`] for a `tun` packet that would exceed the egress MTU.
//! `nat` and `fullnat` are not implemented yet: their packets are dropped
//! and counted (`drop_unknown_method`), as are those of a byte that names
//! no method. Adding one means a module here and its arm in both matches
//! below; both are exhaustive, so the compiler points at each.

mod dr;
mod too_big;
mod tun;

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::{Counter, GlobalCfg, Method, RealDef, VipMeta};

use crate::parse::Parsed;

/// Can this program send packets of service `m`? Asked before a session
/// is made for it.
#[inline(always)]
pub(crate) fn can_send(m: &VipMeta) -> bool {
    match Method::from_byte(m.method) {
        Some(Method::Dr | Method::Tun) => true,
        // Not implemented yet (`sluice run` refuses them); NAT goes in
        // `xmit/nat.rs`.
        Some(Method::Nat | Method::Fullnat) => false,
        // A record from a loader of another version.
        None => false,
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

/// Rewrites the frame for real `r` of service `m` by the service's method
/// (`icmp`: a forwarded ICMP error); the verdict and what was sent, or the
/// counter of a drop.
#[inline(always)]
pub(crate) fn transmit(
    ctx: &XdpContext,
    m: &VipMeta,
    r: &RealDef,
    p: &Parsed,
    icmp: bool,
    c: &GlobalCfg,
) -> Result<(u32, Sent), Counter> {
    match Method::from_byte(m.method) {
        Some(Method::Dr) => dr::rewrite_macs(ctx, r, c).map(|v| (v, Sent::Forwarded)),
        Some(Method::Tun) => tun::encap(ctx, m, r, p, icmp, c),
        // [`can_send`] turned these away before the session was made.
        Some(Method::Nat | Method::Fullnat) | None => Err(Counter::DropUnknownMethod),
    }
}
