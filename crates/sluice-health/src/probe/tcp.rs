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
pub(crate) async fn probe(target: SocketAddr, mark: Option<u32>) -> Result<Duration, ProbeFailure> {
    let start = Instant::now();
    let stream = connect(target, mark)
        .await
        .map_err(|e| ProbeFailure::io("connect", &e))?;
    let latency = since(start);
    // Best effort: failing to set linger only means a FIN close.
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
    Ok(latency)
}

/// A TCP connection to `target`, with the routing mark `mark` set on the
/// socket before it connects (policy routing picks the path by it).
pub(crate) async fn connect(target: SocketAddr, mark: Option<u32>) -> std::io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect(target).await;
    };
    let sock = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket2::SockRef::from(&sock).set_mark(mark)?;
    sock.connect(target).await
}
