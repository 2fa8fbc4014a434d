//! ICMP errors of VIP flows. A "fragmentation needed" (IPv4) or "packet
//! too big" (IPv6) error arriving at a VIP quotes a reply the real sent
//! (VIP:port → client:port); it is forwarded to the real serving that flow
//! so the real's path-MTU discovery works with DSR (`nat`: with the quoted
//! packet translated, `xmit/nat.rs`). Any other ICMP to a VIP goes to the
//! kernel.
//!
//! [`quoted_flow`] is the one reader of an error's quoted packet: the
//! `nat` reply program uses it too, for errors the reals' side sends to
//! clients.

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::{Counter, FlowKey, family};

use crate::consts::{
    ETH_HDR_LEN, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HDR_LEN, ICMPV6_PKT_TOO_BIG,
    IPV4_HDR_LEN, IPV6_HDR_LEN,
};
use crate::frame::{be16, read, v4_addr, v6_addr};
use crate::parse::{Parsed, Step};
use crate::session::Session;

/// The flow an ICMP error (header at `icmp`, family `fam`) is about, in
/// the direction its receiver sends: the mirror of the quoted packet's
/// 5-tuple, which travelled the other way. At a VIP that is the session
/// key (client → VIP); at a client, the key of a `nat` reverse entry
/// (real → client). A quoted IPv4 header with options is refused
/// (`DropIpOptions`): the ports would not be where they are read.
#[inline(always)]
pub(crate) fn quoted_flow(ctx: &XdpContext, icmp: usize, fam: u8) -> Result<FlowKey, Counter> {
    let inner = icmp + ICMP_HDR_LEN;
    let (quoted_src, quoted_dst, proto, ports_at) = if fam == family::V4 {
        let Some(ih) = read::<IPV4_HDR_LEN>(ctx, inner) else {
            return Err(Counter::DropTruncated);
        };
        if ih[0] != 0x45 {
            return Err(Counter::DropIpOptions);
        }
        (
            v4_addr(&ih, 12),
            v4_addr(&ih, 16),
            ih[9],
            inner + IPV4_HDR_LEN,
        )
    } else {
        let Some(ih) = read::<IPV6_HDR_LEN>(ctx, inner) else {
            return Err(Counter::DropTruncated);
        };
        (
            v6_addr(&ih, 8),
            v6_addr(&ih, 24),
            ih[6],
            inner + IPV6_HDR_LEN,
        )
    };
    let Some(ports) = read::<4>(ctx, ports_at) else {
        return Err(Counter::DropTruncated);
    };
    Ok(FlowKey {
        src: quoted_dst,
        dst: quoted_src,
        sport: be16([ports[2], ports[3]]),
        dport: be16([ports[0], ports[1]]),
        proto,
        family: fam,
        _pad: 0,
    })
}

/// An ICMP error to a VIP about flow `key`: forwarded like the flow.
#[inline(always)]
fn forward_error(key: FlowKey) -> Step {
    Step::Forward(
        Parsed {
            key,
            tcp_flags: 0,
            l3_len: ETH_HDR_LEN as u16,
        },
        true,
        None,
        Session::Unknown,
    )
}

/// ICMPv4 at `l4` of a packet to a VIP.
#[inline(always)]
pub(crate) fn icmp_v4(ctx: &XdpContext, l4: usize) -> Result<Step, Counter> {
    let Some(icmp) = read::<ICMP_HDR_LEN>(ctx, l4) else {
        return Err(Counter::DropTruncated);
    };
    if icmp[0] != ICMP_DEST_UNREACH || icmp[1] != ICMP_FRAG_NEEDED {
        return Ok(Step::Pass(Counter::PassIcmp));
    }
    Ok(forward_error(quoted_flow(ctx, l4, family::V4)?))
}

/// ICMPv6 at `l4` of a packet to a VIP, as [`icmp_v4`].
#[inline(always)]
pub(crate) fn icmp_v6(ctx: &XdpContext, l4: usize) -> Result<Step, Counter> {
    let Some(icmp) = read::<ICMP_HDR_LEN>(ctx, l4) else {
        return Err(Counter::DropTruncated);
    };
    if icmp[0] != ICMPV6_PKT_TOO_BIG {
        return Ok(Step::Pass(Counter::PassIcmp));
    }
    Ok(forward_error(quoted_flow(ctx, l4, family::V6)?))
}
