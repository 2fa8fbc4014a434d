//! Test backends and clients, all on 127.0.0.1.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

/// Awaits `$body` for at most `TEST_TIMEOUT`: a hang fails the test
/// instead of stalling the suite. (`#[macro_use] mod common;` in a test
/// file brings it in.)
#[allow(unused_macros)]
macro_rules! bounded {
    ($body:expr) => {
        tokio::time::timeout(TEST_TIMEOUT, $body)
            .await
            .expect("test timed out")
    };
}

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sluice_proxy::proxy_protocol::{self, ProxyHeader};
use sluice_proxy::{BackendConfig, FrontendConfig, Proxy, ProxyConfig, ProxyHandle, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every test is bounded by this.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(20);

pub type TestBody = BoxBody<Bytes, hyper::Error>;

/// An in-process HTTP backend.
///
/// Paths: `/` answers 200 with the server name; `/echo` streams the request
/// body back; `/chunked` streams 5 chunks; `/slow?ms=N` waits N ms first;
/// `/ws` accepts an Upgrade and echoes over the upgraded connection.
#[derive(Clone)]
pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub accepts: Arc<AtomicUsize>,
    /// Requests served.
    pub requests: Arc<AtomicUsize>,
    /// Requests in progress now, and the most seen at once.
    pub in_flight: Arc<AtomicUsize>,
    pub max_in_flight: Arc<AtomicUsize>,
    /// Headers of the last request.
    pub last_headers: Arc<Mutex<Option<HeaderMap>>>,
    /// Request paths in arrival order.
    pub paths: Arc<Mutex<Vec<String>>>,
    /// PROXY headers received, when started with `expect_proxy`.
    pub proxy_headers: Arc<Mutex<Vec<ProxyHeader>>>,
}

impl Backend {
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, false).await
    }

    pub async fn start_with(name: &str, expect_proxy: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let b = Backend {
            name: name.to_owned(),
            addr,
            accepts: Arc::default(),
            requests: Arc::default(),
            in_flight: Arc::default(),
            max_in_flight: Arc::default(),
            last_headers: Arc::default(),
            proxy_headers: Arc::default(),
            paths: Arc::default(),
        };
        let b2 = b.clone();
        // The task ends with the test's runtime.
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                b2.accepts.fetch_add(1, SeqCst);
                let b3 = b2.clone();
                tokio::spawn(async move {
                    let mut prefix = Vec::new();
                    if expect_proxy {
                        let mut buf = vec![0u8; 600];
                        let mut n = 0;
                        loop {
                            let r = stream.read(&mut buf[n..]).await.unwrap();
                            if r == 0 {
                                return;
                            }
                            n += r;
                            match proxy_protocol::parse(&buf[..n]) {
                                Ok((h, used)) => {
                                    b3.proxy_headers.lock().unwrap().push(h);
                                    prefix = buf[used..n].to_vec();
                                    break;
                                }
                                Err(proxy_protocol::ParseError::Incomplete) => continue,
                                Err(e) => panic!("backend got a bad PROXY header: {e}"),
                            }
                        }
                    }
                    let io = TokioIo::new(Prefixed {
                        prefix,
                        inner: stream,
                    });
                    let svc = service_fn(move |req| {
                        let b = b3.clone();
                        async move { Ok::<_, Infallible>(b.serve(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                });
            }
        });
        b
    }

    async fn serve(&self, mut req: Request<Incoming>) -> Response<TestBody> {
        self.requests.fetch_add(1, SeqCst);
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.max_in_flight.fetch_max(now, SeqCst);
        *self.last_headers.lock().unwrap() = Some(req.headers().clone());
        let path = req.uri().path().to_owned();
        self.paths.lock().unwrap().push(path.clone());
        let query = req.uri().query().unwrap_or("").to_owned();
        let resp = match path.as_str() {
            "/echo" => Response::new(req.into_body().boxed()),
            // Reads the whole request body before answering with its length.
            "/collect" => match http_body_util::BodyExt::collect(req.into_body()).await {
                Ok(b) => text(&b.to_bytes().len().to_string()),
                Err(_) => text("body error"),
            },
            "/chunked" => {
                let (tx, body) = ChannelBody::new();
                tokio::spawn(async move {
                    for i in 0..5 {
                        tx.send(Bytes::from(format!("chunk{i};"))).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
                Response::new(body.boxed())
            }
            "/slow" => {
                let ms: u64 = query
                    .strip_prefix("ms=")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1000);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                text(&self.name)
            }
            "/ws" => {
                let up = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let mut io = TokioIo::new(up.await.unwrap());
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = io.read(&mut buf).await.unwrap_or(0);
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                r.headers_mut()
                    .insert("upgrade", "websocket".parse().unwrap());
                r.headers_mut()
                    .insert("connection", "upgrade".parse().unwrap());
                r
            }
            _ => text(&self.name),
        };
        self.in_flight.fetch_sub(1, SeqCst);
        let mut resp = resp;
        resp.headers_mut()
            .insert("x-server", self.name.parse().unwrap());
        resp.headers_mut()
            .insert("keep-alive", "timeout=60".parse().unwrap());
        resp
    }
}

/// A body fed chunk by chunk through a channel (sent chunked: no length).
pub struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl ChannelBody {
    pub fn new() -> (tokio::sync::mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        (tx, Self(rx))
    }
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = hyper::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

pub fn text(s: &str) -> Response<TestBody> {
    Response::new(
        Full::new(Bytes::from(s.to_owned()))
            .map_err(|n| match n {})
            .boxed(),
    )
}

pub fn empty() -> TestBody {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

/// A stream with bytes to replay first.
struct Prefixed {
    prefix: Vec<u8>,
    inner: TcpStream,
}

impl tokio::io::AsyncRead for Prefixed {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            let head: Vec<u8> = self.prefix.drain(..n).collect();
            buf.put_slice(&head);
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Prefixed {
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
}

/// A local port with nothing listening (bound, then released).
pub async fn dead_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// A raw TCP server running `f` on each connection.
pub async fn raw_server<F, Fut>(f: F) -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a2 = accepts.clone();
    let f = Arc::new(f);
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            a2.fetch_add(1, SeqCst);
            tokio::spawn(f(s));
        }
    });
    (addr, accepts, task)
}

pub fn servers(backends: &[&Backend]) -> Vec<ServerConfig> {
    backends
        .iter()
        .map(|b| ServerConfig::new(&b.name, b.addr))
        .collect()
}

/// One HTTP frontend on 127.0.0.1:0 to one backend.
pub fn simple_config(servers: Vec<ServerConfig>) -> (FrontendConfig, BackendConfig) {
    let fe = FrontendConfig::new("fe", "127.0.0.1:0".parse().unwrap(), "be");
    let be = BackendConfig::new("be", servers);
    (fe, be)
}

pub async fn start(fe: FrontendConfig, be: BackendConfig) -> ProxyHandle {
    Proxy::start(ProxyConfig::new(vec![fe], vec![be]))
        .await
        .unwrap()
}

/// A pooled keep-alive client.
pub fn client()
-> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, TestBody>
{
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

/// GET over a fresh connection.
pub async fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        Request::get(path)
            .header("host", "test")
            .body(empty())
            .unwrap(),
    )
    .await
}

/// Send over a fresh connection.
pub async fn send(addr: SocketAddr, req: Request<TestBody>) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    collect(resp).await
}

pub async fn collect(resp: Response<Incoming>) -> Reply {
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Write `req` raw, read until the peer closes or `limit` passes.
pub async fn raw_exchange(addr: SocketAddr, req: &[u8], limit: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}
