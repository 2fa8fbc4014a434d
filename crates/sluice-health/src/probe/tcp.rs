//! `tcp`: connect, then close.
//!
//! A `tcp` check of one target keeps one socket from probe to probe: after a
//! successful connect it is reset with `connect(AF_UNSPEC)` (the kernel's
//! TCP disconnect: an RST to the real, the socket back to CLOSE with its
//! local port released) instead of being closed, and the next probe
//! connects it again. That saves socket(2), close(2) and the epoll
//! registration and removal of every probe; at a thousand checks per
//! second the file and inode set-up and tear-down behind them cost more
//! than the handshake itself. A socket that failed, timed out or could not
//! be reset is dropped, and the next probe starts from a fresh one.
//!
//! The idle socket is kept out of the runtime (a plain std socket) and
//! registered anew for each probe: tokio treats a hang-up it has seen as
//! final, and the disconnect raises one, so a socket kept registered would
//! look writable for ever after its first reuse.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{ProbeFailure, since};

/// The state of one target's `tcp` check: its idle socket, if any.
#[derive(Debug, Default)]
pub(crate) struct TcpProber {
    idle: Option<std::net::TcpStream>,
}

impl TcpProber {
    /// Connects to `target` and resets the connection at once with an RST,
    /// like HAProxy's checks: a FIN close would leave a TIME_WAIT entry on
    /// the balancer for every check, and thousands of checks per second to
    /// one real exhaust its ephemeral ports. The latency is the connect
    /// time.
    pub(crate) async fn probe(
        &mut self,
        target: SocketAddr,
        mark: Option<u32>,
    ) -> Result<Duration, ProbeFailure> {
        let start = Instant::now();
        // Taken out for the probe: if the probe's future is dropped on a
        // timeout, the socket goes with it (close aborts the SYN).
        let sock = match self.idle.take() {
            Some(sock) => Ok(sock),
            None => new_socket(target, mark),
        }
        .and_then(TcpStream::from_std)
        .map_err(|e| ProbeFailure::io("socket", &e))?;
        connect_on(&sock, target)
            .await
            .map_err(|e| ProbeFailure::io("connect", &e))?;
        let latency = since(start);
        // The disconnect records ECONNRESET as the socket's pending error;
        // reading SO_ERROR clears it so the next connect starts clean.
        if rustix::net::connect_unspec(&sock).is_ok() && sock.take_error().is_ok() {
            self.idle = sock.into_std().ok();
        }
        Ok(latency)
    }
}

/// A non-blocking, not yet connected TCP socket for `target`'s family (the
/// probe registers it with the runtime the way tokio's own
/// `TcpSocket::connect` does before connecting), with `SO_LINGER` 0
/// (dropping it mid-connection sends an RST) and the routing mark `mark`.
fn new_socket(target: SocketAddr, mark: Option<u32>) -> io::Result<std::net::TcpStream> {
    let sock = Socket::new(
        Domain::for_address(target),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    sock.set_linger(Some(Duration::ZERO))?;
    if let Some(mark) = mark {
        sock.set_mark(mark)?;
    }
    Ok(sock.into())
}

/// Connects the idle socket `sock` to `target` and waits until the
/// handshake completes or fails.
async fn connect_on(sock: &TcpStream, target: SocketAddr) -> io::Result<()> {
    match SockRef::from(sock).connect(&target.into()) {
        Ok(()) => return Ok(()),
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
        Err(e) => return Err(e),
    }
    loop {
        sock.writable().await?;
        // Readiness left over from the previous connection of a reused
        // socket wakes this loop early; only a known peer means connected
        // (getpeername fails with ENOTCONN in SYN_SENT). `WouldBlock` from
        // the closure clears the readiness, so the loop then waits for the
        // next event.
        let connected = sock.try_io(Interest::WRITABLE, || {
            if let Some(e) = sock.take_error()? {
                return Ok(Err(e));
            }
            match sock.peer_addr() {
                Ok(_) => Ok(Ok(())),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => {
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Err(e) => Ok(Err(e)),
            }
        });
        match connected {
            Ok(result) => return result,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// A TCP connection to `target`, with the routing mark `mark` set on the
/// socket before it connects (policy routing picks the path by it).
pub(crate) async fn connect(target: SocketAddr, mark: Option<u32>) -> io::Result<TcpStream> {
    let Some(mark) = mark else {
        return TcpStream::connect(target).await;
    };
    let sock = if target.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    SockRef::from(&sock).set_mark(mark)?;
    sock.connect(target).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The reused socket connects again and again (a fresh connection each
    /// time: the listener accepts one per probe) and a refused probe
    /// leaves nothing behind that breaks the next one.
    #[tokio::test]
    async fn reused_socket_connects_every_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut prober = TcpProber::default();
        let mut ports = Vec::new();
        for _ in 0..5 {
            prober.probe(addr, None).await.unwrap();
            let (_, peer) = listener.accept().await.unwrap();
            ports.push(peer.port());
        }
        assert_eq!(ports.len(), 5);
        assert!(prober.idle.is_some(), "socket kept for reuse");

        drop(listener);
        let err = prober.probe(addr, None).await.unwrap_err();
        assert_eq!(err.reason, sluice_core::health::FailureReason::Refused);
        assert!(prober.idle.is_none(), "failed socket dropped");

        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        prober.probe(addr, None).await.unwrap();
        listener.accept().await.unwrap();
    }

    /// CPU time this thread has used.
    fn thread_cpu() -> Duration {
        let usage =
            nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD).unwrap();
        let tv = |t: nix::sys::time::TimeVal| {
            Duration::from_secs(t.tv_sec().unsigned_abs())
                + Duration::from_micros(t.tv_usec().unsigned_abs())
        };
        tv(usage.user_time()) + tv(usage.system_time())
    }

    /// A reused socket waiting in SYN_SENT sleeps: the hang-up its previous
    /// disconnect raised must not make it look writable (that was a busy
    /// loop). The listener's accept queue (backlog 0: one connection) is
    /// filled by the first probe, so the second probe's SYN is dropped and
    /// its connect stays pending until the timeout.
    #[tokio::test(flavor = "current_thread")]
    async fn a_pending_connect_on_a_reused_socket_does_not_spin() {
        let listener = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        listener
            .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        listener.listen(0).unwrap();
        let addr = listener.local_addr().unwrap().as_socket().unwrap();
        let mut prober = TcpProber::default();
        prober.probe(addr, None).await.unwrap();
        assert!(prober.idle.is_some());

        let wait = Duration::from_millis(300);
        let cpu = thread_cpu();
        let pending = tokio::time::timeout(wait, prober.probe(addr, None)).await;
        let used = thread_cpu().saturating_sub(cpu);
        assert!(pending.is_err(), "SYN to a full accept queue answered");
        assert!(
            used < wait / 2,
            "{used:?} of CPU while waiting {wait:?} for a connect"
        );
    }
}
