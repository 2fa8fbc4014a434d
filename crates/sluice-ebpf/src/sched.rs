//! Choosing a real for a new flow: the client's persistence entry first,
//! then the service's scheduler (docs/L4.md, "Schedulers"): a ring indexed
//! by a hash (`mh`, `sh`, `dh`), a ring walked by a per-CPU cursor (`rr`,
//! `wrr`), or a loop over the service's reals (`lc`, `wlc`, `sed`, `nq`).

use sluice_wire::{
    hash::{addr_hash, flow_hash},
    maps::{
        FlowKey, MAX_REALS_PER_VIP, NO_REAL, PersistKey, VipMeta, real_flags, sched, vip_flags,
    },
};

use crate::consts::HASH_SEED;
use crate::maps::{
    SLUICE_PERSIST, SLUICE_REAL_CONNS, SLUICE_RING, SLUICE_RR, SLUICE_VIP_REALS, real,
};
use crate::session::live_real;

/// The real for a new flow of service `m`, or `NO_REAL`.
#[inline(always)]
pub(crate) fn choose(m: &VipMeta, key: &FlowKey, ring_size: u32, now: u64) -> u32 {
    if m.flags & vip_flags::PERSIST != 0 {
        let chosen = persisted(m, key, now);
        if chosen != NO_REAL {
            return chosen;
        }
    }
    schedule(m, key, ring_size)
}

/// Persistence: the same real for the same client within the timeout, if
/// it is still live (present, same allocation: [`live_real`]) and not
/// drained.
#[inline(always)]
fn persisted(m: &VipMeta, key: &FlowKey, now: u64) -> u32 {
    let pk = PersistKey {
        src: key.src,
        vip_index: m.vip_index,
    };
    let Some(pv) = SLUICE_PERSIST.get_ptr(&pk) else {
        return NO_REAL;
    };
    // SAFETY: value from a successful lookup; copied out.
    let pv = unsafe { *pv };
    if now.saturating_sub(pv.last_seen_ns) > m.persist_ns {
        return NO_REAL;
    }
    match live_real(pv.real, pv.real_gen) {
        Some(r) if r.weight > 0 => pv.real,
        _ => NO_REAL,
    }
}

/// The service's scheduler.
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
            // SAFETY: per-CPU slot from a successful lookup (see `maps::count`).
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
