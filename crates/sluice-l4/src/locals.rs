//! `fullnat`'s local addresses in the control plane: which slot of the
//! data plane's local-address table each address has (services that name
//! the same address share its slot, and so its ports), the pool usage
//! `sluice ctl list` shows, and the sweep that frees the reverse entries
//! of dead sessions. The kernel's side (port search, replies) is
//! `sluice-ebpf`'s `xmit/fullnat.rs`; the layouts and the per-CPU port
//! rule are `sluice_wire::fullnat`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use sluice_wire::fullnat::{FullnatKey, FullnatReverse, LocalAddr, MAX_LOCAL_ADDRS};
use sluice_wire::maps::{FlowKey, FlowVal, VipSlot};

use crate::{Dataplane, DataplaneParams, Error};

/// One local address as the control plane tracks it.
#[derive(Clone, Debug)]
struct Slot {
    slot: u32,
    ports: (u16, u16),
    /// Names of the services that use it.
    users: BTreeSet<String>,
}

/// The local-address slots in use.
#[derive(Clone, Debug, Default)]
pub(crate) struct LocalSlots {
    by_addr: BTreeMap<IpAddr, Slot>,
}

/// Pool usage of one local address of a service, as `sluice ctl list`
/// shows it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LocalPoolView {
    /// The local address.
    pub address: String,
    /// Lowest and highest port handed out.
    pub ports: (u16, u16),
    /// Ports taken (all reals, all services that share the address): by
    /// live sessions, or in their quarantine after a connection's last
    /// reply.
    pub in_use: u64,
    /// Ports per real address and port: a connection to a real is
    /// identified by both ends, so each real offers this many.
    pub per_real: u32,
}

impl LocalSlots {
    /// The slots of `service`'s local `addrs` (all with ports `ports`),
    /// in order, writing the new ones to `dp`. Refused (nothing written)
    /// if an address is shared with another port range, or the table is
    /// full.
    pub(crate) fn bind(
        &mut self,
        dp: &mut Dataplane,
        service: &str,
        addrs: &[IpAddr],
        ports: (u16, u16),
    ) -> Result<Vec<u32>, String> {
        let mut used: BTreeSet<u32> = self.by_addr.values().map(|s| s.slot).collect();
        let mut plan = Vec::with_capacity(addrs.len());
        for a in addrs {
            match self.by_addr.get(a) {
                Some(s) if s.ports != ports => {
                    return Err(format!(
                        "local address {a} is shared with service(s) {} whose ports are {}-{}, expected the same range, not {}-{}",
                        s.users.iter().cloned().collect::<Vec<_>>().join(", "),
                        s.ports.0,
                        s.ports.1,
                        ports.0,
                        ports.1
                    ));
                }
                Some(s) => plan.push((*a, s.slot, false)),
                None => {
                    let slot = (0..MAX_LOCAL_ADDRS)
                        .find(|i| !used.contains(i))
                        .ok_or_else(|| {
                            format!(
                                "more than {MAX_LOCAL_ADDRS} local addresses in total (MAX_LOCAL_ADDRS)"
                            )
                        })?;
                    used.insert(slot);
                    plan.push((*a, slot, true));
                }
            }
        }
        for (a, slot, new) in &plan {
            if *new {
                let (addr, family) = crate::control::addr16(*a);
                dp.set_local_addr(
                    *slot,
                    LocalAddr {
                        addr,
                        family,
                        port_min: ports.0,
                        port_max: ports.1,
                        ..Default::default()
                    },
                )
                .map_err(|e| e.to_string())?;
            }
            self.by_addr
                .entry(*a)
                .or_insert_with(|| Slot {
                    slot: *slot,
                    ports,
                    users: BTreeSet::new(),
                })
                .users
                .insert(service.to_owned());
        }
        Ok(plan.iter().map(|(_, s, _)| *s).collect())
    }

    /// `service` no longer uses the addresses not in `keep`: a slot
    /// without users is cleared (replies to it are no longer looked up).
    pub(crate) fn release(
        &mut self,
        dp: &mut Dataplane,
        service: &str,
        keep: &[IpAddr],
    ) -> Result<(), Error> {
        let mut cleared = Vec::new();
        for (a, s) in &mut self.by_addr {
            if !keep.contains(a) && s.users.remove(service) && s.users.is_empty() {
                cleared.push((*a, s.slot));
            }
        }
        for (a, slot) in cleared {
            dp.clear_local_addr(slot)?;
            self.by_addr.remove(&a);
        }
        Ok(())
    }

    /// The slot of local address `a`, if a service uses it.
    pub(crate) fn slot_of(&self, a: &IpAddr) -> Option<u32> {
        self.by_addr.get(a).map(|s| s.slot)
    }

    /// Pool usage of `addrs` given the live reverse entries per slot.
    pub(crate) fn views(&self, addrs: &[IpAddr], live: &BTreeMap<u8, u64>) -> Vec<LocalPoolView> {
        addrs
            .iter()
            .filter_map(|a| {
                let s = self.by_addr.get(a)?;
                Some(LocalPoolView {
                    address: a.to_string(),
                    ports: s.ports,
                    in_use: live.get(&(s.slot as u8)).copied().unwrap_or(0),
                    per_real: u32::from(s.ports.1.saturating_sub(s.ports.0)) + 1,
                })
            })
            .collect()
    }
}

/// Is the port of reverse entry `rev` (key `k`) still taken at `now`: by
/// its session (found through the service's VIP in `by_index`: there,
/// not expired, and still using that local end), or in its quarantine
/// after the real's last reply? The kernel's port search applies the same
/// rule (`sluice_wire::fullnat::{holds, in_use}`).
fn alive(
    k: &FullnatKey,
    rev: &FullnatReverse,
    by_index: &dyn Fn(u8) -> Option<VipSlot>,
    sessions: &HashMap<FlowKey, FlowVal>,
    p: &DataplaneParams,
    now: u64,
) -> bool {
    let holds = by_index(rev.vip_slot).is_some_and(|vs| {
        let fwd = sluice_wire::fullnat::forward_key(k, rev, vs.key.addr);
        sessions
            .get(&fwd)
            .is_some_and(|s| sluice_wire::fullnat::holds(k, s) && p.session_fresh(s, now))
    });
    sluice_wire::fullnat::in_use(
        holds,
        rev.last_seen_ns,
        now,
        p.fullnat_port_quarantine.as_nanos() as u64,
    )
}

/// Splits the reverse entries into live ones (counted per local slot)
/// and dead ones (their keys), at `now` (the kernel's coarse clock).
pub(crate) fn classify(
    dp: &Dataplane,
    now: u64,
) -> Result<(BTreeMap<u8, u64>, Vec<FullnatKey>), Error> {
    let entries = dp.fullnat_reverse()?;
    if entries.is_empty() {
        return Ok((BTreeMap::new(), Vec::new()));
    }
    let sessions: HashMap<FlowKey, FlowVal> = dp.sessions()?.into_iter().collect();
    let slots = dp.vip_slots()?;
    let by_index = |vip_slot: u8| {
        let i = usize::from(vip_slot).checked_sub(1)?;
        slots.get(i).copied().filter(|s| s.key.family != 0)
    };
    let mut live = BTreeMap::new();
    let mut dead = Vec::new();
    for (k, rev) in entries {
        if alive(&k, &rev, &by_index, &sessions, dp.params(), now) {
            *live.entry(k.local_slot).or_insert(0) += 1;
        } else {
            dead.push(k);
        }
    }
    Ok((live, dead))
}
