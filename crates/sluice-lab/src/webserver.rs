//! The lab's real-server web server (`sluice realserver web`).
//!
//! A small HTTP/1.1 server (keep-alive) that makes load-balancing behaviour
//! visible to tests:
//!
//! | Path | Response |
//! |---|---|
//! | `/` | `body_size` bytes ([`DEFAULT_BODY_SIZE`] = 5 KiB by default) |
//! | `/health` | `200 ok` |
//! | `/whoami` | JSON: the server name, the peer address it saw and the local address |
//! | `/headers` | the request headers, one `name: value` line each |
//! | `/stats` | JSON: `accepted` connections and `requests` served |
//!
//! Every response carries `X-Served-By: NAME`. The `accepted` counter is
//! incremented once per `accept()` that returned a connection, so a
//! half-open (SYN-only) health check must leave it unchanged.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Size of the `/` body when none is given, in bytes (the 5 KiB file of the
/// platform baselines).
pub const DEFAULT_BODY_SIZE: usize = 5120;

/// Largest `/` body the server will build, in bytes (it is held in memory).
pub const MAX_BODY_SIZE: usize = 64 * 1024 * 1024;

/// Name of the header that identifies the real server.
pub const SERVED_BY_HEADER: &str = "x-served-by";

/// Listen backlog of sockets made by [`bind`], in connections.
pub const LISTEN_BACKLOG: i32 = 1024;

/// Pause after a failed `accept()` (e.g. out of file descriptors), in
/// milliseconds, so the loop does not spin.
const ACCEPT_ERROR_PAUSE_MS: u64 = 10;

/// Counters of one web server, shared by all its listeners.
#[derive(Debug, Default)]
pub struct WebStats {
    accepted: AtomicU64,
    requests: AtomicU64,
}

impl WebStats {
    /// Connections returned by `accept()` so far.
    #[must_use]
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Requests answered so far (any path).
    #[must_use]
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// The `/` body of `size` bytes: printable, deterministic text, so a test can
/// compare bytes and a human can read a capture.
#[must_use]
pub fn body_bytes(size: usize) -> Bytes {
    const PATTERN: &[u8] = b"sluice lab real server payload 0123456789abcdefghijklmnopqrstuvwxyz\n";
    PATTERN.iter().copied().cycle().take(size).collect()
}

/// Binds a listening TCP socket (SO_REUSEADDR; IPv6 sockets are IPv6-only so
/// `0.0.0.0:P` and `[::]:P` can be bound side by side). Non-blocking, ready
/// for [`tokio::net::TcpListener::from_std`].
///
/// # Errors
/// The socket, bind or listen error.
pub fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Serves on one listener until `shutdown` completes. See [`serve_all`].
///
/// # Errors
/// As [`serve_all`].
pub async fn serve(
    listener: TcpListener,
    name: &str,
    body_size: usize,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let stats = Arc::new(WebStats::default());
    serve_all(vec![listener], name, body_size, stats, shutdown).await
}

/// Serves on every listener, sharing one set of counters, until `shutdown`
/// completes. On shutdown, listeners close and open connections finish their
/// current response and close.
///
/// # Errors
/// [`io::ErrorKind::InvalidInput`] if `name` is not a valid header value or
/// `body_size` exceeds [`MAX_BODY_SIZE`].
pub async fn serve_all(
    listeners: Vec<TcpListener>,
    name: &str,
    body_size: usize,
    stats: Arc<WebStats>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    if body_size > MAX_BODY_SIZE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("body size {body_size} exceeds {MAX_BODY_SIZE} bytes"),
        ));
    }
    let served_by = HeaderValue::from_str(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("server name {name:?} is not a valid header value"),
        )
    })?;
    let site = Arc::new(Site {
        name: name.to_owned(),
        served_by,
        body: body_bytes(body_size),
        stats,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut accept_loops = JoinSet::new();
    for listener in listeners {
        accept_loops.spawn(accept_loop(listener, Arc::clone(&site), stop_rx.clone()));
    }
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => {}
        // Accept loops only end on shutdown; one ending early is a bug, but
        // stopping cleanly beats serving on half the listeners.
        Some(_) = accept_loops.join_next() => {
            tracing::warn!("an accept loop ended unexpectedly");
        }
    }
    let _ = stop_tx.send(true);
    while accept_loops.join_next().await.is_some() {}
    Ok(())
}

/// What every connection of one server shares.
#[derive(Debug)]
struct Site {
    name: String,
    served_by: HeaderValue,
    body: Bytes,
    stats: Arc<WebStats>,
}

