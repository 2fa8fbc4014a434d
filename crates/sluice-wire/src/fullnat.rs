//! `fullnat`: the LB connects to the real from one of the service's local
//! addresses and a port of its own, so the real answers the LB, not the
//! client (no route to the clients needed). This module owns the layouts
//! of its maps and the rule that splits each local address's ports among
//! the CPUs (after DPVS's `sa_pool`, whose per-lcore port ranges are the
//! model): CPU `c` of `n` only ever hands out the ports `min + c + k·n`,
//! so two CPUs never pick the same port and allocation takes no lock.
//! A reply may still arrive on any CPU: the reverse table is one hash
//! shared by all of them.
//!
//! Capacity: a connection is identified towards a real by (local address,
//! local port, real address, real port), so each local address offers
//! `max - min + 1` ports **per real address and port**, split evenly
//! among the CPUs (a CPU whose share is used up drops its new flows even
//! if another's is not: `drop_fullnat_no_port`).

use crate::maps::{Addr, FlowKey};

/// `Array<LocalAddr>`, [`MAX_LOCAL_ADDRS`] slots: every local address of
/// every `fullnat` service (slot `i` is named `i + 1` elsewhere, 0 = none).
pub const MAP_LOCAL_ADDRS: &str = "SLUICE_LOCAL_ADDRS";
/// `HashMap<AddrKey, u32>`: local address → its slot in
/// [`MAP_LOCAL_ADDRS`]. A packet to one of them may be a real's reply.
pub const MAP_LOCAL_INDEX: &str = "SLUICE_LOCAL_INDEX";
/// `Array<u32>`: each service's local addresses as `slot + 1`,
/// `vip_index * MAX_LOCAL_ADDRS_PER_VIP + i`; the first 0 ends the list.
pub const MAP_VIP_LOCALS: &str = "SLUICE_VIP_LOCALS";
/// `PerCpuArray<u32>`, one per local-address slot: where this CPU's next
/// port search starts (an index into its share of the ports).
pub const MAP_LOCAL_CURSOR: &str = "SLUICE_LOCAL_CURSOR";
/// `HashMap<FullnatKey, FullnatReverse>`, as large as the session table:
/// for each `fullnat` session, keyed by its real's replies, the client end
/// they are sent back to. A plain hash, not an LRU: an entry is never
/// evicted while its session lives (an LRU would hand its port to a new
/// flow); entries of dead sessions are reused by the port search and
/// swept by the control plane.
pub const MAP_FULLNAT_REVERSE: &str = "SLUICE_FULLNAT_REVERSE";

/// Most local addresses over all services (slots of [`MAP_LOCAL_ADDRS`]).
pub const MAX_LOCAL_ADDRS: u32 = 64;
/// Most local addresses of one service (bounds the search loop).
pub const MAX_LOCAL_ADDRS_PER_VIP: u32 = 8;
/// Candidate ports a new flow tries per local address before the next
/// address (bounds the search loop; the verifier walks every iteration).
pub const PORT_PROBES: u32 = 16;
/// Value of [`MAP_LOCAL_ADDRS`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAddr {
    /// The address (the source of connections to the reals).
    pub addr: Addr,
    /// [`crate::maps::family`] byte; 0 = empty slot.
    pub family: u8,
    /// Padding, zero.
    pub _pad: u8,
    /// Lowest port handed out (host order).
    pub port_min: u16,
    /// Highest port handed out (host order).
    pub port_max: u16,
    /// Padding, zero.
    pub _pad2: u16,
}

/// Key of [`MAP_FULLNAT_REVERSE`]: a real's reply to a local address, by
/// the local address's slot instead of its 16 bytes (the entry stays
/// within 64 bytes).
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FullnatKey {
    /// The real's address (the reply's source).
    pub real: Addr,
    /// The real's port (host order).
    pub rport: u16,
    /// The local port (the reply's destination port, host order).
    pub lport: u16,
    /// The local address's slot in [`MAP_LOCAL_ADDRS`].
    pub local_slot: u8,
    /// IP protocol.
    pub proto: u8,
    /// [`crate::maps::family`] byte.
    pub family: u8,
    /// Padding, zero.
    pub _pad: u8,
}

