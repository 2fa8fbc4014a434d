//! `mode tcp`: pick a server, connect (with retries), relay both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backend::{BackendRt, Slot};
use crate::config::{SendProxy, Splice};
use crate::frontend::{FrontendRt, Phase, wait_phase};
use crate::io::{Activity, Rewind, ServerStream, Tracked};
use crate::stats::Counters;
use crate::wake::OnOwnWake;
use crate::{proxy_protocol, splice};

/// How often the idle watchdog looks at the relay's activity. Idle timeouts
/// fire up to this much late.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Relay one client connection (TLS-terminated or otherwise wrapped:
/// always copied). `client`/`local` are the addresses after any PROXY
/// header.
pub(crate) async fn serve<S>(
    fe: Arc<FrontendRt>,
    be: Arc<BackendRt>,
    client_io: S,
    client: SocketAddr,
    local: SocketAddr,
    phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((slot, server_io)) = connect_logged(&fe, &be, client, local).await else {
        return;
    };
    relay_copied(&fe, &be, &slot, client_io, server_io, client, phase).await;
}

/// Relay one plain TCP client connection: with splice(2) as the
/// frontend's `splice` setting allows when the server side is plain TCP
/// too, copied otherwise.
pub(crate) async fn serve_plain(
    fe: Arc<FrontendRt>,
    be: Arc<BackendRt>,
    client_io: Rewind<TcpStream>,
    client: SocketAddr,
    local: SocketAddr,
    phase: watch::Receiver<Phase>,
) {
    let Some((slot, server_io)) = connect_logged(&fe, &be, client, local).await else {
        return;
    };
    let server = match server_io {
        ServerStream::Plain(server) if fe.cfg.splice != Splice::Never => server,
        other => {
            relay_copied(&fe, &be, &slot, client_io, other, client, phase).await;
            return;
        }
    };
    let (client_sock, read_ahead) = client_io.into_parts();
    let up = Activity::new();
    let down = Activity::new();
    let spliced = AtomicU64::new(0);
    let relay = async {
        // Bytes that came after a PROXY header in the same read go first.
        if !read_ahead.is_empty() {
            up.touch(read_ahead.len());
            splice::write_all(&server, &read_ahead).await?;
        }
        splice::relay(&client_sock, &server, &up, &down, fe.cfg.splice, &spliced).await
    };
    let end = run_relay(&fe, &be, &slot, &up, &down, relay, phase).await;
    let spliced = spliced.load(Relaxed);
    for st in [&fe.stats, &be.stats, &slot.server.stats] {
        Counters::add(&st.bytes_spliced, spliced);
    }
    log_session(&fe, &be, &slot, &up, &down, client, end);
}

/// The copying relay, for any pair of streams.
async fn relay_copied<S, T>(
    fe: &FrontendRt,
    be: &BackendRt,
    slot: &Slot,
    client_io: S,
    server_io: T,
    client: SocketAddr,
    phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    let up = Activity::new();
    let down = Activity::new();
    let mut c = Tracked::new(client_io, up.clone());
    let mut s = Tracked::new(server_io, down.clone());
    let relay = async {
        tokio::io::copy_bidirectional_with_sizes(
            &mut c,
            &mut s,
            splice::COPY_BUF_BYTES,
            splice::COPY_BUF_BYTES,
        )
        .await
        .map(|_| ())
    };
    let end = run_relay(fe, be, slot, &up, &down, relay, phase).await;
    log_session(fe, be, slot, &up, &down, client, end);
}

/// Picks a server and connects; logs the session as `<NOSRV>` if none
/// could be reached.
async fn connect_logged(
    fe: &FrontendRt,
    be: &BackendRt,
    client: SocketAddr,
    local: SocketAddr,
) -> Option<(Slot, ServerStream)> {
    let connected = connect_with_retries(be, client, local).await;
    if connected.is_none() {
        tracing::info!(
            target: crate::http::ACCESS_LOG_TARGET,
            client = %client, frontend = %fe.cfg.name, backend = %be.cfg.name,
            "{client} [{}] {}/<NOSRV> no server available", fe.cfg.name, be.cfg.name
        );
    }
    connected
}

