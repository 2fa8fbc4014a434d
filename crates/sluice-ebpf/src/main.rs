//! The XDP program `sluice_xdp`: sluice's L4 data path.
//!
//! Shape (after aya-template): a thin `#[xdp]` entry calls `try_` code that
//! returns a verdict; every header read is bounds-checked against
//! `data_end` by [`ptr_at`] first. No per-packet logging, no shared
//! read-modify-write state: counters are per-CPU slots (see
//! `sluice_wire::maps::Counter`).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod program;

/// Host builds (clippy, `cargo build --workspace`) get an empty binary; the
/// real object is only meaningful for the BPF target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
