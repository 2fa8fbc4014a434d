//! Relaying bytes both ways between a client and a server until both
//! directions are done, against the idle timeouts and the shutdown: the
//! one relay `mode tcp` sessions and HTTP tunnels (WebSocket and other
//! `Upgrade`s) share.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::backend::BackendRt;
use crate::frontend::FrontendRt;
use crate::io::{Activity, Tracked};
use crate::lifecycle::{Phase, wait_phase};
use crate::splice;
use crate::termination::Termination;
use crate::wake::OnOwnWake;

/// How often the idle watchdog looks at the relay's activity. Idle timeouts
/// fire up to this much late.
const IDLE_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// When a relay counts as idle: the client has sent nothing for `client`
/// and the server nothing for `server` (HAProxy's `timeout client` and
/// `timeout server`, or both `timeout tunnel` for a tunnel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct IdleLimits {
    pub(crate) client: Duration,
    pub(crate) server: Duration,
}

/// How a relay ended and what it moved.
#[derive(Debug)]
pub(crate) struct RelayEnd {
    pub(crate) termination: Termination,
    /// Bytes from the client to the server.
    pub(crate) up: u64,
    /// Bytes from the server to the client.
    pub(crate) down: u64,
}

/// Runs `relay` against the idle limits and the shutdown phase: `--` when
/// it finished, `SD` on an error, `cD` when idle, `KD` when stopped.
pub(crate) async fn run_relay(
    limits: IdleLimits,
    up: &Activity,
    down: &Activity,
    relay: impl Future<Output = std::io::Result<()>>,
    mut phase: watch::Receiver<Phase>,
) -> Termination {
    let watchdog = async {
        loop {
            tokio::time::sleep(IDLE_CHECK_INTERVAL).await;
            if up.idle() >= limits.client && down.idle() >= limits.server {
                return;
            }
        }
    };
    tokio::select! {
        r = relay => match r {
            Ok(()) => Termination::Normal,
            Err(_) => Termination::ServerAborted,
        },
        () = watchdog => Termination::IdleTimeout,
        // Polled only when the phase changes, not on every relay wake-up.
        () = OnOwnWake::new(wait_phase(&mut phase, Phase::Stopped)) => Termination::Killed,
    }
}

/// Copy between any two streams (half-closes passed on) until both
/// directions end, a limit expires or the proxy stops.
pub(crate) async fn copy_both_ways<S, T>(
    client_io: S,
    server_io: T,
    limits: IdleLimits,
    phase: watch::Receiver<Phase>,
) -> RelayEnd
where
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
    let termination = run_relay(limits, &up, &down, relay, phase).await;
    ended(termination, &up, &down)
}

/// The end record of a relay whose directions were tracked by `up`/`down`.
pub(crate) fn ended(
    termination: Termination,
    up: &Arc<Activity>,
    down: &Arc<Activity>,
) -> RelayEnd {
    RelayEnd {
        termination,
        up: up.bytes.load(Relaxed),
        down: down.bytes.load(Relaxed),
    }
}

/// A tunnel's idle limits: `timeout_tunnel` both ways when set, else the
/// client and server timeouts (as HAProxy does).
pub(crate) fn tunnel_limits(fe: &FrontendRt, be: &BackendRt) -> IdleLimits {
    match be.cfg.timeout_tunnel {
        Some(t) => IdleLimits {
            client: t,
            server: t,
        },
        None => IdleLimits {
            client: fe.cfg.timeout_client,
            server: be.cfg.timeout_server,
        },
    }
}
