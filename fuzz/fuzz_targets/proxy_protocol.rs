//! PROXY protocol v1/v2: parse never panics, accepted headers re-encode to
//! themselves, random addresses round-trip through encode_v1/encode_v2.
//! Oracle: fuzz/oracles/proxy_protocol.rs, shared with the crate's `fuzz_replay` test.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/proxy_protocol.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| oracle::check(data));
