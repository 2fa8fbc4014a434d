//! Connection sync in the data plane (docs/HA.md, "Connection sync"):
//! on the active LB, the sessions to send ([`SessionFeed`]: the keys the
//! XDP program puts into its ring when it makes a session, and walks of
//! the session table); on a standby, their installation
//! ([`SessionInstaller`]) into its own maps, with its own slots.
//!
//! Both hold their own handles of the maps (duplicated file
//! descriptors), so the daemon's sync threads never wait for the control
//! plane's lock, which a walk of a large session table holds for long.
//! The format is `sluice_wire::sync`'s; the rules of the reverse entries
//! are `sluice_wire::nat`'s and `sluice_wire::fullnat`'s.

use std::collections::HashMap as StdHashMap;
use std::os::fd::AsFd as _;

use aya::maps::{Array, HashMap, Map, MapData, RingBuf};
use sluice_wire::fullnat::{
    self, FullnatKey, FullnatReverse, LocalAddr, MAP_FULLNAT_REVERSE, MAP_LOCAL_ADDRS,
};
use sluice_wire::maps::{
    Addr, FlowKey, FlowVal, LAST_SEEN_GRANULARITY_NS, MAP_NAT_REVERSE, MAP_REALS, MAP_SESSIONS,
    MAP_SYNC_RING, MAP_VIP_BY_INDEX, Method, NatReverse, RealDef, VipKey, VipSlot, real_flags,
};
use sluice_wire::nat;
use sluice_wire::sync::SyncEntry;

use crate::control::monotonic_ns;
use crate::loader::map_err;
use crate::{Dataplane, DataplaneParams, Error};

/// Sessions a [`SessionInstaller`] writes in a row from one CPU before
/// it moves its thread to the next: the session table's LRU lists are
/// per CPU (`BPF_F_NO_COMMON_LRU`, each `capacity / possible CPUs`
/// entries), and an entry goes to the list of the CPU that writes it, so
/// a peer's sessions written from one CPU alone would fit in one list's
/// share of the table and evict each other.
pub const INSTALLS_PER_CPU: u32 = 64;

/// One service of a [`SyncDirectory`].
#[derive(Clone, Debug)]
struct DirService {
    index: u32,
    method: Method,
    /// Reals by (address, `RealDef::port`): (slot, generation).
    reals: StdHashMap<(Addr, u16), (u32, u16)>,
    /// `fullnat`'s local addresses of the service: their slots.
    locals: StdHashMap<Addr, u32>,
}

/// The services of this LB as connection sync names them (by key, reals
/// by address and port), with the slots they have here. Made by
/// `L4Plane::sync_directory`; a standby refreshes its copy as the
/// configuration changes.
#[derive(Clone, Debug, Default)]
pub struct SyncDirectory {
    services: StdHashMap<VipKey, DirService>,
}

impl SyncDirectory {
    pub(crate) fn insert(
        &mut self,
        key: VipKey,
        index: u32,
        method: Method,
        reals: StdHashMap<(Addr, u16), (u32, u16)>,
        locals: StdHashMap<Addr, u32>,
    ) {
        self.services.insert(
            key,
            DirService {
                index,
                method,
                reals,
                locals,
            },
        );
    }

    /// Number of services.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// No services.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }
}

/// What became of a peer's session entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Written (its reverse entry first, then the session).
    Installed,
    /// No service here has the entry's key (VIP, service port, protocol).
    UnknownService,
    /// The service here uses another method: nothing written.
    OtherMethod,
    /// The service here has no real of that address and port.
    UnknownReal,
    /// `fullnat`: the service here has no such local address (or the
    /// entry has no local end).
    UnknownLocal,
}

/// A map of the loaded object as a handle of its own (a duplicated file
/// descriptor), independent of the [`Dataplane`]'s borrow.
fn own_map(dp: &Dataplane, name: &'static str) -> Result<Map, Error> {
    let m = dp.ebpf.map(name).ok_or(Error::MissingMap(name))?;
    let data = match m {
        Map::HashMap(d) | Map::LruHashMap(d) | Map::Array(d) | Map::RingBuf(d) => d,
        _ => return Err(Error::MissingMap(name)),
    };
    let fd = data.fd().as_fd().try_clone_to_owned().map_err(|io_error| {
        map_err(name)(aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "dup",
            io_error,
        }))
    })?;
    let data = MapData::from_fd(fd).map_err(map_err(name))?;
    Map::from_map_data(data).map_err(map_err(name))
}

