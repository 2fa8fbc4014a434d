//! `mode http`: the per-request path.
//!
//! Phases of one request (pingora-like order, HAProxy-like timers):
//!
//! 1. headers received from the client (`Tq` ends): framing checks (request
//!    smuggling: the raw-head verdict from [`crate::h1scan`], then the parsed
//!    headers) and header rewriting (hop-by-hop, `X-Forwarded-*`, `Via`);
//! 2. a server slot is taken (`Tw`: time queued when servers are at maxconn);
//! 3. a pooled connection is reused or a new one opened (`Tc`); a failed
//!    connect is retried (`retries`, `redispatch`), then answered 503;
//! 4. the request is sent and response headers awaited (`Tr`, bounded by
//!    `timeout_server` → 504; a bad or missing response → 502);
//! 5. the response body is streamed back; when it ends (or the client goes
//!    away) the access log line is written (`Tt`) and the connection returns
//!    to the pool once hyper reports it ready for another request.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::backend::{AcquireError, BackendRt, ServerRt, Slot};
use crate::config::{Balance, SendProxy};
use crate::conn::{ConnWatch, RequestGuard};
use crate::frontend::FrontendRt;
use crate::proxy_protocol;
use crate::stats::Counters;

/// Body type on both sides of the proxy.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Body errors: hyper's, or the proxy's own (a client body timeout).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The error a request body yields when the client stalls in the middle of
/// it for longer than `timeout_client`.
#[derive(Debug)]
struct ClientBodyTimeout;

impl std::fmt::Display for ClientBodyTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("client stalled while sending the request body")
    }
}

impl std::error::Error for ClientBodyTimeout {}

/// Target of the access log events.
pub const ACCESS_LOG_TARGET: &str = "sluice::access";

/// Headers that describe one hop, never forwarded (RFC 9110 section 7.6.1),
/// plus the non-standard `Keep-Alive` and `Proxy-Connection`.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";

/// What one client connection shares with its requests.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) fe: Arc<FrontendRt>,
    pub(crate) be: Arc<BackendRt>,
    /// Client address (from the PROXY header when `accept_proxy`).
    pub(crate) client: SocketAddr,
    /// Address the client connected to (PROXY `dst` when present). Read
    /// from the socket only when the backend sends PROXY headers (its one
    /// use); `0.0.0.0:0` otherwise.
    pub(crate) local: SocketAddr,
    pub(crate) https: bool,
    /// Request progress, smuggling verdicts and idle time. `Tq` is measured
    /// from [`ConnWatch::idle_since`].
    pub(crate) watch: Arc<ConnWatch>,
}

/// Per-request timers and identity, written to the access log when the
/// response ends.
#[derive(Debug)]
pub(crate) struct LogRecord {
    ctx: Arc<ConnCtx>,
    start: Instant,
    method: Method,
    uri: String,
    pub(crate) server: Option<Arc<ServerRt>>,
    pub(crate) status: u16,
    tq: Duration,
    pub(crate) tw: Option<Duration>,
    pub(crate) tc: Option<Duration>,
    pub(crate) tr: Option<Duration>,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) bytes_out: u64,
    /// Why the session ended, HAProxy-style two letters: `--` normal, `CD`
    /// client went away during data, `SH` server timeout on headers, `SC`
    /// connect refused, `SQ` queue timeout, `PR` proxy rejected the request.
    pub(crate) termination: &'static str,
    /// Marks the request finished on the connection when the record goes.
    _request: RequestGuard,
}

impl LogRecord {
    /// A record for a request of `ctx` that started at `start`.
    pub(crate) fn new(
        ctx: &Arc<ConnCtx>,
        start: Instant,
        method: Method,
        uri: String,
        request: RequestGuard,
    ) -> Self {
        let (fe, be) = (&ctx.fe, &ctx.be);
        Counters::inc(&fe.stats.requests);
        Counters::inc(&be.stats.requests);
        Self {
            ctx: ctx.clone(),
            start,
            method,
            uri,
            server: None,
            status: 0,
            tq: start.saturating_duration_since(ctx.watch.idle_since()),
            tw: None,
            tc: None,
            tr: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            termination: "--",
            _request: request,
        }
    }

