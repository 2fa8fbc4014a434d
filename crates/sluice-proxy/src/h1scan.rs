//! Raw HTTP/1 request-head scanner, sans-IO: finds framing that two parsers
//! could read differently (request smuggling, RFC 9112 section 6.3) before
//! hyper parses the request.
//!
//! hyper resolves a request carrying both `Content-Length` and
//! `Transfer-Encoding` by dropping `Content-Length` (Transfer-Encoding wins),
//! so the proxy cannot see the conflict in the parsed headers. HAProxy
//! rejects such requests outright, and so does sluice: this scanner sees the
//! bytes as they are read from the client and records the index of the first
//! request whose head
//!
//! - has both `Content-Length` and `Transfer-Encoding`,
//! - has several `Content-Length` values that differ (or one that is not a
//!   number),
//! - folds a header line (obs-fold, a line starting with SP or HTAB), or has
//!   whitespace between a header name and its colon.
//!
//! To know where the next request head starts, the scanner follows each
//! request's body framing itself (`Content-Length` bytes, or chunked coding
//! up to the last chunk and trailers). Where it cannot follow (an unknown
//! transfer coding, a malformed chunk, a head longer than `max_head_bytes`)
//! hyper rejects the request and closes the connection; the scanner then
//! stops and marks the current request, so any disagreement fails closed.
//!
//! State is a few integers: no allocation, O(1) per byte, and bodies are
//! skipped in bulk.

/// Header names matched (compared case-insensitively; targets are lowercase).
const CONTENT_LENGTH: &[u8] = b"content-length";
const TRANSFER_ENCODING: &[u8] = b"transfer-encoding";
const CHUNKED: &[u8] = b"chunked";

/// Most hex digits of a chunk size: 16 fill a `u64`. hyper rejects longer
/// sizes too.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Where in the request stream the scanner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests: CR and LF are skipped (RFC 9112 section 2.2 lets a
    /// server ignore empty lines before a request line, and hyper does).
    Idle,
    /// In the request line.
    RequestLine,
    /// At the first byte of a header line (or of the empty line ending the head).
    LineStart,
    /// Saw CR at the start of a line: the head ends at the LF.
    HeadEndCr,
    /// In a header name; `cl`/`te` count matched bytes of the two names we
    /// look for (`None` once the name differs).
    Name { cl: Option<u8>, te: Option<u8> },
    /// In a `Content-Length` value.
    ClValue,
    /// In a `Transfer-Encoding` value.
    TeValue,
    /// In any other header line (skipped to its LF).
    SkipLine,
    /// In a `Content-Length` body: bytes left.
    Body(u64),
    /// In a chunk-size line: the size so far and how many digits.
    ChunkSize { size: u64, digits: u8 },
    /// In a chunk extension (after `;`), or whitespace after the size.
    ChunkExt { size: u64, digits: u8 },
    /// In chunk data: bytes left.
    ChunkData(u64),
    /// After chunk data: expecting CRLF.
    ChunkDataEnd,
    /// In the trailer section; `empty_line` while the current line has no byte yet.
    Trailers { empty_line: bool },
    /// Framing could not be followed; nothing more is scanned.
    Lost,
}

/// Scans the bytes a client sends on one HTTP/1 connection.
#[derive(Debug, Clone)]
pub(crate) struct HeadScanner {
    state: State,
    max_head_bytes: usize,
    /// Bytes of the current head so far.
    head_len: usize,
    /// Request heads completed so far; also the index of the head in progress.
    heads: u64,
    first_bad: Option<u64>,
    // Facts about the head in progress.
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// Whether the last Transfer-Encoding token seen is exactly `chunked`.
    te_chunked_last: bool,
    bad: bool,
    // Value parsing.
    /// Digits of the current Content-Length list element.
    cl_cur: Option<u64>,
    /// Whitespace followed the current element's digits.
    cl_after_ws: bool,
    /// Bytes of the current Transfer-Encoding token matched against
    /// `chunked`; `None` once it differs.
    te_tok: Option<u8>,
    /// Bytes in the current token (0: nothing but whitespace yet).
    te_tok_len: u8,
    /// Whitespace followed the current token's first bytes.
    te_after_ws: bool,
}

impl HeadScanner {
    /// A scanner for a new connection. Heads longer than `max_head_bytes`
    /// (request line and headers, as hyper's `max_header_size`) stop it.
    pub(crate) fn new(max_head_bytes: usize) -> Self {
        Self {
            state: State::Idle,
            max_head_bytes,
            head_len: 0,
            heads: 0,
            first_bad: None,
            content_length: None,
            transfer_encoding: false,
            te_chunked_last: false,
            bad: false,
            cl_cur: None,
            cl_after_ws: false,
            te_tok: Some(0),
            te_tok_len: 0,
            te_after_ws: false,
        }
    }

