//! A chunked body (first byte: read size) through the fast path's decoder:
//! its end and its data must not depend on read boundaries.
//! Oracle: `sluice_proxy::fuzzing::chunked` (it panics when an invariant breaks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::chunked(data));