    /// Record the response status in the record and the counters.
    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = status;
        self.ctx.fe.stats.status(status);
        self.ctx.be.stats.status(status);
        if let Some(s) = &self.server {
            s.stats.status(status);
        }
    }

    pub(crate) fn finish(self) {
        let fe = &self.ctx.fe;
        let be = &self.ctx.be;
        let bytes_in = self.bytes_in.load(Relaxed);
        for c in [&fe.stats, &be.stats] {
            Counters::add(&c.bytes_in, bytes_in);
            Counters::add(&c.bytes_out, self.bytes_out);
        }
        if let Some(s) = &self.server {
            Counters::add(&s.stats.bytes_in, bytes_in);
            Counters::add(&s.stats.bytes_out, self.bytes_out);
        }
        let ms = |d: Option<Duration>| {
            d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        };
        let server = self
            .server
            .as_ref()
            .map_or("<NOSRV>", |s| s.cfg.name.as_str());
        let (tq, tw, tc, tr, tt) = (
            ms(Some(self.tq)),
            ms(self.tw),
            ms(self.tc),
            ms(self.tr),
            ms(Some(self.start.elapsed())),
        );
        tracing::info!(
            target: ACCESS_LOG_TARGET,
            client = %self.ctx.client,
            frontend = %fe.cfg.name,
            backend = %be.cfg.name,
            server,
            tq, tw, tc, tr, tt,
            status = self.status,
            bytes_in,
            bytes_out = self.bytes_out,
            termination = self.termination,
            method = %self.method,
            uri = %self.uri,
            "{} [{}] {}/{} {tq}/{tw}/{tc}/{tr}/{tt} {} {} {} \"{} {}\"",
            self.ctx.client, fe.cfg.name, be.cfg.name, server, self.status, self.bytes_out,
            self.termination, self.method, self.uri,
        );
    }
}

/// Request body wrapper counting bytes received from the client, and
/// cutting a client that stalls mid-body for longer than `idle`
/// (`timeout_client`, HAProxy's `timeout client`): the body then fails
/// with [`ClientBodyTimeout`] and `timed_out` is set, so the request is
/// answered 408.
#[derive(Debug)]
struct CountingBody {
    inner: Incoming,
    bytes: Arc<AtomicU64>,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Arc<std::sync::atomic::AtomicBool>,
}

impl Body for CountingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let res = Pin::new(&mut self.inner).poll_frame(cx);
        match res {
            Poll::Ready(Some(Ok(f))) => {
                // Progress: the stall timer starts again.
                self.timer = None;
                if let Some(d) = f.data_ref() {
                    self.bytes.fetch_add(d.len() as u64, Relaxed);
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.idle.is_zero() {
                    return Poll::Pending;
                }
                let idle = self.idle;
                let timer = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Relaxed);
                    return Poll::Ready(Some(Err(Box::new(ClientBodyTimeout))));
                }
                Poll::Pending
            }
        }
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Response body wrapper: counts bytes, holds the server slot until the
/// body is done, and writes the log line when dropped.
#[derive(Debug)]
struct ResponseBody {
    inner: Incoming,
    log: Option<LogRecord>,
    ended: bool,
    _slot: Option<Slot>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let res = Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(BoxError::from);
        match &res {
            Poll::Ready(Some(Ok(f))) => {
                if let (Some(d), Some(log)) = (f.data_ref(), self.log.as_mut()) {
                    log.bytes_out += d.len() as u64;
                }
            }
            Poll::Ready(None) => self.ended = true,
            Poll::Ready(Some(Err(_))) => {
                if let Some(log) = self.log.as_mut() {
                    // The server broke off mid-body: the client sees a
                    // truncated response (status already sent).
                    log.termination = "SD";
                    Counters::inc(&log.ctx.be.stats.err_response);
                }
            }
            Poll::Pending => {}
        }
        res
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Some(mut log) = self.log.take() {
            if !self.ended && !self.inner.is_end_stream() && log.termination == "--" {
                log.termination = "CD";
            }
            log.finish();
        }
    }
}

