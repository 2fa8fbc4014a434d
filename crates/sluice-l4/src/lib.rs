//! sluice's L4 plane in userspace: loads the XDP object built from
//! `sluice-ebpf`, attaches it, and reads and writes its maps.
//!
//! The object is embedded at build time (see `build.rs`), so the `sluice`
//! binary is self-contained. Everything that needs the kernel needs root
//! (CAP_BPF + CAP_NET_ADMIN).
#![forbid(unsafe_code)]

pub mod control;
mod fullnat;
mod loader;
mod locals;
pub mod neigh;
pub mod sync;
pub mod toa;

pub use control::{
    ControlError, L4Plane, NeighbourResolver, RealSpec, RealView, Scheduler, ServiceSpec,
    ServiceView, SpecProblem, validate_spec,
};
pub use loader::{
    AttachMode, Dataplane, DataplaneParams, Error, Helper, HelperProgram, MAX_SESSION_CAPACITY,
    MIN_SESSION_CAPACITY, PROGRAM_NAME, TestRunOutput, object_bytes, verdict,
};
pub use locals::LocalPoolView;
pub use sluice_wire::maps as wire_maps;
