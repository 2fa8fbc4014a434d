//! The L4 control plane: turns service specifications into map contents and
//! applies runtime changes (add/remove a real, change a weight, drain).
//!
//! Policy (which real a new flow gets) comes from sluice-core: Maglev tables
//! for `mh`, `sh` and `dh` (the kernel indexes them by flow, source or
//! destination hash), the IPVS interleaved cycle for `rr`/`wrr` (walked by
//! a per-CPU cursor), and for `lc`/`wlc`/`sed`/`nq` the service's real list,
//! evaluated in the kernel from the shared connection counters.
//!
//! Every change is computed completely first and then written in an order
//! the kernel can never observe half-done: reals, then ring and real list,
//! then the service record that points at them. A change that fails
//! validation writes nothing.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    time::Duration,
};

use sluice_core::health::Health;
use sluice_core::sched::{hashsched::real_key, maglev, rr::wrr_sequence};
// The operator state, `on_real_down` and the rule that decides with them
// what a real gets are sluice-core's; the method is sluice-wire's (the byte
// the XDP program reads).
use sluice_core::service::{OnRealDown, OperatorState, RealPolicy, RealStatus, service_view};
use sluice_wire::fullnat::MAX_LOCAL_ADDRS_PER_VIP;
use sluice_wire::maps::Method;
use sluice_wire::maps::{
    Addr, MAX_REALS, MAX_REALS_PER_VIP, MAX_VIPS, NO_REAL, RealDef, VipKey, VipMeta,
    addr_from_bytes, addr_v4, family, real_flags, sched, state, vip_flags,
};

use crate::{Dataplane, Error};

/// Scheduler of a service: sluice-core's, by IPVS name.
pub use sluice_core::sched::L4Scheduler as Scheduler;

/// One real server of a service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealSpec {
    /// Address (same family as the VIP).
    pub addr: IpAddr,
    /// Weight; 0 drains (existing sessions stay, no new ones).
    pub weight: u32,
    /// Port a `nat` flow is sent to at the real (VIP:80 → RIP:8080); 0 =
    /// the packet's own port. Only `nat` rewrites ports: other methods
    /// need 0 or the service's port ([`validate_spec`]).
    pub port: u16,
}

/// One L4 virtual service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSpec {
    /// Unique name.
    pub name: String,
    /// Virtual address.
    pub vip: IpAddr,
    /// Port; 0 = every port.
    pub port: u16,
    /// IP protocol number (6 or 17).
    pub proto: u8,
    /// Forwarding method.
    pub method: Method,
    /// Scheduler.
    pub scheduler: Scheduler,
    /// Client-IP persistence timeout.
    pub persistence: Option<Duration>,
    /// Lookup-table size for the hash schedulers (prime).
    pub table_size: u32,
    /// Outer source for `tun`.
    pub tun_source: Option<IpAddr>,
    /// Vary the outer source per flow (`tun`).
    pub tun_vary_source: bool,
    /// `fullnat`: the addresses connections to the reals come from (same
    /// family as the VIP, at most `MAX_LOCAL_ADDRS_PER_VIP`); empty for
    /// other methods.
    pub local_addresses: Vec<IpAddr>,
    /// `fullnat`: the lowest and highest local port handed out (split
    /// among the CPUs, `sluice_wire::fullnat`).
    pub local_ports: (u16, u16),
    /// `fullnat` TCP: insert the client's address and port as a TOA
    /// option into each connection's first ACK.
    pub toa: bool,
    /// What happens to sessions of a real whose health check fails.
    pub on_real_down: OnRealDown,
    /// When every real is down, send new flows to all of them anyway.
    pub fail_open: bool,
    /// Health of a real before its first check result (`true` without a
    /// health check).
    pub initially_up: bool,
    /// The reals.
    pub reals: Vec<RealSpec>,
}

/// Finds the MAC address to send to for a real (its own for `dr`, the next
/// hop's for `tun`). Implemented with the kernel's neighbour table by
/// [`crate::neigh::KernelNeighbours`]; tests may substitute a fixed table.
pub trait NeighbourResolver: std::fmt::Debug + Send {
    /// The MAC, or `None` while it is unknown (packets to that real are
    /// dropped and counted as `drop_no_neighbour` until it resolves).
    fn resolve(&mut self, addr: IpAddr) -> Option<[u8; 6]>;
}

/// A real as the control plane tracks it.
#[derive(Clone, Debug)]
struct RealState {
    spec: RealSpec,
    slot: u32,
    /// Generation of this allocation of `slot` (`RealDef::generation`).
    generation: u16,
    mac: Option<[u8; 6]>,
    /// Latest health verdict.
    healthy: bool,
    /// Operator state.
    operator: OperatorState,
    /// Removed by a reload while it had sessions: drained (no new flows,
    /// its sessions continue) and retired once it has none
    /// ([`L4Plane::reconcile_conns`]).
    leaving: bool,
}

impl RealState {
    fn status(&self) -> RealStatus {
        RealStatus {
            health: if self.healthy {
                Health::Up
            } else {
                Health::Down
            },
            // Leaving: drained, whatever the operator set (kept for
            // when a later reload brings the real back).
            operator: if self.leaving {
                OperatorState::Drain
            } else {
                self.operator
            },
        }
    }
}