fn own_hash<K: aya::Pod, V: aya::Pod>(
    dp: &Dataplane,
    name: &'static str,
) -> Result<HashMap<MapData, K, V>, Error> {
    HashMap::try_from(own_map(dp, name)?).map_err(map_err(name))
}

fn own_array<V: aya::Pod>(dp: &Dataplane, name: &'static str) -> Result<Array<MapData, V>, Error> {
    Array::try_from(own_map(dp, name)?).map_err(map_err(name))
}

impl Dataplane {
    /// Turns the announcement of new sessions into the sync ring on or
    /// off (`cfg_flags::SYNC`; off by default, so that without sync no
    /// new session pays for it).
    pub fn set_sync(&mut self, on: bool) -> Result<(), Error> {
        self.sync = on;
        self.write_cfg()
    }

    /// The active side's reader of the sessions this data plane makes
    /// (its sync ring). Make one per data plane: the ring has a single
    /// consumer position.
    pub fn sync_feed(&self) -> Result<SessionFeed, Error> {
        let ring =
            RingBuf::try_from(own_map(self, MAP_SYNC_RING)?).map_err(map_err(MAP_SYNC_RING))?;
        Ok(SessionFeed {
            ring,
            look: Lookups::new(self)?,
        })
    }

    /// The active side's walker of this data plane's session table.
    pub fn sync_walker(&self) -> Result<SessionWalker, Error> {
        Ok(SessionWalker {
            look: Lookups::new(self)?,
            last_walk: None,
        })
    }

    /// The standby side's writer of a peer's sessions into this data
    /// plane, with `dir` (from `L4Plane::sync_directory`).
    pub fn sync_installer(&self, dir: SyncDirectory) -> Result<SessionInstaller, Error> {
        Ok(SessionInstaller {
            sessions: own_hash(self, MAP_SESSIONS)?,
            nat_rev: own_hash(self, MAP_NAT_REVERSE)?,
            fullnat_rev: own_hash(self, MAP_FULLNAT_REVERSE)?,
            dir,
            cpus: None,
            written: 0,
        })
    }
}

/// What turns a session into a sync entry: the session table, the
/// services and reals it names, and the reverse entries.
struct Lookups {
    sessions: HashMap<MapData, FlowKey, FlowVal>,
    nat_rev: HashMap<MapData, FlowKey, NatReverse>,
    fullnat_rev: HashMap<MapData, FullnatKey, FullnatReverse>,
    vips: Array<MapData, VipSlot>,
    reals: Array<MapData, RealDef>,
    locals: Array<MapData, LocalAddr>,
    params: DataplaneParams,
}

/// The sessions the active LB makes, as sync entries, as they are made.
pub struct SessionFeed {
    ring: RingBuf<MapData>,
    look: Lookups,
}

impl std::fmt::Debug for SessionFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFeed").finish_non_exhaustive()
    }
}

impl SessionFeed {
    /// Calls `out` with the entry of each session made since the last
    /// call (at most `max` ring records read; the rest wait for the next
    /// call). Returns the records read: a session that is gone by now,
    /// or whose service or real changed, is read but yields no entry.
    pub fn drain(&mut self, max: usize, out: &mut dyn FnMut(SyncEntry)) -> usize {
        let mut keys = Vec::new();
        while keys.len() < max {
            let Some(item) = self.ring.next() else { break };
            if let Some(k) = FlowKey::from_ne_bytes(&item) {
                keys.push(k);
            }
        }
        let now = monotonic_ns();
        for k in &keys {
            if let Some(e) = self.look.entry(k, now) {
                out(e);
            }
        }
        keys.len()
    }
}

/// The active LB's session table, walked for sync entries.
pub struct SessionWalker {
    look: Lookups,
    /// The clock (kernel's coarse, ns) when the latest incremental walk
    /// started.
    last_walk: Option<u64>,
}

impl std::fmt::Debug for SessionWalker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionWalker").finish_non_exhaustive()
    }
}

