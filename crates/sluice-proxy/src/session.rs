//! What every proxied request or session shares, whichever engine serves
//! it: the client connection's context, the access-log record with
//! HAProxy's timers, and phases 2 and 3 of a request (a server slot and a
//! connection to it, with retries and redispatch).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::backend::{AcquireError, BackendRt, ServerRt, Slot};
use crate::config::{L7Algorithm, SendProxy};
use crate::conn::{ConnWatch, RequestGuard};
use crate::frontend::FrontendRt;
use crate::io::ServerStream;
use crate::lifecycle::Lifecycle;
use crate::policy::Additions;
use crate::proxy_protocol;
use crate::stats::Counters;
use crate::termination::Termination;

/// Target of the access log events.
pub const ACCESS_LOG_TARGET: &str = "sluice::access";

/// What one HTTP client connection shares with its requests.
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
    /// What the header policy adds to this connection's requests.
    pub(crate) add: Additions,
    /// Request progress, policy verdicts and idle time. `Tq` is measured
    /// from [`ConnWatch::idle_since`].
    pub(crate) watch: Arc<ConnWatch>,
    /// Shutdown phase and the connection's hold (a tunnel keeps it).
    pub(crate) life: Lifecycle,
}

/// Where phases 2 and 3 of a request (or a `mode tcp` session) got to:
/// the server picked, `Tw` (time queued for a slot) and `Tc` (time to get
/// a connection).
#[derive(Debug, Default)]
pub(crate) struct ConnectTimes {
    pub(crate) server: Option<Arc<ServerRt>>,
    pub(crate) tw: Option<Duration>,
    pub(crate) tc: Option<Duration>,
}

/// Per-request timers and identity, written to the access log when the
/// response ends.
#[derive(Debug)]
pub(crate) struct LogRecord {
    ctx: Arc<ConnCtx>,
    start: Instant,
    method: Method,
    pub(crate) uri: String,
    pub(crate) status: u16,
    tq: Duration,
    pub(crate) connect: ConnectTimes,
    pub(crate) tr: Option<Duration>,
    pub(crate) bytes_in: Arc<AtomicU64>,
    pub(crate) bytes_out: u64,
    termination: Termination,
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
            status: 0,
            tq: start.saturating_duration_since(ctx.watch.idle_since()),
            connect: ConnectTimes::default(),
            tr: None,
            bytes_in: Arc::new(AtomicU64::new(0)),
            bytes_out: 0,
            termination: Termination::Normal,
            _request: request,
        }
    }

    /// The server the request went to, if one was picked.
    pub(crate) fn server(&self) -> Option<&Arc<ServerRt>> {
        self.connect.server.as_ref()
    }

    /// Record why the request ended and count it; the first ending that is
    /// not normal wins (a client leaving after a server error stays `SD`).
    pub(crate) fn end(&mut self, t: Termination) {
        if self.termination != Termination::Normal {
            return;
        }
        self.termination = t;
        t.count(
            &self.ctx.fe.stats,
            &self.ctx.be.stats,
            self.server().map(|s| &s.stats),
        );
    }

    /// Record the response status in the record and the counters.
    pub(crate) fn set_status(&mut self, status: u16) {
        self.status = status;
        self.ctx.fe.stats.status(status);
        self.ctx.be.stats.status(status);
        if let Some(s) = self.server() {
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
        if let Some(s) = self.server() {
            Counters::add(&s.stats.bytes_in, bytes_in);
            Counters::add(&s.stats.bytes_out, self.bytes_out);
        }
        let server = self.server().map_or("<NOSRV>", |s| s.cfg.name.as_str());
        let (tq, tw, tc, tr, tt) = (
            ms(Some(self.tq)),
            ms(self.connect.tw),
            ms(self.connect.tc),
            ms(self.tr),
            ms(Some(self.start.elapsed())),
        );
        let termination = self.termination.code();
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
            termination,
            method = %self.method,
            uri = %self.uri,
            "{} [{}] {}/{} {tq}/{tw}/{tc}/{tr}/{tt} {} {} {termination} \"{} {}\"",
            self.ctx.client, fe.cfg.name, be.cfg.name, server, self.status, self.bytes_out,
            self.method, self.uri,
        );
    }
}

