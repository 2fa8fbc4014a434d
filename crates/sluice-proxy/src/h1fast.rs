//! `mode http` fast path: plain HTTP/1.1 exchanges relayed by one task per
//! client connection, without hyper.
//!
//! hyper serves a client connection and drives each server connection in
//! tasks of their own, joined by channels: a keep-alive request wakes three
//! tasks and builds two header maps. Profiles showed that machinery, not
//! any one function, as the cost that kept `mode http` behind HAProxy (see
//! BENCHMARKS.md §3). This path does what HAProxy does for the common case:
//! parse the head in place ([`httparse`]), write a rewritten head and the
//! body bytes as they are, and follow the body's framing to know where the
//! message ends, all in the client connection's task.
//!
//! It takes only what it fully understands. A request that is not plain
//! HTTP/1.1 or HTTP/1.0 with no body or a `Content-Length` body — chunked or
//! ambiguous framing, `Upgrade`, `Expect`, `CONNECT`, absolute-form
//! targets, a head that does not parse or is over `max_header_size` — is
//! handed, with the bytes already read, to hyper's path ([`crate::http`]),
//! which then serves the rest of the connection. A request boundary is the
//! only place a hand-off happens, so the two paths never share a message,
//! and every error answer that hyper's path gives (400, 431, the smuggling
//! checks) stays its answer.
//!
//! Phases and timers are those of [`crate::http`]: `timeout_http_request`
//! for a head (from accept, or from its first byte), `timeout_http_keep_alive`
//! between requests, `timeout_client` for a stalled request body or a client
//! that does not read, `timeout_server` for the response head and a stalled
//! response body; retries and redispatch on connect failure
//! ([`crate::http::pick_and_connect`]); a pooled connection the server closed
//! is replaced by a new one when the request can be sent again.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use crate::backend::ServerRt;
use crate::conn::Expired;
use crate::frontend::{Phase, count_expired, wait_phase};
use crate::http::{
    ConnCtx, Connector, LogRecord, NoConn, connect_fresh, local_body, pick_and_connect,
    pooled_allowed,
};
use crate::io::ServerStream;
use crate::stats::Counters;
use crate::wake::OnOwnWake;

/// Most header lines a message may have on the fast path; a request with
/// more goes to hyper's path (limit 100), a response with more is a 502.
const MAX_HEADERS: usize = 64;

/// Bytes reserved before each read when the buffer has less room; one read
/// then takes a typical head and a 5 KiB body at once.
const READ_RESERVE_BYTES: usize = 16 * 1024;

/// Most `Connection` tokens of one message whose headers are then removed;
/// a request with more goes to hyper's path, a response with more is a 502.
const MAX_CONNECTION_TOKENS: usize = 8;

/// Headers that describe one hop (RFC 9110 section 7.6.1), never forwarded.
/// `transfer-encoding` is not here: a chunked response is forwarded as it
/// came, with its header; requests with one never take this path.
const HOP_BY_HOP: [&[u8]; 6] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"upgrade",
];

/// How a client connection left the fast path.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The connection is finished (closed, timed out, or an answer that
    /// closes it was sent).
    Done,
    /// A request the fast path does not take starts at the front of these
    /// bytes: hyper's path serves the connection from here.
    Handoff(BytesMut),
}

/// The result of parsing a head from a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Parsed<T> {
    /// More bytes are needed.
    Partial,
    Complete(T),
    /// Not for the fast path (a request) or invalid (a response).
    Reject,
}

/// What the client connection adds to every request head.
#[derive(Debug)]
struct Rewrite {
    /// `X-Forwarded-For` value appended (with `forwardfor`).
    client_ip: Option<String>,
    /// `X-Forwarded-Proto` value.
    proto: &'static [u8],
    /// Append `Via`.
    via: bool,
}

impl Rewrite {
    fn new(ctx: &ConnCtx) -> Self {
        Self {
            client_ip: ctx
                .fe
                .cfg
                .forwardfor
                .then(|| ctx.client.ip().to_canonical().to_string()),
            proto: if ctx.https { b"https" } else { b"http" },
            via: ctx.fe.cfg.via,
        }
    }
}

/// A request head the fast path takes.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead {
    /// Bytes of the head in the buffer.
    head_len: usize,
    method: Method,
    /// The origin-form target, for the log and `balance uri`.
    target: String,
    /// `Content-Length` (0 without one).
    body_len: u64,
    /// The client asked to close after this exchange (HTTP/1.0: did not
    /// ask to keep the connection).
    close: bool,
    /// An HTTP/1.0 client: no chunked coding and no interim responses for
    /// it (RFC 9112 section 6.1, RFC 9110 section 15.2).
    http10: bool,
}

/// What the response head depends on in the request.
#[derive(Debug, Clone, Copy, Default)]
struct Ask {
    /// A HEAD request: the response has no body.
    head: bool,
    /// The client connection closes after this response.
    close: bool,
    /// The client speaks HTTP/1.0.
    http10: bool,
}

/// How a response body ends (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    Chunked,
    /// Read until the server closes.
    UntilClose,
}

