//! A response head (first byte: request flags) through the fast path's
//! parser and rewrite: the client must read the body as the relay sends it.
//! Oracle: `sluice_proxy::fuzzing::response_head` (it panics when an invariant breaks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::response_head(data));
