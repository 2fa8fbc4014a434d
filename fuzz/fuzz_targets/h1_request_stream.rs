//! A client byte stream through the hyper path's raw head scanner (the
//! smuggling checks): the verdict must not depend on read boundaries.
//! Oracle: `sluice_proxy::fuzzing::request_stream` (it panics when an invariant breaks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::request_stream(data));
