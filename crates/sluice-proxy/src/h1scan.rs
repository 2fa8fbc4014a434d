//! Raw HTTP/1 request-stream scanner for hyper's path, sans-IO: applies
//! the header policy ([`crate::policy`]) to each request head as the
//! client sent it, before hyper parses it.
//!
//! Why: hyper resolves some ambiguous framing silently (a request with
//! both `Content-Length` and `Transfer-Encoding` loses its
//! `Content-Length`), so the parsed request no longer shows what the
//! client sent. The scanner sees the bytes as they are read from the
//! client, collects each head, and checks it with the same function the
//! fast path uses ([`crate::policy::parse_request_head`]). It records the
//! index of the first request the policy refuses, with the reason; hyper's
//! path answers that request with the policy's status and closes.
//!
//! To know where the next head starts, the scanner follows each request's
//! body framing (`Content-Length` bytes, or the chunked coding with
//! [`crate::body::ChunkedDecoder`]). Where it cannot (a refused head, a
//! malformed chunk, a head over `max_head_bytes`) it stops and marks the
//! current request, so any disagreement fails closed.

use crate::body::ChunkedDecoder;
use crate::policy::{self, RequestBody, Violation};

/// Where in the request stream the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: CR and LF are skipped (RFC 9112 section 2.2 lets a
    /// server ignore empty lines before a request line, and hyper does).
    Idle,
    /// Collecting a head.
    Head,
    /// In a `Content-Length` body: bytes left.
    Body(u64),
    /// In a chunked body.
    Chunked(ChunkedDecoder),
    /// Framing could not be followed; nothing more is scanned.
    Lost,
}

/// Scans the bytes a client sends on one HTTP/1 connection.
#[derive(Debug, Clone)]
pub(crate) struct HeadScanner {
    state: State,
    max_head_bytes: usize,
    /// The head in progress.
    head: Vec<u8>,
    /// Request heads completed so far; also the index of the head in progress.
    heads: u64,
    first_bad: Option<(u64, Violation)>,
    /// A body's framing broke after its head was accepted.
    broken_body: bool,
}

impl HeadScanner {
    /// A scanner for a new connection. Heads longer than `max_head_bytes`
    /// (request line and headers, as hyper's `max_header_size`) stop it.
    pub(crate) fn new(max_head_bytes: usize) -> Self {
        Self {
            state: State::Idle,
            max_head_bytes,
            head: Vec::new(),
            heads: 0,
            first_bad: None,
            broken_body: false,
        }
    }

    /// Whether a request body's framing broke after its head was accepted
    /// (and dispatched): nothing after it can be framed, and the request
    /// itself is incomplete, so the connection must fail.
    pub(crate) fn broken_body(&self) -> bool {
        self.broken_body
    }

    /// Index (0-based, in arrival order) of the first request the policy
    /// refuses, and why.
    pub(crate) fn first_bad(&self) -> Option<(u64, Violation)> {
        self.first_bad
    }

    /// Whether part of a request head has arrived but not its end.
    pub(crate) fn in_head(&self) -> bool {
        self.state == State::Head
    }

    /// Request heads completed so far.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// Feed the next bytes read from the client.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match &mut self.state {
                State::Lost => return,
                State::Idle => {
                    let start = data
                        .iter()
                        .position(|&b| b != b'\r' && b != b'\n')
                        .unwrap_or(data.len());
                    data = &data[start..];
                    if !data.is_empty() {
                        self.head.clear();
                        self.state = State::Head;
                    }
                }
                State::Head => {
                    let used = self.head_bytes(data);
                    data = &data[used..];
                }
                State::Body(left) => {
                    let n = usize::try_from(*left).map_or(data.len(), |l| l.min(data.len()));
                    *left -= n as u64;
                    if *left == 0 {
                        self.state = State::Idle;
                    }
                    data = &data[n..];
                }
                State::Chunked(dec) => match dec.feed(data, None) {
                    Ok(Some(n)) => {
                        data = &data[n..];
                        self.state = State::Idle;
                    }
                    Ok(None) => return,
                    Err(_) => {
                        // Nothing after it is framed: the reader fails
                        // the connection (see `conn::Scanned`).
                        self.broken_body = true;
                        self.lose(self.heads.saturating_sub(1), Violation::BadHead);
                        return;
                    }
                },
            }
        }
    }

    /// Take head bytes from `data`; returns how many were used.
    fn head_bytes(&mut self, data: &[u8]) -> usize {
        // Search from just before the new bytes: the end may straddle reads.
        let from = self.head.len().saturating_sub(2);
        let room = (self.max_head_bytes + 1).saturating_sub(self.head.len());
        let take = data.len().min(room);
        self.head.extend_from_slice(&data[..take]);
        let Some(end) = head_end(&self.head, from) else {
            if self.head.len() > self.max_head_bytes {
                self.lose(self.heads, Violation::HeadTooLarge);
            }
            return take;
        };
        let used = take - (self.head.len() - end);
        self.head.truncate(end);
        let index = self.heads;
        self.heads += 1;
        let mut headers = policy::header_space();
        match policy::parse_request_head(&self.head, self.max_head_bytes, &mut headers) {
            Ok(Some(head)) => {
                self.state = match head.request.body {
                    RequestBody::None | RequestBody::Length(0) => State::Idle,
                    RequestBody::Length(n) => State::Body(n),
                    RequestBody::Chunked => State::Chunked(ChunkedDecoder::new()),
                };
            }
            Ok(None) => self.lose(index, Violation::BadHead),
            Err(v) => self.lose(index, v),
        }
        used
    }

    /// Stop scanning; request `index` is refused for `why` (unless an
    /// earlier one was).
    fn lose(&mut self, index: u64, why: Violation) {
        self.first_bad.get_or_insert((index, why));
        self.state = State::Lost;
    }
}