impl SessionWalker {
    /// Walks the session table and calls `out` with the entry of each
    /// live session of this LB's own, all of them when `full` (a peer's
    /// resync), else only those that saw a packet since the previous
    /// incremental walk began (they refresh the standby's copy; idle
    /// ones expire there as here). Sessions installed from a peer and
    /// not seen here since (`FlowVal::from_peer`) are never sent back.
    /// Returns the sessions looked at.
    pub fn walk(&mut self, full: bool, out: &mut dyn FnMut(SyncEntry)) -> usize {
        let now = monotonic_ns();
        // A busy session's `last_seen` lags its latest packet by up to
        // LAST_SEEN_GRANULARITY_NS: the window reaches back that much
        // further, so no active session falls between two walks.
        let since = if full {
            None
        } else {
            self.last_walk
                .replace(now)
                .map(|t| t.saturating_sub(LAST_SEEN_GRANULARITY_NS))
        };
        let mut seen = 0;
        // Streamed, never collected: the table may hold millions. An
        // entry the kernel evicts meanwhile is skipped.
        for (k, v) in self.look.sessions.iter().filter_map(Result::ok) {
            seen += 1;
            if v.from_peer != 0 || since.is_some_and(|s| v.last_seen_ns < s) {
                continue;
            }
            if let Some(e) = self.look.entry_of(&k, &v, now) {
                out(e);
            }
        }
        seen
    }
}

impl Lookups {
    fn new(dp: &Dataplane) -> Result<Self, Error> {
        Ok(Self {
            sessions: own_hash(dp, MAP_SESSIONS)?,
            nat_rev: own_hash(dp, MAP_NAT_REVERSE)?,
            fullnat_rev: own_hash(dp, MAP_FULLNAT_REVERSE)?,
            vips: own_array(dp, MAP_VIP_BY_INDEX)?,
            reals: own_array(dp, MAP_REALS)?,
            locals: own_array(dp, MAP_LOCAL_ADDRS)?,
            params: dp.params().clone(),
        })
    }

    /// The sync entry of session `k`, if it is live.
    fn entry(&self, k: &FlowKey, now: u64) -> Option<SyncEntry> {
        let v = self.sessions.get(k, 0).ok()?;
        self.entry_of(k, &v, now)
    }

    /// The sync entry of session `k` with value `v`: `None` if it has
    /// expired, its service or real is no longer the one it recorded, or
    /// (NAT methods) its reverse entry is missing.
    fn entry_of(&self, k: &FlowKey, v: &FlowVal, now: u64) -> Option<SyncEntry> {
        if !self.params.session_fresh(v, now) {
            return None;
        }
        let vs = self
            .vips
            .get(&u32::from(v.vip_slot).checked_sub(1)?, 0)
            .ok()?;
        if vs.key.family == 0 {
            return None;
        }
        let method = Method::from_byte(vs.meta.method)?;
        let r = self.reals.get(&v.real, 0).ok()?;
        if r.flags & real_flags::PRESENT == 0 || r.generation != v.real_gen {
            return None;
        }
        let rport = nat::real_port(r.port, k.dport);
        let (client_mac, local) = match method {
            Method::Dr | Method::Tun => ([0; 6], None),
            Method::Nat => {
                let rev = self
                    .nat_rev
                    .get(&nat::reverse_key(k, r.addr, rport), 0)
                    .ok()?;
                (rev.client_mac, None)
            }
            Method::Fullnat => {
                let slot = v.local_slot.checked_sub(1)?;
                let la = self.locals.get(&u32::from(slot), 0).ok()?;
                let rk = fullnat::reverse_key(r.addr, rport, slot, v.local_port, k.proto, k.family);
                let rev = self.fullnat_rev.get(&rk, 0).ok()?;
                (rev.client_mac, Some((la.addr, v.local_port)))
            }
        };
        Some(SyncEntry {
            key: *k,
            service_port: vs.key.port,
            method,
            state: v.state,
            real: r.addr,
            real_port: r.port,
            client_mac,
            local,
            toa_sent: v.toa_sent != 0,
        })
    }
}

/// Writes a peer's sessions into this LB's maps.
pub struct SessionInstaller {
    sessions: HashMap<MapData, FlowKey, FlowVal>,
    nat_rev: HashMap<MapData, FlowKey, NatReverse>,
    fullnat_rev: HashMap<MapData, FullnatKey, FullnatReverse>,
    dir: SyncDirectory,
    /// The CPUs the installing thread may run on (read at its first
    /// install), which it takes turns on ([`INSTALLS_PER_CPU`]).
    cpus: Option<Vec<usize>>,
    /// Sessions written so far.
    written: u64,
}

impl std::fmt::Debug for SessionInstaller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionInstaller")
            .field("services", &self.dir.len())
            .finish_non_exhaustive()
    }
}