/// Value of [`MAP_FULLNAT_REVERSE`]: the client end of the session.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FullnatReverse {
    /// The client's address (the replies' new destination).
    pub client: Addr,
    /// The client's port (host order).
    pub cport: u16,
    /// The VIP port (host order; the replies' new source port).
    pub vport: u16,
    /// Source MAC of the client's packet that made the session: the
    /// replies' next hop.
    pub client_mac: [u8; 6],
    /// The service's `vip_index + 1` (as [`crate::maps::FlowVal::vip_slot`]):
    /// its VIP address is the replies' new source.
    pub vip_slot: u8,
    /// Padding, zero.
    pub _pad: u8,
    /// `bpf_ktime_get_coarse_ns()` when the entry was made, then of the
    /// real's latest reply (at most every 100 ms): the port's quarantine
    /// ([`in_use`]) runs from it.
    pub last_seen_ns: u64,
}

/// Bytes of key plus value of one reverse entry of a `fullnat` session.
pub const FULLNAT_REVERSE_ENTRY_BYTES: usize =
    core::mem::size_of::<FullnatKey>() + core::mem::size_of::<FullnatReverse>();

const _: () = assert!(core::mem::size_of::<LocalAddr>() == 24);
const _: () = assert!(core::mem::size_of::<FullnatKey>() == 24);
const _: () = assert!(core::mem::size_of::<FullnatReverse>() == 40);
const _: () = assert!(FULLNAT_REVERSE_ENTRY_BYTES <= 64);
// `FlowVal::local_slot` is `slot + 1` in a byte.
const _: () = assert!(MAX_LOCAL_ADDRS < u8::MAX as u32);

/// How many ports of `[min, max]` CPU `cpu` of `ncpus` hands out: those
/// with `(port - min) % ncpus == cpu`. 0 for a CPU beyond the range's
/// size, or an empty range.
#[inline(always)]
pub const fn cpu_port_count(min: u16, max: u16, ncpus: u32, cpu: u32) -> u32 {
    if max < min || ncpus == 0 {
        return 0;
    }
    let span = (max - min) as u32 + 1;
    if cpu >= span {
        return 0;
    }
    (span - cpu).div_ceil(ncpus)
}

/// The `k`-th port (`k < cpu_port_count(..)`) of CPU `cpu`'s share.
#[inline(always)]
pub const fn cpu_port(min: u16, ncpus: u32, cpu: u32, k: u32) -> u16 {
    (min as u32 + cpu + k * ncpus) as u16
}

/// The key of a `fullnat` session's replies: from the real at
/// `real:rport` to local slot `local_slot`, port `lport`.
#[inline(always)]
pub const fn reverse_key(
    real: Addr,
    rport: u16,
    local_slot: u8,
    lport: u16,
    proto: u8,
    family: u8,
) -> FullnatKey {
    FullnatKey {
        real,
        rport,
        lport,
        local_slot,
        proto,
        family,
        _pad: 0,
    }
}

/// Does session `s` use the local end reverse key `k` names (its slot
/// and port)? A reverse entry whose session now uses another (the
/// client's tuple was reused) is not that session's. The one place of
/// the rule: the kernel's reply path and port search, and the control
/// plane's sweep, ask it.
#[inline(always)]
pub const fn holds(k: &FullnatKey, s: &crate::maps::FlowVal) -> bool {
    s.local_slot as u32 == k.local_slot as u32 + 1 && s.local_port == k.lport
}

/// Default of [`crate::maps::GlobalCfg::port_quarantine_ns`]: Linux's
/// TIME_WAIT (`TCP_TIMEWAIT_LEN`, fixed at 60 s). A real that closed a
/// connection first keeps its 4-tuple that long; a new connection from
/// the same local port in that time meets PAWS (its timestamps start
/// elsewhere) and stalls in SYN retransmissions (BENCHMARKS.md §4,
/// "`fullnat` against the kernel's full NAT").
pub const DEFAULT_PORT_QUARANTINE_NS: u64 = 60_000_000_000;