/// Serve one request. Never fails: every error becomes a response.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let start = Instant::now();
    let (request_guard, ambiguous_framing) = ctx.watch.dispatch();
    let fe = ctx.fe.clone();
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |p| p.to_string());
    let mut log = LogRecord::new(&ctx, start, req.method().clone(), uri, request_guard);

    if ambiguous_framing {
        // Seen in the raw head by the reader (`h1scan`): hyper may already
        // have resolved it, the backend might not.
        Counters::inc(&fe.stats.err_request);
        log.termination = "PR";
        return Ok(local_reply(
            log,
            StatusCode::BAD_REQUEST,
            "Ambiguous request framing (Content-Length with Transfer-Encoding, conflicting Content-Length, or a folded header).",
            true,
        ));
    }

    if let Err(why) = check_request(&req) {
        Counters::inc(&fe.stats.err_request);
        log.termination = "PR";
        return Ok(local_reply(log, StatusCode::BAD_REQUEST, why, true));
    }
    if req.method() == Method::CONNECT {
        log.termination = "PR";
        return Ok(local_reply(
            log,
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not supported.",
            true,
        ));
    }

    let upgrade = is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    rewrite_request(&ctx, &mut req, upgrade);
    let (parts, body) = req.into_parts();
    let body_timed_out = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let body = CountingBody {
        inner: body,
        bytes: log.bytes_in.clone(),
        idle: fe.cfg.timeout_client,
        timer: None,
        timed_out: body_timed_out.clone(),
    };
    let mut req = Request::from_parts(parts, body.boxed_unsync());

    // Phases 2 and 3: slot and connection, with retries.
    let (slot, mut sender, mut pooled) =
        match pick_and_connect(&ctx, &mut log, &HyperConnector(&ctx)).await {
            Ok(x) => x,
            Err(no) => return Ok(local_reply(log, no.status, no.msg, no.close)),
        };
    let be = ctx.be.clone();

    // Phase 4: send and wait for response headers.
    let t = Instant::now();
    let resp = loop {
        match tokio::time::timeout(be.cfg.timeout_server, sender.try_send_request(req)).await {
            Err(_) => {
                Counters::inc(&be.stats.err_timeout);
                Counters::inc(&slot.server.stats.err_timeout);
                log.termination = "sH";
                return Ok(local_reply(
                    log,
                    StatusCode::GATEWAY_TIMEOUT,
                    "The server didn't respond in time.",
                    true,
                ));
            }
            Ok(Ok(resp)) => break resp,
            Ok(Err(mut e)) => {
                // A pooled connection that turned out closed before the
                // request was written: the request is intact, use a new one.
                if pooled && let Some(r) = e.take_message() {
                    req = r;
                    match server_conn_fresh(&ctx, &slot.server).await {
                        Ok(s) => {
                            sender = s;
                            pooled = false;
                            continue;
                        }
                        Err(_) => {
                            Counters::inc(&slot.server.stats.err_connect);
                            Counters::inc(&be.stats.err_connect);
                            log.termination = "SC";
                            return Ok(local_reply(
                                log,
                                StatusCode::SERVICE_UNAVAILABLE,
                                "No server is available to handle this request.",
                                false,
                            ));
                        }
                    }
                }
                if body_timed_out.load(Relaxed) {
                    // The client, not the server, broke the exchange.
                    Counters::inc(&fe.stats.err_request);
                    log.termination = "cD";
                    return Ok(local_reply(
                        log,
                        StatusCode::REQUEST_TIMEOUT,
                        "The client did not send the request body in time.",
                        true,
                    ));
                }
                tracing::debug!(server = %slot.server.cfg.name, error = %e.error(), "bad response");
                Counters::inc(&be.stats.err_response);
                Counters::inc(&slot.server.stats.err_response);
                log.termination = "SH";
                return Ok(local_reply(
                    log,
                    StatusCode::BAD_GATEWAY,
                    "The server returned an invalid or incomplete response.",
                    true,
                ));
            }
        }
    };
    log.tr = Some(t.elapsed());
    let mut resp = resp;
    let status = resp.status();
    log.set_status(status.as_u16());

    // Phase 5: response.
    if status == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        let (mut parts, _) = resp.into_parts();
        remove_hop_by_hop(&mut parts.headers, true);
        let log_ctx = log;
        tokio::spawn(async move {
            let tunnel = async {
                let (c, s) = tokio::try_join!(client_upgrade, server_upgrade).ok()?;
                tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s))
                    .await
                    .ok()
            };
            if let Some((up, down)) = tunnel.await {
                let mut log = log_ctx;
                log.bytes_in.fetch_add(up, Relaxed);
                log.bytes_out = down;
                log.finish();
            } else {
                log_ctx.finish();
            }
            drop(slot);
        });
        return Ok(Response::from_parts(parts, empty()));
    }
    if pooled_allowed(&be) {
        let server = slot.server.clone();
        tokio::spawn(async move {
            // Ready once the response body has been read to the end; fails
            // if the connection closed (body dropped, or `Connection: close`).
            if sender.ready().await.is_ok() {
                server.pool.checkin(sender);
            }
        });
    }
    let (mut parts, body) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    if fe.cfg.via {
        append_via(&mut parts.headers, parts.version);
    }
    let body = ResponseBody {
        inner: body,
        log: Some(log),
        ended: false,
        _slot: Some(slot),
    };
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}

