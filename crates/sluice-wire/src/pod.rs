//! `aya::Pod` impls for the map layouts (userspace only, feature `user`).
#![allow(unsafe_code)]

use crate::maps::{
    AddrKey, FlowKey, FlowVal, GlobalCfg, NatReverse, PersistKey, PersistVal, RealDef,
    TrafficStats, VipKey, VipMeta, VipSlot,
};
use crate::toa::{ToaKey, ToaVal};

// SAFETY: each type is `#[repr(C)]`, `Copy`, made only of integers and byte
// arrays, and has no implicit padding (explicit `_pad` fields; sizes are
// asserted in `maps.rs`), so every bit pattern is valid and no byte is
// uninitialised.
unsafe impl aya::Pod for GlobalCfg {}
// SAFETY: as above.
unsafe impl aya::Pod for AddrKey {}
// SAFETY: as above.
unsafe impl aya::Pod for VipKey {}
// SAFETY: as above.
unsafe impl aya::Pod for VipMeta {}
// SAFETY: as above.
unsafe impl aya::Pod for VipSlot {}
// SAFETY: as above.
unsafe impl aya::Pod for RealDef {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: as above.
unsafe impl aya::Pod for FlowVal {}
// SAFETY: as above.
unsafe impl aya::Pod for PersistKey {}
// SAFETY: as above.
unsafe impl aya::Pod for PersistVal {}
// SAFETY: as above.
unsafe impl aya::Pod for TrafficStats {}
// SAFETY: as above.
unsafe impl aya::Pod for NatReverse {}
// SAFETY: as above.
unsafe impl aya::Pod for crate::fullnat::LocalAddr {}
// SAFETY: as above.
unsafe impl aya::Pod for crate::fullnat::FullnatKey {}
// SAFETY: as above.
unsafe impl aya::Pod for crate::fullnat::FullnatReverse {}
// SAFETY: as above (sizes asserted in `toa.rs`).
unsafe impl aya::Pod for ToaKey {}
// SAFETY: as above.
unsafe impl aya::Pod for ToaVal {}