impl ServiceSpec {
    /// The service's policy for its reals.
    pub fn policy(&self) -> RealPolicy {
        RealPolicy {
            on_real_down: self.on_real_down,
            fail_open: self.fail_open,
        }
    }
}

#[derive(Clone, Debug)]
struct ServiceState {
    spec: ServiceSpec,
    index: u32,
    reals: Vec<RealState>,
}

/// What becomes of the reals a service update leaves out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removed {
    /// Drained until their sessions end (a reload).
    Drain,
    /// Retired at once, their sessions rescheduled (`ctl remove-real`).
    Retire,
}

/// One service as `sluice ctl list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ServiceView {
    /// Name.
    pub name: String,
    /// `VIP:port/proto`.
    pub address: String,
    /// Scheduler (IPVS name).
    pub scheduler: String,
    /// Method (`dr`, `tun`, `nat`).
    pub method: &'static str,
    /// Persistence timeout in seconds.
    pub persistence_s: Option<u64>,
    /// Packets to the service.
    pub packets: u64,
    /// Bytes to the service.
    pub bytes: u64,
    /// Sessions created.
    pub sessions: u64,
    /// `fullnat`: each local address's port pool and its usage.
    pub local_addresses: Vec<crate::locals::LocalPoolView>,
    /// Reals.
    pub reals: Vec<RealView>,
}

/// One real as `sluice ctl list` shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RealView {
    /// Address.
    pub address: String,
    /// Port at the real (`nat` port translation), if it has its own.
    pub port: Option<u16>,
    /// Weight.
    pub weight: u32,
    /// Next-hop MAC, if resolved.
    pub mac: Option<String>,
    /// Health verdict: "up" or "down".
    pub health: &'static str,
    /// Operator state (`enabled`, `drain`, `maintenance`), or `leaving`:
    /// removed by a reload, draining until its sessions end.
    pub operator: &'static str,
    /// Established sessions (IPVS ActiveConn).
    pub active: u64,
    /// Other live sessions (IPVS InActConn).
    pub inactive: u64,
    /// Packets forwarded.
    pub packets: u64,
    /// Bytes forwarded.
    pub bytes: u64,
    /// Sessions created.
    pub sessions: u64,
}

/// Errors of control-plane operations; nothing has been written when one is
/// returned for a validation problem.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Map access failed.
    #[error(transparent)]
    Dataplane(#[from] Error),
    /// The request is invalid; the message says what was expected.
    #[error("{0}")]
    Invalid(String),
    /// No such service.
    #[error("no L4 service named {0:?}")]
    NoService(String),
    /// No such real in the service.
    #[error("service {service:?} has no real {addr}")]
    NoReal {
        /// Service name.
        service: String,
        /// Real address.
        addr: IpAddr,
    },
}

/// Live sessions per real, keyed by (slot, generation): (active, inactive).
type SessionCounts = BTreeMap<(u32, u16), (u64, u64)>;

/// The L4 control plane over one [`Dataplane`].
#[derive(Debug)]
pub struct L4Plane<R: NeighbourResolver> {
    dp: Dataplane,
    resolver: R,
    services: BTreeMap<String, ServiceState>,
    /// Real slots: never used ones are handed out first, then freed ones,
    /// the longest-free first. Every allocation of a slot gets the next
    /// generation of that slot (`slot_gens`), which the kernel compares
    /// with the one a session or persistence entry recorded: a stale entry
    /// never follows a reused slot to its new real or service.
    next_slot: u32,
    free_slots: VecDeque<u32>,
    /// Last generation given to each slot (index: slot).
    slot_gens: Vec<u16>,
    /// Outer sources of `tun` services without `tun_source`: the
    /// interface's addresses (see [`L4Plane::set_outer_sources`]).
    outer_v4: Option<std::net::Ipv4Addr>,
    outer_v6: Option<std::net::Ipv6Addr>,
    /// `fullnat`'s local-address slots.
    locals: crate::locals::LocalSlots,
}

pub(crate) fn addr16(a: IpAddr) -> (Addr, u8) {
    match a {
        IpAddr::V4(v4) => (addr_v4(v4.octets()), family::V4),
        IpAddr::V6(v6) => (addr_from_bytes(v6.octets()), family::V6),
    }
}

fn fmt_mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn proto_name(p: u8) -> &'static str {
    match p {
        6 => "tcp",
        17 => "udp",
        _ => "?",
    }
}

impl<R: NeighbourResolver> L4Plane<R> {
    /// A control plane with no services over a loaded data plane.
    pub fn new(dp: Dataplane, resolver: R) -> Self {
        Self {
            dp,
            resolver,
            services: BTreeMap::new(),
            next_slot: 0,
            free_slots: VecDeque::new(),
            slot_gens: vec![0; MAX_REALS as usize],
            outer_v4: None,
            outer_v6: None,
            locals: Default::default(),
        }
    }