/// How a request path gets a connection to a server.
pub(crate) trait Connector: Sync {
    type Conn: Send;
    /// A connection to `server`, and whether it came from a pool.
    fn connect<'a>(
        &'a self,
        server: &'a ServerRt,
    ) -> impl Future<Output = std::io::Result<(Self::Conn, bool)>> + Send + 'a;
}

/// Connections driven by hyper, from [`ServerRt::pool`] or new.
struct HyperConnector<'c>(&'c ConnCtx);

impl Connector for HyperConnector<'_> {
    type Conn = SendRequest<ProxyBody>;
    fn connect<'a>(
        &'a self,
        server: &'a ServerRt,
    ) -> impl Future<Output = std::io::Result<(Self::Conn, bool)>> + Send + 'a {
        server_conn(self.0, server)
    }
}

/// The reply for a request that got no server connection.
#[derive(Debug)]
pub(crate) struct NoConn {
    pub(crate) status: StatusCode,
    pub(crate) msg: &'static str,
    pub(crate) close: bool,
}

impl NoConn {
    pub(crate) const NO_SERVER: Self = Self {
        status: StatusCode::SERVICE_UNAVAILABLE,
        msg: "No server is available to handle this request.",
        close: false,
    };
}

/// Phases 2 and 3 of a request, shared by hyper's path and the HTTP/1 fast
/// path: take a server slot (`Tw`) and a connection to it (`Tc`) from
/// `connect` (which says whether the connection came from a pool); a failed
/// connect is retried `retries` times, on another server with `redispatch`.
/// On failure the log record carries the termination code.
pub(crate) async fn pick_and_connect<C: Connector>(
    ctx: &ConnCtx,
    log: &mut LogRecord,
    connector: &C,
) -> Result<(Slot, C::Conn, bool), NoConn> {
    let be = &ctx.be;
    let path = (be.cfg.balance == Balance::Uri).then(|| log.uri.clone());
    let mut tried: Vec<usize> = Vec::new();
    let mut same_server: Option<Slot> = None;
    let mut failures: u32 = 0;
    loop {
        let slot = match same_server.take() {
            Some(s) => s,
            None => {
                let t = Instant::now();
                let mut r = be.acquire(ctx.client.ip(), path.as_deref(), &tried).await;
                if r.as_ref().err() == Some(&AcquireError::NoServer) && !tried.is_empty() {
                    // Every server was tried once: go around again.
                    tried.clear();
                    r = be.acquire(ctx.client.ip(), path.as_deref(), &tried).await;
                }
                *log.tw.get_or_insert(Duration::ZERO) += t.elapsed();
                match r {
                    Ok(s) => s,
                    Err(AcquireError::NoServer) => {
                        log.termination = "SC";
                        return Err(NoConn::NO_SERVER);
                    }
                    Err(AcquireError::QueueFull | AcquireError::QueueTimeout) => {
                        log.termination = "sQ";
                        return Err(NoConn {
                            msg: "Timed out waiting for a free server.",
                            ..NoConn::NO_SERVER
                        });
                    }
                }
            }
        };
        log.server = Some(slot.server.clone());
        let t = Instant::now();
        match connector.connect(&slot.server).await {
            Ok((conn, pooled)) => {
                log.tc = Some(t.elapsed());
                return Ok((slot, conn, pooled));
            }
            Err(e) => {
                tracing::debug!(server = %slot.server.cfg.name, error = %e, "connect failed");
                Counters::inc(&slot.server.stats.err_connect);
                Counters::inc(&be.stats.err_connect);
                failures += 1;
                if failures > be.cfg.retries {
                    log.termination = "SC";
                    return Err(NoConn::NO_SERVER);
                }
                Counters::inc(&be.stats.retries);
                Counters::inc(&slot.server.stats.retries);
                if be.cfg.redispatch && be.servers.len() > 1 {
                    Counters::inc(&be.stats.redispatches);
                    Counters::inc(&slot.server.stats.redispatches);
                    tried.push(slot.index);
                } else {
                    same_server = Some(slot);
                }
            }
        }
    }
}

