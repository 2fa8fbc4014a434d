//! sluice-wire's header-rewrite math: RFC 1624 incremental checksum updates
//! equal a full recompute; the flow hash equals MurmurHash3.
//! Oracle: fuzz/oracles/wire_checksum.rs, shared with the crate's `fuzz_replay` test.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/wire_checksum.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| oracle::check(data));