impl SessionInstaller {
    /// Replaces the directory (the configuration changed).
    pub fn set_directory(&mut self, dir: SyncDirectory) {
        self.dir = dir;
    }

    /// Installs entry `e`, stamped with this LB's clock: its reverse
    /// entry (NAT methods) first, then the session, so that a reply
    /// never finds a session without its way back. An entry that names
    /// a service, real or local address this LB does not have writes
    /// nothing. Moves the calling thread among its CPUs as it goes
    /// ([`INSTALLS_PER_CPU`]): call it from a thread of its own.
    pub fn install(&mut self, e: &SyncEntry) -> Result<Outcome, Error> {
        let k = &e.key;
        let vk = VipKey {
            addr: k.dst,
            port: e.service_port,
            proto: k.proto,
            family: k.family,
        };
        let Some(s) = self.dir.services.get(&vk) else {
            return Ok(Outcome::UnknownService);
        };
        if s.method != e.method {
            return Ok(Outcome::OtherMethod);
        }
        let Some(&(slot, generation)) = s.reals.get(&(e.real, e.real_port)) else {
            return Ok(Outcome::UnknownReal);
        };
        let now = monotonic_ns();
        let rport = nat::real_port(e.real_port, k.dport);
        // Fits: a service index is below MAX_VIPS (64).
        let vip_slot = (s.index + 1) as u8;
        let mut v = FlowVal {
            real: slot,
            state: e.state,
            vip_slot,
            real_gen: generation,
            last_seen_ns: now,
            toa_sent: u8::from(e.toa_sent),
            from_peer: 1,
            ..Default::default()
        };
        match e.method {
            Method::Dr | Method::Tun => {}
            Method::Nat => {
                let rev = NatReverse {
                    vip: k.dst,
                    vport: k.dport,
                    client_mac: e.client_mac,
                };
                self.nat_rev
                    .insert(nat::reverse_key(k, e.real, rport), rev, 0)
                    .map_err(map_err(MAP_NAT_REVERSE))?;
            }
            Method::Fullnat => {
                let Some((laddr, lport)) = e.local else {
                    return Ok(Outcome::UnknownLocal);
                };
                let Some(&lslot) = s.locals.get(&laddr) else {
                    return Ok(Outcome::UnknownLocal);
                };
                // Fits: a local slot is below MAX_LOCAL_ADDRS (64).
                let lslot = lslot as u8;
                let rev = FullnatReverse {
                    client: k.src,
                    cport: k.sport,
                    vport: k.dport,
                    client_mac: e.client_mac,
                    vip_slot,
                    _pad: 0,
                    last_seen_ns: now,
                };
                // The claim of the port: the kernel's port search finds
                // it taken by a live session (`fullnat::in_use`) and
                // never hands it out here while the session lives.
                let rk = fullnat::reverse_key(e.real, rport, lslot, lport, k.proto, k.family);
                self.fullnat_rev
                    .insert(rk, rev, 0)
                    .map_err(map_err(MAP_FULLNAT_REVERSE))?;
                v.local_slot = lslot + 1;
                v.local_port = lport;
            }
        }
        self.spread();
        self.sessions
            .insert(k, v, 0)
            .map_err(map_err(MAP_SESSIONS))?;
        self.written += 1;
        Ok(Outcome::Installed)
    }

    /// Moves the calling thread to the next of its CPUs every
    /// [`INSTALLS_PER_CPU`] sessions, so that a peer's sessions fill
    /// every CPU's LRU list, not one. The thread keeps to the CPUs it
    /// was allowed; if it cannot move, it stays (sessions then crowd one
    /// list, as before).
    fn spread(&mut self) {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
        use nix::unistd::Pid;
        if !self.written.is_multiple_of(u64::from(INSTALLS_PER_CPU)) {
            return;
        }
        let cpus = self.cpus.get_or_insert_with(|| {
            sched_getaffinity(Pid::from_raw(0))
                .map(|set| {
                    (0..CpuSet::count())
                        .filter(|c| set.is_set(*c).unwrap_or(false))
                        .collect()
                })
                .unwrap_or_default()
        });
        if cpus.len() < 2 {
            return;
        }
        let turn = (self.written / u64::from(INSTALLS_PER_CPU)) as usize % cpus.len();
        let mut set = CpuSet::new();
        if set.set(cpus[turn]).is_ok() {
            let _ = sched_setaffinity(Pid::from_raw(0), &set);
        }
    }
}