    /// The outer source addresses of encapsulated packets for `tun`
    /// services that set no `tun_source`: the attached interface's own
    /// (the binary reads them with [`crate::neigh::iface_addrs`]). A `tun`
    /// service without either is refused, never sent from `0.0.0.0`.
    pub fn set_outer_sources(
        &mut self,
        v4: Option<std::net::Ipv4Addr>,
        v6: Option<std::net::Ipv6Addr>,
    ) {
        self.outer_v4 = v4;
        self.outer_v6 = v6;
    }

    /// The outer source of `spec`'s encapsulated packets, if it is `tun`.
    fn outer_source(&self, spec: &ServiceSpec) -> Option<IpAddr> {
        spec.tun_source.or(match spec.vip {
            IpAddr::V4(_) => self.outer_v4.map(IpAddr::V4),
            IpAddr::V6(_) => self.outer_v6.map(IpAddr::V6),
        })
    }

    /// The data plane (counters, test runs).
    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    /// The data plane, mutably (attach/detach).
    pub fn dataplane_mut(&mut self) -> &mut Dataplane {
        &mut self.dp
    }

    fn validate(&self, s: &ServiceSpec) -> Result<(), ControlError> {
        validate_spec(s, self.dp.params().ring_size)
            .map_err(|p| ControlError::Invalid(format!("service {}: {}", s.name, p.message)))?;
        if s.method == Method::Tun && self.outer_source(s).is_none() {
            return Err(ControlError::Invalid(format!(
                "service {}: tun needs an outer source address: set tun_source, or give the interface an address of the VIP's family",
                s.name
            )));
        }
        Ok(())
    }

    /// A slot for a new real and its generation there.
    fn alloc_slot(&mut self) -> Result<(u32, u16), ControlError> {
        let slot = if self.next_slot < MAX_REALS {
            self.next_slot += 1;
            self.next_slot - 1
        } else {
            // The longest-free slot: a generation comes round again only
            // after 65,535 allocations of one slot, and taking the oldest
            // spreads reuse over every free slot.
            self.free_slots.pop_front().ok_or_else(|| {
                ControlError::Invalid(format!("more than {MAX_REALS} reals in total (MAX_REALS)"))
            })?
        };
        let generation = self
            .slot_gens
            .get_mut(slot as usize)
            .ok_or_else(|| ControlError::Invalid(format!("real slot {slot} out of range")))?;
        *generation = next_gen(*generation);
        Ok((slot, *generation))
    }

    /// Replaces the whole service set (start-up, reload). Services and reals
    /// that survive keep their slots, so their sessions stay; a real that
    /// is gone from a surviving service is drained rather than cut: it
    /// takes no new flows, its sessions continue, and its slot is retired
    /// once it has none (a reload never resets a connection of a real
    /// that still answers). A removed service's sessions end with it.
    pub fn apply(&mut self, specs: Vec<ServiceSpec>) -> Result<(), ControlError> {
        if specs.len() as u64 > u64::from(MAX_VIPS) {
            return Err(ControlError::Invalid(format!(
                "{} L4 services, at most {MAX_VIPS} (MAX_VIPS)",
                specs.len()
            )));
        }
        for s in &specs {
            self.validate(s)?;
        }
        let names: Vec<String> = self.services.keys().cloned().collect();
        for n in names {
            if !specs.iter().any(|s| s.name == n) {
                self.remove_service(&n)?;
            }
        }
        for s in specs {
            self.upsert_with(s, Removed::Drain)?;
        }
        Ok(())
    }

    fn upsert(&mut self, spec: ServiceSpec) -> Result<(), ControlError> {
        self.upsert_with(spec, Removed::Retire)
    }

    fn upsert_with(
        &mut self,
        spec: ServiceSpec,
        removed_reals: Removed,
    ) -> Result<(), ControlError> {
        self.validate(&spec)?;
        let used: Vec<u32> = self.services.values().map(|s| s.index).collect();
        let mut st = match self.services.remove(&spec.name) {
            Some(old) => old,
            None => {
                let index = (0..MAX_VIPS).find(|i| !used.contains(i)).ok_or_else(|| {
                    ControlError::Invalid(format!("more than {MAX_VIPS} services (MAX_VIPS)"))
                })?;
                ServiceState {
                    spec: spec.clone(),
                    index,
                    reals: Vec::new(),
                }
            }
        };
        // Reals: keep slots of surviving addresses.
        let mut reals = Vec::with_capacity(spec.reals.len());
        for r in &spec.reals {
            let ((slot, generation), healthy, operator) =
                match st.reals.iter().find(|x| x.spec.addr == r.addr) {
                    Some(x) => ((x.slot, x.generation), x.healthy, x.operator),
                    None => (
                        self.alloc_slot()?,
                        spec.initially_up,
                        OperatorState::Enabled,
                    ),
                };
            reals.push(RealState {
                spec: r.clone(),
                slot,
                generation,
                mac: None,
                healthy,
                operator,
                leaving: false,
            });
        }
        // Reals gone from the spec: a reload drains them (and one already
        // leaving stays so, whoever changes the service next); otherwise
        // (`ctl remove-real`) they are retired now.
        let mut removed = Vec::new();
        for x in st
            .reals
            .iter()
            .filter(|x| !spec.reals.iter().any(|r| r.addr == x.spec.addr))
        {
            if x.leaving || removed_reals == Removed::Drain {
                reals.push(RealState {
                    leaving: true,
                    mac: None,
                    ..x.clone()
                });
            } else {
                removed.push(x.slot);
            }
        }
        if spec.vip != st.spec.vip || spec.port != st.spec.port || spec.proto != st.spec.proto {
            let old = st.spec.clone();
            self.unset_service_key(&old)?;
        }
        st.spec = spec;
        st.reals = reals;
        self.write_service(&mut st)?;
        for slot in removed {
            self.retire_slot(slot)?;
        }
        self.services.insert(st.spec.name.clone(), st);
        Ok(())
    }