/// Is the port of a reverse entry taken? While its session lives and
/// still uses it (`session_holds`: fresh, and [`holds`]), and for
/// `quarantine_ns` after the entry's last reply (`last_seen_ns`) even
/// when the session is gone or moved on (the client reused its tuple):
/// the real may still hold the old connection in TIME_WAIT. The one
/// place of the rule, for the kernel's port search and the control
/// plane's sweep and pool usage.
#[inline(always)]
pub const fn in_use(session_holds: bool, last_seen_ns: u64, now: u64, quarantine_ns: u64) -> bool {
    session_holds || now.saturating_sub(last_seen_ns) < quarantine_ns
}

/// The session key (client → VIP) of a reply with reverse key `k` and
/// entry `rev`, given the service's VIP address `vip`.
#[inline(always)]
pub const fn forward_key(k: &FullnatKey, rev: &FullnatReverse, vip: Addr) -> FlowKey {
    FlowKey {
        src: rev.client,
        dst: vip,
        sport: rev.cport,
        dport: rev.vport,
        proto: k.proto,
        family: k.family,
        _pad: 0,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn cpu_shares_partition_the_range_exactly() {
        for (min, max) in [(1024u16, 32767u16), (40000, 40003), (5, 5), (100, 110)] {
            for ncpus in 1..=5u32 {
                let mut seen = BTreeSet::new();
                for cpu in 0..ncpus {
                    for k in 0..cpu_port_count(min, max, ncpus, cpu) {
                        let p = cpu_port(min, ncpus, cpu, k);
                        assert!((min..=max).contains(&p), "{p} outside {min}-{max}");
                        assert_eq!(u32::from(p - min) % ncpus, cpu);
                        assert!(seen.insert(p), "port {p} handed out twice");
                    }
                }
                assert_eq!(
                    seen.len(),
                    usize::from(max - min) + 1,
                    "{min}-{max} / {ncpus}"
                );
            }
        }
    }

    #[test]
    fn empty_ranges_and_idle_cpus_hand_out_nothing() {
        assert_eq!(cpu_port_count(10, 9, 2, 0), 0);
        assert_eq!(cpu_port_count(10, 20, 0, 0), 0);
        // A 2-port range on 4 CPUs: CPUs 2 and 3 have no share.
        assert_eq!(cpu_port_count(10, 11, 4, 1), 1);
        assert_eq!(cpu_port_count(10, 11, 4, 2), 0);
        assert_eq!(cpu_port_count(0, u16::MAX, 1, 0), 65536);
    }

    #[test]
    fn a_port_stays_taken_through_its_quarantine() {
        let q = DEFAULT_PORT_QUARANTINE_NS;
        assert!(in_use(true, 0, 10 * q, q), "a live session holds it");
        assert!(in_use(false, 100, 100 + q - 1, q), "quarantined");
        assert!(!in_use(false, 100, 100 + q, q), "free once it is over");
        assert!(in_use(false, 100, 50, q), "a clock behind the entry: taken");
    }

    #[test]
    fn a_reply_finds_the_session_key_it_was_made_from() {
        let client = crate::maps::addr_v4([10, 0, 0, 9]);
        let vip = crate::maps::addr_v4([10, 0, 0, 100]);
        let real = crate::maps::addr_v4([10, 0, 1, 2]);
        let k = reverse_key(real, 8080, 3, 40001, 6, crate::maps::family::V4);
        let rev = FullnatReverse {
            client,
            cport: 5555,
            vport: 80,
            client_mac: [2, 0, 0, 0, 0, 9],
            vip_slot: 1,
            _pad: 0,
            last_seen_ns: 0,
        };
        let f = forward_key(&k, &rev, vip);
        assert_eq!(
            (f.src, f.dst, f.sport, f.dport, f.proto),
            (client, vip, 5555, 80, 6)
        );
    }
}
