//! `mode http`, hyper's path: HTTP/2, and every HTTP/1 request the fast
//! path ([`crate::h1fast`]) hands over. Policy (what is refused, which
//! headers cross, what is added) is [`crate::policy`]'s; this module is
//! transport: hyper's parsed messages in, hyper's connections out.
//!
//! Phases of one request (pingora-like order, HAProxy-like timers):
//!
//! 1. [`admit`]: the head as the client sent it is checked with the
//!    policy (the raw scanner's verdict for HTTP/1, the parsed head for
//!    HTTP/2); a refused request is answered with the policy's status and
//!    the connection closes;
//! 2. [`rewrite_request`]: header lines as the policy says;
//! 3. a server slot and a connection ([`session::pick_and_connect`]: `Tw`,
//!    `Tc`, retries, redispatch, 503);
//! 4. [`send`]: the request goes out and the response head comes back
//!    (`Tr`); `timeout_server` is the server's *inactivity*, so a request
//!    body that keeps moving is never cut (504 only after that long with
//!    nothing from either side of the server connection);
//! 5. [`respond`]: a `101` becomes a tunnel ([`crate::relay`], with
//!    `timeout_tunnel`); any other response is streamed back with its
//!    headers rewritten; the access log line is written when it ends.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, Version};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::backend::{ServerRt, Slot};
use crate::body::{self, BoxError, ProxyBody};
use crate::io::Activity;
use crate::policy::{self, ConnectionOptions, Disposition, RequestBody, Violation};
use crate::relay;
use crate::session::{self, ConnCtx, Connector, LogRecord};
use crate::termination::Termination;

/// The error a body yields when its sender stalls in the middle of it for
/// longer than its inactivity limit.
#[derive(Debug)]
struct Stalled;

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the peer stalled in the middle of a body")
    }
}

impl std::error::Error for Stalled {}

/// Cuts a body whose frames stop coming for `limit` (zero: never).
#[derive(Debug)]
struct StallTimer {
    limit: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallTimer {
    fn new(limit: Duration) -> Self {
        Self { limit, timer: None }
    }

    /// A frame arrived: the timer starts again at the next wait.
    fn progress(&mut self) {
        self.timer = None;
    }

    /// The body is pending: true once the limit has passed.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.limit.is_zero() {
            return false;
        }
        let limit = self.limit;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).is_ready()
    }
}

/// Request body wrapper: counts bytes received from the client, records
/// progress (the server connection is not idle while the body moves), and
/// cuts a client that stalls mid-body for longer than `timeout_client`
/// (HAProxy's `timeout client`): the body then fails and `timed_out` is
/// set, so the request is answered 408.
#[derive(Debug)]
struct RequestBodyIn {
    inner: Incoming,
    bytes: Arc<AtomicU64>,
    progress: Arc<Activity>,
    stall: StallTimer,
    timed_out: Arc<AtomicBool>,
}

