//! sluice's L4 plane in userspace: loads the XDP object built from
//! `sluice-ebpf`, attaches it to an interface, and reads its maps.
//!
//! The object is embedded at build time (see `build.rs`), so the `sluice`
//! binary is self-contained.
#![forbid(unsafe_code)]

mod loader;

pub use loader::{AttachMode, Error, PROGRAM_NAME, XdpHandle, object_bytes};
