//! Listeners: the accept loop (maxconn, session rate limit), the PROXY
//! header, TLS, and handing each connection to its engine: `mode tcp`
//! ([`crate::tcp`]), or HTTP/1 (the fast path [`crate::h1fast`] first,
//! hyper's path [`crate::http`] from the first request it hands over) and
//! HTTP/2 (hyper's path).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::config::{Mode, SendProxy};
use crate::conn::{ConnWatch, HttpTimers, Scanned};
use crate::frontend::FrontendRt;
use crate::h1fast::{self, Outcome};
use crate::http;
use crate::io::{Rewind, read_proxy_header};
use crate::lifecycle::{ConnHold, Lifecycle, Phase, wait_phase};
use crate::policy::{Additions, MAX_HEADERS};
use crate::proxy_protocol::ProxyHeader;
use crate::session::ConnCtx;
use crate::stats::Counters;
use crate::tcp;
use crate::wake::OnOwnWake;

/// Kernel accept backlog per listener. Connections beyond `maxconn` wait
/// here; past it the kernel drops SYNs (or answers with SYN cookies).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Pause after an accept error (typically EMFILE: out of file descriptors)
/// so the loop does not spin while nothing can be accepted.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Accept connections on every listener of one frontend until the phase
/// leaves `Running`. `drain` is cloned into every connection task, so the
/// owner can wait for all of them.
///
/// One loop serves all of a frontend's bind addresses, so its maxconn permit
/// is taken once, before accepting on whichever address has a connection
/// first (one loop per address would each hold a permit while waiting).
pub(crate) async fn accept_loop(
    fe: Arc<FrontendRt>,
    listeners: Vec<TcpListener>,
    mut phase: watch::Receiver<Phase>,
    drain: mpsc::Sender<()>,
) {
    let mut next_first = 0;
    loop {
        let admit = async {
            // Holding a maxconn permit before accept() is what makes extra
            // connections wait in the kernel backlog instead of being accepted.
            let permit = match &fe.conn_limit {
                Some(sem) => sem.clone().acquire_owned().await.ok(),
                None => None,
            };
            fe.rate_wait().await;
            (permit, accept_any(&listeners, &mut next_first).await)
        };
        let (permit, accepted) = tokio::select! {
            r = admit => r,
            () = wait_phase(&mut phase, Phase::Draining) => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(frontend = %fe.cfg.name, error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        let life = Lifecycle {
            phase: phase.clone(),
            _hold: Arc::new(ConnHold::new(fe.clone(), permit, drain.clone())),
        };
        let fe2 = fe.clone();
        tokio::spawn(async move {
            // A connection's future is as large as its largest state (kilobytes);
            // boxed here, the task stays small and spawn copies only a few words.
            Box::pin(serve_conn(&fe2, stream, peer, life)).await;
        });
    }
}

/// Accept on the first of `listeners` with a pending connection, polling them
/// from `*next_first` on, which then rotates so no address starves the others.
async fn accept_any(
    listeners: &[TcpListener],
    next_first: &mut usize,
) -> std::io::Result<(TcpStream, SocketAddr)> {
    let n = listeners.len();
    std::future::poll_fn(|cx| {
        for k in 0..n {
            let i = (*next_first + k) % n;
            if let Poll::Ready(r) = listeners[i].poll_accept(cx) {
                *next_first = (i + 1) % n;
                return Poll::Ready(r);
            }
        }
        Poll::Pending
    })
    .await
}

async fn serve_conn(fe: &Arc<FrontendRt>, stream: TcpStream, peer: SocketAddr, life: Lifecycle) {
    let _ = stream.set_nodelay(true);
    // Only a PROXY header to the servers carries the local address: ask the
    // kernel (one system call per connection) only then.
    let mut local = if fe.backend.cfg.send_proxy == SendProxy::None {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        match stream.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        }
    };
    let mut client = peer;
    let io = if fe.cfg.accept_proxy {
        match read_proxy_header(stream, fe.cfg.timeout_client).await {
            Ok((hdr, io)) => {
                if let ProxyHeader::Proxied { src, dst } = hdr {
                    client = src;
                    local = dst;
                }
                io
            }
            Err(e) => {
                tracing::debug!(frontend = %fe.cfg.name, %peer, error = %e, "bad PROXY header");
                Counters::inc(&fe.stats.err_request);
                Counters::inc(&fe.stats.denied);
                return;
            }
        }
    } else {
        Rewind::new(stream, bytes::Bytes::new())
    };
    match (&fe.tls, fe.cfg.mode) {
        (None, Mode::Tcp) => tcp::serve_plain(fe.clone(), io, client, local, life).await,
        (None, Mode::Http) => serve_http(fe, io, client, local, false, false, life).await,
        // Boxed: the handshake's state is large, and a task's future is
        // as large as its largest state and copied at spawn.
        (Some(tls_config), mode) => {
            Box::pin(serve_tls(
                fe, tls_config, mode, io, peer, client, local, life,
            ))
            .await
        }
    }
}

/// TLS handshake (within `timeout_http_request`), then the frontend's mode.
#[allow(clippy::too_many_arguments)]
async fn serve_tls(
    fe: &Arc<FrontendRt>,
    tls_config: &Arc<rustls::ServerConfig>,
    mode: Mode,
    io: Rewind<TcpStream>,
    peer: SocketAddr,
    client: SocketAddr,
    local: SocketAddr,
    life: Lifecycle,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config.clone());
    let tls = match tokio::time::timeout(fe.cfg.timeout_http_request, acceptor.accept(io)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(frontend = %fe.cfg.name, %peer, error = %e, "TLS handshake failed");
            Counters::inc(&fe.stats.err_request);
            return;
        }
        Err(_) => {
            Counters::inc(&fe.stats.err_request);
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    match mode {
        Mode::Tcp => tcp::serve(fe.clone(), tls, client, local, life).await,
        Mode::Http => serve_http(fe, tls, client, local, true, h2, life).await,
    }
}

async fn serve_http<S>(
    fe: &Arc<FrontendRt>,
    io: S,
    client: SocketAddr,
    local: SocketAddr,
    https: bool,
    h2: bool,
    life: Lifecycle,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let add = Additions::new(fe.cfg.forwardfor, client.ip(), https, fe.cfg.via);
    let new_ctx = |watch: &Arc<ConnWatch>| {
        Arc::new(ConnCtx {
            fe: fe.clone(),
            be: fe.backend.clone(),
            client,
            local,
            add: add.clone(),
            watch: watch.clone(),
            life: life.clone(),
        })
    };
    let mut phase = life.phase.clone();
    if !h2 && fe.cfg.h1_fast_path {
        // HTTP/1: the fast path first; hyper's path takes over at the first
        // request it does not handle, with the bytes already read.
        let mut io = io;
        let ctx = new_ctx(&ConnWatch::new());
        let mut fast_phase = phase.clone();
        let outcome = tokio::select! {
            o = h1fast::serve(&ctx, &mut io, &mut fast_phase) => o,
            // Polled only when the phase changes, not on every wake-up.
            () = OnOwnWake::new(wait_phase(&mut phase, Phase::Stopped)) => return,
        };
        let Outcome::Handoff(rest) = outcome else {
            return;
        };
        // Boxed, like every path taken by few connections: a task's future
        // is as large as its largest state, and it is copied at spawn.
        return Box::pin(serve_hyper(
            fe,
            Rewind::new(io, rest.freeze()),
            new_ctx,
            false,
            phase,
        ))
        .await;
    }
    Box::pin(serve_hyper(fe, io, new_ctx, h2, phase)).await;
}

/// Serve a client connection with hyper (HTTP/2, or HTTP/1 from the first
/// request the fast path hands over).
async fn serve_hyper<S>(
    fe: &Arc<FrontendRt>,
    io: S,
    new_ctx: impl Fn(&Arc<ConnWatch>) -> Arc<ConnCtx>,
    h2: bool,
    mut phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn_watch = ConnWatch::new();
    let ctx = new_ctx(&conn_watch);
    let svc = service_fn(move |req| http::handle(ctx.clone(), req));
    let timers = HttpTimers {
        http_request: fe.cfg.timeout_http_request,
        keep_alive: fe.cfg.timeout_http_keep_alive,
    };
    if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(fe.cfg.max_header_size).unwrap_or(u32::MAX))
            .serve_connection(TokioIo::new(io), svc);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            () = wait_phase(&mut phase, Phase::Draining) => {}
            why = conn_watch.watchdog(timers) => fe.count_expired(why),
        }
        // GOAWAY: streams in flight finish, then the connection closes.
        conn.as_mut().graceful_shutdown();
        tokio::select! {
            _ = conn.as_mut() => {}
            () = wait_phase(&mut phase, Phase::Stopped) => {}
        }
    } else {
        // No hyper header_read_timeout: it would also run during keep-alive
        // idleness; the watchdog applies both timers (see `conn`).
        let io = Scanned::new(io, fe.cfg.max_header_size, conn_watch.clone());
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .max_header_size(fe.cfg.max_header_size)
            .max_headers(MAX_HEADERS)
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                count_parse_error(fe, r.err());
                return;
            }
            () = wait_phase(&mut phase, Phase::Draining) => conn.as_mut().graceful_shutdown(),
            why = conn_watch.watchdog(timers) => {
                // Nothing is in flight: dropping the connection closes it.
                fe.count_expired(why);
                return;
            }
        }
        tokio::select! {
            _ = conn.as_mut() => {}
            () = wait_phase(&mut phase, Phase::Stopped) => {}
        }
    }
}

/// hyper answers a request it cannot parse by itself (431 for a head over
/// `max_header_size`, 400 otherwise) and ends the connection with the
/// error; count those responses like the ones the proxy sends.
fn count_parse_error(fe: &FrontendRt, err: Option<hyper::Error>) {
    let Some(e) = err else { return };
    if e.is_parse_too_large() {
        fe.stats.status(431);
    } else if e.is_parse() {
        fe.stats.status(400);
    } else {
        return;
    }
    Counters::inc(&fe.stats.err_request);
}

/// Bind a listener with `SO_REUSEADDR` and [`LISTEN_BACKLOG`].
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