/// A response head from a server.
#[derive(Debug, PartialEq, Eq)]
struct ResponseHead {
    head_len: usize,
    status: u16,
    framing: Framing,
    /// The server closes the connection after this response.
    server_close: bool,
    /// The client connection must close after it (its framing ends at the
    /// close, or the client asked).
    client_close: bool,
    /// A chunked body relayed without its chunk framing (to an HTTP/1.0
    /// client; the close then ends it).
    dechunk: bool,
}

/// `Connection` tokens of one message.
#[derive(Debug, Default)]
struct ConnectionTokens<'a> {
    close: bool,
    keep_alive: bool,
    /// Other tokens: names of headers to remove.
    listed: [&'a [u8]; MAX_CONNECTION_TOKENS],
    n: usize,
}

impl<'a> ConnectionTokens<'a> {
    /// Read every `Connection` header; `None` if there are too many tokens.
    fn of(headers: &[httparse::Header<'a>]) -> Option<Self> {
        let mut t = Self::default();
        for h in headers {
            if !h.name.eq_ignore_ascii_case("connection") {
                continue;
            }
            for tok in h.value.split(|&b| b == b',') {
                let tok = tok.trim_ascii();
                if tok.is_empty() {
                } else if tok.eq_ignore_ascii_case(b"close") {
                    t.close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    t.keep_alive = true;
                } else {
                    *t.listed.get_mut(t.n)? = tok;
                    t.n += 1;
                }
            }
        }
        Some(t)
    }

    /// Whether a header is hop-by-hop for this message.
    fn drops(&self, name: &str) -> bool {
        let name = name.as_bytes();
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || self.listed[..self.n]
                .iter()
                .any(|l| name.eq_ignore_ascii_case(l))
    }
}

/// A `Content-Length` value: digits only (RFC 9110 section 8.6).
fn content_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Write `name: v1, v2, ..., last` from every `name` header plus `last`.
fn put_list(out: &mut Vec<u8>, headers: &[httparse::Header<'_>], name: &str, last: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    for h in headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        out.extend_from_slice(h.value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last);
    out.extend_from_slice(b"\r\n");
}

/// Parse a request head at the front of `buf`; when the fast path takes
/// it, write the head to send to the server into `out`.
fn parse_request(buf: &[u8], rw: &Rewrite, out: &mut Vec<u8>) -> Parsed<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Reject,
    };
    let (Some(method), Some(target), Some(version @ (0 | 1))) = (req.method, req.path, req.version)
    else {
        return Parsed::Reject;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Reject;
    };
    if method == Method::CONNECT || !target.starts_with('/') {
        return Parsed::Reject;
    }
    let headers = req.headers;
    let Some(conn) = ConnectionTokens::of(headers) else {
        return Parsed::Reject;
    };
    let mut body_len = None;
    for h in headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("upgrade")
            || name.eq_ignore_ascii_case("expect")
        {
            return Parsed::Reject;
        }
        if name.eq_ignore_ascii_case("content-length") {
            match (body_len, content_length(h.value)) {
                (None, Some(n)) => body_len = Some(n),
                // Repeated or not a number: hyper's path and its scanner decide.
                _ => return Parsed::Reject,
            }
        }
    }

    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let xff = rw.client_ip.is_some();
    for h in headers.iter() {
        let name = h.name;
        if conn.drops(name)
            || (xff
                && (name.eq_ignore_ascii_case("x-forwarded-for")
                    || name.eq_ignore_ascii_case("x-forwarded-proto")))
            || (rw.via && name.eq_ignore_ascii_case("via"))
        {
            continue;
        }
        put_header(out, name.as_bytes(), h.value);
    }
    if let Some(ip) = &rw.client_ip {
        // Several X-Forwarded-For lines are one list (RFC 9110 section 5.3).
        put_list(out, headers, "x-forwarded-for", ip.as_bytes());
        put_header(out, b"x-forwarded-proto", rw.proto);
    }
    if rw.via {
        put_list(out, headers, "via", b"1.1 sluice");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(RequestHead {
        head_len,
        method,
        target: target.to_owned(),
        body_len: body_len.unwrap_or(0),
        // HTTP/1.0 keeps a connection only when asked (RFC 9112 section 9.3).
        close: if version == 0 {
            conn.close || !conn.keep_alive
        } else {
            conn.close
        },
        http10: version == 0,
    })
}

