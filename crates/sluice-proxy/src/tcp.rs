//! `mode tcp`: pick a server, connect (with retries), relay both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::backend::{BackendRt, Slot};
use crate::config::SendProxy;
use crate::frontend::{FrontendRt, Phase, wait_phase};
use crate::io::{Activity, ServerStream, Tracked};
use crate::proxy_protocol;
use crate::stats::Counters;

/// How often the idle watchdog looks at the relay's activity. Idle timeouts
/// fire up to this much late.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Relay one client connection. `client`/`local` are the addresses after
/// any PROXY header.
pub(crate) async fn serve<S>(
    fe: Arc<FrontendRt>,
    be: Arc<BackendRt>,
    client_io: S,
    client: SocketAddr,
    local: SocketAddr,
    mut phase: watch::Receiver<Phase>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((slot, server_io)) = connect_with_retries(&be, client, local).await else {
        tracing::info!(
            target: crate::http::ACCESS_LOG_TARGET,
            client = %client, frontend = %fe.cfg.name, backend = %be.cfg.name,
            "{client} [{}] {}/<NOSRV> no server available", fe.cfg.name, be.cfg.name
        );
        return;
    };
    let up = Activity::new();
    let down = Activity::new();
    let mut c = Tracked::new(client_io, up.clone());
    let mut s = Tracked::new(server_io, down.clone());
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
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut c, &mut s) => match r {
            Ok(_) => "--",
            Err(_) => "SD",
        },
        () = watchdog => {
            Counters::inc(&be.stats.err_timeout);
            Counters::inc(&slot.server.stats.err_timeout);
            "cD"
        }
        () = wait_phase(&mut phase, Phase::Stopped) => "KD",
    };
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
