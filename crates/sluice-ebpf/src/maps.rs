//! The BPF maps of `sluice_xdp` (layouts in `sluice_wire::maps`, shared with
//! the loader) and the accessors that read them in place.
//!
//! Map values are used in place through references instead of being copied
//! to the 512-byte BPF stack. They stay valid while the program runs (the
//! kernel frees map elements only after an RCU grace period); a service
//! removed by userspace at this very moment may be read half-old,
//! half-new, which at worst forwards one packet by its previous settings.

use aya_ebpf::{
    macros::map,
    maps::{Array, DevMap, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sluice_wire::fullnat::{
    FullnatKey, FullnatReverse, LocalAddr, MAX_LOCAL_ADDRS, MAX_LOCAL_ADDRS_PER_VIP,
};
use sluice_wire::maps::{
    Addr, AddrKey, Counter, DEFAULT_SESSION_CAPACITY, FlowKey, FlowVal, GlobalCfg, MAX_REALS,
    MAX_REALS_PER_VIP, MAX_RING_SIZE, MAX_VIP_ADDRS, MAX_VIPS, NatReverse, PERSIST_CAPACITY,
    PersistKey, PersistVal, RealDef, SYNC_RING_BYTES, TrafficStats, VIP_FILTER_SLOTS, VipKey,
    VipMeta, VipSlot, cfg_flags, nat_prog, tx_port,
};

#[map(name = "SLUICE_STATS")]
pub(crate) static SLUICE_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

#[map(name = "SLUICE_CFG")]
pub(crate) static SLUICE_CFG: Array<GlobalCfg> = Array::with_max_entries(1, 0);

#[map(name = "SLUICE_VIP_ADDRS")]
pub(crate) static SLUICE_VIP_ADDRS: HashMap<AddrKey, u32> =
    HashMap::with_max_entries(MAX_VIP_ADDRS, 0);

#[map(name = "SLUICE_VIPS")]
pub(crate) static SLUICE_VIPS: HashMap<VipKey, VipMeta> = HashMap::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_VIP_BY_INDEX")]
pub(crate) static SLUICE_VIP_BY_INDEX: Array<VipSlot> = Array::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_VIP_FILTER")]
pub(crate) static SLUICE_VIP_FILTER: Array<u32> = Array::with_max_entries(VIP_FILTER_SLOTS, 0);

#[map(name = "SLUICE_REALS")]
pub(crate) static SLUICE_REALS: Array<RealDef> = Array::with_max_entries(MAX_REALS, 0);

/// Resized by the loader to `MAX_VIPS * ring_size` before loading.
#[map(name = "SLUICE_RING")]
pub(crate) static SLUICE_RING: Array<u32> = Array::with_max_entries(MAX_RING_SIZE, 0);

#[map(name = "SLUICE_VIP_REALS")]
pub(crate) static SLUICE_VIP_REALS: Array<u32> =
    Array::with_max_entries(MAX_VIPS * MAX_REALS_PER_VIP, 0);

#[map(name = "SLUICE_RR")]
pub(crate) static SLUICE_RR: PerCpuArray<u32> = PerCpuArray::with_max_entries(MAX_VIPS, 0);

/// `BPF_F_NO_COMMON_LRU`: one LRU list per CPU (no shared LRU lock), but a
/// single hash table, so a flow whose packets arrive on another CPU still
/// finds its session. Capacity is set by the loader from the config.
const BPF_F_NO_COMMON_LRU: u32 = 1 << 1;

#[map(name = "SLUICE_SESSIONS")]
pub(crate) static SLUICE_SESSIONS: LruHashMap<FlowKey, FlowVal> =
    LruHashMap::with_max_entries(DEFAULT_SESSION_CAPACITY, BPF_F_NO_COMMON_LRU);

/// The reverse entries of `nat` sessions (`sluice_wire::maps::NatReverse`):
/// per-CPU LRU lists like the sessions, whose capacity the loader gives
/// it too. A reply may arrive on any CPU and still finds its entry.
#[map(name = "SLUICE_NAT_REVERSE")]
pub(crate) static SLUICE_NAT_REVERSE: LruHashMap<FlowKey, NatReverse> =
    LruHashMap::with_max_entries(DEFAULT_SESSION_CAPACITY, BPF_F_NO_COMMON_LRU);

/// The `nat` programs (`sluice_wire::maps::nat_prog`), filled by the
/// loader.
#[map(name = "SLUICE_NAT_PROGS")]
pub(crate) static SLUICE_NAT_PROGS: ProgramArray =
    ProgramArray::with_max_entries(nat_prog::COUNT, 0);

/// What `sluice_xdp` hands `sluice_nat_forward`: a tail call carries no
/// arguments, so they wait in this CPU's slot. XDP runs to completion on
/// its CPU, so the slot belongs to the packet until the tail call reads it.
#[repr(C)]
#[derive(Clone, Copy)]
pub(crate) struct NatForwardArgs {
    /// The real's slot.
    pub(crate) chosen: u32,
    /// The packet's family.
    pub(crate) family: u8,
    /// 1: the flow's session was just made (its reverse entry is due).
    pub(crate) new_session: u8,
    /// 1: the packet is an ICMP error about the flow (its quoted packet
    /// is translated instead of a TCP/UDP header).
    pub(crate) icmp: u8,
    /// The service's `vip_index + 1` (`fullnat` allocates its local
    /// port from the service's local addresses).
    pub(crate) vip_slot: u8,
}

impl NatForwardArgs {
    /// The packet is an ICMP error about the flow.
    #[inline(always)]
    pub(crate) fn icmp(&self) -> bool {
        self.icmp != 0
    }

    /// The flow's session was just made (`forward` never makes one for
    /// an ICMP error).
    #[inline(always)]
    pub(crate) fn new_session(&self) -> bool {
        self.new_session != 0 && !self.icmp()
    }
}

/// The interfaces `nat` packets leave by (`sluice_wire::maps::MAP_TX_PORTS`):
/// empty one-arm, filled by the loader two-arm.
#[map(name = "SLUICE_TX_PORTS")]
pub(crate) static SLUICE_TX_PORTS: DevMap = DevMap::with_max_entries(tx_port::COUNT, 0);

#[map(name = "SLUICE_NAT_ARGS")]
pub(crate) static SLUICE_NAT_ARGS: PerCpuArray<NatForwardArgs> =
    PerCpuArray::with_max_entries(1, 0);

/// `fullnat`'s local addresses (`sluice_wire::fullnat`), their index by
/// address, each service's list of them, the per-CPU start of the next
/// port search, and the reverse entries (a plain hash: an entry is never
/// evicted while its session lives; capacity from the loader).
#[map(name = "SLUICE_LOCAL_ADDRS")]
pub(crate) static SLUICE_LOCAL_ADDRS: Array<LocalAddr> =
    Array::with_max_entries(MAX_LOCAL_ADDRS, 0);

#[map(name = "SLUICE_LOCAL_INDEX")]
pub(crate) static SLUICE_LOCAL_INDEX: HashMap<AddrKey, u32> =
    HashMap::with_max_entries(MAX_LOCAL_ADDRS, 0);

#[map(name = "SLUICE_VIP_LOCALS")]
pub(crate) static SLUICE_VIP_LOCALS: Array<u32> =
    Array::with_max_entries(MAX_VIPS * MAX_LOCAL_ADDRS_PER_VIP, 0);

#[map(name = "SLUICE_LOCAL_CURSOR")]
pub(crate) static SLUICE_LOCAL_CURSOR: PerCpuArray<u32> =
    PerCpuArray::with_max_entries(MAX_LOCAL_ADDRS, 0);

#[map(name = "SLUICE_FULLNAT_REVERSE")]
pub(crate) static SLUICE_FULLNAT_REVERSE: HashMap<FullnatKey, FullnatReverse> =
    HashMap::with_max_entries(DEFAULT_SESSION_CAPACITY, 0);

/// New sessions' keys for the connection-sync daemon
/// (`sluice_wire::maps::MAP_SYNC_RING`).
#[map(name = "SLUICE_SYNC_RING")]
pub(crate) static SLUICE_SYNC_RING: RingBuf = RingBuf::with_byte_size(SYNC_RING_BYTES, 0);

#[map(name = "SLUICE_PERSIST")]
pub(crate) static SLUICE_PERSIST: LruHashMap<PersistKey, PersistVal> =
    LruHashMap::with_max_entries(PERSIST_CAPACITY, BPF_F_NO_COMMON_LRU);

#[map(name = "SLUICE_REAL_CONNS")]
pub(crate) static SLUICE_REAL_CONNS: Array<u64> = Array::with_max_entries(MAX_REALS, 0);

#[map(name = "SLUICE_VIP_STATS")]
pub(crate) static SLUICE_VIP_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_VIPS, 0);

#[map(name = "SLUICE_REAL_STATS")]
pub(crate) static SLUICE_REAL_STATS: PerCpuArray<TrafficStats> =
    PerCpuArray::with_max_entries(MAX_REALS, 0);

/// Adds one to a global counter.
#[inline(always)]
pub(crate) fn count(c: Counter) {
    if let Some(slot) = SLUICE_STATS.get_ptr_mut(c as u32) {
        // SAFETY: the pointer comes from a lookup of an in-range index of a
        // per-CPU array, so it is valid and aligned, and only this CPU uses
        // it while this program runs (XDP is not preempted).
        unsafe { *slot += 1 };
    }
}

/// Adds `n` to a global counter.
#[inline(always)]
pub(crate) fn count_n(c: Counter, n: u64) {
    if let Some(slot) = SLUICE_STATS.get_ptr_mut(c as u32) {
        // SAFETY: as in `count`.
        unsafe { *slot += n };
    }
}

/// Accounts one packet of `bytes` (and a new session) to a service's or a
/// real's traffic slot.
#[inline(always)]
pub(crate) fn traffic(map: &PerCpuArray<TrafficStats>, idx: u32, bytes: u64, new_session: bool) {
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

/// Is `addr` one of the VIP addresses?
#[inline(always)]
pub(crate) fn is_vip_addr(addr: &Addr, fam: u8) -> bool {
    let k = AddrKey {
        addr: *addr,
        family: fam as u32,
    };
    SLUICE_VIP_ADDRS.get_ptr(&k).is_some()
}

/// The service of a flow: its exact port first, then port 0 (all ports)
/// when the loader says that any all-ports service exists.
#[inline(always)]
pub(crate) fn lookup_service(key: &FlowKey) -> Option<&'static VipMeta> {
    let mut vk = VipKey {
        addr: key.dst,
        port: key.dport,
        proto: key.proto,
        family: key.family,
    };
    if let Some(m) = SLUICE_VIPS.get_ptr(&vk) {
        // SAFETY: pointer from a successful lookup, valid for this run (see
        // the module documentation).
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

/// The real in slot `idx`.
#[inline(always)]
pub(crate) fn real(idx: u32) -> Option<&'static RealDef> {
    SLUICE_REALS.get_ptr(idx).map(|p| {
        // SAFETY: in-range array element; array elements are never freed.
        unsafe { &*p }
    })
}

/// The global configuration the loader wrote.
#[inline(always)]
pub(crate) fn cfg() -> Option<&'static GlobalCfg> {
    SLUICE_CFG.get_ptr(0).map(|p| {
        // SAFETY: element 0 of a one-entry array; never freed.
        unsafe { &*p }
    })
}

/// Does any service use `nat` or `fullnat`? Only then may a packet that
/// is not for a VIP be a real's reply (the loader keeps the flags).
#[inline(always)]
pub(crate) fn nat_replies() -> bool {
    match cfg() {
        Some(c) => (c.flags & (cfg_flags::NAT_SERVICES | cfg_flags::FULLNAT_SERVICES)) != 0,
        None => false,
    }
}