/// Parse a response head at the front of `buf` and write the head to send
/// to the client into `out`.
fn parse_response(buf: &[u8], ask: Ask, via: bool, out: &mut Vec<u8>) -> Parsed<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Reject,
    };
    let (Some(version), Some(status)) = (resp.version, resp.code) else {
        return Parsed::Reject;
    };
    // No upgrade was asked for on this path.
    if status == 101 {
        return Parsed::Reject;
    }
    let headers = resp.headers;
    let Some(conn) = ConnectionTokens::of(headers) else {
        return Parsed::Reject;
    };
    let mut length: Option<u64> = None;
    let mut te: Option<&[u8]> = None;
    for h in headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            match (length, content_length(h.value)) {
                (None, Some(n)) => length = Some(n),
                (Some(a), Some(b)) if a == b => {}
                _ => return Parsed::Reject,
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            te = Some(h.value);
        }
    }
    let chunked_last = te.is_some_and(|v| {
        v.rsplit(|&b| b == b',')
            .next()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
    });
    let framing = if ask.head || status < 200 || status == 204 || status == 304 {
        Framing::Empty
    } else if te.is_some() {
        // Transfer-Encoding overrides Content-Length (RFC 9112 section 6.3).
        if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    // HTTP/1.0 servers close unless they said keep-alive.
    let server_close =
        conn.close || framing == Framing::UntilClose || (version == 0 && !conn.keep_alive);
    let dechunk = ask.http10 && framing == Framing::Chunked;
    let client_close = (ask.close || framing == Framing::UntilClose || dechunk) && status >= 200;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in headers.iter() {
        let name = h.name;
        if conn.drops(name)
            || (via && name.eq_ignore_ascii_case("via"))
            || (te.is_some() && name.eq_ignore_ascii_case("content-length"))
            || (dechunk && name.eq_ignore_ascii_case("transfer-encoding"))
        {
            continue;
        }
        put_header(out, name.as_bytes(), h.value);
    }
    if via {
        let mine: &[u8] = if version == 0 {
            b"1.0 sluice"
        } else {
            b"1.1 sluice"
        };
        put_list(out, headers, "via", mine);
    }
    if client_close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if ask.http10 && status >= 200 {
        // An HTTP/1.0 client closes unless told otherwise.
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(ResponseHead {
        head_len,
        status,
        framing,
        server_close,
        client_close,
        dechunk,
    })
}

/// Where in a chunked body (RFC 9112 section 7.1) the relay is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line; `digits` read so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// In a chunk extension or whitespace after the size.
    Ext {
        size: u64,
    },
    Data(u64),
    /// After chunk data: its CRLF.
    DataEnd,
    /// In the trailer section.
    Trailers {
        empty_line: bool,
    },
    Done,
}

/// Most hex digits of a chunk size: 16 fill a `u64`.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Follows a chunked body to find where it ends.
#[derive(Debug, Clone, Copy)]
struct ChunkedEnd(Chunk);

/// A chunked body that does not follow the grammar.
#[derive(Debug, PartialEq, Eq)]
struct BadChunk;

impl ChunkedEnd {
    fn new() -> Self {
        Self(Chunk::Size { size: 0, digits: 0 })
    }

    /// Feed body bytes; `Some(n)` when the body ends after `n` of them.
    /// With `spans`, the ranges of `data` that are chunk data (not framing)
    /// are appended to it.
    fn feed(
        &mut self,
        data: &[u8],
        mut spans: Option<&mut Vec<Range<usize>>>,
    ) -> Result<Option<usize>, BadChunk> {
        let mut i = 0;
        while i < data.len() {
            if let Chunk::Data(left) = self.0 {
                let n = usize::try_from(left).map_or(data.len() - i, |l| l.min(data.len() - i));
                if let Some(s) = spans.as_deref_mut() {
                    s.push(i..i + n);
                }
                i += n;
                let left = left - n as u64;
                self.0 = if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                };
                continue;
            }
            let b = data[i];
            i += 1;
            self.0 = match self.0 {
                Chunk::Size { size, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= MAX_CHUNK_SIZE_DIGITS {
                            return Err(BadChunk);
                        }
                        let d = (b as char).to_digit(16).map_or(0, u64::from);
                        Chunk::Size {
                            size: size << 4 | d,
                            digits: digits + 1,
                        }
                    }
                    b'\n' if digits > 0 => Self::size_end(size),
                    b';' | b' ' | b'\t' | b'\r' if digits > 0 => Chunk::Ext { size },
                    _ => return Err(BadChunk),
                },
                Chunk::Ext { size } => match b {
                    b'\n' => Self::size_end(size),
                    _ => Chunk::Ext { size },
                },
                Chunk::DataEnd => match b {
                    b'\r' => Chunk::DataEnd,
                    b'\n' => Chunk::Size { size: 0, digits: 0 },
                    _ => return Err(BadChunk),
                },
                Chunk::Trailers { empty_line } => match b {
                    b'\n' if empty_line => {
                        self.0 = Chunk::Done;
                        return Ok(Some(i));
                    }
                    b'\n' => Chunk::Trailers { empty_line: true },
                    b'\r' => Chunk::Trailers { empty_line },
                    _ => Chunk::Trailers { empty_line: false },
                },
                Chunk::Done => return Ok(Some(i - 1)),
                Chunk::Data(_) => unreachable!("handled above"),
            };
        }
        Ok(None)
    }

    fn size_end(size: u64) -> Chunk {
        if size == 0 {
            Chunk::Trailers { empty_line: true }
        } else {
            Chunk::Data(size)
        }
    }
}

/// Connections for the fast path: raw streams, from
/// [`ServerRt::raw_pool`] or new.
struct RawConnector<'c>(&'c ConnCtx);

impl Connector for RawConnector<'_> {
    type Conn = ServerStream;
    async fn connect(&self, server: &ServerRt) -> io::Result<(ServerStream, bool)> {
        if pooled_allowed(&self.0.be)
            && let Some(c) = server.raw_pool.checkout()
        {
            return Ok((c, true));
        }
        Ok((connect_fresh(self.0, server).await?, false))
    }
}

