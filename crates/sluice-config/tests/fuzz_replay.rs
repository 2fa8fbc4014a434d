//! The `config` fuzz target's committed seeds and regressions, replayed
//! through the same oracle the fuzzer runs (see `fuzz/` and
//! `benches/fuzz.sh`): an input that once crashed it fails here too.

#[path = "../../../fuzz/oracles/replay.rs"]
mod replay;

#[path = "../../../fuzz/oracles/config.rs"]
mod oracle;

#[test]
fn config() {
    replay::replay("config", oracle::check);
}
