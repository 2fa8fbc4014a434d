//! Loading `sluice_xdp`, attaching it, and typed access to its maps.
//!
//! [`Dataplane`] is the only owner of the loaded object. It exposes map
//! writes as whole-record operations (a service, a real slot, a ring), so
//! the control plane above never handles raw map handles.

use std::time::Duration;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMap, HashMap, MapData, PerCpuArray, PerCpuValues, ProgramArray},
    programs::{TestRun, TestRunOptions, Xdp, XdpMode, xdp::XdpLinkId},
};
use sluice_wire::fullnat::MAP_FULLNAT_REVERSE;
use sluice_wire::maps::{
    AddrKey, Counter, FlowKey, FlowVal, GlobalCfg, MAP_CFG, MAP_NAT_PROGS, MAP_NAT_REVERSE,
    MAP_REAL_CONNS, MAP_REAL_STATS, MAP_REALS, MAP_RING, MAP_RR, MAP_SESSIONS, MAP_STATS,
    MAP_TX_PORTS, MAP_VIP_ADDRS, MAP_VIP_BY_INDEX, MAP_VIP_FILTER, MAP_VIP_REALS, MAP_VIP_STATS,
    MAP_VIPS, MAX_REALS, MAX_REALS_PER_VIP, MAX_RING_SIZE, MAX_VIPS, Method, NatReverse, RealDef,
    TrafficStats, VIP_FILTER_SLOTS, VipKey, VipMeta, VipSlot, cfg_flags, nat_prog, tx_port,
    vip_filter_slot,
};

/// The eBPF object built from `sluice-ebpf` by `build.rs`.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sluice-xdp"));

/// Name of the XDP program inside the object.
pub const PROGRAM_NAME: &str = "sluice_xdp";

/// Smallest session-table capacity accepted (entries).
pub const MIN_SESSION_CAPACITY: u32 = 1024;
/// Largest session-table capacity accepted (entries).
pub const MAX_SESSION_CAPACITY: u32 = 16 * 1024 * 1024;
/// Headroom added to a test frame's output buffer for encapsulation (bytes).
const TEST_RUN_HEADROOM: usize = 64;

/// Returns the embedded eBPF object (an ELF relocatable file).
pub fn object_bytes() -> &'static [u8] {
    OBJECT
}