impl Body for RequestBodyIn {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                self.stall.progress();
                let n = f.data_ref().map_or(0, Bytes::len);
                self.bytes.fetch_add(n as u64, Relaxed);
                self.progress.touch(n);
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                if self.stall.expired(cx) {
                    self.timed_out.store(true, Relaxed);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
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

/// Response body wrapper: counts bytes, cuts a server that stalls mid-body
/// for `timeout_server`, holds the server slot until the body is done,
/// and writes the log line when dropped.
#[derive(Debug)]
struct ResponseBodyOut {
    inner: Incoming,
    log: Option<LogRecord>,
    stall: StallTimer,
    ended: bool,
    _slot: Option<Slot>,
}

impl ResponseBodyOut {
    fn end(&mut self, t: Termination) {
        if let Some(log) = self.log.as_mut() {
            log.end(t);
        }
    }
}

impl Body for ResponseBodyOut {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                self.stall.progress();
                if let (Some(d), Some(log)) = (f.data_ref(), self.log.as_mut()) {
                    log.bytes_out += d.len() as u64;
                }
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                // The server broke off mid-body: the client sees a
                // truncated response (status already sent).
                self.end(Termination::ServerAborted);
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Pending => {
                if self.stall.expired(cx) {
                    self.end(Termination::ServerDataTimeout);
                    return Poll::Ready(Some(Err(Box::new(Stalled))));
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

impl Drop for ResponseBodyOut {
    fn drop(&mut self) {
        if let Some(mut log) = self.log.take() {
            if !self.ended && !self.inner.is_end_stream() {
                log.end(Termination::ClientAborted);
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
    let (guard, scanned) = ctx.watch.dispatch();
    let uri = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().to_string(), |p| p.to_string());
    let mut log = LogRecord::new(&ctx, start, req.method().clone(), uri, guard);

    // Phases 1 and 2: the policy's verdict, then the head to send.
    let verdict = match admit(&req, scanned) {
        Ok(v) => v,
        Err(v) => return Ok(local_reply(log, Termination::Rejected(v))),
    };
    let client_upgrade = verdict.upgrade.then(|| hyper::upgrade::on(&mut req));
    let timed_out = Arc::new(AtomicBool::new(false));
    let progress = Activity::new();
    let req = rewrite_request(&ctx, req, &verdict, &log, &progress, &timed_out);

    // Phase 3: a slot and a connection, with retries.
    let be = &ctx.be;
    let path = log.uri.clone();
    let connected = session::pick_and_connect(
        be,
        ctx.client.ip(),
        Some(&path),
        &mut log.connect,
        &HyperConnector(&ctx),
    )
    .await;
    let (slot, sender, pooled) = match connected {
        Ok(x) => x,
        Err(t) => return Ok(local_reply(log, t)),
    };

    // Phase 4: the request out, the response head back.
    let t = Instant::now();
    let resp = match send(&ctx, &slot.server, sender, pooled, req, &progress).await {
        Ok(r) => r,
        Err(e) => {
            let t = if timed_out.load(Relaxed) {
                // The client, not the server, broke the exchange.
                Termination::ClientBodyTimeout
            } else {
                e
            };
            return Ok(local_reply(log, t));
        }
    };
    log.tr = Some(t.elapsed());

    // Phase 5: the response.
    Ok(respond(&ctx, log, slot, resp, client_upgrade))
}

/// Phase 1: the policy's verdict on the request as the client sent it.
/// For HTTP/1 the raw scanner saw the head before hyper parsed it
/// (`scanned`); the parsed head is checked too, which for HTTP/2 is the
/// only check.
fn admit<B>(req: &Request<B>, scanned: Option<Violation>) -> Result<policy::Request, Violation> {
    if let Some(v) = scanned {
        return Err(v);
    }
    let version = match req.version() {
        Version::HTTP_10 | Version::HTTP_09 => policy::Version::Http10,
        _ => policy::Version::Http11,
    };
    let target = req.uri().to_string();
    let fields = fields_of(req.headers());
    policy::check_request(
        req.method().as_str(),
        &target,
        version,
        fields.iter().copied(),
    )
}

/// A header map's lines as the policy reads them.
fn fields_of(h: &HeaderMap) -> Vec<(&str, &[u8])> {
    h.iter().map(|(n, v)| (n.as_str(), v.as_bytes())).collect()
}

/// Phase 2: the request to send, with the policy's header lines, origin
/// form, HTTP/1.1, and the body wrapped to count and watch it.
fn rewrite_request(
    ctx: &ConnCtx,
    req: Request<Incoming>,
    verdict: &policy::Request,
    log: &LogRecord,
    progress: &Arc<Activity>,
    timed_out: &Arc<AtomicBool>,
) -> Request<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let old = std::mem::take(&mut parts.headers);
    let list = fields_of(&old);
    let fields = || list.iter().copied();
    let conn = ConnectionOptions::of(fields()).unwrap_or_default();
    let h = &mut parts.headers;
    for (name, value) in &old {
        match policy::request_disposition(name.as_str(), &conn, verdict, &ctx.add) {
            Disposition::Keep => {
                h.append(name.clone(), value.clone());
            }
            Disposition::Drop
            | Disposition::Framing
            | Disposition::Host
            | Disposition::Rewritten => {}
        }
    }
    // HTTP/2 carries the authority in the URI; the policy reports it for
    // absolute-form targets too: either way it becomes Host.
    policy::request_additions(fields(), verdict, &ctx.add, h);
    // A Content-Length body keeps one canonical length; a chunked one is
    // chunked again by hyper as it sends it, said explicitly: hyper would
    // send a GET whose length it does not know without its body.
    match verdict.body {
        RequestBody::Length(n) => {
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        RequestBody::Chunked => {
            h.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        RequestBody::None => {}
    }
    if let Ok(uri) = verdict.origin.parse() {
        parts.uri = uri;
    }
    parts.version = Version::HTTP_11;
    let body = RequestBodyIn {
        inner: body,
        bytes: log.bytes_in.clone(),
        progress: progress.clone(),
        stall: StallTimer::new(ctx.fe.cfg.timeout_client),
        timed_out: timed_out.clone(),
    };
    Request::from_parts(parts, body.boxed_unsync())
}

/// Phase 4: send the request and wait for the response head. The server
/// has `timeout_server` of inactivity: the wait restarts whenever the
/// request body moves. A pooled connection that turns out closed before
/// the request was written is replaced by a new one.
async fn send(
    ctx: &ConnCtx,
    server: &ServerRt,
    mut sender: SendRequest<ProxyBody>,
    mut pooled: bool,
    mut req: Request<ProxyBody>,
    progress: &Activity,
) -> Result<(Response<Incoming>, SendRequest<ProxyBody>), Termination> {
    let limit = ctx.be.cfg.timeout_server;
    loop {
        let waited = {
            let exchange = sender.try_send_request(req);
            tokio::pin!(exchange);
            loop {
                let idle = progress.idle();
                if idle >= limit {
                    break None;
                }
                tokio::select! {
                    r = &mut exchange => break Some(r),
                    () = tokio::time::sleep(limit - idle) => {}
                }
            }
        };
        match waited {
            None => return Err(Termination::ServerTimeout),
            Some(Ok(resp)) => return Ok((resp, sender)),
            Some(Err(mut e)) => {
                if pooled && let Some(r) = e.take_message() {
                    req = r;
                    match server_conn_fresh(ctx, server).await {
                        Ok(s) => {
                            sender = s;
                            pooled = false;
                            continue;
                        }
                        Err(_) => {
                            session::count_connect_failure(&ctx.be, server);
                            return Err(Termination::NoServer);
                        }
                    }
                }
                tracing::debug!(server = %server.cfg.name, error = %e.error(), "bad response");
                return Err(Termination::BadResponse);
            }
        }
    }
}

/// Phase 5: a tunnel after `101`, else the response streamed back.
fn respond(
    ctx: &Arc<ConnCtx>,
    mut log: LogRecord,
    slot: Slot,
    (mut resp, sender): (Response<Incoming>, SendRequest<ProxyBody>),
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ProxyBody> {
    let status = resp.status();
    log.set_status(status.as_u16());
    let version = match resp.version() {
        Version::HTTP_10 => policy::Version::Http10,
        _ => policy::Version::Http11,
    };
    let server_upgrade = (status == http::StatusCode::SWITCHING_PROTOCOLS
        && client_upgrade.is_some())
    .then(|| hyper::upgrade::on(&mut resp));
    if rewrite_response(ctx, &mut resp, version, server_upgrade.is_some()).is_err() {
        return local_reply(log, Termination::BadResponse);
    }
    let (parts, body) = resp.into_parts();
    if let (Some(client), Some(server)) = (client_upgrade, server_upgrade) {
        tunnel(ctx, log, slot, client, server);
        return Response::from_parts(parts, body::empty());
    }
    if session::pooled_allowed(&ctx.be) {
        let server = slot.server.clone();
        let mut sender = sender;
        tokio::spawn(async move {
            // Ready once the response body has been read to the end; fails
            // if the connection closed (body dropped, or `Connection: close`).
            if sender.ready().await.is_ok() {
                server.pool.checkin(sender);
            }
        });
    }
    let body = ResponseBodyOut {
        inner: body,
        log: Some(log),
        stall: StallTimer::new(ctx.be.cfg.timeout_server),
        ended: false,
        _slot: Some(slot),
    };
    Response::from_parts(parts, body.boxed_unsync())
}

/// The response's header lines as the policy says (hyper frames the body
/// towards the client: a `Content-Length` is kept only when it is the
/// framing).
fn rewrite_response(
    ctx: &ConnCtx,
    resp: &mut Response<Incoming>,
    version: policy::Version,
    upgrading: bool,
) -> Result<(), Violation> {
    let old = std::mem::take(resp.headers_mut());
    let list = fields_of(&old);
    let fields = || list.iter().copied();
    let conn = ConnectionOptions::of(fields())?;
    let chunked = old.contains_key(header::TRANSFER_ENCODING);
    let h = resp.headers_mut();
    for (name, value) in &old {
        let keep = match policy::response_disposition(name.as_str(), &conn, &ctx.add, upgrading) {
            Disposition::Keep => true,
            Disposition::Framing => *name == header::CONTENT_LENGTH && !chunked,
            Disposition::Drop | Disposition::Host | Disposition::Rewritten => false,
        };
        if keep {
            h.append(name.clone(), value.clone());
        }
    }
    policy::response_additions(fields(), version, &ctx.add, upgrading, h);
    Ok(())
}

/// Relay an upgraded connection (WebSocket, ...) both ways in a task of
/// its own that holds the client connection's hold (maxconn, drain) and
/// the server slot, with the tunnel's idle limits, cut by the shutdown.
fn tunnel(
    ctx: &Arc<ConnCtx>,
    mut log: LogRecord,
    slot: Slot,
    client: hyper::upgrade::OnUpgrade,
    server: hyper::upgrade::OnUpgrade,
) {
    let limits = relay::tunnel_limits(&ctx.fe, &ctx.be);
    let life = ctx.life.clone();
    tokio::spawn(async move {
        let Ok((c, s)) = tokio::try_join!(client, server) else {
            log.end(Termination::ClientAborted);
            log.finish();
            return;
        };
        let end =
            relay::copy_both_ways(TokioIo::new(c), TokioIo::new(s), limits, life.phase.clone())
                .await;
        log.bytes_in.fetch_add(end.up, Relaxed);
        log.bytes_out = end.down;
        log.end(end.termination);
        log.finish();
        drop(slot);
        drop(life);
    });
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

/// A connection to `server`: an idle pooled one if any (`true`), else new.
async fn server_conn(
    ctx: &ConnCtx,
    server: &ServerRt,
) -> std::io::Result<(SendRequest<ProxyBody>, bool)> {
    if session::pooled_allowed(&ctx.be)
        && let Some(s) = server.pool.checkout()
    {
        return Ok((s, true));
    }
    Ok((server_conn_fresh(ctx, server).await?, false))
}

async fn server_conn_fresh(
    ctx: &ConnCtx,
    server: &ServerRt,
) -> std::io::Result<SendRequest<ProxyBody>> {
    let stream = session::connect_fresh(&ctx.be, server, ctx.client, ctx.local).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .max_headers(policy::MAX_HEADERS)
        .max_buf_size(ctx.fe.cfg.max_header_size.max(MIN_CLIENT_BUF_BYTES))
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

/// hyper's smallest read buffer (it refuses less than 8 KiB).
const MIN_CLIENT_BUF_BYTES: usize = 8 * 1024;

/// A response made by the proxy itself for `t`.
fn local_reply(log: LogRecord, t: Termination) -> Response<ProxyBody> {
    let (status, text) = session::local_body(log, t);
    let mut resp = Response::new(body::full(Bytes::from(text)));
    *resp.status_mut() = status;
    let h: &mut HeaderMap = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if t.closes() {
        // The request's framing or state is suspect: do not reuse the connection.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}
