//! BPF-target code of `sluice_xdp`: the L4 DSR data path.
//!
//! Per packet:
//! 1. Ethernet → IPv4/IPv6 (anything else: `XDP_PASS`, counted).
//! 2. Destination address in [`SLUICE_VIP_ADDRS`]? No → `XDP_PASS` (non-VIP
//!    traffic never pays more than one hash lookup).
//! 3. VIP traffic is validated: IPv4 options / IPv6 extension headers and
//!    fragments are dropped (counted); truncated headers are dropped.
//! 4. ICMP "fragmentation needed" / "packet too big" quoting a VIP flow is
//!    forwarded to the real serving that flow; other ICMP is passed.
//! 5. TCP/UDP: service lookup (exact port, then port 0 = all ports), session
//!    lookup, else scheduling (ring hash, per-CPU cursor, or connection
//!    counts), then `dr` (MAC rewrite) or `tun` (IPIP / IP6IP6) and `XDP_TX`.
//!
//! Every read is preceded by a bounds check ([`ptr_at`] / [`ptr_at_mut`]).

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_ktime_get_coarse_ns, bpf_xdp_adjust_head},
    macros::{map, xdp},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::XdpContext,
};
use sluice_wire::{
    checksum,
    hash::{addr_hash, flow_hash},
    maps::{
        Addr, AddrKey, Counter, FlowKey, FlowVal, GlobalCfg, MAX_REALS, MAX_REALS_PER_VIP,
        MAX_RING_SIZE, MAX_VIP_ADDRS, MAX_VIPS, NO_REAL, PERSIST_CAPACITY, PersistKey, PersistVal,
        RealDef, TrafficStats, VIP_FILTER_SLOTS, VipKey, VipMeta, VipSlot, addr_to_bytes,
        cfg_flags, family, method, real_flags, sched, state, vip_filter_slot, vip_flags,
    },
};

// === maps ===

#[map(name = "SLUICE_STATS")]
static SLUICE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "SLUICE_CFG")]
static SLUICE_CFG: Array<GlobalCfg> = Array::with_max_entries(1, 0);

#[map(name = "SLUICE_VIP_ADDRS")]
static SLUICE_VIP_ADDRS: HashMap<AddrKey, u32> = HashMap::with_max_entries(MAX_VIP_ADDRS, 0);

#[map(name = "SLUICE_VIPS")]
static SLUICE_VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_VIP_BY_INDEX")]
static SLUICE_VIP_BY_INDEX: Array<VipSlot> = Array::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_VIP_FILTER")]
static SLUICE_VIP_FILTER: Array<u32> = Array::with_max_entries(VIP_FILTER_SLOTS, 0);

#[map(name = "SLUICE_REALS")]
static SLUICE_REALS: Array<RealDef> = Array::with_max_entries(MAX_REALS, 0);

/// Resized by the loader to `MAX_VIPS * ring_size` before loading.
#[map(name = "SLUICE_RING")]
static SLUICE_RING: Array<u32> = Array::with_max_entries(MAX_RING_SIZE, 0);

#[map(name = "SLUICE_VIP_REALS")]
static SLUICE_VIP_REALS: Array<u32> = Array::with_max_entries(MAX_VIPS * MAX_REALS_PER_VIP, 0);

#[map(name = "SLUICE_RR")]
static SLUICE_RR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

/// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU (no shared LRU lock), but a
/// single hash table, so a flow whose packets arrive on another CPU still
/// finds its session. Capacity is set by the loader from the config.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

#[map(name = "SLUICE_SESSIONS")]
static SLUICE_SESSIONS: LruHashMap<FlowKey, FlowVal> =
    LruHashMap::with_max_entries(65536, BPF_F_NO_COMMON_LRU);

#[map(name = "SLUICE_PERSIST")]
static SLUICE_PERSIST: LruHashMap<PersistKey, PersistVal> =
    LruHashMap::with_max_entries(PERSIST_CAPACITY, BPF_F_NO_COMMON_LRU);

#[map(name = "SLUICE_REAL_CONNS")]
static SLUICE_REAL_CONNS: Array<u64> = Array::with_max_entries(MAX_REALS, 0);

#[map(name = "SLUICE_VIP_STATS")]
static SLUICE_VIP_STATS: PerCpuArray<TrafficStats> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_REAL_STATS")]
static SLUICE_REAL_STATS: PerCpuArray<TrafficStats> = PerCpuArray::with_max_entries(MAX_REALS, 0);

// === wire constants (we own these bytes) ===