/// Errors from loading, attaching and map access.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel rejected the object or a map could not be created.
    #[error("loading the eBPF object failed: {0}")]
    Load(#[from] aya::EbpfError),
    /// The program is missing from the object (a build problem).
    #[error("program {0} not found in the eBPF object")]
    MissingProgram(&'static str),
    /// A map is missing from the object (a build problem).
    #[error("map {0} not found in the eBPF object")]
    MissingMap(&'static str),
    /// Verifier, attach or test-run failure.
    #[error("{context}: {source}")]
    Program {
        /// What was being done, naming the interface where there is one.
        context: String,
        /// The aya error.
        #[source]
        source: aya::programs::ProgramError,
    },
    /// Map access failed.
    #[error("map {map}: {source}")]
    Map {
        /// Map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::MapError,
    },
    /// Writing an interface map failed.
    #[error("map {map}: {source}")]
    XdpMap {
        /// Map name.
        map: &'static str,
        /// The aya error.
        #[source]
        source: aya::maps::xdp::XdpMapError,
    },
    /// A value is outside what the maps can hold.
    #[error("{what} is {value}, the limit is {limit} ({constant})")]
    Limit {
        /// What overflowed.
        what: &'static str,
        /// The requested value.
        value: u64,
        /// The limit.
        limit: u64,
        /// Name of the constant that sets the limit.
        constant: &'static str,
    },
}

/// Program `name` of `ebpf` as an XDP program.
fn xdp_program<'a>(ebpf: &'a Ebpf, name: &'static str) -> Result<&'a Xdp, Error> {
    ebpf.program(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(not_xdp(name))
}

/// The error of a program `name` that is not of the XDP type.
fn not_xdp(name: &'static str) -> impl FnOnce(aya::programs::ProgramError) -> Error {
    move |source| Error::Program {
        context: format!("program {name} is not XDP"),
        source,
    }
}

pub(crate) fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map { map, source }
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// In the driver (native XDP). The default: generic mode only when configured.
    Native,
    /// Generic (SKB) mode: works on every interface, slower on real NICs.
    Generic,
}

impl AttachMode {
    fn to_aya(self) -> XdpMode {
        match self {
            AttachMode::Native => XdpMode::Driver,
            AttachMode::Generic => XdpMode::Skb,
        }
    }
}

/// Load-time parameters (map sizes are fixed when the object is loaded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneParams {
    /// Ring entries per service (prime for Maglev, ≤ [`MAX_RING_SIZE`]).
    pub ring_size: u32,
    /// Session-table capacity (entries; the kernel splits it over the CPUs'
    /// LRU lists). The reverse entries of `nat` sessions get a table of
    /// the same capacity.
    pub session_capacity: u32,
    /// Session timeout after a SYN only.
    pub tcp_syn_timeout: Duration,
    /// Session timeout for established TCP.
    pub tcp_established_timeout: Duration,
    /// Session timeout after FIN/RST.
    pub tcp_closing_timeout: Duration,
    /// Session timeout for UDP.
    pub udp_timeout: Duration,
    /// `fullnat`: how long a local port stays taken after its
    /// connection's last reply (the reals' TIME_WAIT).
    pub fullnat_port_quarantine: Duration,
}

impl DataplaneParams {
    /// Is session `s` still alive at `now` (the kernel's coarse clock, ns)
    /// by the timeout of its state? The kernel's `session::fresh` applies
    /// the same timeouts, which the loader writes into its configuration.
    pub fn session_fresh(&self, s: &FlowVal, now: u64) -> bool {
        let timeout = match s.state {
            sluice_wire::maps::state::TCP_SYN => self.tcp_syn_timeout,
            sluice_wire::maps::state::TCP_ESTABLISHED => self.tcp_established_timeout,
            sluice_wire::maps::state::TCP_CLOSING => self.tcp_closing_timeout,
            _ => self.udp_timeout,
        };
        now.saturating_sub(s.last_seen_ns) <= timeout.as_nanos() as u64
    }
}

impl Default for DataplaneParams {
    /// IPVS's defaults: established 900 s, SYN 60 s (IPVS: SYN_RECV 60 s),
    /// FIN/RST 120 s (FIN_WAIT/TIME_WAIT), UDP 300 s.
    fn default() -> Self {
        Self {
            ring_size: MAX_RING_SIZE,
            session_capacity: sluice_wire::maps::DEFAULT_SESSION_CAPACITY,
            tcp_syn_timeout: Duration::from_secs(60),
            tcp_established_timeout: Duration::from_secs(900),
            tcp_closing_timeout: Duration::from_secs(120),
            udp_timeout: Duration::from_secs(300),
            fullnat_port_quarantine: Duration::from_nanos(
                sluice_wire::fullnat::DEFAULT_PORT_QUARANTINE_NS,
            ),
        }
    }
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// XDP verdict (`XDP_DROP` = 1, `XDP_PASS` = 2, `XDP_TX` = 3, ...).
    pub verdict: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// Mean run time per repetition reported by the kernel.
    pub duration: Duration,
}

/// XDP verdict numbers (uapi `enum xdp_action`).
pub mod verdict {
    /// `XDP_ABORTED`.
    pub const ABORTED: u32 = 0;
    /// `XDP_DROP`.
    pub const DROP: u32 = 1;
    /// `XDP_PASS`.
    pub const PASS: u32 = 2;
    /// `XDP_TX`.
    pub const TX: u32 = 3;
    /// `XDP_REDIRECT`.
    pub const REDIRECT: u32 = 4;
}

/// The loaded `sluice_xdp` object and, once attached, its link. Dropping it
/// detaches the program and frees the maps.
#[derive(Debug)]
pub struct Dataplane {
    pub(crate) ebpf: Ebpf,
    params: DataplaneParams,
    attached: Option<(String, XdpLinkId)>,
    /// Further interfaces the program is attached to (two-arm `nat`'s
    /// real side).
    also_attached: Vec<(String, XdpLinkId)>,
    iface_mac: [u8; 6],
    /// Services on every port (port 0); while there is one, the kernel
    /// retries a lookup miss with port 0.
    any_port: std::collections::BTreeSet<(sluice_wire::maps::Addr, u8, u8)>,
    /// Services that use `nat`; while there is one, the kernel looks up
    /// TCP/UDP packets that are not for a VIP as possible replies.
    nat: std::collections::BTreeSet<(sluice_wire::maps::Addr, u16, u8, u8)>,
    /// Services that use `fullnat`; while there is one, the kernel looks
    /// up packets to a local address as possible replies.
    fullnat: std::collections::BTreeSet<(sluice_wire::maps::Addr, u16, u8, u8)>,
    /// Possible CPUs (`fullnat` splits each local address's ports among
    /// them).
    pub(crate) ncpus: usize,
    /// Two-arm `nat`: the real-side interface's MAC (the source of packets
    /// toward the reals); `None` one-arm.
    real_side_mac: Option<[u8; 6]>,
    /// Connection sync runs: new sessions are announced in the sync ring
    /// (`crate::sync`).
    pub(crate) sync: bool,
}

impl Dataplane {
    /// Loads and verifies the embedded object with the given map sizes and
    /// writes the global settings (`iface_mac` is the source MAC of
    /// forwarded frames).
    ///
    /// # Errors
    /// [`Error::Limit`] for out-of-range sizes; [`Error::Program`] when the
    /// verifier refuses the program (needs root / CAP_BPF).
    pub fn load(params: DataplaneParams, iface_mac: [u8; 6]) -> Result<Self, Error> {
        Self::load_object(OBJECT, params, iface_mac)
    }

    /// [`Dataplane::load`] with another build of the eBPF object (an ELF
    /// file as `object_bytes` returns it), for benchmarks that compare two
    /// builds side by side (`benches/testrun_ab.rs`).
    ///
    /// # Errors
    /// As [`Dataplane::load`]; [`Error::Program`] also for a file that is
    /// not a valid object.
    pub fn load_object(
        object: &[u8],
        params: DataplaneParams,
        iface_mac: [u8; 6],
    ) -> Result<Self, Error> {
        if params.ring_size == 0 || params.ring_size > MAX_RING_SIZE {
            return Err(Error::Limit {
                what: "ring size",
                value: params.ring_size.into(),
                limit: MAX_RING_SIZE.into(),
                constant: "MAX_RING_SIZE",
            });
        }
        if !(MIN_SESSION_CAPACITY..=MAX_SESSION_CAPACITY).contains(&params.session_capacity) {
            return Err(Error::Limit {
                what: "session capacity",
                value: params.session_capacity.into(),
                limit: MAX_SESSION_CAPACITY.into(),
                constant: "MAX_SESSION_CAPACITY",
            });
        }
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_RING, MAX_VIPS * params.ring_size)
            .map_max_entries(MAP_SESSIONS, params.session_capacity)
            .map_max_entries(MAP_NAT_REVERSE, params.session_capacity)
            .map_max_entries(MAP_FULLNAT_REVERSE, params.session_capacity)
            .load(object)?;
        load_xdp(&mut ebpf, PROGRAM_NAME)?;
        install_nat_programs(&mut ebpf)?;
        let mut dp = Self {
            ebpf,
            params,
            attached: None,
            also_attached: Vec::new(),
            iface_mac,
            any_port: Default::default(),
            nat: Default::default(),
            fullnat: Default::default(),
            real_side_mac: None,
            sync: false,
            ncpus: possible_cpus(MAP_CFG)?,
        };
        dp.write_cfg()?;
        Ok(dp)
    }

    /// The machine's possible CPUs, as the data plane counts them
    /// (`fullnat` splits each local address's ports among them).
    pub fn possible_cpus(&self) -> usize {
        self.ncpus
    }

    /// The load-time parameters.
    pub fn params(&self) -> &DataplaneParams {
        &self.params
    }

    /// Rewrites the global settings with a new interface MAC.
    pub fn set_iface_mac(&mut self, iface_mac: [u8; 6]) -> Result<(), Error> {
        self.iface_mac = iface_mac;
        self.write_cfg()
    }

    pub(crate) fn write_cfg(&mut self) -> Result<(), Error> {
        let p = &self.params;
        let mut flags = 0;
        if !self.any_port.is_empty() {
            flags |= cfg_flags::ANY_PORT_SERVICES;
        }
        if !self.nat.is_empty() {
            flags |= cfg_flags::NAT_SERVICES;
        }
        if !self.fullnat.is_empty() {
            flags |= cfg_flags::FULLNAT_SERVICES;
        }
        if self.sync {
            flags |= cfg_flags::SYNC;
        }
        let cfg = GlobalCfg {
            iface_mac: self.iface_mac,
            flags,
            ring_size: p.ring_size,
            timeouts_ns: [
                p.tcp_syn_timeout.as_nanos() as u64,
                p.tcp_established_timeout.as_nanos() as u64,
                p.tcp_closing_timeout.as_nanos() as u64,
                p.udp_timeout.as_nanos() as u64,
            ],
            real_side_mac: self.real_side_mac.unwrap_or(self.iface_mac),
            ncpus: u32::try_from(self.ncpus).unwrap_or(u32::MAX),
            port_quarantine_ns: p.fullnat_port_quarantine.as_nanos() as u64,
            ..Default::default()
        };
        let mut a: Array<_, GlobalCfg> = self.array(MAP_CFG)?;
        a.set(0, cfg, 0).map_err(map_err(MAP_CFG))
    }

    /// The two-arm topology of `nat`: the clients' packets leave by the
    /// interface with index `real_side` (from its MAC, `real_side_mac`),
    /// the reals' replies by `client_side`, redirected between the two
    /// (`bpf_redirect_map`) instead of sent back by the interface they
    /// came in on. Interface indexes mean the calling thread's network
    /// namespace, and are resolved in the one that writes them: call this
    /// from the namespace of the interfaces (the daemon runs there).
    /// Attach the program to both interfaces.
    pub fn set_two_arm(
        &mut self,
        client_side: u32,
        real_side: u32,
        real_side_mac: [u8; 6],
    ) -> Result<(), Error> {
        let map = self
            .ebpf
            .map_mut(MAP_TX_PORTS)
            .ok_or(Error::MissingMap(MAP_TX_PORTS))?;
        let mut ports: DevMap<_> = DevMap::try_from(map).map_err(map_err(MAP_TX_PORTS))?;
        for (slot, ifindex) in [
            (tx_port::CLIENT_SIDE, client_side),
            (tx_port::REAL_SIDE, real_side),
        ] {
            ports
                .set(slot, ifindex, None, 0)
                .map_err(|source| Error::XdpMap {
                    map: MAP_TX_PORTS,
                    source,
                })?;
        }
        self.real_side_mac = Some(real_side_mac);
        self.write_cfg()
    }

    /// Attaches to `iface` (resolved in the calling thread's network
    /// namespace).
    ///
    /// # Errors
    /// [`Error::Program`] naming the interface when it does not exist or
    /// does not support the mode.
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<(), Error> {
        self.detach()?;
        let prog = self.program()?;
        let link = prog
            .attach(iface, mode.to_aya())
            .map_err(|source| Error::Program {
                context: format!(
                    "attaching {PROGRAM_NAME} to interface {iface:?} in {mode:?} mode \
                     (does the interface exist in this network namespace? for a driver \
                     without native XDP set xdp_mode = \"generic\")"
                ),
                source,
            })?;
        self.attached = Some((iface.to_owned(), link));
        Ok(())
    }

    /// Attaches the program to a further interface besides
    /// [`Dataplane::attach`]'s (two-arm `nat`: the interface toward the
    /// reals, whose replies arrive there); detached with it.
    ///
    /// # Errors
    /// As [`Dataplane::attach`].
    pub fn attach_also(&mut self, iface: &str, mode: AttachMode) -> Result<(), Error> {
        let prog = self.program()?;
        let link = prog
            .attach(iface, mode.to_aya())
            .map_err(|source| Error::Program {
                context: format!(
                    "attaching {PROGRAM_NAME} to interface {iface:?} in {mode:?} mode \
                     (does the interface exist in this network namespace?)"
                ),
                source,
            })?;
        self.also_attached.push((iface.to_owned(), link));
        Ok(())
    }

    /// Detaches the program from every interface it is attached to (also
    /// done on drop).
    pub fn detach(&mut self) -> Result<(), Error> {
        let links: Vec<_> = self
            .attached
            .take()
            .into_iter()
            .chain(self.also_attached.drain(..))
            .collect();
        for (iface, link) in links {
            let prog = self.program()?;
            prog.detach(link).map_err(|source| Error::Program {
                context: format!("detaching from {iface}"),
                source,
            })?;
        }
        Ok(())
    }

    /// The interface the program is attached to, if any.
    pub fn attached_iface(&self) -> Option<&str> {
        self.attached.as_ref().map(|(i, _)| i.as_str())
    }

    fn program(&mut self) -> Result<&mut Xdp, Error> {
        self.ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or(Error::MissingProgram(PROGRAM_NAME))?
            .try_into()
            .map_err(not_xdp(PROGRAM_NAME))
    }

    pub(crate) fn array<V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<Array<&mut MapData, V>, Error> {
        let m = self.ebpf.map_mut(name).ok_or(Error::MissingMap(name))?;
        Array::try_from(m).map_err(map_err(name))
    }

    pub(crate) fn hash<K: aya::Pod, V: aya::Pod>(
        &mut self,
        name: &'static str,
    ) -> Result<HashMap<&mut MapData, K, V>, Error> {
        let m = self.ebpf.map_mut(name).ok_or(Error::MissingMap(name))?;
        HashMap::try_from(m).map_err(map_err(name))
    }

    fn percpu<V: aya::Pod>(&self, name: &'static str) -> Result<PerCpuArray<&MapData, V>, Error> {
        let m = self.ebpf.map(name).ok_or(Error::MissingMap(name))?;
        PerCpuArray::try_from(m).map_err(map_err(name))
    }

    // === writes ===

    /// Writes one real-server slot.
    pub fn set_real(&mut self, slot: u32, def: RealDef) -> Result<(), Error> {
        check_index("real slot", slot, MAX_REALS, "MAX_REALS")?;
        let mut a: Array<_, RealDef> = self.array(MAP_REALS)?;
        a.set(slot, def, 0).map_err(map_err(MAP_REALS))
    }

    /// Writes a service's ring (`entries.len()` ≤ ring size) starting at
    /// slot 0 of its region.
    pub fn set_ring(&mut self, vip_index: u32, entries: &[u32]) -> Result<(), Error> {
        check_index("service index", vip_index, MAX_VIPS, "MAX_VIPS")?;
        let size = self.params.ring_size;
        if entries.len() as u64 > u64::from(size) {
            return Err(Error::Limit {
                what: "ring entries",
                value: entries.len() as u64,
                limit: size.into(),
                constant: "ring_size",
            });
        }
        let mut a: Array<_, u32> = self.array(MAP_RING)?;
        let base = vip_index * size;
        for (i, e) in entries.iter().enumerate() {
            a.set(base + i as u32, *e, 0).map_err(map_err(MAP_RING))?;
        }
        Ok(())
    }

    /// Writes a service's real list (for the connection-count schedulers).
    pub fn set_vip_reals(&mut self, vip_index: u32, slots: &[u32]) -> Result<(), Error> {
        check_index("service index", vip_index, MAX_VIPS, "MAX_VIPS")?;
        if slots.len() as u64 > u64::from(MAX_REALS_PER_VIP) {
            return Err(Error::Limit {
                what: "reals in one service",
                value: slots.len() as u64,
                limit: MAX_REALS_PER_VIP.into(),
                constant: "MAX_REALS_PER_VIP",
            });
        }
        let mut a: Array<_, u32> = self.array(MAP_VIP_REALS)?;
        let base = vip_index * MAX_REALS_PER_VIP;
        for (i, s) in slots.iter().enumerate() {
            a.set(base + i as u32, *s, 0)
                .map_err(map_err(MAP_VIP_REALS))?;
        }
        Ok(())
    }

    /// Inserts or replaces a service. Write its reals and ring first, so the
    /// kernel never sees a service pointing at unwritten slots.
    pub fn set_service(&mut self, key: VipKey, meta: VipMeta) -> Result<(), Error> {
        check_index("service index", meta.vip_index, MAX_VIPS, "MAX_VIPS")?;
        let mut addrs: HashMap<_, AddrKey, u32> = self.hash(MAP_VIP_ADDRS)?;
        let ak = AddrKey {
            addr: key.addr,
            family: key.family.into(),
        };
        addrs.insert(ak, 1, 0).map_err(map_err(MAP_VIP_ADDRS))?;
        let mut vips: HashMap<_, VipKey, VipMeta> = self.hash(MAP_VIPS)?;
        vips.insert(key, meta, 0).map_err(map_err(MAP_VIPS))?;
        // The by-index copy that session hits read (after the hash: a
        // session can only name a service that the hash already has).
        let mut by_index: Array<_, VipSlot> = self.array(MAP_VIP_BY_INDEX)?;
        by_index
            .set(meta.vip_index, VipSlot { key, _pad: 0, meta }, 0)
            .map_err(map_err(MAP_VIP_BY_INDEX))?;
        let mut cfg_changed =
            key.port == 0 && self.any_port.insert((key.addr, key.proto, key.family));
        let k = (key.addr, key.port, key.proto, key.family);
        for (set, method) in [
            (&mut self.nat, Method::Nat),
            (&mut self.fullnat, Method::Fullnat),
        ] {
            cfg_changed |= if meta.method == method.to_byte() {
                set.insert(k)
            } else {
                set.remove(&k)
            };
        }
        if cfg_changed {
            self.write_cfg()?;
        }
        self.refresh_vip_filter()
    }

    /// Recounts [`MAP_VIP_FILTER`] from the VIP addresses in
    /// [`MAP_VIP_ADDRS`].
    fn refresh_vip_filter(&mut self) -> Result<(), Error> {
        let mut counts = [0u32; VIP_FILTER_SLOTS as usize];
        let addrs: HashMap<_, AddrKey, u32> = self.hash(MAP_VIP_ADDRS)?;
        for k in addrs.keys() {
            let k = k.map_err(map_err(MAP_VIP_ADDRS))?;
            let fam = u8::try_from(k.family).unwrap_or(0);
            if let Some(c) = counts.get_mut(vip_filter_slot(&k.addr, fam) as usize) {
                *c += 1;
            }
        }
        let mut filter: Array<_, u32> = self.array(MAP_VIP_FILTER)?;
        for (i, c) in (0u32..).zip(counts) {
            filter.set(i, c, 0).map_err(map_err(MAP_VIP_FILTER))?;
        }
        Ok(())
    }

    /// Removes a service; the VIP address stays known while another service
    /// uses it (`addr_still_used`).
    pub fn remove_service(&mut self, key: VipKey, addr_still_used: bool) -> Result<(), Error> {
        let vips: HashMap<_, VipKey, VipMeta> = self.hash(MAP_VIPS)?;
        let index = vips.get(&key, 0).ok().map(|m| m.vip_index);
        // The by-index copy goes first (session hits stop using the service
        // before the hash forgets it), unless another service took the index.
        if let Some(index) = index {
            let mut by_index: Array<_, VipSlot> = self.array(MAP_VIP_BY_INDEX)?;
            if by_index.get(&index, 0).is_ok_and(|slot| slot.key == key) {
                by_index
                    .set(index, VipSlot::default(), 0)
                    .map_err(map_err(MAP_VIP_BY_INDEX))?;
            }
        }
        let mut vips: HashMap<_, VipKey, VipMeta> = self.hash(MAP_VIPS)?;
        // Removing an absent key is not an error for an idempotent remove.
        let _ = vips.remove(&key);
        let cfg_changed = key.port == 0 && self.any_port.remove(&(key.addr, key.proto, key.family));
        let k = (key.addr, key.port, key.proto, key.family);
        let nat_changed = self.nat.remove(&k);
        if self.fullnat.remove(&k) || nat_changed || cfg_changed {
            self.write_cfg()?;
        }
        if !addr_still_used {
            let mut addrs: HashMap<_, AddrKey, u32> = self.hash(MAP_VIP_ADDRS)?;
            let _ = addrs.remove(&AddrKey {
                addr: key.addr,
                family: key.family.into(),
            });
            self.refresh_vip_filter()?;
        }
        Ok(())
    }

    /// Overwrites a real's connection counter (reconciliation).
    pub fn set_real_conns(&mut self, slot: u32, conns: u64) -> Result<(), Error> {
        check_index("real slot", slot, MAX_REALS, "MAX_REALS")?;
        let mut a: Array<_, u64> = self.array(MAP_REAL_CONNS)?;
        a.set(slot, conns, 0).map_err(map_err(MAP_REAL_CONNS))
    }

    /// Resets the round-robin cursors of a service on every CPU (after its
    /// cycle changed length).
    pub fn reset_cursor(&mut self, vip_index: u32) -> Result<(), Error> {
        check_index("service index", vip_index, MAX_VIPS, "MAX_VIPS")?;
        let ncpu = self.ncpus;
        let m = self.ebpf.map_mut(MAP_RR).ok_or(Error::MissingMap(MAP_RR))?;
        let mut a: PerCpuArray<_, u32> = PerCpuArray::try_from(m).map_err(map_err(MAP_RR))?;
        let zeros = PerCpuValues::try_from(vec![0u32; ncpu]).map_err(|e| Error::Map {
            map: MAP_RR,
            source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
                call: "per-cpu values",
                io_error: e,
            }),
        })?;
        a.set(vip_index, zeros, 0).map_err(map_err(MAP_RR))
    }

    // === reads ===

    /// The first `len` entries of service `vip_index`'s ring as the kernel
    /// reads them (its `VipMeta::ring_len` says how many are in use).
    pub fn ring(&self, vip_index: u32, len: u32) -> Result<Vec<u32>, Error> {
        check_index("service index", vip_index, MAX_VIPS, "MAX_VIPS")?;
        let size = self.params.ring_size;
        if len > size {
            return Err(Error::Limit {
                what: "ring entries",
                value: len.into(),
                limit: size.into(),
                constant: "ring_size",
            });
        }
        let m = self.ebpf.map(MAP_RING).ok_or(Error::MissingMap(MAP_RING))?;
        let a: Array<_, u32> = Array::try_from(m).map_err(map_err(MAP_RING))?;
        let base = vip_index * size;
        (base..base + len)
            .map(|i| a.get(&i, 0).map_err(map_err(MAP_RING)))
            .collect()
    }

    /// One real-server slot as the kernel reads it.
    pub fn real(&self, slot: u32) -> Result<RealDef, Error> {
        check_index("real slot", slot, MAX_REALS, "MAX_REALS")?;
        let m = self
            .ebpf
            .map(MAP_REALS)
            .ok_or(Error::MissingMap(MAP_REALS))?;
        let a: Array<_, RealDef> = Array::try_from(m).map_err(map_err(MAP_REALS))?;
        a.get(&slot, 0).map_err(map_err(MAP_REALS))
    }

    /// Reads one global counter, summed over all CPUs.
    pub fn counter(&self, c: Counter) -> Result<u64, Error> {
        let a: PerCpuArray<_, u64> = self.percpu(MAP_STATS)?;
        let v = a.get(&(c as u32), 0).map_err(map_err(MAP_STATS))?;
        Ok(v.iter().sum())
    }

    /// Every global counter, summed over CPUs, in slot order.
    pub fn counters(&self) -> Result<Vec<(Counter, u64)>, Error> {
        Counter::ALL
            .iter()
            .map(|c| Ok((*c, self.counter(*c)?)))
            .collect()
    }

    /// Traffic of a service, summed over CPUs.
    pub fn vip_stats(&self, vip_index: u32) -> Result<TrafficStats, Error> {
        self.traffic(MAP_VIP_STATS, vip_index)
    }

    /// Traffic of a real slot, summed over CPUs.
    pub fn real_stats(&self, slot: u32) -> Result<TrafficStats, Error> {
        self.traffic(MAP_REAL_STATS, slot)
    }

    fn traffic(&self, map: &'static str, idx: u32) -> Result<TrafficStats, Error> {
        let a: PerCpuArray<_, TrafficStats> = self.percpu(map)?;
        let v = a.get(&idx, 0).map_err(map_err(map))?;
        Ok(v.iter()
            .fold(TrafficStats::default(), |acc, s| TrafficStats {
                packets: acc.packets + s.packets,
                bytes: acc.bytes + s.bytes,
                sessions: acc.sessions + s.sessions,
            }))
    }

    /// A snapshot of the session table (entries whose read raced with an
    /// eviction are skipped).
    pub fn sessions(&self) -> Result<Vec<(FlowKey, FlowVal)>, Error> {
        let m = self
            .ebpf
            .map(MAP_SESSIONS)
            .ok_or(Error::MissingMap(MAP_SESSIONS))?;
        // aya's HashMap also handles BPF_MAP_TYPE_LRU_HASH.
        let h: HashMap<_, FlowKey, FlowVal> =
            HashMap::try_from(m).map_err(map_err(MAP_SESSIONS))?;
        Ok(h.iter().filter_map(Result::ok).collect())
    }

    /// A snapshot of the reverse entries of `nat` sessions (keyed by the
    /// replies' 5-tuple; entries whose read raced with an eviction are
    /// skipped).
    pub fn nat_reverse(&self) -> Result<Vec<(FlowKey, NatReverse)>, Error> {
        let m = self
            .ebpf
            .map(MAP_NAT_REVERSE)
            .ok_or(Error::MissingMap(MAP_NAT_REVERSE))?;
        let h: HashMap<_, FlowKey, NatReverse> =
            HashMap::try_from(m).map_err(map_err(MAP_NAT_REVERSE))?;
        Ok(h.iter().filter_map(Result::ok).collect())
    }

    /// Instructions the verifier processed to accept `sluice_xdp` (its
    /// budget is 1,000,000 per program; docs/ARCHITECTURE.md records the
    /// figure). `None` when the kernel does not report it.
    pub fn verified_instructions(&self) -> Result<Option<u32>, Error> {
        self.verified_instructions_of(PROGRAM_NAME)
    }

    /// [`Dataplane::verified_instructions`] of another XDP program of the
    /// object, e.g. the `nat` programs `sluice_xdp` tail-calls
    /// (`wire_maps::nat_prog`), which the verifier checks on their own.
    pub fn verified_instructions_of(&self, name: &'static str) -> Result<Option<u32>, Error> {
        let info = xdp_program(&self.ebpf, name)?
            .info()
            .map_err(|source| Error::Program {
                context: format!("reading the information of program {name}"),
                source,
            })?;
        Ok(info.verified_instruction_count())
    }

    /// Runs the program once per repetition on `frame` with
    /// `BPF_PROG_TEST_RUN` (no interface needed; maps are the live ones).
    pub fn test_run(&self, frame: &[u8], repeat: u32) -> Result<TestRunOutput, Error> {
        let prog = xdp_program(&self.ebpf, PROGRAM_NAME)?;
        xdp_test_run(prog, frame, repeat).map_err(|source| Error::Program {
            context: "BPF_PROG_TEST_RUN".to_owned(),
            source,
        })
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if let Err(e) = self.detach() {
            tracing::warn!(error = %e, "detaching the XDP program on drop failed");
        }
    }
}

