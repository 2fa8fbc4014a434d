//! `mode tcp`: pick a server, connect (with retries), relay both ways.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::backend::{BackendRt, Slot};
use crate::config::Splice;
use crate::frontend::FrontendRt;
use crate::io::{Activity, Rewind, ServerStream};
use crate::lifecycle::Lifecycle;
use crate::relay::{self, IdleLimits, RelayEnd};
use crate::session::{self, ACCESS_LOG_TARGET, ConnectTimes, FreshConnector};
use crate::splice;
use crate::stats::Counters;

/// One `mode tcp` session: its frontend, backend and addresses.
struct Session<'a> {
    fe: &'a FrontendRt,
    be: &'a BackendRt,
    client: SocketAddr,
    local: SocketAddr,
    life: Lifecycle,
}

impl<'a> Session<'a> {
    fn new(fe: &'a FrontendRt, client: SocketAddr, local: SocketAddr, life: Lifecycle) -> Self {
        Self {
            fe,
            be: &fe.backend,
            client,
            local,
            life,
        }
    }

    fn limits(&self) -> IdleLimits {
        IdleLimits {
            client: self.fe.cfg.timeout_client,
            server: self.be.cfg.timeout_server,
        }
    }
}

/// Relay one client connection (TLS-terminated or otherwise wrapped:
/// always copied). `client`/`local` are the addresses after any PROXY
/// header.
pub(crate) async fn serve<S>(
    fe: Arc<FrontendRt>,
    client_io: S,
    client: SocketAddr,
    local: SocketAddr,
    life: Lifecycle,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let s = Session::new(&fe, client, local, life);
    let Some((slot, server_io, times)) = connect_logged(&s).await else {
        return;
    };
    let end = relay::copy_both_ways(client_io, server_io, s.limits(), s.life.phase.clone()).await;
    log_session(&s, &slot, &times, &end);
}

/// Relay one plain TCP client connection: with splice(2) as the
/// frontend's `splice` setting allows when the server side is plain TCP
/// too, copied otherwise.
pub(crate) async fn serve_plain(
    fe: Arc<FrontendRt>,
    client_io: Rewind<TcpStream>,
    client: SocketAddr,
    local: SocketAddr,
    life: Lifecycle,
) {
    let s = Session::new(&fe, client, local, life);
    let Some((slot, server_io, times)) = connect_logged(&s).await else {
        return;
    };
    let server = match server_io {
        ServerStream::Plain(server) if fe.cfg.splice != Splice::Never => server,
        other => {
            let end =
                relay::copy_both_ways(client_io, other, s.limits(), s.life.phase.clone()).await;
            log_session(&s, &slot, &times, &end);
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
    let t = relay::run_relay(s.limits(), &up, &down, relay, s.life.phase.clone()).await;
    let spliced = spliced.load(Relaxed);
    for st in [&fe.stats, &s.be.stats, &slot.server.stats] {
        Counters::add(&st.bytes_spliced, spliced);
    }
    log_session(&s, &slot, &times, &relay::ended(t, &up, &down));
}

/// Picks a server and connects; logs the session as `<NOSRV>` if none
/// could be reached.
async fn connect_logged(s: &Session<'_>) -> Option<(Slot, ServerStream, ConnectTimes)> {
    let mut times = ConnectTimes::default();
    let connector = FreshConnector {
        be: s.be,
        client: s.client,
        local: s.local,
    };
    match session::pick_and_connect(s.be, s.client.ip(), None, &mut times, &connector).await {
        Ok((slot, stream, _)) => Some((slot, stream, times)),
        Err(t) => {
            let (client, fe, be) = (s.client, &s.fe.cfg.name, &s.be.cfg.name);
            tracing::info!(
                target: ACCESS_LOG_TARGET,
                %client, frontend = %fe, backend = %be, termination = t.code(),
                tw = session::ms(times.tw),
                "{client} [{fe}] {be}/<NOSRV> {}/-1 0 0 {}", session::ms(times.tw), t.code()
            );
            None
        }
    }
}

/// Counts the session's ending and bytes and writes its access log line.
fn log_session(s: &Session<'_>, slot: &Slot, times: &ConnectTimes, end: &RelayEnd) {
    let (fe, be, server) = (s.fe, s.be, &slot.server);
    end.termination
        .count(&fe.stats, &be.stats, Some(&server.stats));
    for st in [&fe.stats, &be.stats, &server.stats] {
        Counters::add(&st.bytes_in, end.up);
        Counters::add(&st.bytes_out, end.down);
    }
    let (client, code) = (s.client, end.termination.code());
    let (tw, tc) = (session::ms(times.tw), session::ms(times.tc));
    tracing::info!(
        target: ACCESS_LOG_TARGET,
        %client, frontend = %fe.cfg.name, backend = %be.cfg.name,
        server = %server.cfg.name, tw, tc, bytes_in = end.up, bytes_out = end.down,
        termination = code,
        "{client} [{}] {}/{} {tw}/{tc} {} {} {code}", fe.cfg.name, be.cfg.name, server.cfg.name,
        end.up, end.down
    );
}