    /// Index (0-based, in arrival order) of the first request with ambiguous
    /// framing, if any.
    pub(crate) fn first_bad(&self) -> Option<u64> {
        self.first_bad
    }

    /// Whether part of a request head has arrived but not its end.
    pub(crate) fn in_head(&self) -> bool {
        !matches!(
            self.state,
            State::Idle
                | State::Body(_)
                | State::ChunkSize { .. }
                | State::ChunkExt { .. }
                | State::ChunkData(_)
                | State::ChunkDataEnd
                | State::Trailers { .. }
                | State::Lost
        )
    }

    /// Request heads completed so far.
    pub(crate) fn heads(&self) -> u64 {
        self.heads
    }

    /// Feed the next bytes read from the client.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Lost => return,
                State::Body(left) => {
                    let n = skip(&mut data, left);
                    self.state = if n == left {
                        State::Idle
                    } else {
                        State::Body(left - n)
                    };
                }
                State::ChunkData(left) => {
                    let n = skip(&mut data, left);
                    self.state = if n == left {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData(left - n)
                    };
                }
                State::RequestLine | State::SkipLine => {
                    // Skip to the end of the line in one step.
                    match data.iter().position(|&b| b == b'\n') {
                        Some(i) => {
                            if !self.count_head(i + 1) {
                                return;
                            }
                            data = &data[i + 1..];
                            self.state = State::LineStart;
                        }
                        None => {
                            self.count_head(data.len());
                            return;
                        }
                    }
                }
                _ => {
                    let b = data[0];
                    data = &data[1..];
                    self.byte(b);
                }
            }
        }
    }

    /// Count `n` head bytes; false (and lost) once past the limit.
    fn count_head(&mut self, n: usize) -> bool {
        self.head_len = self.head_len.saturating_add(n);
        if self.head_len > self.max_head_bytes {
            self.lose();
            return false;
        }
        true
    }

    /// Stop scanning; the request in progress is treated as bad.
    fn lose(&mut self) {
        self.first_bad.get_or_insert(self.heads);
        self.state = State::Lost;
    }

    fn byte(&mut self, b: u8) {
        let in_head = !matches!(
            self.state,
            State::Idle
                | State::ChunkSize { .. }
                | State::ChunkExt { .. }
                | State::ChunkDataEnd
                | State::Trailers { .. }
        );
        if in_head && !self.count_head(1) {
            return;
        }
        self.state = match self.state {
            State::Idle => match b {
                b'\r' | b'\n' => State::Idle,
                _ => {
                    self.start_head();
                    if !self.count_head(1) {
                        return;
                    }
                    State::RequestLine
                }
            },
            State::LineStart => match b {
                b'\r' => State::HeadEndCr,
                b'\n' => return self.end_head(),
                b' ' | b'\t' => {
                    // obs-fold: a continuation line (RFC 9112 section 5.2).
                    self.bad = true;
                    State::SkipLine
                }
                _ => self.name_byte(Some(0), Some(0), b),
            },
            State::HeadEndCr => match b {
                b'\n' => return self.end_head(),
                _ => return self.lose(),
            },
            State::Name { cl, te } => self.name_byte(cl, te, b),
            State::ClValue => self.cl_byte(b),
            State::TeValue => self.te_byte(b),
            State::ChunkSize { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    let d = u64::from(hex(b));
                    if digits >= MAX_CHUNK_SIZE_DIGITS {
                        return self.lose();
                    }
                    State::ChunkSize {
                        size: size << 4 | d,
                        digits: digits + 1,
                    }
                }
                b'\n' => return self.chunk_size_end(size, digits),
                b';' | b' ' | b'\t' | b'\r' => State::ChunkExt { size, digits },
                _ => return self.lose(),
            },
            State::ChunkExt { size, digits } => match b {
                b'\n' => return self.chunk_size_end(size, digits),
                _ => State::ChunkExt { size, digits },
            },
            State::ChunkDataEnd => match b {
                b'\r' => State::ChunkDataEnd,
                b'\n' => State::ChunkSize { size: 0, digits: 0 },
                _ => return self.lose(),
            },
            State::Trailers { empty_line } => match b {
                b'\n' if empty_line => State::Idle,
                b'\n' => State::Trailers { empty_line: true },
                b'\r' => State::Trailers { empty_line },
                _ => State::Trailers { empty_line: false },
            },
            // Handled in bulk by `feed`.
            s @ (State::RequestLine
            | State::SkipLine
            | State::Body(_)
            | State::ChunkData(_)
            | State::Lost) => s,
        };
    }

    fn start_head(&mut self) {
        self.head_len = 0;
        self.content_length = None;
        self.transfer_encoding = false;
        self.te_chunked_last = false;
        self.bad = false;
    }

    fn name_byte(&mut self, cl: Option<u8>, te: Option<u8>, b: u8) -> State {
        let advance = |pos: Option<u8>, target: &[u8]| {
            pos.filter(|&p| target.get(usize::from(p)) == Some(&b.to_ascii_lowercase()))
                .map(|p| p + 1)
        };
        match b {
            b':' => {
                let full = |pos: Option<u8>, target: &[u8]| pos == u8::try_from(target.len()).ok();
                if full(cl, CONTENT_LENGTH) {
                    self.cl_cur = None;
                    self.cl_after_ws = false;
                    State::ClValue
                } else if full(te, TRANSFER_ENCODING) {
                    self.transfer_encoding = true;
                    self.te_chunked_last = false;
                    self.te_tok = Some(0);
                    self.te_tok_len = 0;
                    self.te_after_ws = false;
                    State::TeValue
                } else {
                    State::SkipLine
                }
            }
            b' ' | b'\t' => {
                // Whitespace before the colon (RFC 9112 section 5.1): a
                // classic way to hide a header from one parser.
                self.bad = true;
                State::SkipLine
            }
            b'\n' => {
                // A line without a colon: hyper rejects the head.
                self.bad = true;
                State::LineStart
            }
            _ => State::Name {
                cl: advance(cl, CONTENT_LENGTH),
                te: advance(te, TRANSFER_ENCODING),
            },
        }
    }

    /// `Content-Length = 1*DIGIT`, possibly a list of equal values
    /// (RFC 9110 section 8.6); anything else is bad.
    fn cl_byte(&mut self, b: u8) -> State {
        match b {
            b'0'..=b'9' => {
                let next = self
                    .cl_cur
                    .unwrap_or(0)
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(b - b'0')));
                if self.cl_after_ws || next.is_none() {
                    self.bad = true;
                }
                self.cl_cur = next.or(self.cl_cur);
            }
            b' ' | b'\t' | b'\r' => self.cl_after_ws = self.cl_cur.is_some(),
            b',' | b'\n' => {
                match self.cl_cur.take() {
                    None => self.bad = true,
                    Some(v) => match self.content_length {
                        Some(prev) if prev != v => self.bad = true,
                        _ => self.content_length = Some(v),
                    },
                }
                self.cl_after_ws = false;
                if b == b'\n' {
                    return State::LineStart;
                }
            }
            _ => self.bad = true,
        }
        State::ClValue
    }

    /// Tracks whether the last coding listed is exactly `chunked` (hyper's
    /// rule: the last comma-separated token of the last header, trimmed).
    fn te_byte(&mut self, b: u8) -> State {
        match b {
            b' ' | b'\t' | b'\r' => self.te_after_ws = self.te_tok_len > 0,
            b',' | b'\n' => {
                if self.te_tok_len > 0 {
                    self.te_chunked_last = self.te_tok == u8::try_from(CHUNKED.len()).ok();
                }
                self.te_tok = Some(0);
                self.te_tok_len = 0;
                self.te_after_ws = false;
                if b == b'\n' {
                    return State::LineStart;
                }
            }
            _ => {
                // Whitespace inside a token makes it something else.
                let pos = self.te_tok.filter(|_| !self.te_after_ws);
                self.te_tok = pos.and_then(|p| {
                    (CHUNKED.get(usize::from(p)) == Some(&b.to_ascii_lowercase())).then_some(p + 1)
                });
                self.te_tok_len = self.te_tok_len.saturating_add(1);
            }
        }
        State::TeValue
    }

    fn end_head(&mut self) {
        if self.content_length.is_some() && self.transfer_encoding {
            self.bad = true;
        }
        if self.bad {
            self.first_bad.get_or_insert(self.heads);
        }
        self.heads += 1;
        self.state = if self.transfer_encoding {
            if self.te_chunked_last {
                State::ChunkSize { size: 0, digits: 0 }
            } else {
                // hyper answers 400 to a request whose last coding is not
                // chunked and closes; nothing after it can be framed.
                return self.lose();
            }
        } else {
            match self.content_length {
                Some(n) if n > 0 => State::Body(n),
                _ => State::Idle,
            }
        };
    }

    fn chunk_size_end(&mut self, size: u64, digits: u8) {
        self.state = match (digits, size) {
            (0, _) => return self.lose(),
            (_, 0) => State::Trailers { empty_line: true },
            (_, n) => State::ChunkData(n),
        };
    }
}