pub(crate) fn check_index(
    what: &'static str,
    v: u32,
    limit: u32,
    constant: &'static str,
) -> Result<(), Error> {
    if v >= limit {
        return Err(Error::Limit {
            what,
            value: v.into(),
            limit: limit.into(),
            constant,
        });
    }
    Ok(())
}

/// Finds program `name` in `ebpf` as XDP and loads it into the kernel
/// (the verifier runs here).
fn load_xdp<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, Error> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(Error::MissingProgram(name))?
        .try_into()
        .map_err(not_xdp(name))?;
    prog.load().map_err(|source| Error::Program {
        context: format!("verifying {name}"),
        source,
    })?;
    Ok(prog)
}

/// Runs XDP program `prog` `repeat` times (at least once) on `frame` with
/// `BPF_PROG_TEST_RUN`: the verdict, the frame it left (with room to
/// grow by `TEST_RUN_HEADROOM`), the mean time per run.
pub(crate) fn xdp_test_run(
    prog: &Xdp,
    frame: &[u8],
    repeat: u32,
) -> Result<TestRunOutput, aya::programs::ProgramError> {
    let mut out = vec![0u8; frame.len() + TEST_RUN_HEADROOM];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        repeat: repeat.max(1),
        ..Default::default()
    })?;
    out.truncate(r.data_size_out as usize);
    Ok(TestRunOutput {
        verdict: r.return_value,
        frame: out,
        duration: r.duration,
    })
}