    fn retire_slot(&mut self, slot: u32) -> Result<(), ControlError> {
        // Not PRESENT (and generation 0, which no allocation has):
        // sessions pointing here are rescheduled by the kernel.
        self.dp.set_real(slot, RealDef::default())?;
        self.dp.set_real_conns(slot, 0)?;
        self.free_slots.push_back(slot);
        Ok(())
    }

    fn unset_service_key(&mut self, spec: &ServiceSpec) -> Result<(), ControlError> {
        let (addr, fam) = addr16(spec.vip);
        let still = self.services.values().any(|s| s.spec.vip == spec.vip);
        self.dp.remove_service(
            VipKey {
                addr,
                port: spec.port,
                proto: spec.proto,
                family: fam,
            },
            still,
        )?;
        Ok(())
    }

    /// Removes a service; its sessions die with it.
    pub fn remove_service(&mut self, name: &str) -> Result<(), ControlError> {
        let st = self
            .services
            .remove(name)
            .ok_or_else(|| ControlError::NoService(name.to_owned()))?;
        self.unset_service_key(&st.spec)?;
        self.dp.set_vip_locals(st.index, &[])?;
        self.locals.release(&mut self.dp, name, &[])?;
        for r in &st.reals {
            self.retire_slot(r.slot)?;
        }
        Ok(())
    }

    /// Computes and writes everything of one service.
    fn write_service(&mut self, st: &mut ServiceState) -> Result<(), ControlError> {
        let spec = &st.spec;
        // What each real gets: sluice-core's one rule (health, operator,
        // on_real_down, fail-open), shared with the proxy and the checker.
        let view = service_view(
            &st.reals.iter().map(RealState::status).collect::<Vec<_>>(),
            spec.policy(),
        );
        if view.failed_open {
            tracing::warn!(service = %spec.name, "every real is down: failing open to the enabled ones");
        }
        for (r, e) in st.reals.iter_mut().zip(&view.reals) {
            r.mac = self.resolver.resolve(r.spec.addr);
            let (addr, fam) = addr16(r.spec.addr);
            let up = e.new_flows();
            let mut flags = 0;
            // A real that keeps its flows stays present (with weight 0 when
            // it gets no new ones); one that does not is absent, so its
            // sessions' next packets are scheduled again.
            if e.keeps_flows() {
                flags |= real_flags::PRESENT;
            }
            if r.mac.is_some() {
                flags |= real_flags::HAS_MAC;
            }
            self.dp.set_real(
                r.slot,
                RealDef {
                    addr,
                    mac: r.mac.unwrap_or_default(),
                    family: fam,
                    flags,
                    weight: if up { r.spec.weight } else { 0 },
                    port: real_def_port(spec.method, r.spec.port),
                    generation: r.generation,
                },
            )?;
        }
        let slots: Vec<u32> = st.reals.iter().map(|r| r.slot).collect();
        let weights: Vec<u32> = st
            .reals
            .iter()
            .zip(&view.reals)
            .map(|(r, e)| if e.new_flows() { r.spec.weight } else { 0 })
            .collect();
        let (ksched, ring, ring_len): (u8, Vec<u32>, u32) = match spec.scheduler {
            Scheduler::Mh | Scheduler::Sh | Scheduler::Dh => {
                // A pure function of (address, weight) of the reals that
                // take new flows, whatever their order in `st.reals` and
                // whatever came before: every LB with the same reals,
                // weights and health writes the same real for each ring
                // entry, so ECMP and failover keep flows on their real
                // (sluice-core's `maglev` module). The key is the address,
                // unique within a service; never the slot, which is this
                // LB's own and depends on its history.
                let pairs: Vec<(u64, u32)> = st
                    .reals
                    .iter()
                    .map(|r| real_key(r.spec.addr, 0))
                    .zip(weights.iter().copied())
                    .collect();
                let m = spec.table_size as usize;
                let table = maglev::maglev_table(&pairs, m)
                    .map_err(|e| ControlError::Invalid(format!("service {}: {e}", spec.name)))?;
                let ring: Vec<u32> = table
                    .iter()
                    .map(|i| slots.get(*i as usize).copied().unwrap_or(NO_REAL))
                    .collect();
                let len = if ring.is_empty() { 0 } else { spec.table_size };
                let k = match spec.scheduler {
                    Scheduler::Sh => sched::HASH_SRC,
                    Scheduler::Dh => sched::HASH_DST,
                    _ => sched::HASH_FLOW,
                };
                (k, ring, len)
            }
            Scheduler::Rr | Scheduler::Wrr => {
                let w: Vec<u32> = if spec.scheduler == Scheduler::Rr {
                    weights.iter().map(|w| u32::from(*w > 0)).collect()
                } else {
                    weights.clone()
                };
                let seq = wrr_sequence(&w)
                    .map_err(|e| ControlError::Invalid(format!("service {}: {e}", spec.name)))?;
                let ring: Vec<u32> = seq.iter().map(|i| slots[*i]).collect();
                let len = ring.len() as u32;
                (sched::CURSOR, ring, len)
            }
            Scheduler::Lc => (sched::LC, Vec::new(), 0),
            Scheduler::Wlc => (sched::WLC, Vec::new(), 0),
            Scheduler::Sed => (sched::SED, Vec::new(), 0),
            Scheduler::Nq => (sched::NQ, Vec::new(), 0),
        };
        self.dp.set_ring(st.index, &ring)?;
        self.dp.set_vip_reals(st.index, &slots)?;
        if ksched == sched::CURSOR {
            self.dp.reset_cursor(st.index)?;
        }
        let any_weight = weights.iter().any(|w| *w > 0);
        let (addr, fam) = addr16(spec.vip);
        let mut flags = 0u8;
        if spec.tun_vary_source {
            flags |= vip_flags::TUN_VARY_SOURCE;
        }
        if spec.persistence.is_some() {
            flags |= vip_flags::PERSIST;
        }
        // `fullnat`'s local addresses: their slots first, then the
        // service's list, then (below) the service that uses it.
        let locals = if spec.method == Method::Fullnat {
            self.locals
                .bind(
                    &mut self.dp,
                    &spec.name,
                    &spec.local_addresses,
                    spec.local_ports,
                )
                .map_err(|e| ControlError::Invalid(format!("service {}: {e}", spec.name)))?
        } else {
            Vec::new()
        };
        self.dp.set_vip_locals(st.index, &locals)?;
        let keep = if spec.method == Method::Fullnat {
            spec.local_addresses.as_slice()
        } else {
            &[]
        };
        self.locals.release(&mut self.dp, &spec.name, keep)?;
        if spec.toa && spec.method == Method::Fullnat && spec.proto == 6 {
            flags |= vip_flags::TOA;
        }
        // Validated: a tun service has one (`validate`).
        let tun_src = self
            .outer_source(spec)
            .map(|a| addr16(a).0)
            .unwrap_or_default();
        self.dp.set_service(
            VipKey {
                addr,
                port: spec.port,
                proto: spec.proto,
                family: fam,
            },
            VipMeta {
                vip_index: st.index,
                method: spec.method.to_byte(),
                sched: ksched,
                flags,
                family: fam,
                ring_len: if any_weight { ring_len } else { 0 },
                reals_len: if any_weight { slots.len() as u32 } else { 0 },
                persist_ns: spec.persistence.map_or(0, |d| d.as_nanos() as u64),
                tun_src,
            },
        )?;
        Ok(())
    }

