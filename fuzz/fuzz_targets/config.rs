//! The TOML config front end: arbitrary text never panics `sluice_config::parse`,
//! and every diagnostic points inside the text.
//! Oracle: fuzz/oracles/config.rs, shared with the crate's `fuzz_replay` test.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../oracles/config.rs"]
mod oracle;

fuzz_target!(|data: &[u8]| oracle::check(data));
