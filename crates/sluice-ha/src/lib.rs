//! VRRP and connection-state sync between sluice peers.
#![forbid(unsafe_code)]

pub mod sync;
