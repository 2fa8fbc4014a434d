//! The session table (`SLUICE_SESSIONS`): the lookup that comes before the
//! service lookup on the fast path, the refresh of a live session, the
//! creation of a new one (with its persistence entry and connection count),
//! the TCP state a DSR balancer can follow from the client's half of a
//! connection (docs/L4.md, "Sessions"), and for `nat` the check that a
//! real's reply belongs to a live session ([`nat_session`]), which moves
//! the same state on with the real's half.

use sluice_wire::fullnat::{self, FullnatKey};
use sluice_wire::maps::{
    Addr, Counter, FlowKey, FlowVal, GlobalCfg, Method, PersistKey, PersistVal, RealDef, VipMeta,
    cfg_flags, real_flags, state, vip_filter_slot, vip_flags,
};
use sluice_wire::nat::real_port;

use crate::consts::{
    BPF_RB_NO_WAKEUP, LAST_SEEN_GRANULARITY_NS, PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN,
};
use crate::maps::{
    SLUICE_PERSIST, SLUICE_REAL_CONNS, SLUICE_SESSIONS, SLUICE_SYNC_RING, SLUICE_VIP_BY_INDEX,
    SLUICE_VIP_FILTER, count, real,
};
use crate::parse::Parsed;

/// The session of a packet, as far as known before [`crate::forward`].
#[derive(Clone, Copy)]
pub(crate) enum Session {
    /// Not looked up yet.
    Unknown,
    /// Looked up: there is none.
    Absent,
    /// Looked up: this one.
    Found(*mut FlowVal),
}

impl Session {
    /// The session entry of `key`, looked up only if the fast path has not
    /// done so already.
    #[inline(always)]
    pub(crate) fn resolve(self, key: &FlowKey) -> Option<*mut FlowVal> {
        match self {
            Session::Found(sp) => Some(sp),
            Session::Absent => None,
            Session::Unknown => SLUICE_SESSIONS.get_ptr_mut(key),
        }
    }
}

/// A session hit found before any service lookup: the session, and its
/// service from `SLUICE_VIP_BY_INDEX` by the index the session keeps,
/// so that an established flow costs one hash lookup, not two. Otherwise
/// (look the service up instead) what was learnt of the session:
/// `Unknown` when no VIP address ends in the destination's last byte
/// (non-VIP traffic pays an array read, not a session lookup) or when the
/// session's index no longer holds a service that matches this packet's
/// destination; `Absent` on a session miss (a new flow then skips a second
/// lookup in [`crate::forward`]).
#[inline(always)]
pub(crate) fn session_first(key: &FlowKey) -> Result<(&'static VipMeta, *mut FlowVal), Session> {
    match SLUICE_VIP_FILTER.get(vip_filter_slot(&key.dst, key.family)) {
        Some(n) if *n != 0 => {}
        _ => return Err(Session::Unknown),
    }
    let Some(sp) = SLUICE_SESSIONS.get_ptr_mut(key) else {
        return Err(Session::Absent);
    };
    // SAFETY: value pointer from a successful lookup, valid for this run.
    let slot = unsafe { (*sp).vip_slot };
    match slot_service(slot, key) {
        Some(meta) => Ok((meta, sp)),
        None => Err(Session::Unknown),
    }
}

/// The service a session recorded (`vip_slot`, its `vip_index + 1`) if
/// that index still holds a service that matches flow `key`: same family,
/// protocol and address, and the same port (or every port). A removed
/// service's cleared slot, or an index given since to another VIP, does
/// not match.
#[inline(always)]
fn slot_service(slot: u8, key: &FlowKey) -> Option<&'static VipMeta> {
    let vs = u32::from(slot)
        .checked_sub(1)
        .and_then(|i| SLUICE_VIP_BY_INDEX.get(i))?;
    let k = &vs.key;
    if k.family != key.family
        || k.proto != key.proto
        || k.addr != key.dst
        || (k.port != 0 && k.port != key.dport)
    {
        return None;
    }
    Some(&vs.meta)
}

/// The real in `slot` if it is still the one an entry chose: present, and
/// of the same allocation (see `RealDef::generation`). The one place of the
/// rule "the entry's real is gone": a removed real (not present), or a
/// slot given since to another real, possibly of another service (another
/// generation). Sessions ([`refresh`]) and persistence entries
/// (`sched::persisted`) that fail it are scheduled anew, so a flow never
/// follows a reused slot to whatever real or service now owns it.
#[inline(always)]
pub(crate) fn live_real(slot: u32, generation: u16) -> Option<&'static RealDef> {
    let r = real(slot)?;
    if r.flags & real_flags::PRESENT == 0 || r.generation != generation {
        return None;
    }
    Some(r)
}