/// Runs `relay` against the idle timeouts and the shutdown phase; returns
/// the termination code of the access log (HAProxy's: `--` normal end,
/// `SD` error on the data path, `cD` idle timeout, `KD` stopped).
async fn run_relay(
    fe: &FrontendRt,
    be: &BackendRt,
    slot: &Slot,
    up: &Activity,
    down: &Activity,
    relay: impl Future<Output = std::io::Result<()>>,
    mut phase: watch::Receiver<Phase>,
) -> &'static str {
    let (tc, ts) = (fe.cfg.timeout_client, be.cfg.timeout_server);
    let watchdog = async {
        // The session is idle once the client has sent nothing for
        // `timeout client` and the server nothing for `timeout server`.
        loop {
            tokio::time::sleep(IDLE_CHECK_INTERVAL).await;
            if up.idle() >= tc && down.idle() >= ts {
                return;
            }
        }
    };
    tokio::select! {
        r = relay => match r {
            Ok(()) => "--",
            Err(_) => "SD",
        },
        () = watchdog => {
            Counters::inc(&be.stats.err_timeout);
            Counters::inc(&slot.server.stats.err_timeout);
            "cD"
        }
        // Polled only when the phase changes, not on every relay wake-up.
        () = OnOwnWake::new(wait_phase(&mut phase, Phase::Stopped)) => "KD",
    }
}

/// Adds the session's bytes to the counters and writes its access log line.
fn log_session(
    fe: &FrontendRt,
    be: &BackendRt,
    slot: &Slot,
    up: &Activity,
    down: &Activity,
    client: SocketAddr,
    end: &str,
) {
    let (bin, bout) = (up.bytes.load(Relaxed), down.bytes.load(Relaxed));
    for st in [&fe.stats, &be.stats, &slot.server.stats] {
        Counters::add(&st.bytes_in, bin);
        Counters::add(&st.bytes_out, bout);
    }
    tracing::info!(
        target: crate::http::ACCESS_LOG_TARGET,
        client = %client, frontend = %fe.cfg.name, backend = %be.cfg.name,
        server = %slot.server.cfg.name, bytes_in = bin, bytes_out = bout, termination = end,
        "{client} [{}] {}/{} {bin} {bout} {end}", fe.cfg.name, be.cfg.name, slot.server.cfg.name
    );
}

async fn connect_with_retries(
    be: &BackendRt,
    client: SocketAddr,
    local: SocketAddr,
) -> Option<(Slot, ServerStream)> {
    let preamble = match be.cfg.send_proxy {
        SendProxy::None => None,
        SendProxy::V1 => Some(proxy_protocol::encode_v1(client, local)),
        SendProxy::V2 => Some(proxy_protocol::encode_v2(client, local)),
    };
    let mut tried = Vec::new();
    let mut same: Option<Slot> = None;
    let mut failures = 0u32;
    loop {
        let slot = match same.take() {
            Some(s) => s,
            None => match be.acquire(client.ip(), None, &tried).await {
                Ok(s) => s,
                Err(_) if !tried.is_empty() => {
                    tried.clear();
                    be.acquire(client.ip(), None, &tried).await.ok()?
                }
                Err(_) => return None,
            },
        };
        match be.connect(&slot.server, preamble.as_deref()).await {
            Ok(stream) => return Some((slot, stream)),
            Err(e) => {
                tracing::debug!(server = %slot.server.cfg.name, error = %e, "connect failed");
                Counters::inc(&slot.server.stats.err_connect);
                Counters::inc(&be.stats.err_connect);
                failures += 1;
                if failures > be.cfg.retries {
                    return None;
                }
                Counters::inc(&be.stats.retries);
                Counters::inc(&slot.server.stats.retries);
                if be.cfg.redispatch && be.servers.len() > 1 {
                    Counters::inc(&be.stats.redispatches);
                    Counters::inc(&slot.server.stats.redispatches);
                    tried.push(slot.index);
                } else {
                    same = Some(slot);
                }
            }
        }
    }
}