const ETH_HDR_LEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const IPV4_HDR_LEN: usize = 20;
const IPV6_HDR_LEN: usize = 40;
const PROTO_ICMP: u8 = 1;
const PROTO_IPIP: u8 = 4;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_IPV6: u8 = 41;
const PROTO_ICMPV6: u8 = 58;
const PROTO_V6_FRAGMENT: u8 = 44;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMP_FRAG_NEEDED: u8 = 4;
const ICMPV6_PKT_TOO_BIG: u8 = 2;
/// Bytes of an ICMP header before the quoted packet.
const ICMP_HDR_LEN: usize = 8;
/// TTL / hop limit of the outer header of `tun`.
const TUN_TTL: u8 = 64;
/// Seed of the ring hash; the same constant is used by userspace predictions.
const HASH_SEED: u32 = 0;
/// Minimum gap between two `last_seen` writes of one session (ns): saves a
/// store to a shared cache line on most packets of a busy flow. Above the
/// coarse clock's tick (1-10 ms), far below the shortest timeout.
const LAST_SEEN_GRANULARITY_NS: u64 = 100_000_000;

// === helpers ===

#[inline(always)]
fn count(c: Counter) {
    if let Some(slot) = SLUICE_STATS.get_ptr_mut(c as u32) {
        // SAFETY: the pointer comes from a lookup of an in-range index of a
        // per-CPU array, so it is valid and aligned, and only this CPU uses
        // it while this program runs (XDP is not preempted).
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
fn count_n(c: Counter, n: u64) {
    if let Some(slot) = SLUICE_STATS.get_ptr_mut(c as u32) {
        // SAFETY: as in `count`.
        unsafe { *slot += n };
    }
}

#[inline(always)]
fn traffic(map: &PerCpuArray<TrafficStats>, idx: u32, bytes: u64, new_session: bool) {
    if let Some(s) = map.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot from a successful lookup, see `count`.
        unsafe {
            (*s).packets += 1;
            (*s).bytes += bytes;
            if new_session {
                (*s).sessions += 1;
            }
        }
    }
}

/// Pointer to a `T` at `offset` in the frame, or `None` if the frame is too
/// short. The comparison against `data_end` is what the verifier needs to
/// accept the dereference that follows.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

#[inline(always)]
fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Reads `N` bytes at `offset`.
#[inline(always)]
fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that N bytes at `offset` are inside the frame;
    // `[u8; N]` has alignment 1.
    Some(unsafe { *p })
}

/// The IPv4 address at `off` of a header copy, as a map [`Addr`].
#[inline(always)]
fn v4_addr<const N: usize>(h: &[u8; N], off: usize) -> Addr {
    [
        u32::from_ne_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]),
        0,
        0,
        0,
    ]
}