/// The real of session `sp` (its slot and definition) if the session is
/// fresh, belongs to service `m`, its real is still live ([`live_real`])
/// and the packet is not a new connection on a closing session's tuple,
/// else `None` (the flow is then scheduled anew). A packet of the flow
/// itself (not a quoted ICMP error) moves the session's TCP state and
/// `last_seen` on and counts a hit. The real is handed back so that the
/// caller does not look the same slot up again.
#[inline(always)]
pub(crate) fn refresh(
    c: &GlobalCfg,
    m: &VipMeta,
    sp: *mut FlowVal,
    p: &Parsed,
    icmp: bool,
    now: u64,
) -> Option<(u32, &'static RealDef)> {
    // SAFETY: value pointer from a successful lookup. Concurrent updates
    // from another CPU for the same flow are benign (last writer wins on
    // plain fields).
    let s = unsafe { &mut *sp };
    // A new connection on the 4-tuple of one that is closing (a client
    // reusing its port): the old session says nothing about it, and kept
    // it would stay CLOSING with that state's timeout. It is scheduled
    // anew and gets a fresh session (IPVS's `conn_reuse_mode`).
    if !icmp
        && s.state == state::TCP_CLOSING
        && p.key.proto == PROTO_TCP
        && p.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    {
        return None;
    }
    // A session found by its key on the slow path may name another
    // service than the one now at that key (the service was replaced);
    // on the fast path `m` comes from the session's own slot.
    if u32::from(s.vip_slot) != m.vip_index + 1 {
        return None;
    }
    let fresh = now.saturating_sub(s.last_seen_ns) <= timeout_ns(c, s.state);
    let r = live_real(s.real, s.real_gen)?;
    if !fresh {
        return None;
    }
    if !icmp {
        advance(s, p.key.proto, p.tcp_flags, now);
        count(Counter::SessionHit);
    }
    Some((s.real, r))
}

/// Moves session `s` on by a segment with `flags` (either direction):
/// its TCP state (a FIN or RST closes it and gives up its connection
/// count) and, at most every `LAST_SEEN_GRANULARITY_NS`, its `last_seen`.
#[inline(always)]
fn advance(s: &mut FlowVal, proto: u8, flags: u8, now: u64) {
    let st = next_state(proto, s.state, flags);
    if st == state::TCP_CLOSING && s.state != state::TCP_CLOSING {
        conns_sub(s.real);
    }
    if st != s.state {
        s.state = st;
    }
    if now.saturating_sub(s.last_seen_ns) > LAST_SEEN_GRANULARITY_NS {
        s.last_seen_ns = now;
        // Seen here: the session is this LB's to sync from now on. In
        // the branch that already writes, so no packet pays a store more.
        s.from_peer = 0;
    }
}

/// The session of a `nat` flow whose key (client → VIP) is `fwd`, for a
/// packet from its real's side that names the real as `from`:`from_port`
/// (a reply's source, or the destination an ICMP error quotes): the
/// session if it is there, fresh, of a `nat` service that still matches
/// it, and its real (still live, [`live_real`]) is that address and port.
/// Otherwise the packet is not the session's and must not be rewritten.
#[inline(always)]
pub(crate) fn nat_session(
    c: &GlobalCfg,
    fwd: &FlowKey,
    from: &Addr,
    from_port: u16,
    now: u64,
) -> Option<*mut FlowVal> {
    reply_session(c, fwd, Method::Nat, from, from_port, now)
}

/// [`nat_session`] for `method` (`nat` or `fullnat`): the session of
/// `fwd` if it is fresh, of a service of that method that still matches
/// it, and its live real is `from`:`from_port`. (`fullnat` also checks
/// the local end: [`fullnat_session`].)
#[inline(always)]
fn reply_session(
    c: &GlobalCfg,
    fwd: &FlowKey,
    method: Method,
    from: &Addr,
    from_port: u16,
    now: u64,
) -> Option<*mut FlowVal> {
    let sp = SLUICE_SESSIONS.get_ptr_mut(fwd)?;
    // SAFETY: value pointer from a successful lookup, valid for this run;
    // only read here.
    let s = unsafe { &*sp };
    let m = slot_service(s.vip_slot, fwd)?;
    if Method::from_byte(m.method) != Some(method) {
        return None;
    }
    if now.saturating_sub(s.last_seen_ns) > timeout_ns(c, s.state) {
        return None;
    }
    let r = live_real(s.real, s.real_gen)?;
    if r.addr != *from || real_port(r.port, fwd.dport) != from_port {
        return None;
    }
    Some(sp)
}

