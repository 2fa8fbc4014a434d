//! `mode http` fast path: plain HTTP/1.1 and 1.0 exchanges relayed by one
//! task per client connection, without hyper.
//!
//! hyper serves a client connection and drives each server connection in
//! tasks of their own, joined by channels: a keep-alive request wakes three
//! tasks and builds two header maps. Profiles showed that machinery, not
//! any one function, as the cost that kept `mode http` behind HAProxy (see
//! BENCHMARKS.md §3). This path does what HAProxy does for the common case:
//! parse the head in place, write a rewritten head and the body bytes as
//! they are, and follow the body's framing to know where the message ends,
//! all in the client connection's task.
//!
//! Policy is [`crate::policy`]'s, as on hyper's path: a head the policy
//! refuses is answered here with the policy's status. What this engine
//! does not relay itself — a chunked request body, `Upgrade`, `Expect` —
//! is handed, with the bytes already read, to hyper's path
//! ([`crate::http`]), which then serves the rest of the connection. A
//! request boundary is the only place a hand-off happens, so the two paths
//! never share a message.
//!
//! Phases and timers are those of [`crate::http`]: `timeout_http_request`
//! for a head (from accept, or from its first byte), `timeout_http_keep_alive`
//! between requests, `timeout_client` for a stalled request body or a client
//! that does not read, `timeout_server` for a server that stays silent (no
//! byte read or written on its connection for that long: a request body
//! that keeps moving is never cut); retries and redispatch on connect
//! failure ([`crate::session::pick_and_connect`]); a pooled connection the
//! server closed is replaced by a new one when the request can be sent
//! again.

mod head;

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;

use self::head::{Ask, Parsed, RequestHead, ResponseHead, parse_request, parse_response};
use crate::backend::{ServerRt, Slot};
use crate::body::ChunkedDecoder;
use crate::conn::Expired;
use crate::io::ServerStream;
use crate::lifecycle::{Phase, wait_phase};
use crate::policy::{ResponseBody, Violation};
use crate::session::{self, ConnCtx, Connector, LogRecord};
use crate::termination::Termination;
use crate::wake::OnOwnWake;

/// Bytes reserved before each read when the buffer has less room; one read
/// then takes a typical head and a 5 KiB body at once.
const READ_RESERVE_BYTES: usize = 16 * 1024;

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

/// The buffers of one client connection on the fast path.
#[derive(Debug, Default)]
struct Buffers {
    /// Bytes read from the client.
    client: BytesMut,
    /// Bytes read from the server.
    server: BytesMut,
    /// The head (and body bytes at hand) to send to the server.
    req_out: Vec<u8>,
    /// The response head to send to the client.
    resp_out: Vec<u8>,
}

/// What phase 1 produced.
enum Next {
    Request(RequestHead),
    Refused(Violation),
    Handoff,
    Done,
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
    let mut bufs = Buffers::default();
    let mut served = false;
    // One wait for the drain per connection, polled only when the phase
    // changes: a wait made per request would register with (and leave)
    // the phase channel, under its lock, on every request.
    let mut drain_rx = phase.clone();
    let drain = OnOwnWake::new(async move { wait_phase(&mut drain_rx, Phase::Draining).await });
    tokio::pin!(drain);
    loop {
        let req = match read_head(ctx, io, &mut bufs, served, phase, drain.as_mut()).await {
            Next::Request(r) => r,
            Next::Handoff => return Outcome::Handoff(bufs.client),
            Next::Done => return Outcome::Done,
            Next::Refused(v) => {
                refuse(ctx, io, v).await;
                return Outcome::Done;
            }
        };
        served = true;
        if !exchange(ctx, io, &mut bufs, req, phase).await {
            return Outcome::Done;
        }
    }
}

