//! `tcp`: connect, then close.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ProbeFailure, since};

/// Connects to `target` and closes at once with an RST (`SO_LINGER` 0),
/// like HAProxy's checks: a FIN close would leave a TIME_WAIT entry on the
/// balancer for every check, and thousands of checks per second to one real
/// exhaust its ephemeral ports. The latency is the connect time.
pub(crate) async fn probe(target: SocketAddr) -> Result<Duration, ProbeFailure> {
    let start = Instant::now();
    let stream = TcpStream::connect(target)
        .await
        .map_err(|e| ProbeFailure::io("connect", &e))?;
    let latency = since(start);
    // Best effort: failing to set linger only means a FIN close.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    Ok(latency)
}