/// The number of possible CPUs (per-CPU maps have a value for each);
/// an error names `map`, the map that needed it.
pub(crate) fn possible_cpus(map: &'static str) -> Result<usize, Error> {
    aya::util::nr_cpus().map_err(|(_, e)| Error::Map {
        map,
        source: aya::maps::MapError::SyscallError(aya::sys::SyscallError {
            call: "nr_cpus",
            io_error: e,
        }),
    })
}

/// Loads the `nat` and `fullnat` programs and puts them into the slots
/// `sluice_xdp` tail-calls (`nat_prog`). The program array keeps its entries only
/// while user space holds the map, which the [`Dataplane`] does.
fn install_nat_programs(ebpf: &mut Ebpf) -> Result<(), Error> {
    for (slot, name) in nat_prog::ALL {
        let fd = load_xdp(ebpf, name)?
            .fd()
            .and_then(|fd| fd.try_clone().map_err(aya::programs::ProgramError::from))
            .map_err(|source| Error::Program {
                context: format!("the file descriptor of {name}"),
                source,
            })?;
        let map = ebpf
            .map_mut(MAP_NAT_PROGS)
            .ok_or(Error::MissingMap(MAP_NAT_PROGS))?;
        let mut progs: ProgramArray<_> =
            ProgramArray::try_from(map).map_err(map_err(MAP_NAT_PROGS))?;
        progs.set(slot, &fd, 0).map_err(map_err(MAP_NAT_PROGS))?;
    }
    Ok(())
}