/// Phase 1: a request head, within `timeout_http_request` (from the
/// head's first byte, or from accept) or `timeout_http_keep_alive` (idle
/// after a response); nothing new once the proxy drains.
async fn read_head<S, D>(
    ctx: &ConnCtx,
    io: &mut S,
    bufs: &mut Buffers,
    served: bool,
    phase: &watch::Receiver<Phase>,
    mut drain: std::pin::Pin<&mut D>,
) -> Next
where
    S: AsyncRead + Unpin,
    D: Future<Output = ()>,
{
    let fe = &ctx.fe;
    let mut head_start = (!bufs.client.is_empty()).then(Instant::now);
    loop {
        match parse_request(
            &bufs.client,
            fe.cfg.max_header_size,
            &ctx.add,
            &mut bufs.req_out,
        ) {
            Parsed::Complete(r) => return Next::Request(r),
            Parsed::Handoff => return Next::Handoff,
            Parsed::Refuse(v) => return Next::Refused(v),
            Parsed::Partial => {}
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
        let idle = bufs.client.is_empty();
        if idle && *phase.borrow() >= Phase::Draining {
            return Next::Done;
        }
        reserve(&mut bufs.client);
        let read = tokio::select! {
            biased;
            r = io.read_buf(&mut bufs.client) => r,
            () = tokio::time::sleep_until((from + limit).into()) => {
                fe.count_expired(why);
                return Next::Done;
            }
            () = drain.as_mut(), if idle => return Next::Done,
        };
        match read {
            Ok(0) | Err(_) => return Next::Done,
            Ok(_) => {
                head_start.get_or_insert_with(Instant::now);
            }
        }
    }
}

/// Answer a request the policy refuses, and close.
async fn refuse<S>(ctx: &Arc<ConnCtx>, io: &mut S, v: Violation)
where
    S: AsyncWrite + Unpin,
{
    let (guard, _) = ctx.watch.dispatch();
    let log = LogRecord::new(
        ctx,
        Instant::now(),
        Method::from_bytes(b"BADREQ").unwrap_or_default(),
        "<BADREQ>".to_owned(),
        guard,
    );
    reply(
        io,
        log,
        Termination::Rejected(v),
        true,
        ctx.fe.cfg.timeout_client,
    )
    .await;
}

/// Phases 2 to 5 of one request whose head is at the front of the client
/// buffer. Returns whether the client connection stays open.
async fn exchange<S>(
    ctx: &Arc<ConnCtx>,
    io: &mut S,
    bufs: &mut Buffers,
    req: RequestHead,
    phase: &watch::Receiver<Phase>,
) -> bool
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let fe = &ctx.fe;
    let (guard, _) = ctx.watch.dispatch();
    let mut log = LogRecord::new(ctx, Instant::now(), req.method.clone(), req.target, guard);
    bufs.client.advance(req.head_len);

    // Phases 2 and 3: a server connection.
    let connected = session::pick_and_connect(
        &ctx.be,
        ctx.client.ip(),
        Some(&log.uri),
        &mut log.connect,
        &RawConnector(ctx),
    )
    .await;
    let (slot, conn, pooled) = match connected {
        Ok(x) => x,
        Err(t) => {
            // An unread body would be taken for the next request.
            let close = t.closes() || req.close || req.body_len > 0;
            reply(io, log, t, close, fe.cfg.timeout_client).await;
            return !close;
        }
    };

    // Phase 4: the request, and the response head.
    let buffered =
        usize::try_from(req.body_len).map_or(bufs.client.len(), |n| n.min(bufs.client.len()));
    bufs.req_out.extend_from_slice(&bufs.client[..buffered]);
    bufs.client.advance(buffered);
    let ask = Ask {
        head: req.method == Method::HEAD,
        close: req.close,
        http10: req.http10,
    };
    let t = Instant::now();
    let mut up = Upload {
        conn,
        pooled,
        slot: &slot,
        body_left: req.body_len - buffered as u64,
    };
    // Sent again on a new connection if a pooled one turns out closed
    // without answering: only a request whose bytes are all at hand and
    // that is idempotent (RFC 9110 section 9.2.2), since the server may
    // have acted on it before closing.
    let replayable = up.body_left == 0 && req.method.is_idempotent();
    // The loop is here, not in a function of its own: every level of
    // async call copies its future once per request (BENCHMARKS.md §3).
    let resp = loop {
        let failed = match send_once(ctx, io, bufs, &mut up, ask, phase).await {
            Ok(head) => break head,
            Err(ExchangeError::NoResponse) if up.pooled && replayable => {
                let server = &up.slot.server;
                // Boxed, as in `RawConnector`: rare, and large.
                match Box::pin(session::connect_fresh(
                    &ctx.be, server, ctx.client, ctx.local,
                ))
                .await
                {
                    Ok(c) => {
                        up.conn = c;
                        up.pooled = false;
                        continue;
                    }
                    Err(_) => {
                        session::count_connect_failure(&ctx.be, server);
                        Termination::NoServer
                    }
                }
            }
            Err(e) => e.termination(),
        };
        match failed {
            // The client went away: nobody to answer.
            Termination::ClientAborted => {
                log.end(failed);
                log.finish();
            }
            t => reply(io, log, t, true, fe.cfg.timeout_client).await,
        }
        return false;
    };
    let mut conn = up.conn;
    log.tr = Some(t.elapsed());
    log.set_status(resp.status);

    // Phase 5: the response body.
    let be = &ctx.be;
    let relayed = relay_body(
        io,
        &mut conn,
        &mut bufs.server,
        resp.framing,
        resp.dechunk,
        &bufs.resp_out,
        be.cfg.timeout_server,
        fe.cfg.timeout_client,
    )
    .await;
    match relayed {
        Ok(sent) => {
            log.bytes_out = sent;
            // Bytes past the end of the response are junk: do not reuse.
            if session::pooled_allowed(be) && !resp.server_close && bufs.server.is_empty() {
                slot.server.raw_pool.checkin(conn);
            }
        }
        Err(RelayError { sent, ending }) => {
            log.bytes_out = sent;
            log.end(ending);
            log.finish();
            return false;
        }
    }
    log.bytes_in.fetch_add(req.body_len, Relaxed);
    log.finish();
    drop(slot);
    if resp.client_close {
        let _ = tokio::time::timeout(fe.cfg.timeout_client, io.shutdown()).await;
        return false;
    }
    true
}

