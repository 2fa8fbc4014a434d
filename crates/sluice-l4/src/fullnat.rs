//! `fullnat`'s maps, as whole-record operations on the [`Dataplane`]:
//! the local addresses (with their index by address), each service's
//! list of them, and the reverse entries (snapshot, removal of dead
//! ones). Layouts and rules are `sluice_wire::fullnat`'s.

use aya::maps::{Array, HashMap};
use sluice_wire::fullnat::{
    FullnatKey, FullnatReverse, LocalAddr, MAP_FULLNAT_REVERSE, MAP_LOCAL_ADDRS, MAP_LOCAL_INDEX,
    MAP_VIP_LOCALS, MAX_LOCAL_ADDRS, MAX_LOCAL_ADDRS_PER_VIP,
};
use sluice_wire::maps::{AddrKey, MAP_VIP_BY_INDEX, MAX_VIPS, VipSlot};

use crate::loader::{check_index, map_err};
use crate::{Dataplane, Error};

impl Dataplane {
    /// Writes local-address slot `slot` and its index entry. Write it
    /// before a service's list names it.
    pub fn set_local_addr(&mut self, slot: u32, la: LocalAddr) -> Result<(), Error> {
        check_index(
            "local address slot",
            slot,
            MAX_LOCAL_ADDRS,
            "MAX_LOCAL_ADDRS",
        )?;
        let mut a: Array<_, LocalAddr> = self.array(MAP_LOCAL_ADDRS)?;
        a.set(slot, la, 0).map_err(map_err(MAP_LOCAL_ADDRS))?;
        let mut idx: HashMap<_, AddrKey, u32> = self.hash(MAP_LOCAL_INDEX)?;
        let k = AddrKey {
            addr: la.addr,
            family: la.family.into(),
        };
        idx.insert(k, slot, 0).map_err(map_err(MAP_LOCAL_INDEX))
    }

    /// Forgets local-address slot `slot` (no service names it any more):
    /// replies to it are no longer looked up.
    pub fn clear_local_addr(&mut self, slot: u32) -> Result<(), Error> {
        check_index(
            "local address slot",
            slot,
            MAX_LOCAL_ADDRS,
            "MAX_LOCAL_ADDRS",
        )?;
        let mut a: Array<_, LocalAddr> = self.array(MAP_LOCAL_ADDRS)?;
        let old = a.get(&slot, 0).map_err(map_err(MAP_LOCAL_ADDRS))?;
        a.set(slot, LocalAddr::default(), 0)
            .map_err(map_err(MAP_LOCAL_ADDRS))?;
        let mut idx: HashMap<_, AddrKey, u32> = self.hash(MAP_LOCAL_INDEX)?;
        // Removing an absent key is not an error for an idempotent clear.
        let _ = idx.remove(&AddrKey {
            addr: old.addr,
            family: old.family.into(),
        });
        Ok(())
    }

    /// Writes service `vip_index`'s local addresses (their slots, in
    /// order; empty for a service of another method).
    pub fn set_vip_locals(&mut self, vip_index: u32, slots: &[u32]) -> Result<(), Error> {
        check_index("service index", vip_index, MAX_VIPS, "MAX_VIPS")?;
        if slots.len() > MAX_LOCAL_ADDRS_PER_VIP as usize {
            return Err(Error::Limit {
                what: "local addresses of a service",
                value: slots.len() as u64,
                limit: MAX_LOCAL_ADDRS_PER_VIP.into(),
                constant: "MAX_LOCAL_ADDRS_PER_VIP",
            });
        }
        let mut a: Array<_, u32> = self.array(MAP_VIP_LOCALS)?;
        let base = vip_index * MAX_LOCAL_ADDRS_PER_VIP;
        for i in 0..MAX_LOCAL_ADDRS_PER_VIP {
            // `slot + 1`; the first 0 ends the list.
            let v = slots.get(i as usize).map_or(0, |s| s + 1);
            a.set(base + i, v, 0).map_err(map_err(MAP_VIP_LOCALS))?;
        }
        Ok(())
    }

    /// Every slot of the services-by-index table (`key.family == 0`: no
    /// service), in index order.
    pub fn vip_slots(&self) -> Result<Vec<VipSlot>, Error> {
        let m = self
            .ebpf
            .map(MAP_VIP_BY_INDEX)
            .ok_or(Error::MissingMap(MAP_VIP_BY_INDEX))?;
        let a: Array<_, VipSlot> = Array::try_from(m).map_err(map_err(MAP_VIP_BY_INDEX))?;
        (0..MAX_VIPS)
            .map(|i| a.get(&i, 0).map_err(map_err(MAP_VIP_BY_INDEX)))
            .collect()
    }

    /// A snapshot of the reverse entries of `fullnat` sessions (entries
    /// whose read raced with a removal are skipped).
    pub fn fullnat_reverse(&self) -> Result<Vec<(FullnatKey, FullnatReverse)>, Error> {
        let m = self
            .ebpf
            .map(MAP_FULLNAT_REVERSE)
            .ok_or(Error::MissingMap(MAP_FULLNAT_REVERSE))?;
        let h: HashMap<_, FullnatKey, FullnatReverse> =
            HashMap::try_from(m).map_err(map_err(MAP_FULLNAT_REVERSE))?;
        Ok(h.iter().filter_map(Result::ok).collect())
    }

    /// Removes a reverse entry (its session is gone: its port is free
    /// again and its table space too). Absent is not an error.
    pub fn remove_fullnat_reverse(&mut self, k: &FullnatKey) -> Result<(), Error> {
        let mut h: HashMap<_, FullnatKey, FullnatReverse> = self.hash(MAP_FULLNAT_REVERSE)?;
        let _ = h.remove(k);
        Ok(())
    }
}