/// Make sure a read into `buf` has room for a whole message part.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_RESERVE_BYTES / 4 {
        buf.reserve(READ_RESERVE_BYTES);
    }
}

/// Read more bytes within `limit`: `Ok(0)` at end of stream, `Err` on an
/// error or when the time is up (`TimedOut`).
async fn read_within<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    limit: Duration,
) -> io::Result<usize> {
    reserve(buf);
    match tokio::time::timeout(limit, r.read_buf(buf)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// Write all of `a` then `b` within `limit`, in one vectored write when
/// the stream takes it.
async fn write_within<W: AsyncWrite + Unpin>(
    w: &mut W,
    a: &[u8],
    b: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let mut chain = Buf::chain(a, b);
    match tokio::time::timeout(limit, w.write_all_buf(&mut chain)).await {
        Ok(r) => r,
        Err(_) => Err(io::ErrorKind::TimedOut.into()),
    }
}

/// How sending a request and reading its response head failed.
#[derive(Debug)]
enum ExchangeError {
    /// The server sent nothing before closing or failing: on a pooled
    /// connection, the request may be sent again on a new one.
    NoResponse,
    /// No response head within `timeout_server`.
    ServerTimeout,
    /// A response head that does not parse or is too large, or the server
    /// broke off in the middle of one.
    BadResponse,
    /// The client stalled or went away while sending the request body.
    Client { timed_out: bool },
}

/// Serve requests on an HTTP/1 client connection until it ends or a
/// request needs hyper's path. Stops accepting requests once the proxy
/// drains; the caller cuts it when the proxy stops.
pub(crate) async fn serve<S>(
    ctx: &Arc<ConnCtx>,
    io: &mut S,
    phase: &mut watch::Receiver<Phase>,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let fe = &ctx.fe;
    let rw = Rewrite::new(ctx);
    let mut cbuf = BytesMut::new();
    let mut sbuf = BytesMut::new();
    let mut req_out = Vec::new();
    let mut resp_out = Vec::new();
    let mut served = false;
    // One wait for the drain per connection, polled only when the phase
    // changes: a wait made per request would register with (and leave)
    // the phase channel, under its lock, on every request.
    let mut drain_rx = phase.clone();
    let drain = OnOwnWake::new(async move { wait_phase(&mut drain_rx, Phase::Draining).await });
    tokio::pin!(drain);
    loop {
        // Phase 1: a request head.
        let mut head_start = (!cbuf.is_empty()).then(Instant::now);
        let req = loop {
            match parse_request(&cbuf, &rw, &mut req_out) {
                Parsed::Complete(r) if r.head_len <= fe.cfg.max_header_size => break r,
                // hyper's path answers 431 to a head over the limit.
                Parsed::Complete(_) | Parsed::Reject => return Outcome::Handoff(cbuf),
                Parsed::Partial => {}
            }
            if cbuf.len() >= fe.cfg.max_header_size {
                // hyper's path answers 431.
                return Outcome::Handoff(cbuf);
            }
            let (from, limit, why) = match head_start {
                Some(t) => (
                    t,
                    fe.cfg.timeout_http_request,
                    Expired::HttpRequest { partial: true },
                ),
                None if served => (
                    ctx.watch.idle_since(),
                    fe.cfg.timeout_http_keep_alive,
                    Expired::KeepAlive,
                ),
                None => (
                    ctx.watch.idle_since(),
                    fe.cfg.timeout_http_request,
                    Expired::HttpRequest { partial: false },
                ),
            };
            let idle = cbuf.is_empty();
            if idle && *phase.borrow() >= Phase::Draining {
                return Outcome::Done;
            }
            reserve(&mut cbuf);
            let read = tokio::select! {
                biased;
                r = io.read_buf(&mut cbuf) => r,
                () = tokio::time::sleep_until((from + limit).into()) => {
                    count_expired(fe, why);
                    return Outcome::Done;
                }
                () = &mut drain, if idle => return Outcome::Done,
            };
            match read {
                Ok(0) | Err(_) => return Outcome::Done,
                Ok(_) => {
                    head_start.get_or_insert_with(Instant::now);
                }
            }
        };

        // Phases 2 and 3: a server connection.
        let start = Instant::now();
        let (guard, _) = ctx.watch.dispatch();
        let mut log = LogRecord::new(ctx, start, req.method.clone(), req.target, guard);
        served = true;
        cbuf.advance(req.head_len);
        let (slot, mut conn, mut pooled) =
            match pick_and_connect(ctx, &mut log, &RawConnector(ctx)).await {
                Ok(x) => x,
                Err(no) => {
                    // An unread body would be taken for the next request.
                    let close = no.close || req.close || req.body_len > 0;
                    reply(io, log, &no, close, fe.cfg.timeout_client).await;
                    if close {
                        return Outcome::Done;
                    }
                    continue;
                }
            };
        let be = &ctx.be;

        // Phase 4: the request, and the response head.
        let buffered = usize::try_from(req.body_len).map_or(cbuf.len(), |n| n.min(cbuf.len()));
        req_out.extend_from_slice(&cbuf[..buffered]);
        cbuf.advance(buffered);
        let mut body_left = req.body_len - buffered as u64;
        // Sent again on a new connection if a pooled one turns out closed
        // without answering: only a request whose bytes are all at hand
        // and that is idempotent (RFC 9110 section 9.2.2), since the server
        // may have acted on it before closing.
        let replayable = body_left == 0 && req.method.is_idempotent();
        let t = Instant::now();
        let resp = loop {
            let r = exchange(
                ctx,
                io,
                &mut conn,
                &req_out,
                &mut cbuf,
                &mut body_left,
                &mut sbuf,
                &mut resp_out,
                Ask {
                    head: req.method == Method::HEAD,
                    close: req.close,
                    http10: req.http10,
                },
                phase,
            )
            .await;
            match r {
                Ok(head) => break head,
                Err(ExchangeError::NoResponse) if pooled && replayable => {
                    match connect_fresh(ctx, &slot.server).await {
                        Ok(c) => {
                            conn = c;
                            pooled = false;
                        }
                        Err(_) => {
                            Counters::inc(&slot.server.stats.err_connect);
                            Counters::inc(&be.stats.err_connect);
                            log.termination = "SC";
                            reply(io, log, &NoConn::NO_SERVER, true, fe.cfg.timeout_client).await;
                            return Outcome::Done;
                        }
                    }
                }
                Err(e) => {
                    match failure_reply(ctx, &slot.server, e) {
                        Some((no, termination)) => {
                            log.termination = termination;
                            reply(io, log, &no, true, fe.cfg.timeout_client).await;
                        }
                        None => {
                            // The client went away: nobody to answer.
                            log.termination = "CD";
                            log.finish();
                        }
                    }
                    return Outcome::Done;
                }
            }
        };
        log.tr = Some(t.elapsed());
        log.set_status(resp.status);

        // Phase 5: the response body.
        let relayed = relay_body(
            io,
            &mut conn,
            &mut sbuf,
            resp.framing,
            resp.dechunk,
            &resp_out,
            be.cfg.timeout_server,
            fe.cfg.timeout_client,
        )
        .await;
        match relayed {
            Ok(sent) => {
                log.bytes_out = sent;
                // Bytes past the end of the response are junk: do not reuse.
                if pooled_allowed(be) && !resp.server_close && sbuf.is_empty() {
                    slot.server.raw_pool.checkin(conn);
                }
            }
            Err(RelayError { sent, client }) => {
                log.bytes_out = sent;
                if client {
                    log.termination = "CD";
                } else {
                    log.termination = "SD";
                    Counters::inc(&be.stats.err_response);
                }
                log.finish();
                return Outcome::Done;
            }
        }
        log.bytes_in
            .fetch_add(req.body_len, std::sync::atomic::Ordering::Relaxed);
        log.finish();
        drop(slot);
        if resp.client_close {
            let _ = tokio::time::timeout(fe.cfg.timeout_client, io.shutdown()).await;
            return Outcome::Done;
        }
    }
}

/// Send the request (`head`: its head and the body bytes already read),
/// relay the rest of its body (`body_left` bytes from the client), and read
/// the response head into `sbuf`, writing informational (1xx) heads through
/// to the client; the final head to send is left in `resp_out`.
#[allow(clippy::too_many_arguments)]
async fn exchange<S>(
    ctx: &ConnCtx,
    io: &mut S,
    conn: &mut ServerStream,
    head: &[u8],
    cbuf: &mut BytesMut,
    body_left: &mut u64,
    sbuf: &mut BytesMut,
    resp_out: &mut Vec<u8>,
    ask: Ask,
    phase: &watch::Receiver<Phase>,
) -> Result<ResponseHead, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let server_limit = ctx.be.cfg.timeout_server;
    let client_limit = ctx.fe.cfg.timeout_client;
    let t = Instant::now();
    write_within(conn, head, &[], server_limit)
        .await
        .map_err(|_| ExchangeError::NoResponse)?;
    while *body_left > 0 {
        match read_within(io, cbuf, client_limit).await {
            Ok(0) => return Err(ExchangeError::Client { timed_out: false }),
            Err(e) => {
                return Err(ExchangeError::Client {
                    timed_out: e.kind() == io::ErrorKind::TimedOut,
                });
            }
            Ok(_) => {}
        }
        let n = usize::try_from(*body_left).map_or(cbuf.len(), |l| l.min(cbuf.len()));
        write_within(conn, &cbuf[..n], &[], server_limit)
            .await
            .map_err(|_| ExchangeError::BadResponse)?;
        cbuf.advance(n);
        *body_left -= n as u64;
    }
    sbuf.clear();
    loop {
        // A draining proxy tells the client this is the last response.
        let ask = Ask {
            close: ask.close || *phase.borrow() >= Phase::Draining,
            ..ask
        };
        match parse_response(sbuf, ask, ctx.fe.cfg.via, resp_out) {
            Parsed::Complete(h) if h.status < 200 => {
                sbuf.advance(h.head_len);
                // Never to an HTTP/1.0 client (RFC 9110 section 15.2).
                if !ask.http10 {
                    write_within(io, resp_out, &[], client_limit)
                        .await
                        .map_err(|_| ExchangeError::Client { timed_out: false })?;
                }
                continue;
            }
            Parsed::Complete(h) => {
                sbuf.advance(h.head_len);
                return Ok(h);
            }
            Parsed::Reject => return Err(ExchangeError::BadResponse),
            Parsed::Partial => {}
        }
        if sbuf.len() >= ctx.fe.cfg.max_header_size {
            return Err(ExchangeError::BadResponse);
        }
        let left = server_limit.saturating_sub(t.elapsed());
        match read_within(conn, sbuf, left).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(ExchangeError::ServerTimeout);
            }
            Ok(0) | Err(_) if sbuf.is_empty() => return Err(ExchangeError::NoResponse),
            Ok(0) | Err(_) => return Err(ExchangeError::BadResponse),
            Ok(_) => {}
        }
    }
}