/// A request on its way to a server.
struct Upload<'a> {
    conn: ServerStream,
    /// The connection came from the pool (the server may have closed it).
    pooled: bool,
    slot: &'a Slot,
    /// Body bytes still to come from the client.
    body_left: u64,
}

/// How sending a request and reading its response head failed.
#[derive(Debug)]
enum ExchangeError {
    /// The server sent nothing before closing or failing: on a pooled
    /// connection, the request may be sent again on a new one.
    NoResponse,
    /// Nothing from the server within `timeout_server`.
    ServerTimeout,
    /// A response head that does not parse or is too large, or the server
    /// broke off in the middle of one.
    BadResponse,
    /// The client stalled or went away while sending the request body.
    Client { timed_out: bool },
}

impl ExchangeError {
    fn termination(self) -> Termination {
        match self {
            Self::ServerTimeout => Termination::ServerTimeout,
            Self::NoResponse | Self::BadResponse => Termination::BadResponse,
            Self::Client { timed_out: true } => Termination::ClientBodyTimeout,
            Self::Client { timed_out: false } => Termination::ClientAborted,
        }
    }
}

/// Send the request, relay the rest of its body (`body_left` bytes from
/// the client), and read the response head into `bufs.server`, writing
/// informational (1xx) heads through to the client; the final head to
/// send is left in `bufs.resp_out`. Every wait on the server is bounded
/// by `timeout_server` on its own: the server's inactivity.
async fn send_once<S>(
    ctx: &ConnCtx,
    io: &mut S,
    bufs: &mut Buffers,
    up: &mut Upload<'_>,
    ask: Ask,
    phase: &watch::Receiver<Phase>,
) -> Result<ResponseHead, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let server_limit = ctx.be.cfg.timeout_server;
    let client_limit = ctx.fe.cfg.timeout_client;
    let conn = &mut up.conn;
    write_within(conn, &bufs.req_out, &[], server_limit)
        .await
        .map_err(|_| ExchangeError::NoResponse)?;
    while up.body_left > 0 {
        match read_within(io, &mut bufs.client, client_limit).await {
            Ok(0) => return Err(ExchangeError::Client { timed_out: false }),
            Err(e) => {
                return Err(ExchangeError::Client {
                    timed_out: e.kind() == io::ErrorKind::TimedOut,
                });
            }
            Ok(_) => {}
        }
        let n =
            usize::try_from(up.body_left).map_or(bufs.client.len(), |l| l.min(bufs.client.len()));
        write_within(conn, &bufs.client[..n], &[], server_limit)
            .await
            .map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    ExchangeError::ServerTimeout
                } else {
                    ExchangeError::BadResponse
                }
            })?;
        bufs.client.advance(n);
        up.body_left -= n as u64;
    }
    bufs.server.clear();
    loop {
        // A draining proxy tells the client this is the last response.
        let ask = Ask {
            close: ask.close || *phase.borrow() >= Phase::Draining,
            ..ask
        };
        match parse_response(
            &bufs.server,
            ask,
            ctx.fe.cfg.max_header_size,
            &ctx.add,
            &mut bufs.resp_out,
        ) {
            Parsed::Complete(h) if h.status < 200 => {
                bufs.server.advance(h.head_len);
                // Never to an HTTP/1.0 client (RFC 9110 section 15.2).
                if !ask.http10 {
                    write_within(io, &bufs.resp_out, &[], client_limit)
                        .await
                        .map_err(|_| ExchangeError::Client { timed_out: false })?;
                }
                continue;
            }
            Parsed::Complete(h) => {
                bufs.server.advance(h.head_len);
                return Ok(h);
            }
            Parsed::Refuse(v) => {
                tracing::debug!(server = %up.slot.server.cfg.name, ?v, "bad response head");
                return Err(ExchangeError::BadResponse);
            }
            Parsed::Handoff => return Err(ExchangeError::BadResponse),
            Parsed::Partial => {}
        }
        match read_within(conn, &mut bufs.server, server_limit).await {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(ExchangeError::ServerTimeout);
            }
            Ok(0) | Err(_) if bufs.server.is_empty() => return Err(ExchangeError::NoResponse),
            Ok(0) | Err(_) => return Err(ExchangeError::BadResponse),
            Ok(_) => {}
        }
    }
}