    fn service_mut(&mut self, name: &str) -> Result<ServiceSpec, ControlError> {
        self.services
            .get(name)
            .map(|s| s.spec.clone())
            .ok_or_else(|| ControlError::NoService(name.to_owned()))
    }

    /// Adds a real to a service (new flows only; established ones stay).
    pub fn add_real(&mut self, service: &str, real: RealSpec) -> Result<(), ControlError> {
        let mut spec = self.service_mut(service)?;
        if spec.reals.iter().any(|r| r.addr == real.addr) {
            return Err(ControlError::Invalid(format!(
                "service {service:?} already has real {}",
                real.addr
            )));
        }
        spec.reals.push(real);
        self.upsert(spec)
    }

    /// Removes a real; its sessions move to other reals on their next packet.
    pub fn remove_real(&mut self, service: &str, addr: IpAddr) -> Result<(), ControlError> {
        let mut spec = self.service_mut(service)?;
        let before = spec.reals.len();
        spec.reals.retain(|r| r.addr != addr);
        if spec.reals.len() == before {
            return Err(ControlError::NoReal {
                service: service.to_owned(),
                addr,
            });
        }
        self.upsert(spec)
    }

    /// Changes a weight; 0 drains (existing sessions stay, new flows avoid it).
    pub fn set_weight(
        &mut self,
        service: &str,
        addr: IpAddr,
        weight: u32,
    ) -> Result<(), ControlError> {
        if weight > u32::from(u16::MAX) {
            return Err(ControlError::Invalid(format!(
                "weight {weight} out of range, expected 0..=65535"
            )));
        }
        let mut spec = self.service_mut(service)?;
        let Some(r) = spec.reals.iter_mut().find(|r| r.addr == addr) else {
            return Err(ControlError::NoReal {
                service: service.to_owned(),
                addr,
            });
        };
        r.weight = weight;
        self.upsert(spec)
    }