/// The live session of a `fullnat` flow `fwd` that connects to the real
/// at `from`:`from_port` from the local end reverse key `rk` names
/// ([`reply_session`], and the local end is still the session's:
/// `sluice_wire::fullnat::holds`; a reverse entry left by an earlier
/// session of the same client tuple is not).
#[inline(always)]
pub(crate) fn fullnat_session(
    c: &GlobalCfg,
    fwd: &FlowKey,
    from: &Addr,
    from_port: u16,
    rk: &FullnatKey,
    now: u64,
) -> Option<*mut FlowVal> {
    let sp = reply_session(c, fwd, Method::Fullnat, from, from_port, now)?;
    // SAFETY: as in `reply_session`.
    if !fullnat::holds(rk, unsafe { &*sp }) {
        return None;
    }
    Some(sp)
}

/// Moves the session `sp` (from [`nat_session`] or [`fullnat_session`])
/// on by a real's segment with TCP `flags` ([`advance`]: a FIN or RST from
/// the real closes it too). An ICMP error about the flow moves nothing.
#[inline(always)]
pub(crate) fn reply_advance(sp: *mut FlowVal, proto: u8, flags: u8, now: u64) {
    // SAFETY: value pointer from a successful lookup; concurrent updates
    // of the same flow from another CPU are benign, as in `refresh`.
    advance(unsafe { &mut *sp }, proto, flags, now);
}

/// The local end of a `fullnat` session: its slot in the local-address
/// table and its port; none for other methods.
#[derive(Clone, Copy)]
pub(crate) struct LocalEnd {
    /// The slot (`sluice_wire::fullnat::MAP_LOCAL_ADDRS`).
    pub(crate) slot: u8,
    /// The port, host order.
    pub(crate) port: u16,
}

/// Records the choice of `chosen` (whose slot has generation `generation`)
/// for a new flow `key` (first TCP flags `tcp_flags`) of service `m`, from
/// local end `local` (`fullnat`): the session, the client's persistence
/// entry (if the service has persistence), and the real's connection
/// count; counts a miss.
#[inline(always)]
pub(crate) fn create(
    m: &VipMeta,
    key: &FlowKey,
    tcp_flags: u8,
    chosen: u32,
    generation: u16,
    local: Option<LocalEnd>,
    now: u64,
) {
    let st = next_state(key.proto, state::TCP_SYN, tcp_flags);
    let (local_slot, local_port) = match local {
        Some(l) => (l.slot + 1, l.port),
        None => (0, 0),
    };
    let v = FlowVal {
        real: chosen,
        state: st,
        // Fits: vip_index < MAX_VIPS (64), checked by the loader.
        vip_slot: (m.vip_index + 1) as u8,
        real_gen: generation,
        last_seen_ns: now,
        local_port,
        local_slot,
        toa_sent: 0,
        from_peer: 0,
        _pad: 0,
        _pad2: 0,
    };
    // A full table evicts the least recently used entry of this CPU's
    // list; an insert failure only costs the session affinity of this
    // flow, so it is not a drop.
    let _ = SLUICE_SESSIONS.insert(key, &v, 0);
    announce(key);
    if m.flags & vip_flags::PERSIST != 0 {
        let pk = PersistKey {
            src: key.src,
            vip_index: m.vip_index,
        };
        let pv = PersistVal {
            real: chosen,
            real_gen: generation,
            _pad: 0,
            last_seen_ns: now,
        };
        let _ = SLUICE_PERSIST.insert(&pk, &pv, 0);
    }
    if st != state::TCP_CLOSING && key.proto == PROTO_TCP {
        conns_add(chosen);
    }
    count(Counter::SessionMiss);
}

/// Hands a new session's key to the connection-sync daemon when sync
/// runs (`cfg_flags::SYNC`): a copy of the key already on the stack, no
/// wake-up (the daemon polls). A full ring is counted, never waited for:
/// the daemon's periodic walk sends the session later.
#[inline(always)]
fn announce(key: &FlowKey) {
    let on = match crate::maps::cfg() {
        Some(c) => c.flags & cfg_flags::SYNC != 0,
        None => false,
    };
    if on
        && SLUICE_SYNC_RING
            .output::<FlowKey>(key, BPF_RB_NO_WAKEUP)
            .is_err()
    {
        count(Counter::SyncRingFull);
    }
}

/// Is session `sp` still alive at `now` (not expired)? The `fullnat`
/// port search asks it of the session a reverse entry names.
#[inline(always)]
pub(crate) fn fresh(c: &GlobalCfg, s: &FlowVal, now: u64) -> bool {
    now.saturating_sub(s.last_seen_ns) <= timeout_ns(c, s.state)
}

#[inline(always)]
fn timeout_ns(c: &GlobalCfg, st: u8) -> u64 {
    // `& 3`: the four states index the array; the mask is the bounds proof.
    c.timeouts_ns[(st & 3) as usize]
}

/// The TCP state after a client segment with `flags` (UDP has one state).
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
