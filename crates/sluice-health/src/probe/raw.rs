//! Raw (and ICMP datagram) sockets driven by tokio, plus source-address
//! selection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::Socket;

/// A connected, non-blocking socket2 socket (raw or ICMP datagram)
/// registered with tokio.
///
/// It is handed to tokio as a `UdpSocket`: that type only issues
/// `send`/`recv` on its descriptor and waits on epoll readiness, which is
/// exactly right for any connected datagram-style socket, and it needs no
/// `unsafe` (tokio's `AsyncFd::register` does).
#[derive(Debug)]
pub(crate) struct AsyncSocket {
    socket: tokio::net::UdpSocket,
}

impl AsyncSocket {
    pub(crate) fn new(socket: Socket) -> io::Result<Self> {
        socket.set_nonblocking(true)?;
        let std_socket: UdpSocket = socket.into();
        Ok(Self {
            socket: tokio::net::UdpSocket::from_std(std_socket)?,
        })
    }

    /// Sends one datagram on the connected socket.
    pub(crate) async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.socket.send(buf).await
    }

    /// Receives one datagram into `buf`; a longer datagram is truncated to
    /// `buf.len()` (the rest is discarded by the kernel), which bounds the
    /// read however large the packet.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.recv(buf).await
    }
}

/// The local address the kernel would use to reach `dst`: a UDP socket
/// connected to it (`connect` on UDP sends nothing) tells. Raw-socket
/// probes need it for the TCP pseudo-header checksum.
pub(crate) fn source_for(dst: IpAddr) -> io::Result<IpAddr> {
    let any: IpAddr = match dst {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let udp = UdpSocket::bind(SocketAddr::new(any, 0))?;
    // Port 9 ("discard") only fills the field; nothing is sent.
    udp.connect(SocketAddr::new(dst, 9))?;
    Ok(udp.local_addr()?.ip())
}