/// Reject requests whose framing two parsers could read differently
/// (request smuggling, RFC 9112 section 6.3): both `Content-Length` and
/// `Transfer-Encoding`, or several differing `Content-Length` values.
/// hyper rejects the second itself; checking again costs nothing.
fn check_request<B>(req: &Request<B>) -> Result<(), &'static str> {
    let h = req.headers();
    if h.contains_key(header::TRANSFER_ENCODING) && h.contains_key(header::CONTENT_LENGTH) {
        return Err("Both Content-Length and Transfer-Encoding.");
    }
    let mut cls = h.get_all(header::CONTENT_LENGTH).iter();
    if let Some(first) = cls.next()
        && cls.any(|v| v != first)
    {
        return Err("Conflicting Content-Length values.");
    }
    Ok(())
}

fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && connection_tokens(h).any(|t| t.eq_ignore_ascii_case("upgrade"))
}

fn connection_tokens(h: &HeaderMap) -> impl Iterator<Item = &str> {
    h.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Drop hop-by-hop headers and those named in `Connection`. With
/// `keep_upgrade`, `Upgrade` survives and `Connection: upgrade` is re-added,
/// since an upgrade must reach the next hop.
fn remove_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let listed: Vec<HeaderName> = connection_tokens(h)
        .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
        .collect();
    for name in listed {
        if !(keep_upgrade && name == header::UPGRADE) {
            h.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        if !(keep_upgrade && name == "upgrade") {
            h.remove(name);
        }
    }
    if keep_upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn append_via(h: &mut HeaderMap, version: Version) {
    let proto = match version {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    let mine = format!("{proto} sluice");
    let value = match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {mine}"),
        None => mine,
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(header::VIA, v);
    }
}

fn rewrite_request<B>(ctx: &ConnCtx, req: &mut Request<B>, upgrade: bool) {
    let version = req.version();
    // HTTP/2 requests carry the authority in the URI, not in Host.
    if !req.headers().contains_key(header::HOST)
        && let Some(auth) = req.uri().authority()
        && let Ok(v) = HeaderValue::from_str(auth.as_str())
    {
        req.headers_mut().insert(header::HOST, v);
    }
    // Servers get origin-form (RFC 9112 section 3.2.1).
    let origin = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Ok(uri) = origin.parse() {
        *req.uri_mut() = uri;
    }
    *req.version_mut() = Version::HTTP_11;
    let h = req.headers_mut();
    remove_hop_by_hop(h, upgrade);
    if ctx.fe.cfg.forwardfor {
        let ip = ctx.client.ip().to_canonical().to_string();
        // Several X-Forwarded-For lines are one list (RFC 9110 section 5.3).
        let prev: Vec<&str> = h
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let value = if prev.is_empty() {
            ip
        } else {
            format!("{}, {ip}", prev.join(", "))
        };
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(X_FORWARDED_FOR, v);
        }
        let proto = if ctx.https { "https" } else { "http" };
        h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if ctx.fe.cfg.via {
        append_via(h, version);
    }
}

/// Connections carrying a PROXY header belong to one client: never pooled.
pub(crate) fn pooled_allowed(be: &BackendRt) -> bool {
    be.cfg.send_proxy == SendProxy::None
}

/// A connection to `server`: an idle pooled one if any (`true`), else new.
async fn server_conn(
    ctx: &ConnCtx,
    server: &ServerRt,
) -> std::io::Result<(SendRequest<ProxyBody>, bool)> {
    if pooled_allowed(&ctx.be)
        && let Some(s) = server.pool.checkout()
    {
        return Ok((s, true));
    }
    Ok((server_conn_fresh(ctx, server).await?, false))
}

/// A new connection to `server`, with the PROXY header the backend asks for.
pub(crate) async fn connect_fresh(
    ctx: &ConnCtx,
    server: &ServerRt,
) -> std::io::Result<crate::io::ServerStream> {
    let preamble = match ctx.be.cfg.send_proxy {
        SendProxy::None => None,
        SendProxy::V1 => Some(proxy_protocol::encode_v1(ctx.client, ctx.local)),
        SendProxy::V2 => Some(proxy_protocol::encode_v2(ctx.client, ctx.local)),
    };
    ctx.be.connect(server, preamble.as_deref()).await
}

async fn server_conn_fresh(
    ctx: &ConnCtx,
    server: &ServerRt,
) -> std::io::Result<SendRequest<ProxyBody>> {
    let stream = connect_fresh(ctx, server).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "server connection ended with an error");
        }
    });
    Ok(sender)
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new())
        .map_err(|never| -> BoxError { match never {} })
        .boxed_unsync()
}