/// Connections for the fast path: raw streams, from
/// [`ServerRt::raw_pool`] or new.
struct RawConnector<'c>(&'c ConnCtx);

impl Connector for RawConnector<'_> {
    type Conn = ServerStream;
    async fn connect(&self, server: &ServerRt) -> io::Result<(ServerStream, bool)> {
        let ctx = self.0;
        if session::pooled_allowed(&ctx.be)
            && let Some(c) = server.raw_pool.checkout()
        {
            return Ok((c, true));
        }
        // Boxed: a new connection (TCP, PROXY header, TLS) is a large
        // future; inline, its size would be copied with every request's
        // future, pooled or not.
        let c = Box::pin(session::connect_fresh(
            &ctx.be, server, ctx.client, ctx.local,
        ))
        .await?;
        Ok((c, false))
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

/// A response body relay that failed after `sent` body bytes reached the
/// client, and how the request ended.
#[derive(Debug)]
struct RelayError {
    sent: u64,
    ending: Termination,
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
    framing: ResponseBody,
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
        ResponseBody::Empty => 0,
        ResponseBody::Length(n) => n,
        ResponseBody::Chunked | ResponseBody::UntilClose => u64::MAX,
    };
    let mut chunks = ChunkedDecoder::new();
    let mut head = head;
    let mut acked = false;
    // Chunk data of the current read, when de-chunking.
    let mut spans: Vec<Range<usize>> = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let server_failed = |sent, ending| Err(RelayError { sent, ending });
    loop {
        // How much of `sbuf` belongs to the body, and whether it ends there.
        spans.clear();
        let (n, done) = match framing {
            ResponseBody::Chunked => match chunks.feed(sbuf, dechunk.then_some(&mut spans)) {
                Ok(Some(end)) => (end, true),
                Ok(None) => (sbuf.len(), false),
                Err(_) => return server_failed(sent, Termination::ServerAborted),
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
            return Err(RelayError {
                sent,
                ending: Termination::ClientAborted,
            });
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
            Ok(0) if framing == ResponseBody::UntilClose => return Ok(sent),
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return server_failed(sent, Termination::ServerDataTimeout);
            }
            Ok(0) | Err(_) => return server_failed(sent, Termination::ServerAborted),
            Ok(_) => {}
        }
    }
}

/// Answer the client with a response made by the proxy for `t`; ends the
/// log record.
async fn reply<S>(io: &mut S, log: LogRecord, t: Termination, close: bool, limit: Duration)
where
    S: AsyncWrite + Unpin,
{
    let (status, body) = session::local_body(log, t);
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: text/html\r\ncache-control: no-cache\r\ncontent-length: {}\r\n{}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        if close { "connection: close\r\n" } else { "" },
    );
    let _ = write_within(io, head.as_bytes(), body.as_bytes(), limit).await;
    if close {
        let _ = tokio::time::timeout(limit, io.shutdown()).await;
    }
}

/// Fuzz oracles (see [`crate::fuzzing`]).
pub(crate) use self::head::fuzz::{fuzz_request_head, fuzz_response_head};