/// The small helper programs in the same object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Helper {
    /// `sluice_pass`: XDP_PASS, for the peer of a veth that receives XDP_TX
    /// frames in native mode.
    Pass,
    /// `sluice_decap`: the real-server side of `tun` (strips IPIP/IP6IP6).
    Decap,
    /// `sluice_reflect`: MAC swap + XDP_TX (benchmark baseline).
    Reflect,
    /// `sluice_sink`: count and drop (benchmark receiver).
    Sink,
    /// `sluice_bounce`: strip IPIP, swap MACs, XDP_TX (ping-pong benchmark).
    Bounce,
    /// `sluice_bounce_vary`: as `Bounce`, plus a new source address each time.
    BounceVary,
}

impl Helper {
    /// Program name in the object.
    pub const fn program_name(self) -> &'static str {
        match self {
            Helper::Pass => "sluice_pass",
            Helper::Decap => "sluice_decap",
            Helper::Reflect => "sluice_reflect",
            Helper::Sink => "sluice_sink",
            Helper::Bounce => "sluice_bounce",
            Helper::BounceVary => "sluice_bounce_vary",
        }
    }
}

/// An attached helper program; dropping it detaches it.
#[derive(Debug)]
pub struct HelperProgram {
    ebpf: Ebpf,
    helper: Helper,
    iface: String,
    link: Option<XdpLinkId>,
}