/// The body of a response made by the proxy itself (HAProxy-like HTML);
/// records the status and ends the log record.
pub(crate) fn local_body(mut log: LogRecord, status: StatusCode, msg: &str) -> String {
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!(
        "<html><body><h1>{} {reason}</h1>\n{msg}\n</body></html>\n",
        status.as_u16()
    );
    log.set_status(status.as_u16());
    log.bytes_out = body.len() as u64;
    log.finish();
    body
}

/// A response made by the proxy itself.
fn local_reply(log: LogRecord, status: StatusCode, msg: &str, close: bool) -> Response<ProxyBody> {
    let body = local_body(log, status, msg);
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| -> BoxError { match never {} })
            .boxed_unsync(),
    );
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if close {
        // The request's framing or state is suspect: do not reuse the connection.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("Upgrade"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h.get("upgrade").unwrap(), "websocket");
        assert_eq!(h.get("connection").unwrap(), "upgrade");
    }

    #[test]
    fn smuggling_checks() {
        let req = |hs: &[(&str, &str)]| {
            let mut r = Request::new(());
            for (k, v) in hs {
                r.headers_mut().append(
                    HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            r
        };
        assert!(check_request(&req(&[("content-length", "5")])).is_ok());
        assert!(check_request(&req(&[("content-length", "5"), ("content-length", "5")])).is_ok());
        assert!(check_request(&req(&[("content-length", "5"), ("content-length", "6")])).is_err());
        assert!(
            check_request(&req(&[
                ("content-length", "5"),
                ("transfer-encoding", "chunked")
            ]))
            .is_err()
        );
    }
}