/// Counts a failed exchange and gives the answer for it with the access
/// log's termination code; `None` when the client is gone.
fn failure_reply(
    ctx: &ConnCtx,
    server: &ServerRt,
    e: ExchangeError,
) -> Option<(NoConn, &'static str)> {
    let (fe, be) = (&ctx.fe, &ctx.be);
    let (status, msg, termination) = match e {
        ExchangeError::ServerTimeout => {
            Counters::inc(&be.stats.err_timeout);
            Counters::inc(&server.stats.err_timeout);
            (
                StatusCode::GATEWAY_TIMEOUT,
                "The server didn't respond in time.",
                "sH",
            )
        }
        ExchangeError::Client { timed_out } => {
            Counters::inc(&fe.stats.err_request);
            if !timed_out {
                return None;
            }
            (
                StatusCode::REQUEST_TIMEOUT,
                "The client did not send the request body in time.",
                "cD",
            )
        }
        ExchangeError::NoResponse | ExchangeError::BadResponse => {
            Counters::inc(&be.stats.err_response);
            Counters::inc(&server.stats.err_response);
            (
                StatusCode::BAD_GATEWAY,
                "The server returned an invalid or incomplete response.",
                "SH",
            )
        }
    };
    let no = NoConn {
        status,
        msg,
        close: true,
    };
    Some((no, termination))
}