    /// Applies a health verdict for one real; returns whether anything
    /// changed. A down real leaves the scheduler (the Maglev table is
    /// updated atomically: the service record is written last), and comes
    /// back with its configured weight when it is up again.
    pub fn set_health(
        &mut self,
        service: &str,
        addr: IpAddr,
        up: bool,
    ) -> Result<bool, ControlError> {
        let mut st = self
            .services
            .remove(service)
            .ok_or_else(|| ControlError::NoService(service.to_owned()))?;
        let changed = match st.reals.iter_mut().find(|r| r.spec.addr == addr) {
            Some(r) if r.healthy != up => {
                r.healthy = up;
                true
            }
            Some(_) => false,
            None => {
                self.services.insert(service.to_owned(), st);
                return Err(ControlError::NoReal {
                    service: service.to_owned(),
                    addr,
                });
            }
        };
        let res = if changed {
            self.write_service(&mut st)
        } else {
            Ok(())
        };
        self.services.insert(service.to_owned(), st);
        res.map(|()| changed)
    }

    /// Sets the operator state of one real (enabled / drain / maintenance).
    pub fn set_operator(
        &mut self,
        service: &str,
        addr: IpAddr,
        op: OperatorState,
    ) -> Result<(), ControlError> {
        let mut st = self
            .services
            .remove(service)
            .ok_or_else(|| ControlError::NoService(service.to_owned()))?;
        let Some(r) = st.reals.iter_mut().find(|r| r.spec.addr == addr) else {
            self.services.insert(service.to_owned(), st);
            return Err(ControlError::NoReal {
                service: service.to_owned(),
                addr,
            });
        };
        r.operator = op;
        let res = self.write_service(&mut st);
        self.services.insert(service.to_owned(), st);
        res
    }

    /// Re-resolves neighbours and rewrites the services whose MACs changed;
    /// returns how many. `all = false` only looks at reals whose MAC is
    /// still unknown (cheap enough for every second); `all = true` also
    /// catches a MAC that changed (a real replaced behind the same address).
    pub fn refresh_neighbours(&mut self, all: bool) -> Result<usize, ControlError> {
        let mut changed = 0;
        let names: Vec<String> = self.services.keys().cloned().collect();
        for n in names {
            let Some(mut st) = self.services.remove(&n) else {
                continue;
            };
            let differs = st
                .reals
                .iter()
                .filter(|r| all || r.mac.is_none())
                .any(|r| self.resolver.resolve(r.spec.addr) != r.mac);
            let res = if differs {
                changed += 1;
                self.write_service(&mut st)
            } else {
                Ok(())
            };
            self.services.insert(n, st);
            res?;
        }
        Ok(changed)
    }

    /// Counts live sessions per real (slot and generation: a session of
    /// a slot's previous real is not its new real's) as (active,
    /// inactive), the way `ipvsadm -L` shows ActiveConn/InActConn.
    fn session_counts(&self) -> Result<SessionCounts, ControlError> {
        let now = monotonic_ns();
        let p = self.dp.params();
        let mut m = SessionCounts::new();
        for (_k, v) in self.dp.sessions()? {
            if !p.session_fresh(&v, now) {
                continue;
            }
            let e = m.entry((v.real, v.real_gen)).or_default();
            if v.state == state::TCP_ESTABLISHED || v.state == state::UDP {
                e.0 += 1;
            } else {
                e.1 += 1;
            }
        }
        Ok(m)
    }

    /// Overwrites the kernel's per-real connection counters with the exact
    /// count of live established sessions (the `lc` family's input), and
    /// retires the leaving reals that have no live session left.
    pub fn reconcile_conns(&mut self) -> Result<(), ControlError> {
        let counts = self.session_counts()?;
        let mut done = Vec::new();
        for st in self.services.values_mut() {
            st.reals.retain(|r| {
                let live = counts
                    .get(&(r.slot, r.generation))
                    .is_some_and(|c| c.0 + c.1 > 0);
                if r.leaving && !live {
                    done.push(r.slot);
                    return false;
                }
                true
            });
        }
        for slot in done {
            self.retire_slot(slot)?;
        }
        let slots: Vec<(u32, u16)> = self
            .services
            .values()
            .flat_map(|s| s.reals.iter().map(|r| (r.slot, r.generation)))
            .collect();
        for (slot, generation) in slots {
            let active = counts.get(&(slot, generation)).map_or(0, |c| c.0);
            self.dp.set_real_conns(slot, active)?;
        }
        Ok(())
    }

    /// Removes the reverse entries of `fullnat` sessions that are gone
    /// (expired, replaced, or their service removed): their ports are
    /// free again either way (the kernel's port search reuses them), but
    /// the table's space comes back only here. Returns how many went.
    pub fn sweep_fullnat(&mut self) -> Result<usize, ControlError> {
        let (_, dead) = crate::locals::classify(&self.dp, monotonic_ns())?;
        for k in &dead {
            self.dp.remove_fullnat_reverse(k)?;
        }
        Ok(dead.len())
    }