/// A timer for the log: milliseconds, `-1` when the phase was not reached.
pub(crate) fn ms(d: Option<Duration>) -> i64 {
    d.map_or(-1, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
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

/// New connections only, with the PROXY header the backend asks for.
pub(crate) struct FreshConnector<'a> {
    pub(crate) be: &'a BackendRt,
    pub(crate) client: SocketAddr,
    pub(crate) local: SocketAddr,
}

impl Connector for FreshConnector<'_> {
    type Conn = ServerStream;
    async fn connect(&self, server: &ServerRt) -> std::io::Result<(ServerStream, bool)> {
        Ok((
            connect_fresh(self.be, server, self.client, self.local).await?,
            false,
        ))
    }
}

/// Phases 2 and 3, shared by both HTTP engines and `mode tcp`: take a
/// server slot (`Tw`) and a connection to it (`Tc`) from `connector`;
/// a failed connect is retried `retries` times, on another server with
/// `redispatch`. `path` is the request path for `balance uri`.
pub(crate) async fn pick_and_connect<C: Connector>(
    be: &BackendRt,
    client: IpAddr,
    path: Option<&str>,
    times: &mut ConnectTimes,
    connector: &C,
) -> Result<(Slot, C::Conn, bool), Termination> {
    let path = path.filter(|_| be.cfg.balance == L7Algorithm::Uri);
    let mut tried: Vec<usize> = Vec::new();
    let mut same_server: Option<Slot> = None;
    let mut failures: u32 = 0;
    loop {
        let slot = match same_server.take() {
            Some(s) => s,
            None => {
                let t = Instant::now();
                let mut r = be.acquire(client, path, &tried).await;
                if r.as_ref().err() == Some(&AcquireError::NoServer) && !tried.is_empty() {
                    // Every server was tried once: go around again.
                    tried.clear();
                    r = be.acquire(client, path, &tried).await;
                }
                *times.tw.get_or_insert(Duration::ZERO) += t.elapsed();
                match r {
                    Ok(s) => s,
                    Err(AcquireError::NoServer) => return Err(Termination::NoServer),
                    Err(AcquireError::QueueFull | AcquireError::QueueTimeout) => {
                        return Err(Termination::QueueTimeout);
                    }
                }
            }
        };
        times.server = Some(slot.server.clone());
        let t = Instant::now();
        match connector.connect(&slot.server).await {
            Ok((conn, pooled)) => {
                times.tc = Some(t.elapsed());
                return Ok((slot, conn, pooled));
            }
            Err(e) => {
                tracing::debug!(server = %slot.server.cfg.name, error = %e, "connect failed");
                count_connect_failure(be, &slot.server);
                failures += 1;
                if failures > be.cfg.retries {
                    return Err(Termination::NoServer);
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

/// Count one failed connect to `server`.
pub(crate) fn count_connect_failure(be: &BackendRt, server: &ServerRt) {
    Counters::inc(&server.stats.err_connect);
    Counters::inc(&be.stats.err_connect);
}

/// Connections carrying a PROXY header belong to one client: never pooled.
pub(crate) fn pooled_allowed(be: &BackendRt) -> bool {
    be.cfg.send_proxy == SendProxy::None
}

/// A new connection to `server`, with the PROXY header the backend asks
/// for (`client` and `local` are the addresses it carries).
pub(crate) async fn connect_fresh(
    be: &BackendRt,
    server: &ServerRt,
    client: SocketAddr,
    local: SocketAddr,
) -> std::io::Result<ServerStream> {
    let preamble = match be.cfg.send_proxy {
        SendProxy::None => None,
        SendProxy::V1 => Some(proxy_protocol::encode_v1(client, local)),
        SendProxy::V2 => Some(proxy_protocol::encode_v2(client, local)),
    };
    be.connect(server, preamble.as_deref()).await
}

/// The body of a response made by the proxy itself for `t` (HAProxy-like
/// HTML); records the ending and status, and ends the log record.
pub(crate) fn local_body(mut log: LogRecord, t: Termination) -> (StatusCode, String) {
    let status = t.status();
    let reason = status.canonical_reason().unwrap_or("");
    let body = format!(
        "<html><body><h1>{} {reason}</h1>\n{}\n</body></html>\n",
        status.as_u16(),
        t.message()
    );
    log.end(t);
    log.set_status(status.as_u16());
    log.bytes_out = body.len() as u64;
    log.finish();
    (status, body)
}
