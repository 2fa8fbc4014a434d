//! A request head through the fast path's parser and rewrite: what is
//! forwarded must parse again and frame the body as the relay does.
//! Oracle: `sluice_proxy::fuzzing::request_head` (it panics when an invariant breaks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sluice_proxy::fuzzing::request_head(data));
