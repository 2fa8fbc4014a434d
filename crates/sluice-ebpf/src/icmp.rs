//! ICMP errors for VIP flows. A "fragmentation needed" (IPv4) or "packet
//! too big" (IPv6) error arriving at a VIP quotes a reply the real sent
//! (VIP:port → client:port); it is forwarded to the real serving that flow
//! so the real's path-MTU discovery works with DSR. Any other ICMP to a
//! VIP goes to the kernel.

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::{Counter, FlowKey, family};

use crate::consts::{
    ETH_HDR_LEN, ICMP_DEST_UNREACH, ICMP_FRAG_NEEDED, ICMP_HDR_LEN, ICMPV6_PKT_TOO_BIG,
    IPV4_HDR_LEN, IPV6_HDR_LEN,
};
use crate::frame::{be16, read, v4_addr, v6_addr};
use crate::parse::{Parsed, Step};
use crate::session::Session;

/// ICMPv4 at `l4` of a packet to a VIP.
#[inline(always)]
pub(crate) fn icmp_v4(ctx: &XdpContext, l4: usize) -> Result<Step, Counter> {
    let Some(icmp) = read::<ICMP_HDR_LEN>(ctx, l4) else {
        return Err(Counter::DropTruncated);
    };
    if icmp[0] != ICMP_DEST_UNREACH || icmp[1] != ICMP_FRAG_NEEDED {
        return Ok(Step::Pass(Counter::PassIcmp));
    }
    let inner = l4 + ICMP_HDR_LEN;
    let Some(ih) = read::<IPV4_HDR_LEN>(ctx, inner) else {
        return Err(Counter::DropTruncated);
    };
    if ih[0] != 0x45 {
        return Err(Counter::DropIpOptions);
    }
    // The quoted packet went VIP → client: its source is the VIP.
    let vip = v4_addr(&ih, 12);
    let client = v4_addr(&ih, 16);
    let Some(ports) = read::<4>(ctx, inner + IPV4_HDR_LEN) else {
        return Err(Counter::DropTruncated);
    };
    let key = FlowKey {
        src: client,
        dst: vip,
        sport: be16([ports[2], ports[3]]),
        dport: be16([ports[0], ports[1]]),
        proto: ih[9],
        family: family::V4,
        _pad: 0,
    };
    Ok(Step::Forward(
        Parsed {
            key,
            tcp_flags: 0,
            l3_len: ETH_HDR_LEN as u16,
        },
        true,
        None,
        Session::Unknown,
    ))
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
    let inner = l4 + ICMP_HDR_LEN;
    let Some(ih) = read::<IPV6_HDR_LEN>(ctx, inner) else {
        return Err(Counter::DropTruncated);
    };
    let vip = v6_addr(&ih, 8);
    let client = v6_addr(&ih, 24);
    let Some(ports) = read::<4>(ctx, inner + IPV6_HDR_LEN) else {
        return Err(Counter::DropTruncated);
    };
    let key = FlowKey {
        src: client,
        dst: vip,
        sport: be16([ports[2], ports[3]]),
        dport: be16([ports[0], ports[1]]),
        proto: ih[6],
        family: family::V6,
        _pad: 0,
    };
    Ok(Step::Forward(
        Parsed {
            key,
            tcp_flags: 0,
            l3_len: ETH_HDR_LEN as u16,
        },
        true,
        None,
        Session::Unknown,
    ))
}