    /// What connection sync needs to install a peer's sessions here:
    /// each service by its key with its index, method, reals (by address
    /// and `RealDef::port`, with their slot and generation) and local
    /// addresses' slots (`crate::sync::SyncDirectory`).
    pub fn sync_directory(&self) -> crate::sync::SyncDirectory {
        let mut d = crate::sync::SyncDirectory::default();
        for st in self.services.values() {
            let spec = &st.spec;
            let (addr, fam) = addr16(spec.vip);
            let key = VipKey {
                addr,
                port: spec.port,
                proto: spec.proto,
                family: fam,
            };
            let reals = st
                .reals
                .iter()
                .map(|r| {
                    let port = real_def_port(spec.method, r.spec.port);
                    ((addr16(r.spec.addr).0, port), (r.slot, r.generation))
                })
                .collect();
            let locals = spec
                .local_addresses
                .iter()
                .filter_map(|a| Some((addr16(*a).0, self.locals.slot_of(a)?)))
                .collect();
            d.insert(key, st.index, spec.method, reals, locals);
        }
        d
    }

    /// Services with their reals and counters.
    pub fn list(&self) -> Result<Vec<ServiceView>, ControlError> {
        let counts = self.session_counts()?;
        let (live_ports, _) = if self
            .services
            .values()
            .any(|s| s.spec.method == Method::Fullnat)
        {
            crate::locals::classify(&self.dp, monotonic_ns())?
        } else {
            Default::default()
        };
        let mut out = Vec::new();
        for st in self.services.values() {
            let s = &st.spec;
            let vs = self.dp.vip_stats(st.index)?;
            let addr = match s.vip {
                IpAddr::V4(a) => format!("{a}:{}", s.port),
                IpAddr::V6(a) => format!("[{a}]:{}", s.port),
            };
            let mut reals = Vec::new();
            for r in &st.reals {
                let rs = self.dp.real_stats(r.slot)?;
                let (active, inactive) = counts
                    .get(&(r.slot, r.generation))
                    .copied()
                    .unwrap_or_default();
                reals.push(RealView {
                    address: r.spec.addr.to_string(),
                    port: (r.spec.port != 0).then_some(r.spec.port),
                    weight: r.spec.weight,
                    mac: r.mac.map(fmt_mac),
                    health: if r.healthy { "up" } else { "down" },
                    operator: if r.leaving {
                        "leaving"
                    } else {
                        r.operator.as_str()
                    },
                    active,
                    inactive,
                    packets: rs.packets,
                    bytes: rs.bytes,
                    sessions: rs.sessions,
                });
            }
            out.push(ServiceView {
                name: s.name.clone(),
                address: format!("{addr}/{}", proto_name(s.proto)),
                scheduler: s.scheduler.to_string(),
                method: s.method.as_str(),
                persistence_s: s.persistence.map(|d| d.as_secs()),
                packets: vs.packets,
                bytes: vs.bytes,
                sessions: vs.sessions,
                local_addresses: self.locals.views(
                    if s.method == Method::Fullnat {
                        &s.local_addresses
                    } else {
                        &[]
                    },
                    &live_ports,
                ),
                reals,
            });
        }
        Ok(out)
    }
}

/// A service specification the data plane cannot run, and the field at
/// fault (the configuration key of `[[l4_service]]`, for positions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecProblem {
    /// The `[[l4_service]]` key at fault (`"method"`, `"real"`, ...).
    pub field: &'static str,
    /// What is wrong, then what was expected.
    pub message: String,
}

/// Checks one service against what the XDP data plane can do, with rings
/// of `ring_size` entries: the one place these rules live, used by
/// [`L4Plane::apply`] and by `sluice check` (which gives positions).
pub fn validate_spec(s: &ServiceSpec, ring_size: u32) -> Result<(), SpecProblem> {
    let bad = |field, message: String| Err(SpecProblem { field, message });
    let (_, fam) = addr16(s.vip);
    if s.method == Method::Fullnat {
        if s.local_addresses.is_empty() {
            return bad(
                "local_addresses",
                "method fullnat needs source addresses, expected at least one local address".into(),
            );
        }
        if s.local_addresses.len() > MAX_LOCAL_ADDRS_PER_VIP as usize {
            return bad(
                "local_addresses",
                format!(
                    "{} local addresses, at most {MAX_LOCAL_ADDRS_PER_VIP} (MAX_LOCAL_ADDRS_PER_VIP)",
                    s.local_addresses.len()
                ),
            );
        }
        if let Some(a) = s.local_addresses.iter().find(|a| addr16(**a).1 != fam) {
            return bad(
                "local_addresses",
                format!("local address {a} is not of the VIP's address family"),
            );
        }
        if s.local_ports.0 == 0 || s.local_ports.0 > s.local_ports.1 {
            return bad(
                "local_port_range",
                format!(
                    "ports {}-{}: expected a range of ports from 1 up, lowest first",
                    s.local_ports.0, s.local_ports.1
                ),
            );
        }
    }
    if s.proto != 6 && s.proto != 17 {
        return bad(
            "protocol",
            format!("protocol {} is not tcp (6) or udp (17)", s.proto),
        );
    }
    if s.reals.len() as u64 > u64::from(MAX_REALS_PER_VIP) {
        return bad(
            "real",
            format!(
                "{} reals, at most {MAX_REALS_PER_VIP} (MAX_REALS_PER_VIP)",
                s.reals.len()
            ),
        );
    }
    let mut seen = std::collections::HashSet::new();
    for r in &s.reals {
        if addr16(r.addr).1 != fam {
            return bad(
                "real",
                format!("real {} is not of the VIP's address family", r.addr),
            );
        }
        if !seen.insert(r.addr) {
            return bad("real", format!("real {} listed twice", r.addr));
        }
        // Only the NAT methods rewrite ports; the service's own port is
        // no rewrite.
        if r.port != 0 && r.port != s.port && !rewrites_ports(s.method) {
            return bad(
                "real",
                format!(
                    "real {} has port {}, but method {} cannot rewrite ports, expected no port or {}",
                    r.addr, r.port, s.method, s.port
                ),
            );
        }
    }
    if matches!(s.scheduler, Scheduler::Mh | Scheduler::Sh | Scheduler::Dh)
        && (s.table_size > ring_size || !maglev::is_prime(s.table_size as usize))
    {
        return bad(
            "maglev_table_size",
            format!(
                "table size {} must be a prime ≤ the ring size {ring_size}",
                s.table_size
            ),
        );
    }
    if matches!(s.scheduler, Scheduler::Wrr | Scheduler::Rr) {
        let len = wrr_sequence(&s.reals.iter().map(|r| r.weight).collect::<Vec<_>>())
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if len as u64 > u64::from(ring_size) {
            return bad(
                "real",
                format!(
                    "the weighted cycle of the reals' weights has {len} entries, more than the ring size {ring_size}; \
                     use smaller weights (their ratio is what counts)"
                ),
            );
        }
    }
    Ok(())
}