impl HelperProgram {
    /// Loads the object (with minimal map sizes; the helpers use no maps)
    /// and attaches `helper` to `iface` in the calling thread's namespace.
    pub fn attach(helper: Helper, iface: &str, mode: AttachMode) -> Result<Self, Error> {
        let name = helper.program_name();
        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_RING, 1)
            .map_max_entries(MAP_SESSIONS, MIN_SESSION_CAPACITY)
            .load(OBJECT)?;
        let link = load_xdp(&mut ebpf, name)?
            .attach(iface, mode.to_aya())
            .map_err(|source| Error::Program {
                context: format!("attaching {name} to interface {iface:?} in {mode:?} mode"),
                source,
            })?;
        Ok(Self {
            ebpf,
            helper,
            iface: iface.to_owned(),
            link: Some(link),
        })
    }

    /// Packets counted by `Reflect`, `Sink` and the bouncers (summed over CPUs).
    pub fn packets(&self) -> Result<u64, Error> {
        let m = self
            .ebpf
            .map(MAP_STATS)
            .ok_or(Error::MissingMap(MAP_STATS))?;
        let a: PerCpuArray<_, u64> = PerCpuArray::try_from(m).map_err(map_err(MAP_STATS))?;
        let v = a
            .get(&(Counter::RxPackets as u32), 0)
            .map_err(map_err(MAP_STATS))?;
        Ok(v.iter().sum())
    }

    /// Runs the helper on one frame with `BPF_PROG_TEST_RUN`.
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutput, Error> {
        self.test_run_repeat(frame, 1)
    }

    /// Runs the helper `repeat` times on one frame; the duration is the
    /// kernel's mean per run.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<TestRunOutput, Error> {
        let prog = xdp_program(&self.ebpf, self.helper.program_name())?;
        xdp_test_run(prog, frame, repeat).map_err(|source| Error::Program {
            context: "BPF_PROG_TEST_RUN".to_owned(),
            source,
        })
    }
}

impl Drop for HelperProgram {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let name = self.helper.program_name();
            if let Some(Ok(prog)) = self.ebpf.program_mut(name).map(<&mut Xdp>::try_from)
                && let Err(e) = prog.detach(link)
            {
                tracing::warn!(error = %e, iface = %self.iface, "detaching {name}");
            }
        }
    }
}
