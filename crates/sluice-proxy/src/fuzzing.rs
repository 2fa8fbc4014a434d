//! Entry points for the coverage-guided fuzz targets (`fuzz/`), and for
//! their regression runs in the test suite. Not a stable API.
//!
//! Each function takes arbitrary bytes, drives one sans-IO parser of the
//! proxy with them, and panics when an invariant breaks. The invariants
//! are the oracle: a fuzzer that finds a panic has found either a crash or
//! a disagreement between what the proxy decided and what it forwards.

use crate::h1scan::HeadScanner;
use crate::{body, h1fast};

/// Head limit used by the targets (the default `max_header_size`).
const MAX_HEAD_BYTES: usize = crate::config::DEFAULT_MAX_HEADER_SIZE_BYTES;

/// The first byte picks how the rest is cut into reads.
fn split(data: &[u8]) -> (usize, &[u8]) {
    match data.split_first() {
        Some((&b, rest)) => (usize::from(b % 17) + 1, rest),
        None => (1, data),
    }
}

/// A client byte stream through hyper's path's raw scanner (which
/// applies the header policy to every head): the verdict
/// (first bad request, heads seen, whether a head is in progress) must not
/// depend on how the bytes were cut into reads.
pub fn request_stream(data: &[u8]) {
    let (step, data) = split(data);
    let mut whole = HeadScanner::new(MAX_HEAD_BYTES);
    whole.feed(data);
    let mut cut = HeadScanner::new(MAX_HEAD_BYTES);
    for piece in data.chunks(step) {
        cut.feed(piece);
    }
    assert_eq!(
        (whole.first_bad(), whole.heads(), whole.in_head()),
        (cut.first_bad(), cut.heads(), cut.in_head()),
        "read boundaries changed the verdict"
    );
}

/// A request head through the fast path's parser and rewrite: a head it
/// forwards must parse again, and its framing must be the one the proxy
/// relays the body by.
pub fn request_head(data: &[u8]) {
    h1fast::fuzz_request_head(data);
}

/// A response head through the fast path's parser and rewrite (the same
/// invariants as [`request_head`], towards the client).
pub fn response_head(data: &[u8]) {
    h1fast::fuzz_response_head(data);
}

/// A chunked body through the decoder: the end it finds and the data it
/// yields must not depend on read boundaries.
pub fn chunked(data: &[u8]) {
    let (step, data) = split(data);
    body::fuzz_chunked(data, step);
}