/// The port a real of a `method` service records (`RealDef::port`): its
/// configured one where the method rewrites ports (the NAT methods), else
/// 0. Connection sync names reals by it too (`crate::sync`).
fn real_def_port(method: Method, port: u16) -> u16 {
    if rewrites_ports(method) { port } else { 0 }
}

/// Does `method` rewrite the destination port (`RealDef::port`)?
fn rewrites_ports(method: Method) -> bool {
    match method {
        Method::Nat | Method::Fullnat => true,
        Method::Dr | Method::Tun => false,
    }
}

/// The generation after `g` for a slot's next allocation: never 0, the
/// generation of a free slot (`RealDef::default()`), so a live real's
/// generation never equals a retired slot's.
fn next_gen(g: u16) -> u16 {
    match g.wrapping_add(1) {
        0 => 1,
        n => n,
    }
}

/// `CLOCK_MONOTONIC_COARSE` in ns: the clock `bpf_ktime_get_coarse_ns` reads.
pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(method: Method, real_port: u16) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            vip: IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 255, 1)),
            port: 80,
            proto: 6,
            method,
            scheduler: Scheduler::Mh,
            persistence: None,
            table_size: 13,
            tun_source: None,
            tun_vary_source: false,
            local_addresses: Vec::new(),
            local_ports: (1024, 32767),
            toa: true,
            on_real_down: OnRealDown::Keep,
            fail_open: false,
            initially_up: true,
            reals: vec![RealSpec {
                addr: IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 0, 11)),
                weight: 1,
                port: real_port,
            }],
        }
    }

    #[test]
    fn nat_runs_with_port_translation_and_only_nat_rewrites_ports() {
        assert_eq!(validate_spec(&spec(Method::Nat, 8080), 13), Ok(()));
        assert_eq!(validate_spec(&spec(Method::Nat, 0), 13), Ok(()));
        let p = validate_spec(&spec(Method::Fullnat, 0), 13).err();
        assert_eq!(p.map(|p| p.field), Some("local_addresses"));
        let mut f = spec(Method::Fullnat, 8080);
        f.local_addresses = vec![IpAddr::V4(std::net::Ipv4Addr::new(10, 99, 0, 200))];
        assert_eq!(validate_spec(&f, 13), Ok(()));
        f.local_ports = (2000, 1999);
        assert_eq!(
            validate_spec(&f, 13).err().map(|p| p.field),
            Some("local_port_range")
        );
        f.local_ports = (1024, 32767);
        f.local_addresses = vec![IpAddr::V6(std::net::Ipv6Addr::new(
            0xfd00, 0, 0, 0, 0, 0, 0, 1,
        ))];
        assert_eq!(
            validate_spec(&f, 13).err().map(|p| p.field),
            Some("local_addresses")
        );
        for m in [Method::Dr, Method::Tun] {
            assert_eq!(
                validate_spec(&spec(m, 80), 13),
                Ok(()),
                "the service's port"
            );
            let p = validate_spec(&spec(m, 8080), 13).err();
            assert_eq!(
                p.map(|p| (p.field, p.message)),
                Some((
                    "real",
                    format!(
                        "real 10.99.0.11 has port 8080, but method {m} cannot rewrite ports, expected no port or 80"
                    )
                ))
            );
        }
    }

    #[test]
    fn slot_generations_skip_zero_and_cycle_through_every_other_value() {
        assert_eq!(next_gen(0), 1);
        assert_eq!(next_gen(1), 2);
        assert_eq!(next_gen(u16::MAX), 1, "0 marks a free slot");
        let mut g = 1;
        let mut steps = 0u32;
        loop {
            g = next_gen(g);
            steps += 1;
            if g == 1 {
                break;
            }
        }
        assert_eq!(
            steps,
            u32::from(u16::MAX),
            "a generation comes round after 65,535 allocations"
        );
    }
}