/// A response body relay that failed after `sent` body bytes reached the
/// client; `client`: the client side failed (else the server's).
#[derive(Debug)]
struct RelayError {
    sent: u64,
    client: bool,
}

/// Send the response head and relay the body per its framing (without the
/// chunk framing when `dechunk`). `sbuf` starts with the body bytes read
/// with the head; on success it holds what came after the body (nothing,
/// from a well-behaved server). Returns the body bytes sent.
#[allow(clippy::too_many_arguments)]
async fn relay_body<S>(
    io: &mut S,
    conn: &mut ServerStream,
    sbuf: &mut BytesMut,
    framing: Framing,
    dechunk: bool,
    head: &[u8],
    server_limit: Duration,
    client_limit: Duration,
) -> Result<u64, RelayError>
where
    S: AsyncWrite + Unpin,
{
    let mut sent: u64 = 0;
    let mut left = match framing {
        Framing::Empty => 0,
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => u64::MAX,
    };
    let mut chunks = ChunkedEnd::new();
    let mut head = head;
    let mut acked = false;
    // Chunk data of the current read, when de-chunking.
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    loop {
        // How much of `sbuf` belongs to the body, and whether it ends there.
        spans.clear();
        let (n, done) = match framing {
            Framing::Chunked => match chunks.feed(sbuf, dechunk.then_some(&mut spans)) {
                Ok(Some(end)) => (end, true),
                Ok(None) => (sbuf.len(), false),
                Err(BadChunk) => {
                    return Err(RelayError {
                        sent,
                        client: false,
                    });
                }
            },
            _ => {
                let n = usize::try_from(left).map_or(sbuf.len(), |l| l.min(sbuf.len()));
                left -= n as u64;
                (n, left == 0)
            }
        };
        let body: &[u8] = if dechunk {
            data.clear();
            for r in &spans {
                data.extend_from_slice(&sbuf[r.clone()]);
            }
            &data
        } else {
            &sbuf[..n]
        };
        if write_within(io, head, body, client_limit).await.is_err() {
            return Err(RelayError { sent, client: true });
        }
        head = &[];
        sent += body.len() as u64;
        sbuf.advance(n);
        if done {
            return Ok(sent);
        }
        if !acked {
            // Once per response: see `ServerStream::ack_now`.
            conn.ack_now();
            acked = true;
        }
        match read_within(conn, sbuf, server_limit).await {
            Ok(0) if framing == Framing::UntilClose => return Ok(sent),
            Ok(0) | Err(_) => {
                return Err(RelayError {
                    sent,
                    client: false,
                });
            }
            Ok(_) => {}
        }
    }
}

/// Answer the client with a response made by the proxy; ends the log record.
async fn reply<S>(io: &mut S, log: LogRecord, no: &NoConn, close: bool, limit: Duration)
where
    S: AsyncWrite + Unpin,
{
    let body = local_body(log, no.status, no.msg);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/html\r\ncache-control: no-cache\r\ncontent-length: {}\r\n{}\r\n",
        no.status.as_u16(),
        no.status.canonical_reason().unwrap_or(""),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
    let _ = write_within(io, head.as_bytes(), body.as_bytes(), limit).await;
    if close {
        let _ = tokio::time::timeout(limit, io.shutdown()).await;
    }
}