async fn accept_loop(listener: TcpListener, site: Arc<Site>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    site.stats.accepted.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(serve_connection(stream, peer, Arc::clone(&site), stop.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    site: Arc<Site>,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let service = service_fn(move |req| {
        let site = Arc::clone(&site);
        async move { Ok::<_, Infallible>(respond(&req, &site, peer, local)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(err) = res {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

fn respond(
    req: &Request<Incoming>,
    site: &Site,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> Response<Full<Bytes>> {
    site.stats.requests.fetch_add(1, Ordering::Relaxed);
    let (status, content_type, body) = if !matches!(*req.method(), Method::GET | Method::HEAD) {
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            Bytes::from_static(b"method not allowed\n"),
        )
    } else {
        match req.uri().path() {
            "/" => (
                StatusCode::OK,
                "application/octet-stream",
                site.body.clone(),
            ),
            "/health" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok")),
            "/whoami" => {
                let v = serde_json::json!({
                    "name": site.name,
                    "peer": peer.to_string(),
                    "local": local.map(|l| l.to_string()),
                });
                (
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(v.to_string()),
                )
            }
            "/headers" => {
                let mut text = String::new();
                for (name, value) in req.headers() {
                    text.push_str(name.as_str());
                    text.push_str(": ");
                    text.push_str(&String::from_utf8_lossy(value.as_bytes()));
                    text.push('\n');
                }
                (StatusCode::OK, "text/plain", Bytes::from(text))
            }
            "/stats" => {
                let v = serde_json::json!({
                    "name": site.name,
                    "accepted": site.stats.accepted(),
                    "requests": site.stats.requests(),
                });
                (
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(v.to_string()),
                )
            }
            _ => (
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"not found\n"),
            ),
        }
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(SERVED_BY_HEADER, site.served_by.clone());
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::probe::{HttpResponse, parse_response};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(
        name: &str,
    ) -> (
        SocketAddr,
        Arc<WebStats>,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    ) {
        let std_listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let listener = TcpListener::from_std(std_listener).unwrap();
        let stats = Arc::new(WebStats::default());
        let (tx, rx) = tokio::sync::oneshot::channel();
        let name = name.to_owned();
        let s = Arc::clone(&stats);
        let task = tokio::spawn(async move {
            serve_all(vec![listener], &name, DEFAULT_BODY_SIZE, s, async {
                let _ = rx.await;
            })
            .await
        });
        (addr, stats, tx, task)
    }

    /// Sends raw requests on one connection, reading one response per request.
    async fn exchange(stream: &mut TcpStream, path: &str, close: bool) -> HttpResponse {
        let conn = if close { "close" } else { "keep-alive" };
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nX-Test: yes\r\nConnection: {conn}\r\n\r\n");
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            if let Ok(resp) = parse_response(&buf, n == 0) {
                return resp;
            }
            assert!(n > 0, "connection closed before a full response: {buf:?}");
        }
    }

    #[tokio::test]
    async fn serves_every_path_with_served_by_and_counts() {
        let (addr, stats, stop, task) = start("rs7").await;
        let mut s = TcpStream::connect(addr).await.unwrap();

        let root = exchange(&mut s, "/", false).await;
        assert_eq!(root.status, 200);
        assert_eq!(root.body.len(), DEFAULT_BODY_SIZE);
        assert_eq!(root.body, body_bytes(DEFAULT_BODY_SIZE).to_vec());
        assert_eq!(root.header("X-Served-By"), Some("rs7"));

        let health = exchange(&mut s, "/health", false).await;
        assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
        assert_eq!(health.header("x-served-by"), Some("rs7"));

        let who = exchange(&mut s, "/whoami", false).await;
        let v: serde_json::Value = serde_json::from_slice(&who.body).unwrap();
        assert_eq!(v["name"], "rs7");
        assert_eq!(v["peer"], s.local_addr().unwrap().to_string());
        assert_eq!(v["local"], addr.to_string());

        let headers = exchange(&mut s, "/headers", false).await;
        let text = String::from_utf8(headers.body).unwrap();
        assert!(text.contains("x-test: yes\n"), "{text}");

        assert_eq!(exchange(&mut s, "/nope", false).await.status, 404);

        // Five requests so far on one kept-alive connection.
        let st = exchange(&mut s, "/stats", true).await;
        let v: serde_json::Value = serde_json::from_slice(&st.body).unwrap();
        assert_eq!(v["accepted"], 1);
        assert_eq!(v["requests"], 6);

        // A second connection bumps `accepted`.
        let mut s2 = TcpStream::connect(addr).await.unwrap();
        let _ = exchange(&mut s2, "/health", true).await;
        assert_eq!(stats.accepted(), 2);
        assert_eq!(stats.requests(), 7);

        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
        // The listener is closed after shutdown.
        assert!(TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn connect_without_request_counts_only_accept() {
        let (addr, stats, stop, task) = start("rs1").await;
        let s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..200 {
            if stats.accepted() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!((stats.accepted(), stats.requests()), (1, 0));
        drop(s);
        stop.send(()).unwrap();
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn rejects_bad_names_and_sizes() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(l, "bad\nname", 10, async {}).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = serve(l, "rs1", MAX_BODY_SIZE + 1, async {})
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn body_has_the_requested_size() {
        assert_eq!(body_bytes(0).len(), 0);
        assert_eq!(body_bytes(5120).len(), 5120);
        assert!(body_bytes(100).iter().all(u8::is_ascii));
    }
}
