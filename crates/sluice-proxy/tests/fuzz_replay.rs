//! The proxy's fuzz targets' committed seeds and regressions, replayed
//! through the same entry points the fuzzer calls (see `fuzz/` and
//! `benches/fuzz.sh`): an input that once crashed a target fails here too.

#[path = "../../../fuzz/oracles/replay.rs"]
mod replay;

#[path = "../../../fuzz/oracles/proxy_protocol.rs"]
mod proxy_protocol_oracle;

use sluice_proxy::fuzzing;

#[test]
fn h1_request_stream() {
    replay::replay("h1_request_stream", fuzzing::request_stream);
}

#[test]
fn h1_request_head() {
    replay::replay("h1_request_head", fuzzing::request_head);
}

#[test]
fn h1_response_head() {
    replay::replay("h1_response_head", fuzzing::response_head);
}

#[test]
fn h1_chunked() {
    replay::replay("h1_chunked", fuzzing::chunked);
}

#[test]
fn proxy_protocol() {
    replay::replay("proxy_protocol", proxy_protocol_oracle::check);
}