/// Fuzz oracle: see [`crate::fuzzing::request_head`].
pub(crate) fn fuzz_request_head(data: &[u8]) {
    let rw = Rewrite {
        client_ip: Some("192.0.2.7".to_owned()),
        proto: b"http",
        via: true,
    };
    let mut out = Vec::new();
    let Parsed::Complete(head) = parse_request(data, &rw, &mut out) else {
        return;
    };
    // What the server is sent must parse, and frame the body alike.
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut again = httparse::Request::new(&mut headers);
    match again.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "head ends early"),
        other => panic!("forwarded head does not parse: {other:?}"),
    }
    let mut cl = None;
    for h in again.headers.iter() {
        assert!(
            !h.name.eq_ignore_ascii_case("transfer-encoding"),
            "transfer-encoding forwarded on the fast path"
        );
        if h.name.eq_ignore_ascii_case("content-length") {
            assert!(cl.is_none(), "several content-length forwarded");
            cl = content_length(h.value);
        }
    }
    assert_eq!(
        cl.unwrap_or(0),
        head.body_len,
        "the forwarded head frames the body differently from the relay"
    );
    let host_in = count_named(data, "host");
    let host_out = again
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    assert_eq!(host_in, host_out, "host headers added or removed");
}

/// How many headers of a (complete, parseable) head are named `name`.
fn count_named(data: &[u8], name: &str) -> usize {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(data) {
        Ok(httparse::Status::Complete(_)) => req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .count(),
        _ => 0,
    }
}

/// Fuzz oracle: see [`crate::fuzzing::response_head`].
pub(crate) fn fuzz_response_head(data: &[u8]) {
    let Some((&flags, data)) = data.split_first() else {
        return;
    };
    let ask = Ask {
        head: flags & 1 != 0,
        close: flags & 2 != 0,
        http10: flags & 4 != 0,
    };
    let mut out = Vec::new();
    let Parsed::Complete(head) = parse_response(data, ask, flags & 8 != 0, &mut out) else {
        return;
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
    let mut again = httparse::Response::new(&mut headers);
    match again.parse(&out) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "head ends early"),
        other => panic!("forwarded head does not parse: {other:?}"),
    }
    let mut cl = None;
    let mut chunked = false;
    for h in again.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            cl = content_length(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = true;
        }
    }
    let seen = if ask.head || head.status < 200 || head.status == 204 || head.status == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = cl {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    let relayed = if head.dechunk {
        Framing::UntilClose
    } else {
        head.framing
    };
    // A body relayed until the close is ended by the close whatever the
    // head says only when the client connection closes after it.
    if relayed == Framing::UntilClose {
        assert!(
            head.client_close,
            "a body ended by the close on a kept connection"
        );
    } else if !(seen == Framing::Chunked && relayed == Framing::Chunked) {
        assert_eq!(
            seen, relayed,
            "the client reads the body differently from the relay"
        );
    }
}

