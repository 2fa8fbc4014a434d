//! Packet-level building blocks shared by sluice's eBPF programs and its
//! userspace: checksums, the `#[repr(C)]` layouts of every BPF map key and
//! value, and the TOA option's format (`toa`).
//!
//! Contract: nothing in this crate allocates, does I/O or panics on input
//! bytes. It is `no_std` so the very same definitions compile into the XDP
//! object (target `bpfel-unknown-none`) and into the loader; a layout change
//! is therefore a compile-time change on both sides at once.
//!
//! ```
//! use sluice_wire::checksum;
//! // RFC 1071 example: the checksum of a buffer that contains its own
//! // checksum folds to zero.
//! let hdr = [0x45u8, 0x00, 0x00, 0x1c, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
//!            0x00, 0x00, 0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02];
//! let c = checksum::finish(checksum::sum(&hdr, 0));
//! let mut with = hdr;
//! with[10..12].copy_from_slice(&c.to_be_bytes());
//! assert_eq!(checksum::finish(checksum::sum(&with, 0)), 0);
//! ```
#![no_std]

pub mod announce;
pub mod checksum;
pub mod encap;
pub mod fullnat;
pub mod hash;
pub mod maps;
pub mod nat;
pub mod sync;
pub mod toa;
pub mod vrrp;

#[cfg(feature = "user")]
mod pod;
