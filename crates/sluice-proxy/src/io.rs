//! Stream helpers: replaying bytes read ahead (after a PROXY header), reading
//! the PROXY header with a bound, and counting bytes and activity.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::proxy_protocol::{self, ParseError, ProxyHeader};

/// `AsyncWrite` for a read-side wrapper `$ty<S>` with a field `inner: S`:
/// every write goes straight through (the wrappers only look at reads).
macro_rules! write_through {
    ($ty:ident) => {
        impl<S: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $ty<S> {
            fn poll_write(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
            }
            fn poll_flush(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_flush(cx)
            }
            fn poll_shutdown(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
            }
            fn poll_write_vectored(
                mut self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                self.inner.is_write_vectored()
            }
        }
    };
}
pub(crate) use write_through;

/// A stream that first yields `prefix` (bytes read ahead), then reads from
/// `inner`. Writes go straight to `inner`.
#[derive(Debug)]
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(inner: S, prefix: Bytes) -> Self {
        Self { prefix, inner }
    }

    /// The stream and the read-ahead bytes not yet consumed.
    pub(crate) fn into_parts(self) -> (S, Bytes) {
        (self.inner, self.prefix)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

write_through!(Rewind);

/// Why reading a PROXY header failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyReadError {
    #[error("reading PROXY header: {0}")]
    Io(#[from] io::Error),
    #[error("PROXY header not received within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// Read and parse a PROXY header from the start of `stream`, reading at most
/// [`proxy_protocol::MAX_HEADER_LEN_BYTES`] bytes and waiting at most
/// `timeout`. Returns the header and a stream that replays any bytes read past it.
pub(crate) async fn read_proxy_header<S: AsyncRead + Unpin>(
    mut stream: S,
    timeout: Duration,
) -> Result<(ProxyHeader, Rewind<S>), ProxyReadError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = vec![0u8; proxy_protocol::MAX_HEADER_LEN_BYTES];
    let mut filled = 0;
    loop {
        match proxy_protocol::parse(&buf[..filled]) {
            Ok((header, used)) => {
                let rest = Bytes::copy_from_slice(&buf[used..filled]);
                return Ok((header, Rewind::new(stream, rest)));
            }
            Err(ParseError::Incomplete) => {}
            Err(e) => return Err(e.into()),
        }
        // `parse` reaches a verdict within MAX_HEADER_LEN_BYTES, so the
        // buffer never fills while still Incomplete; guard anyway.
        let Some(space) = buf.get_mut(filled..).filter(|s| !s.is_empty()) else {
            return Err(ParseError::Invalid("PROXY header too long").into());
        };
        let n = tokio::time::timeout_at(deadline, stream.read(space))
            .await
            .map_err(|_| ProxyReadError::Timeout(timeout))??;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
        }
        filled += n;
    }
}

/// Activity and byte counts of one direction of a relay.
#[derive(Debug)]
pub(crate) struct Activity {
    origin: Instant,
    /// Nanoseconds since `origin` of the last read that returned data.
    last_read_ns: AtomicU64,
    /// Bytes read.
    pub(crate) bytes: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last_read_ns: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        })
    }

    /// Time since the last read that returned data (or since creation).
    pub(crate) fn idle(&self) -> Duration {
        let last = Duration::from_nanos(self.last_read_ns.load(Relaxed));
        self.origin.elapsed().saturating_sub(last)
    }

    /// Records a read of `n` bytes.
    pub(crate) fn touch(&self, n: usize) {
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_read_ns.store(now, Relaxed);
        self.bytes.fetch_add(n as u64, Relaxed);
    }
}

/// A stream whose reads are recorded in an [`Activity`].
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.activity.touch(n);
        }
        res
    }
}

write_through!(Tracked);

/// A connection to a backend server: plain TCP or TLS over it.
#[derive(Debug)]
pub(crate) enum ServerStream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// Connect to `addr`, write `preamble` (a PROXY header, in clear) if any,
/// then run the TLS handshake if `tls` is given; all within `timeout`.
pub(crate) async fn connect(
    addr: SocketAddr,
    timeout: Duration,
    preamble: Option<&[u8]>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
) -> io::Result<ServerStream> {
    use tokio::io::AsyncWriteExt;
    let steps = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        if let Some(p) = preamble {
            stream.write_all(p).await?;
        }
        Ok(match tls {
            None => ServerStream::Plain(stream),
            Some((connector, name)) => {
                ServerStream::Tls(Box::new(connector.connect(name, stream).await?))
            }
        })
    };
    tokio::time::timeout(timeout, steps)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))?
}

impl ServerStream {
    /// Send the ACK the kernel is holding back (delayed ACK), now.
    ///
    /// A server with Nagle's algorithm on (nginx, until a connection turns
    /// keep-alive, or with `tcp_nopush`) holds the last, partial segment of
    /// a response until everything before it is acknowledged, while this
    /// side, in request/response ("ping-pong") mode, delays that ACK by up
    /// to 40 ms. Asking for a quick ACK when a body is still incomplete
    /// breaks that wait: measured, 0.3–0.8 % of 5 KiB responses took
    /// 20–40 ms longer without it (BENCHMARKS.md §3, "Fourth sitting").
    pub(crate) fn ack_now(&self) {
        let tcp = match self {
            Self::Plain(s) => s,
            Self::Tls(s) => s.get_ref().0,
        };
        // Best effort: a failure only leaves the kernel's default timing.
        let _ = socket2::SockRef::from(tcp).set_tcp_quickack(true);
    }
}

impl AsyncRead for ServerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ServerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn proxy_header_then_data_is_replayed() {
        let (mut a, b) = tokio::io::duplex(64);
        let hdr = proxy_protocol::encode_v1(
            "192.0.2.1:5000".parse().unwrap(),
            "192.0.2.2:80".parse().unwrap(),
        );
        a.write_all(&hdr[..10]).await.unwrap();
        let task = tokio::spawn(read_proxy_header(b, Duration::from_secs(5)));
        tokio::time::sleep(Duration::from_millis(20)).await;
        a.write_all(&hdr[10..]).await.unwrap();
        a.write_all(b"hello").await.unwrap();
        drop(a);
        let (h, mut rest) = task.await.unwrap().unwrap();
        assert!(matches!(h, ProxyHeader::Proxied { .. }));
        let mut s = String::new();
        rest.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "hello");
    }

    #[tokio::test]
    async fn proxy_header_garbage_and_timeout() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        assert!(matches!(
            read_proxy_header(b, Duration::from_secs(5)).await,
            Err(ProxyReadError::Parse(_))
        ));
        let (_a, b) = tokio::io::duplex(64);
        assert!(matches!(
            read_proxy_header(b, Duration::from_millis(50)).await,
            Err(ProxyReadError::Timeout(_))
        ));
    }
}