/// The IPv6 address at `off` of a header copy, as a map [`Addr`].
#[inline(always)]
fn v6_addr<const N: usize>(h: &[u8; N], off: usize) -> Addr {
    let w =
        |i: usize| u32::from_ne_bytes([h[off + i], h[off + i + 1], h[off + i + 2], h[off + i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Outcome of parsing: hand the frame to the kernel, or forward it.
enum Step {
    /// `XDP_PASS`, counting the reason.
    Pass(Counter),
    /// Forward a VIP packet; `true` marks a quoted flow of an ICMP error.
    /// The service is filled in when the fast path already looked it up,
    /// and what the fast path learnt of the session.
    Forward(Parsed, bool, Option<&'static VipMeta>, Session),
}

/// The session of a packet, as far as known before [`forward`].
#[derive(Clone, Copy)]
enum Session {
    /// Not looked up yet.
    Unknown,
    /// Looked up: there is none.
    Absent,
    /// Looked up: this one.
    Found(*mut FlowVal),
}

/// What the L3/L4 parse found about a VIP packet.
struct Parsed {
    key: FlowKey,
    /// TCP flags (0 for UDP).
    tcp_flags: u8,
    /// Offset of the L3 header (always `ETH_HDR_LEN`).
    l3_len: u16,
}

// === entry ===

#[xdp]
pub fn sluice_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    count(Counter::RxPackets);
    count_n(Counter::RxBytes, len);
    // One call site of `forward` keeps the verifier's work linear in the
    // number of parse paths instead of multiplying them.
    let r = match process(&ctx, len) {
        Ok(Step::Pass(c)) => {
            count(c);
            return xdp_action::XDP_PASS;
        }
        Ok(Step::Forward(p, icmp, meta, session)) => forward(&ctx, len, p, icmp, meta, session),
        Err(c) => Err(c),
    };
    match r {
        Ok(verdict) => verdict,
        Err(c) => {
            count(c);
            xdp_action::XDP_DROP
        }
    }
}

/// Returns the verdict, or `Err(counter)` for a counted drop.
#[inline(always)]
fn process(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let Some(ethertype) = read::<2>(ctx, 12) else {
        return Err(Counter::DropTruncated);
    };
    match be16(ethertype) {
        ETH_P_IP => {
            if let Some(step) = fast_v4(ctx, len) {
                return Ok(step);
            }
            process_v4(ctx, len)
        }
        ETH_P_IPV6 => {
            if let Some(step) = fast_v6(ctx, len) {
                return Ok(step);
            }
            process_v6(ctx, len)
        }
        _ => Ok(Step::Pass(Counter::PassNonIp)),
    }
}

#[inline(always)]
fn is_vip_addr(addr: &Addr, fam: u8) -> bool {
    let k = AddrKey {
        addr: *addr,
        family: fam as u32,
    };
    SLUICE_VIP_ADDRS.get_ptr(&k).is_some()
}

/// The common case in one service lookup: a well-formed, unfragmented
/// IPv4 TCP/UDP packet whose destination is a service. Anything else
/// (including every packet that is not for a service) returns `None` and
/// takes [`process_v4`], which tells non-VIP traffic from malformed VIP
/// traffic.
#[inline(always)]
fn fast_v4(ctx: &XdpContext, len: u64) -> Option<Step> {
    let hdr = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN)?;
    let total = be16([hdr[2], hdr[3]]) as u64;
    if hdr[0] != 0x45
        || be16([hdr[6], hdr[7]]) & 0x3fff != 0
        || total < IPV4_HDR_LEN as u64
        || total + (ETH_HDR_LEN as u64) > len
    {
        return None;
    }
    let proto = hdr[9];
    if proto != PROTO_TCP && proto != PROTO_UDP {
        return None;
    }
    let src = v4_addr(&hdr, 12);
    let dst = v4_addr(&hdr, 16);
    let parsed = parse_l4(ctx, ETH_HDR_LEN + IPV4_HDR_LEN, src, dst, proto, family::V4).ok()?;
    let session = match session_first(&parsed.key) {
        Ok((meta, sp)) => {
            return Some(Step::Forward(parsed, false, Some(meta), Session::Found(sp)));
        }
        Err(s) => s,
    };
    let meta = lookup_service(&parsed.key)?;
    Some(Step::Forward(parsed, false, Some(meta), session))
}

/// [`fast_v4`] for IPv6: TCP/UDP directly after the fixed header.
#[inline(always)]
fn fast_v6(ctx: &XdpContext, len: u64) -> Option<Step> {
    let hdr = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN)?;
    let payload = be16([hdr[4], hdr[5]]) as u64;
    let next = hdr[6];
    if hdr[0] >> 4 != 6
        || payload + (ETH_HDR_LEN + IPV6_HDR_LEN) as u64 > len
        || (next != PROTO_TCP && next != PROTO_UDP)
    {
        return None;
    }
    let src = v6_addr(&hdr, 8);
    let dst = v6_addr(&hdr, 24);
    let parsed = parse_l4(ctx, ETH_HDR_LEN + IPV6_HDR_LEN, src, dst, next, family::V6).ok()?;
    let session = match session_first(&parsed.key) {
        Ok((meta, sp)) => {
            return Some(Step::Forward(parsed, false, Some(meta), Session::Found(sp)));
        }
        Err(s) => s,
    };
    let meta = lookup_service(&parsed.key)?;
    Some(Step::Forward(parsed, false, Some(meta), session))
}

#[inline(always)]
fn process_v4(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let o = ETH_HDR_LEN;
    let Some(hdr) = read::<IPV4_HDR_LEN>(ctx, o) else {
        return Err(Counter::DropTruncated);
    };
    let dst = v4_addr(&hdr, 16);
    if !is_vip_addr(&dst, family::V4) {
        return Ok(Step::Pass(Counter::PassNonVip));
    }
    if hdr[0] >> 4 != 4 || hdr[0] & 0x0f < 5 {
        return Err(Counter::DropMalformed);
    }
    if hdr[0] & 0x0f != 5 {
        return Err(Counter::DropIpOptions);
    }
    let total = be16([hdr[2], hdr[3]]) as u64;
    if total < IPV4_HDR_LEN as u64 || total + (ETH_HDR_LEN as u64) > len {
        return Err(Counter::DropTruncated);
    }
    // More-fragments flag or a non-zero offset.
    if be16([hdr[6], hdr[7]]) & 0x3fff != 0 {
        return Err(Counter::DropFragment);
    }
    let src = v4_addr(&hdr, 12);
    let proto = hdr[9];
    let l4 = o + IPV4_HDR_LEN;
    match proto {
        PROTO_TCP | PROTO_UDP => {
            let parsed = parse_l4(ctx, l4, src, dst, proto, family::V4)?;
            Ok(Step::Forward(parsed, false, None, Session::Unknown))
        }
        PROTO_ICMP => icmp_v4(ctx, l4),
        _ => Ok(Step::Pass(Counter::PassNoService)),
    }
}

#[inline(always)]
fn process_v6(ctx: &XdpContext, len: u64) -> Result<Step, Counter> {
    let o = ETH_HDR_LEN;
    let Some(hdr) = read::<IPV6_HDR_LEN>(ctx, o) else {
        return Err(Counter::DropTruncated);
    };
    let dst = v6_addr(&hdr, 24);
    if !is_vip_addr(&dst, family::V6) {
        return Ok(Step::Pass(Counter::PassNonVip));
    }
    if hdr[0] >> 4 != 6 {
        return Err(Counter::DropMalformed);
    }
    let payload = be16([hdr[4], hdr[5]]) as u64;
    if payload + (ETH_HDR_LEN + IPV6_HDR_LEN) as u64 > len {
        return Err(Counter::DropTruncated);
    }
    let src = v6_addr(&hdr, 8);
    let next = hdr[6];
    let l4 = o + IPV6_HDR_LEN;
    match next {
        PROTO_TCP | PROTO_UDP => {
            let parsed = parse_l4(ctx, l4, src, dst, next, family::V6)?;
            Ok(Step::Forward(parsed, false, None, Session::Unknown))
        }
        PROTO_ICMPV6 => icmp_v6(ctx, l4),
        PROTO_V6_FRAGMENT => Err(Counter::DropFragment),
        // Hop-by-hop, routing and destination options: extension headers
        // are not walked (see docs/L4.md).
        0 | 43 | 60 => Err(Counter::DropIpOptions),
        _ => Ok(Step::Pass(Counter::PassNoService)),
    }
}

/// Parses the TCP/UDP ports (and TCP flags) at `l4`.
#[inline(always)]
fn parse_l4(
    ctx: &XdpContext,
    l4: usize,
    src: Addr,
    dst: Addr,
    proto: u8,
    fam: u8,
) -> Result<Parsed, Counter> {
    let (ports, flags) = match proto {
        PROTO_TCP => {
            let Some(h) = read::<20>(ctx, l4) else {
                return Err(Counter::DropTruncated);
            };
            ([h[0], h[1], h[2], h[3]], h[13])
        }
        PROTO_UDP => {
            let Some(h) = read::<8>(ctx, l4) else {
                return Err(Counter::DropTruncated);
            };
            ([h[0], h[1], h[2], h[3]], 0)
        }
        // Callers only pass TCP or UDP.
        _ => return Err(Counter::DropMalformed),
    };
    Ok(Parsed {
        key: FlowKey {
            src,
            dst,
            sport: be16([ports[0], ports[1]]),
            dport: be16([ports[2], ports[3]]),
            proto,
            family: fam,
            _pad: 0,
        },
        tcp_flags: flags,
        l3_len: ETH_HDR_LEN as u16,
    })
}

/// ICMPv4 to a VIP: a "fragmentation needed" error quotes the real's reply
/// (VIP:port → client:port); forward it to the real serving that flow so its
/// path-MTU discovery works. Anything else goes to the kernel.
#[inline(always)]
fn icmp_v4(ctx: &XdpContext, l4: usize) -> Result<Step, Counter> {
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

/// ICMPv6 "packet too big" for a VIP flow, as [`icmp_v4`].
#[inline(always)]
fn icmp_v6(ctx: &XdpContext, l4: usize) -> Result<Step, Counter> {
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

/// A session hit found before any service lookup: the session, and its
/// service from [`SLUICE_VIP_BY_INDEX`] by the index the session keeps,
/// so that an established flow costs one hash lookup, not two. Otherwise
/// (look the service up instead) what was learnt of the session:
/// `Unknown` when no VIP address ends in the destination's last byte
/// (non-VIP traffic pays an array read, not a session lookup) or when the
/// session's index no longer holds a service that matches this packet's
/// destination; `Absent` on a session miss (a new flow then skips a second
/// lookup in [`forward`]).
#[inline(always)]
fn session_first(key: &FlowKey) -> Result<(&'static VipMeta, *mut FlowVal), Session> {
    match SLUICE_VIP_FILTER.get(vip_filter_slot(&key.dst, key.family)) {
        Some(n) if *n != 0 => {}
        _ => return Err(Session::Unknown),
    }
    let Some(sp) = SLUICE_SESSIONS.get_ptr_mut(key) else {
        return Err(Session::Absent);
    };
    // SAFETY: value pointer from a successful lookup, valid for this run.
    let slot = unsafe { (*sp).vip_slot };
    let Some(vs) = u32::from(slot)
        .checked_sub(1)
        .and_then(|i| SLUICE_VIP_BY_INDEX.get(i))
    else {
        return Err(Session::Unknown);
    };
    let k = &vs.key;
    if k.family != key.family
        || k.proto != key.proto
        || k.addr != key.dst
        || (k.port != 0 && k.port != key.dport)
    {
        return Err(Session::Unknown);
    }
    Ok((&vs.meta, sp))
}

/// Map values are used in place through references instead of being copied
/// to the 512-byte BPF stack. They stay valid while the program runs (the
/// kernel frees map elements only after an RCU grace period); a service
/// removed by userspace at this very moment may be read half-old,
/// half-new, which at worst forwards one packet by its previous settings.
#[inline(always)]
fn lookup_service(key: &FlowKey) -> Option<&'static VipMeta> {
    let mut vk = VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    if let Some(m) = SLUICE_VIPS.get_ptr(&vk) {
        // SAFETY: pointer from a successful lookup, valid for this run (see above).
        return Some(unsafe { &*m });
    }
    let any_port = match cfg() {
        Some(c) => (c.flags & cfg_flags::ANY_PORT_SERVICES) != 0,
        None => false,
    };
    if !any_port {
        return None;
    }
    vk.port = 0;
    SLUICE_VIPS.get_ptr(&vk).map(|m| {
        // SAFETY: as above.
        unsafe { &*m }
    })
}

#[inline(always)]
fn real(idx: u32) -> Option<&'static RealDef> {
    SLUICE_REALS.get_ptr(idx).map(|p| {
        // SAFETY: in-range array element; array elements are never freed.
        unsafe { &*p }
    })
}

#[inline(always)]
fn cfg() -> Option<&'static GlobalCfg> {
    SLUICE_CFG.get_ptr(0).map(|p| {
        // SAFETY: element 0 of a one-entry array; never freed.
        unsafe { &*p }
    })
}

#[inline(always)]
fn timeout_ns(c: &GlobalCfg, st: u8) -> u64 {
    // `& 3`: the four states index the array; the mask is the bounds proof.
    c.timeouts_ns[(st & 3) as usize]
}

#[inline(always)]
fn next_state(proto: u8, old: u8, flags: u8) -> u8 {
    if proto != PROTO_TCP {
        return state::UDP;
    }
    if flags & (TCP_FIN | TCP_RST) != 0 {
        state::TCP_CLOSING
    } else if flags & TCP_SYN != 0 && old == state::TCP_SYN {
        state::TCP_SYN
    } else if old == state::TCP_CLOSING {
        state::TCP_CLOSING
    } else {
        state::TCP_ESTABLISHED
    }
}

/// Connection counters are shared across CPUs and updated with plain
/// read-modify-write: the BPF target's `core` has no 64-bit atomic RMW on
/// stable, and a rare lost update only skews the `lc` family slightly until
/// userspace reconciles the counters from the session table (docs/L4.md).
#[inline(always)]
fn conns_add(real: u32) {
    if let Some(p) = SLUICE_REAL_CONNS.get_ptr_mut(real) {
        // SAFETY: in-range element of an array from a successful lookup,
        // valid and aligned; a concurrent writer can only lose an update.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
fn conns_sub(real: u32) {
    if let Some(p) = SLUICE_REAL_CONNS.get_ptr_mut(real) {
        // SAFETY: as in `conns_add`. Never below zero: userspace may have
        // reset the counter since this session was counted.
        unsafe {
            if *p > 0 {
                *p -= 1;
            }
        }
    }
}

/// Chooses a real for a new flow of service `m`.
#[inline(always)]
fn schedule(m: &VipMeta, key: &FlowKey, ring_size: u32) -> u32 {
    if m.ring_len == 0 && m.reals_len == 0 {
        return NO_REAL;
    }
    let base = m.vip_index.wrapping_mul(ring_size);
    let slot = match m.sched {
        sched::HASH_FLOW => {
            flow_hash(&key.src, key.sport, key.dport, key.proto, HASH_SEED) % m.ring_len.max(1)
        }
        sched::HASH_SRC => addr_hash(&key.src, HASH_SEED) % m.ring_len.max(1),
        sched::HASH_DST => addr_hash(&key.dst, HASH_SEED) % m.ring_len.max(1),
        sched::CURSOR => {
            let Some(c) = SLUICE_RR.get_ptr_mut(m.vip_index) else {
                return NO_REAL;
            };
            // SAFETY: per-CPU slot from a successful lookup (see `count`).
            let cur = unsafe { *c };
            let next = if cur + 1 >= m.ring_len { 0 } else { cur + 1 };
            // SAFETY: as above.
            unsafe { *c = next };
            if cur >= m.ring_len { 0 } else { cur }
        }
        _ => return least_loaded(m),
    };
    match SLUICE_RING.get_ptr(base.wrapping_add(slot)) {
        // SAFETY: in-range element from a successful lookup; copied out.
        Some(p) => unsafe { *p },
        None => NO_REAL,
    }
}

/// `lc`, `wlc`, `sed`, `nq` over the service's real list, IPVS formulas,
/// with the shared connection counters (see docs/L4.md for how exact they
/// are). Comparisons cross-multiply instead of dividing.
/// A separate BPF function (not inlined) so the verifier checks the loop
/// once per call rather than inside every path of `forward`.
#[inline(never)]
fn least_loaded(m: &VipMeta) -> u32 {
    let mut best = NO_REAL;
    let mut best_load: u64 = 0;
    let mut best_w: u64 = 1;
    let base = m.vip_index.wrapping_mul(MAX_REALS_PER_VIP);
    let mut i = 0u32;
    while i < MAX_REALS_PER_VIP {
        if i >= m.reals_len {
            break;
        }
        let idx = match SLUICE_VIP_REALS.get_ptr(base + i) {
            // SAFETY: in-range element from a successful lookup; copied out.
            Some(p) => unsafe { *p },
            None => break,
        };
        i += 1;
        let Some(r) = real(idx) else { continue };
        if r.flags & real_flags::PRESENT == 0 || r.weight == 0 {
            continue;
        }
        let active = match SLUICE_REAL_CONNS.get_ptr(idx) {
            // SAFETY: in-range element; a racy read of a counter is fine.
            Some(p) => unsafe { *p },
            None => 0,
        };
        let w = r.weight as u64;
        // nq: an idle real wins at once.
        if m.sched == sched::NQ && active == 0 {
            return idx;
        }
        let (load, weight) = match m.sched {
            sched::LC => (active, 1),
            sched::WLC => (active, w),
            // sed and nq's fallback: (active + 1) / weight.
            _ => (active + 1, w),
        };
        if best == NO_REAL || load * best_w < best_load * weight {
            best = idx;
            best_load = load;
            best_w = weight;
        }
    }
    best
}

/// Session lookup / scheduling and the rewrite. `icmp` marks a forwarded
/// ICMP error: it uses an existing session (or the scheduler's answer) but
/// never creates or updates one.
#[inline(always)]
fn forward(
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
    let Some(c) = cfg() else {
        return Err(Counter::DropNoReal);
    };
    // The coarse monotonic clock (tick resolution, a few ms) is plenty for
    // timeouts of seconds and much cheaper per packet than the precise one.
    // SAFETY: reading the kernel's clock has no preconditions.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let mut chosen = NO_REAL;
    let mut new_session = false;

    let found = match session {
        Session::Found(sp) => Some(sp),
        Session::Absent => None,
        Session::Unknown => SLUICE_SESSIONS.get_ptr_mut(&p.key),
    };
    if let Some(sp) = found {
        // SAFETY: value pointer from a successful lookup. Concurrent updates
        // from another CPU for the same flow are benign (last writer wins on
        // plain fields).
        let s = unsafe { &mut *sp };
        let fresh = now.saturating_sub(s.last_seen_ns) <= timeout_ns(c, s.state);
        let usable = match real(s.real) {
            Some(r) => r.flags & real_flags::PRESENT != 0,
            None => false,
        };
        if fresh && usable {
            chosen = s.real;
            if !icmp {
                let st = next_state(p.key.proto, s.state, p.tcp_flags);
                if st == state::TCP_CLOSING && s.state != state::TCP_CLOSING {
                    conns_sub(s.real);
                }
                if st != s.state {
                    s.state = st;
                }
                if now.saturating_sub(s.last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
                    s.last_seen_ns = now;
                }
                count(Counter::SessionHit);
            }
        }
    }

    if chosen == NO_REAL {
        // Persistence: same real for the same client within the timeout.
        let pk = PersistKey {
            src: p.key.src,
            vip_index: m.vip_index,
        };
        if m.flags & vip_flags::PERSIST != 0 {
            if let Some(pv) = SLUICE_PERSIST.get_ptr(&pk) {
                // SAFETY: value from a successful lookup; copied out.
                let pv = unsafe { *pv };
                if now.saturating_sub(pv.last_seen_ns) <= m.persist_ns {
                    if let Some(r) = real(pv.real) {
                        if r.flags & real_flags::PRESENT != 0 && r.weight > 0 {
                            chosen = pv.real;
                        }
                    }
                }
            }
        }
        if chosen == NO_REAL {
            chosen = schedule(m, &p.key, c.ring_size);
        }
        if chosen == NO_REAL {
            return Err(Counter::DropNoReal);
        }
        if !icmp {
            let st = next_state(p.key.proto, state::TCP_SYN, p.tcp_flags);
            let v = FlowVal {
                real: chosen,
                state: st,
                _pad: 0,
                // Fits: vip_index < MAX_VIPS (64), checked by the loader.
                vip_slot: (m.vip_index + 1) as u16,
                last_seen_ns: now,
            };
            // A full table evicts the least recently used entry of this
            // CPU's list; an insert failure only costs the session affinity
            // of this flow, so it is not a drop.
            let _ = SLUICE_SESSIONS.insert(&p.key, &v, 0);
            if m.flags & vip_flags::PERSIST != 0 {
                let pv = PersistVal {
                    real: chosen,
                    _pad: 0,
                    last_seen_ns: now,
                };
                let _ = SLUICE_PERSIST.insert(&pk, &pv, 0);
            }
            if st != state::TCP_CLOSING && p.key.proto == PROTO_TCP {
                conns_add(chosen);
            }
            new_session = true;
            count(Counter::SessionMiss);
        }
    }

    let Some(r) = real(chosen) else {
        return Err(Counter::DropNoReal);
    };
    if r.flags & real_flags::HAS_MAC == 0 {
        return Err(Counter::DropNoNeighbour);
    }
    traffic(&SLUICE_VIP_STATS, m.vip_index, len, new_session);
    traffic(&SLUICE_REAL_STATS, chosen, len, new_session);

    let verdict = match m.method {
        method::TUN => encap(ctx, m, r, &p)?,
        _ => {
            rewrite_macs(ctx, &r.mac, &c.iface_mac)?;
            xdp_action::XDP_TX
        }
    };
    if icmp {
        count(Counter::IcmpForwarded);
    } else {
        count(Counter::TxForwarded);
    }
    Ok(verdict)
}

/// `dr`: destination MAC := the real's, source MAC := ours.
#[inline(always)]
fn rewrite_macs(ctx: &XdpContext, dst: &[u8; 6], src: &[u8; 6]) -> Result<(), Counter> {
    let Some(eth) = ptr_at_mut::<[u8; 12]>(ctx, 0) else {
        return Err(Counter::DropTruncated);
    };
    let mut macs = [0u8; 12];
    macs[..6].copy_from_slice(dst);
    macs[6..].copy_from_slice(src);
    // SAFETY: `ptr_at_mut` checked that 12 bytes at offset 0 are in the frame.
    unsafe { *eth = macs };
    Ok(())
}

/// `tun`: prepend an outer IPv4 (IPIP, protocol 4) or IPv6 (IP6IP6, next
/// header 41) header addressed to the real, then a new Ethernet header.
#[inline(always)]
fn encap(ctx: &XdpContext, m: &VipMeta, r: &RealDef, p: &Parsed) -> Result<u32, Counter> {
    let Some(c) = cfg() else {
        return Err(Counter::DropEncapFailed);
    };
    let inner_len = (ctx.data_end() - ctx.data()) as u64 - p.l3_len as u64;
    let h = flow_hash(&p.key.src, p.key.sport, p.key.dport, p.key.proto, HASH_SEED);
    let vary = m.flags & vip_flags::TUN_VARY_SOURCE != 0;
    if r.family == family::V4 {
        let grow = IPV4_HDR_LEN as i32;
        // SAFETY: the helper is called with the program's own context; it
        // only moves `data` and invalidates earlier packet pointers, none of
        // which are used after this point.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN + IPV4_HDR_LEN]>(ctx, 0) else {
            return Err(Counter::DropEncapFailed);
        };
        let mut b = [0u8; ETH_HDR_LEN + IPV4_HDR_LEN];
        b[..6].copy_from_slice(&r.mac);
        b[6..12].copy_from_slice(&c.iface_mac);
        b[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        let total = (inner_len + IPV4_HDR_LEN as u64) as u16;
        let ip = &mut b[ETH_HDR_LEN..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[8] = TUN_TTL;
        ip[9] = PROTO_IPIP;
        ip[12..16].copy_from_slice(&m.tun_src[0].to_ne_bytes());
        if vary {
            ip[14..16].copy_from_slice(&(h as u16).to_be_bytes());
        }
        ip[16..20].copy_from_slice(&r.addr[0].to_ne_bytes());
        let csum = checksum::finish(checksum::sum(ip, 0));
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        // SAFETY: `ptr_at_mut` checked the whole 34-byte range after the
        // head adjustment.
        unsafe { *out = b };
    } else {
        let grow = IPV6_HDR_LEN as i32;
        // SAFETY: as above.
        if unsafe { bpf_xdp_adjust_head(ctx.ctx, -grow) } != 0 {
            return Err(Counter::DropEncapFailed);
        }
        let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN + IPV6_HDR_LEN]>(ctx, 0) else {
            return Err(Counter::DropEncapFailed);
        };
        let mut b = [0u8; ETH_HDR_LEN + IPV6_HDR_LEN];
        b[..6].copy_from_slice(&r.mac);
        b[6..12].copy_from_slice(&c.iface_mac);
        b[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
        let ip = &mut b[ETH_HDR_LEN..];
        ip[0] = 0x60;
        // Flow label from the flow hash, so ECMP/RSS on the way spread flows.
        ip[1] = ((h >> 16) & 0x0f) as u8;
        ip[2..4].copy_from_slice(&(h as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&(inner_len as u16).to_be_bytes());
        ip[6] = PROTO_IPV6;
        ip[7] = TUN_TTL;
        ip[8..24].copy_from_slice(&addr_to_bytes(m.tun_src));
        if vary {
            ip[20..24].copy_from_slice(&h.to_be_bytes());
        }
        ip[24..40].copy_from_slice(&addr_to_bytes(r.addr));
        // SAFETY: `ptr_at_mut` checked the whole 54-byte range.
        unsafe { *out = b };
    }
    Ok(xdp_action::XDP_TX)
}

// === helper programs ===

/// `XDP_PASS` for everything. Native XDP_TX into a veth needs an XDP
/// program on the receiving peer (docs/platform notes), so the lab attaches
/// this to the switch-side end of the LB's veth.
#[xdp]
pub fn sluice_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Benchmark baseline (a): swap the MACs and bounce every frame with
/// `XDP_TX`, the least work an XDP forwarder can do.
#[xdp]
pub fn sluice_reflect(ctx: XdpContext) -> u32 {
    count(Counter::RxPackets);
    let Some(eth) = ptr_at_mut::<[u8; 12]>(&ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: `ptr_at_mut` checked 12 bytes at offset 0.
    let macs = unsafe { *eth };
    let mut swapped = [0u8; 12];
    swapped[..6].copy_from_slice(&macs[6..]);
    swapped[6..].copy_from_slice(&macs[..6]);
    // SAFETY: as above.
    unsafe { *eth = swapped };
    xdp_action::XDP_TX
}

/// Benchmark bouncer (the generator side of a ping-pong pps run): counts,
/// strips an outer IPIP header if there is one (so `tun` frames come back
/// as the original packet), swaps the MACs and sends the frame back.
#[xdp]
pub fn sluice_bounce(ctx: XdpContext) -> u32 {
    bounce(&ctx, false)
}

/// [`sluice_bounce`] that also adds one to the IPv4 source address each
/// time, so every bounce is a new flow for the program under test.
#[xdp]
pub fn sluice_bounce_vary(ctx: XdpContext) -> u32 {
    bounce(&ctx, true)
}

#[inline(always)]
fn bounce(ctx: &XdpContext, vary: bool) -> u32 {
    count(Counter::RxPackets);
    let Some(eth) = read::<ETH_HDR_LEN>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    if be16([eth[12], eth[13]]) == ETH_P_IP {
        if let Some(ip) = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN) {
            if ip[9] == PROTO_IPIP {
                // SAFETY: the outer header was just read, so it is inside
                // the frame; no packet pointer is kept across the call.
                if unsafe { bpf_xdp_adjust_head(ctx.ctx, IPV4_HDR_LEN as i32) } != 0 {
                    return xdp_action::XDP_DROP;
                }
            }
        }
    }
    let Some(out) = ptr_at_mut::<[u8; ETH_HDR_LEN]>(ctx, 0) else {
        return xdp_action::XDP_DROP;
    };
    let mut hdr = [0u8; ETH_HDR_LEN];
    hdr[..6].copy_from_slice(&eth[6..12]);
    hdr[6..12].copy_from_slice(&eth[..6]);
    hdr[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
    // SAFETY: `ptr_at_mut` checked 14 bytes at the (new) start.
    unsafe { *out = hdr };
    if vary {
        if let Some(src) = ptr_at_mut::<[u8; 4]>(ctx, ETH_HDR_LEN + 12) {
            // SAFETY: `ptr_at_mut` checked these 4 bytes.
            let a = u32::from_be_bytes(unsafe { *src }).wrapping_add(1);
            // SAFETY: as above.
            unsafe { *src = a.to_be_bytes() };
        }
    }
    xdp_action::XDP_TX
}

/// Benchmark sink: count and drop (the generator side of a pps run).
#[xdp]
pub fn sluice_sink(_ctx: XdpContext) -> u32 {
    count(Counter::RxPackets);
    xdp_action::XDP_DROP
}

/// Real-server side of `tun`: strips an outer IPv4 (IPIP) or IPv6 (IP6IP6)
/// header addressed to this host and passes the inner packet to the
/// kernel, which delivers it to the VIP on `lo`. The kernel here has no
/// ipip module, hence this program; a kernel with one can use an `ipip`
/// device instead (docs/L4.md). Everything else passes untouched.
#[xdp]
pub fn sluice_decap(ctx: XdpContext) -> u32 {
    match try_decap(&ctx) {
        Some(v) => v,
        None => xdp_action::XDP_PASS,
    }
}

#[inline(always)]
fn try_decap(ctx: &XdpContext) -> Option<u32> {
    let eth = read::<ETH_HDR_LEN>(ctx, 0)?;
    let (strip, inner_type) = match be16([eth[12], eth[13]]) {
        ETH_P_IP => {
            let ip = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            if ip[9] != PROTO_IPIP || ip[0] != 0x45 {
                return None;
            }
            // The inner packet must be a plain IPv4 header too.
            let inner = read::<1>(ctx, ETH_HDR_LEN + IPV4_HDR_LEN)?;
            if inner[0] >> 4 != 4 {
                return Some(xdp_action::XDP_DROP);
            }
            (IPV4_HDR_LEN, ETH_P_IP)
        }
        ETH_P_IPV6 => {
            let ip = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            if ip[6] != PROTO_IPV6 {
                return None;
            }
            let inner = read::<1>(ctx, ETH_HDR_LEN + IPV6_HDR_LEN)?;
            if inner[0] >> 4 != 6 {
                return Some(xdp_action::XDP_DROP);
            }
            (IPV6_HDR_LEN, ETH_P_IPV6)
        }
        _ => return None,
    };
    // SAFETY: shrinking the head by the outer header's length, which the
    // reads above proved is inside the frame; earlier packet pointers are
    // not used afterwards.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, strip as i32) } != 0 {
        return Some(xdp_action::XDP_DROP);
    }
    let out = ptr_at_mut::<[u8; ETH_HDR_LEN]>(ctx, 0)?;
    let mut hdr = eth;
    hdr[12..14].copy_from_slice(&inner_type.to_be_bytes());
    // SAFETY: `ptr_at_mut` checked 14 bytes at the new start of the frame.
    unsafe { *out = hdr };
    Some(xdp_action::XDP_PASS)
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this never runs;
    // `loop {}` keeps it a valid `!` without unsafe.
    loop {}
}