/// Advance `data` by up to `left` bytes; returns how many.
fn skip(data: &mut &[u8], left: u64) -> u64 {
    let n = usize::try_from(left).map_or(data.len(), |l| l.min(data.len()));
    *data = &data[n..];
    n as u64
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b.wrapping_sub(b'A').wrapping_add(10),
    }
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
        (whole.first_bad(), whole.heads())
    }

    #[test]
    fn plain_requests_are_fine_and_counted() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
                      POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
                      \r\nGET /after-stray-crlf HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(verdict(input), (None, 3));
        let s = scan(input, input.len());
        assert!(!s.in_head());
    }

    #[test]
    fn cl_and_te_in_both_orders_and_any_case() {
        for head in [
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nCONTENT-LENGTH:5\r\nTRANSFER-ENCODING:gzip, chunked\r\n\r\n",
        ] {
            let input = format!("{head}0\r\n\r\n");
            assert_eq!(verdict(input.as_bytes()), (Some(0), 1), "{head}");
        }
    }

    #[test]
    fn conflicting_or_invalid_content_lengths() {
        let bad = [
            "Content-Length: 4\r\nContent-Length: 5",
            "Content-Length: 4, 5",
            "Content-Length: 4 5",
            "Content-Length: +4",
            "Content-Length: ",
            "Content-Length: 99999999999999999999999",
        ];
        for h in bad {
            let input = format!("POST / HTTP/1.1\r\n{h}\r\n\r\n");
            assert_eq!(verdict(input.as_bytes()).0, Some(0), "{h}");
        }
        // Equal repeated values are one length (RFC 9110 section 8.6).
        let ok = b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3, 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdict(ok), (None, 2));
    }

    #[test]
    fn obs_fold_and_space_before_colon_are_bad() {
        for h in [
            "X-A: 1\r\n Transfer-Encoding: chunked",
            "X-A: 1\r\n\tContent-Length: 4",
            "Transfer-Encoding : chunked",
            "Content-Length\t: 4",
        ] {
            let input = format!("POST / HTTP/1.1\r\n{h}\r\n\r\n");
            assert_eq!(verdict(input.as_bytes()).0, Some(0), "{h}");
        }
    }

    #[test]
    fn similar_names_do_not_match() {
        let input = b"POST / HTTP/1.1\r\nContent-Lengthy: 4\r\nX-Transfer-Encoding: chunked\r\n\
                      Content-Length: 2\r\n\r\nokGET / HTTP/1.1\r\n\r\n";
        assert_eq!(verdict(input), (None, 2));
    }

    #[test]
    fn chunked_bodies_are_followed_to_the_next_head() {
        // Chunk data that looks like a smuggling head must not be scanned as one.
        let body = "Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let input = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
             {:x};ext=1\r\n{body}\r\n0\r\nX-Trailer: t\r\n\r\n\
             GET /next HTTP/1.1\r\nHost: a\r\n\r\n\
             POST /bad HTTP/1.1\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
            body.len()
        );
        assert_eq!(verdict(input.as_bytes()), (Some(2), 3));
        // Content-Length bodies are skipped the same way.
        let input = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\n\r\n",
            body.len()
        );
        assert_eq!(verdict(input.as_bytes()), (None, 2));
    }

    #[test]
    fn bare_lf_line_ends_are_followed() {
        let input = b"GET / HTTP/1.1\nHost: a\n\nPOST / HTTP/1.1\nContent-Length: 1\nTransfer-Encoding: chunked\n\n";
        assert_eq!(verdict(input), (Some(1), 2));
    }

    #[test]
    fn unfollowable_framing_fails_closed() {
        // An unknown final coding: hyper rejects; everything after is suspect.
        let input =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let s = scan(input, input.len());
        assert_eq!(s.first_bad(), Some(1));
        // A malformed chunk size.
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert_eq!(scan(input, 3).first_bad(), Some(1));
        // A head past the limit.
        let mut s = HeadScanner::new(64);
        s.feed(b"GET / HTTP/1.1\r\n");
        s.feed(&[b'a'; 100]);
        assert_eq!(s.first_bad(), Some(0));
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
                // Mostly the bytes the state machine cares about.
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