/// Fuzz oracle: see [`crate::fuzzing::chunked`].
pub(crate) fn fuzz_chunked(data: &[u8], step: usize) {
    let mut spans = Vec::new();
    let whole = ChunkedEnd::new().feed(data, Some(&mut spans));
    let whole_data: Vec<u8> = spans
        .iter()
        .flat_map(|r| data[r.clone()].to_vec())
        .collect();
    let mut c = ChunkedEnd::new();
    let mut cut_data = Vec::new();
    let mut cut = Ok(None);
    let mut at = 0;
    for piece in data.chunks(step.max(1)) {
        let mut spans = Vec::new();
        let r = c.feed(piece, Some(&mut spans));
        for s in &spans {
            cut_data.extend_from_slice(&piece[s.clone()]);
        }
        match r {
            Ok(None) => at += piece.len(),
            Ok(Some(n)) => {
                cut = Ok(Some(at + n));
                break;
            }
            Err(e) => {
                cut = Err(e);
                break;
            }
        }
    }
    assert_eq!(whole, cut, "read boundaries changed where the body ends");
    if whole.is_ok() {
        assert_eq!(whole_data, cut_data, "read boundaries changed the data");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rw(xff: bool, via: bool) -> Rewrite {
        Rewrite {
            client_ip: xff.then(|| "192.0.2.7".to_owned()),
            proto: b"http",
            via,
        }
    }

    fn req(raw: &[u8], rw: &Rewrite) -> (Parsed<RequestHead>, String) {
        let mut out = Vec::new();
        let p = parse_request(raw, rw, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_plain_request_is_rewritten_with_forwarding_headers() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\r\nNEXT";
        let (p, out) = req(raw, &rw(true, true));
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!(h.head_len, raw.len() - 4);
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.target, "/a?b=1");
        assert_eq!((h.body_len, h.close), (0, false));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\
             x-forwarded-for: 10.0.0.1, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             via: 1.0 edge, 1.1 sluice\r\n\r\n"
        );
        // Without forwardfor/via, those headers pass untouched.
        let (_, out) = req(raw, &rw(false, false));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\r\n"
        );
    }

    #[test]
    fn body_length_and_close_are_read() {
        let (p, _) = req(
            b"POST / HTTP/1.1\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
            &rw(false, false),
        );
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!((h.body_len, h.close), (12, true));
        let (p, _) = req(b"GET / HTTP/1.1\r\nHost: x\r\n", &rw(false, false));
        assert_eq!(p, Parsed::Partial);
        // HTTP/1.0: closes unless it asks to keep the connection; the
        // server is asked in HTTP/1.1.
        let (p, out) = req(b"GET / HTTP/1.0\r\n\r\n", &rw(false, false));
        assert!(
            matches!(
                p,
                Parsed::Complete(RequestHead {
                    close: true,
                    http10: true,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(out, "GET / HTTP/1.1\r\n\r\n");
        let (p, _) = req(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            &rw(false, false),
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(RequestHead {
                    close: false,
                    http10: true,
                    ..
                })
            ),
            "{p:?}"
        );
    }

    #[test]
    fn requests_outside_the_fast_path_are_handed_off() {
        for raw in [
            &b"GET http://x/ HTTP/1.1\r\n\r\n"[..],
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"CONNECT x:443 HTTP/1.1\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nConnection: a,b,c,d,e,f,g,h,i\r\n\r\n",
            b"\x00\x01 junk\r\n\r\n",
        ] {
            let (p, _) = req(raw, &rw(false, false));
            assert_eq!(p, Parsed::Reject, "{}", String::from_utf8_lossy(raw));
        }
    }

    fn resp(raw: &[u8], head: bool, close: bool, via: bool) -> (Parsed<ResponseHead>, String) {
        let ask = Ask {
            head,
            close,
            http10: false,
        };
        let mut out = Vec::new();
        let p = parse_response(raw, ask, via, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_follows_rfc_9112() {
        let cases: [(&[u8], bool, Framing, bool); 8] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                Framing::Empty,
                false,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                false,
                Framing::Empty,
                false,
            ),
            (
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
                false,
                Framing::Empty,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Chunked,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                false,
                Framing::UntilClose,
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", false, Framing::UntilClose, true),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                Framing::Length(5),
                true,
            ),
        ];
        for (raw, head, framing, server_close) in cases {
            let (p, _) = resp(raw, head, false, false);
            let Parsed::Complete(h) = p else {
                panic!("{p:?}")
            };
            assert_eq!(h.framing, framing, "{}", String::from_utf8_lossy(raw));
            assert_eq!(
                h.server_close,
                server_close,
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(h.client_close, framing == Framing::UntilClose);
        }
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert_eq!(resp(raw, false, false, false).0, Parsed::Reject);
        }
    }

    #[test]
    fn response_head_is_rewritten() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive, X-Int\r\nX-Int: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let (p, out) = resp(raw, false, true, true);
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert!(h.client_close && !h.server_close);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\
             via: 1.1 sluice\r\nconnection: close\r\n\r\n"
        );
        // An interim response never closes the client connection.
        let (p, out) = resp(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            true,
            false,
        );
        assert!(matches!(
            p,
            Parsed::Complete(ResponseHead {
                status: 103,
                client_close: false,
                ..
            })
        ));
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    }

    #[test]
    fn http10_clients_get_no_chunking_and_an_explicit_keep_alive() {
        let http10 = |close| Ask {
            head: false,
            close,
            http10: true,
        };
        let mut out = Vec::new();
        let p = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            http10(false),
            false,
            &mut out,
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(ResponseHead {
                    dechunk: true,
                    client_close: true,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        let p = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            http10(false),
            false,
            &mut out,
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(ResponseHead {
                    dechunk: false,
                    client_close: false,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn chunked_end_is_found_across_reads() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nTrailer: x\r\n\r\nNEXT";
        let end = body.len() - 4;
        // Whole, then one byte at a time.
        assert_eq!(ChunkedEnd::new().feed(body, None), Ok(Some(end)));
        let mut c = ChunkedEnd::new();
        let mut found = None;
        for (i, b) in body.iter().enumerate() {
            if let Some(n) = c.feed(std::slice::from_ref(b), None).unwrap() {
                found = Some(i + n);
                break;
            }
        }
        assert_eq!(found, Some(end));
        // The data spans, without the framing.
        let mut spans = Vec::new();
        ChunkedEnd::new().feed(body, Some(&mut spans)).unwrap();
        let data: Vec<u8> = spans
            .iter()
            .flat_map(|r| body[r.clone()].to_vec())
            .collect();
        assert_eq!(data, b"hello0123456789abcdef");
        assert_eq!(ChunkedEnd::new().feed(b"0\r\n\r\n", None), Ok(Some(5)));
        assert_eq!(ChunkedEnd::new().feed(b"5\r\nhel", None), Ok(None));
        assert_eq!(ChunkedEnd::new().feed(b"x\r\n", None), Err(BadChunk));
        assert_eq!(ChunkedEnd::new().feed(b"2\r\nabX", None), Err(BadChunk));
        assert_eq!(
            ChunkedEnd::new().feed(b"11111111111111111\r\n", None),
            Err(BadChunk)
        );
    }
}
