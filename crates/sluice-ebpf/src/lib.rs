//! sluice's eBPF programs. The programs themselves are the `sluice-xdp`
//! binary target, built for `bpfel-unknown-none` by `sluice-l4`'s build
//! script; on the host this library is empty and exists so that
//! `sluice-l4` can declare a build-dependency on this crate (which makes
//! cargo rebuild the object when this crate changes).
#![no_std]