/// The length of the head in `buf` (through the empty line that ends it),
/// looking for the end from `from` on.
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while let Some(p) = buf
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    {
        let lf = i + p;
        match buf.get(lf + 1..lf + 3) {
            Some([b'\n', ..]) => return Some(lf + 2),
            Some([b'\r', b'\n']) => return Some(lf + 3),
            _ if buf.get(lf + 1) == Some(&b'\n') => return Some(lf + 2),
            _ => {}
        }
        i = lf + 1;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const MAX: usize = 16 * 1024;

    /// Scan `input` fed in pieces of `step` bytes.
    fn scan(input: &[u8], step: usize) -> HeadScanner {
        let mut s = HeadScanner::new(MAX);
        for piece in input.chunks(step) {
            s.feed(piece);
        }
        s
    }

    /// Same verdict whatever the read boundaries.
    fn verdict(input: &[u8]) -> (Option<u64>, u64) {
        let whole = scan(input, input.len().max(1));
        for step in [1, 2, 3, 7, 64] {
            let s = scan(input, step);
            assert_eq!(
                (s.first_bad(), s.heads()),
                (whole.first_bad(), whole.heads()),
                "step {step}: {}",
                String::from_utf8_lossy(input)
            );
        }
        (whole.first_bad().map(|b| b.0), whole.heads())
    }

    #[test]
    fn plain_requests_are_fine_and_counted() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
                      POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
                      \r\nGET /after-stray-crlf HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(verdict(input), (None, 3));
        assert!(!scan(input, input.len()).in_head());
    }

    #[test]
    fn cl_and_te_in_both_orders_and_any_case() {
        for head in [
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            let input = format!("{head}0\r\n\r\n");
            assert_eq!(verdict(input.as_bytes()), (Some(0), 1), "{head}");
            let s = scan(input.as_bytes(), 5);
            assert_eq!(s.first_bad().unwrap().1, Violation::LengthAndChunked);
        }
    }

    #[test]
    fn the_policy_decides_each_head() {
        for h in [
            "Content-Length: 4\r\nContent-Length: 5",
            "Content-Length: 4, 5",
            "Content-Length: +4",
            "Transfer-Encoding: gzip, chunked",
            "X-A: 1\r\n Transfer-Encoding: chunked",
            "Transfer-Encoding : chunked",
            "Host: b",
        ] {
            let input = format!(
                "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\n{h}\r\n\r\n"
            );
            assert_eq!(verdict(input.as_bytes()).0, Some(1), "{h}");
        }
        let ok = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 003\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(verdict(ok), (None, 2));
    }

    #[test]
    fn chunked_bodies_are_followed_to_the_next_head() {
        // Chunk data that looks like a smuggling head must not be scanned as one.
        let body = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x};ext=1\r\n{body}\r\n0\r\nX-Trailer: t\r\n\r\n\
             GET /next HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /bad HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            body.len()
        );
        assert_eq!(verdict(input.as_bytes()), (Some(2), 3));
        let input = format!(
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            body.len()
        );
        assert_eq!(verdict(input.as_bytes()), (None, 2));
    }

    #[test]
    fn bare_lf_line_ends_are_followed() {
        let input = b"GET / HTTP/1.1\nHost: a\n\nPOST / HTTP/1.1\nHost: a\nContent-Length: 1\nTransfer-Encoding: chunked\n\n";
        assert_eq!(verdict(input), (Some(1), 2));
        assert!(!scan(input, 4).broken_body());
    }

    #[test]
    fn unfollowable_framing_fails_closed() {
        // A malformed chunk size: the request it belongs to is refused.
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        let s = scan(input, 3);
        assert_eq!(s.first_bad(), Some((0, Violation::BadHead)));
        assert!(s.broken_body());
        // A head past the limit.
        let mut s = HeadScanner::new(64);
        s.feed(b"GET / HTTP/1.1\r\n");
        s.feed(&[b'a'; 100]);
        assert_eq!(s.first_bad(), Some((0, Violation::HeadTooLarge)));
    }

    #[test]
    fn in_head_tracks_partial_heads() {
        let mut s = HeadScanner::new(MAX);
        s.feed(b"\r\n");
        assert!(!s.in_head(), "blank lines between requests are not a head");
        s.feed(b"GET / HT");
        assert!(s.in_head());
        s.feed(b"TP/1.1\r\nHost: a\r\n\r");
        assert!(s.in_head());
        s.feed(b"\n");
        assert!(!s.in_head());
        assert_eq!(s.heads(), 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_read_boundaries_do_not_matter() {
        const ALPHABET: &[u8] = b"\r\n :,;0aA\tCcTt-";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2000u64 {
            let mut buf = [0u8; 97];
            for b in &mut buf {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = if round % 3 == 0 {
                    (x >> 8) as u8
                } else {
                    ALPHABET[(x % ALPHABET.len() as u64) as usize]
                };
            }
            let whole = scan(&buf, buf.len());
            let step = 1 + (round % 11) as usize;
            let split = scan(&buf, step);
            assert_eq!(
                (whole.first_bad(), whole.heads(), whole.in_head()),
                (split.first_bad(), split.heads(), split.in_head()),
                "step {step}: {buf:?}"
            );
        }
    }
}
