//! Local peers for the probe tests: TCP listeners that count accepts, and a
//! tiny canned-response HTTP(S) server. Everything binds loopback.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Fails the test (never skips) when raw sockets are unavailable.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CAP_NET_RAW for raw sockets); run it as root, as CI does"
    );
}

/// Aborts the server task when dropped, so a failing test tears down too.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A listener whose accept loop counts connections and closes them.
pub(crate) async fn counting_listener(bind: &str) -> Server {
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(s);
        }
    });
    Server {
        addr,
        accepted,
        task,
    }
}

/// A loopback port with nothing listening (bound, then released).
pub(crate) fn closed_port(ip: &str) -> SocketAddr {
    let l = std::net::TcpListener::bind((ip, 0)).unwrap();
    l.local_addr().unwrap()
}

/// What the HTTP server answers.
#[derive(Clone)]
pub(crate) enum Reply {
    /// Raw response bytes, then close.
    Raw(Vec<u8>),
    /// Read the request, never answer.
    Silent,
}

pub(crate) fn response(status: u16, body: &[u8]) -> Reply {
    let mut r = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    Reply::Raw(r)
}

/// A chunked response (no content-length), so the body limit is enforced
/// while reading.
pub(crate) fn chunked(status: u16, body: &[u8]) -> Reply {
    let mut r =
        format!("HTTP/1.1 {status} X\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
            .into_bytes();
    for c in body.chunks(1000) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    Reply::Raw(r)
}

/// Last request heads seen, for assertions on method / Host.
pub(crate) type Seen = Arc<std::sync::Mutex<Vec<String>>>;

pub(crate) async fn http_server(reply: Reply) -> (Server, Seen) {
    serve(reply, None).await
}

pub(crate) async fn https_server(reply: Reply, tls: Arc<rustls::ServerConfig>) -> (Server, Seen) {
    serve(reply, Some(tokio_rustls::TlsAcceptor::from(tls))).await
}

async fn serve(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> (Server, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let (count, seen2) = (accepted.clone(), seen.clone());
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (reply, seen, tls) = (reply.clone(), seen2.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => answer(s, reply, seen).await,
                    Some(acc) => {
                        if let Ok(s) = acc.accept(s).await {
                            answer(s, reply, seen).await;
                        }
                    }
                }
            });
        }
    });
    (
        Server {
            addr,
            accepted,
            task,
        },
        seen,
    )
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, reply: Reply, seen: Seen) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    seen.lock()
        .unwrap()
        .push(String::from_utf8_lossy(&head).into_owned());
    match reply {
        Reply::Raw(bytes) => {
            let _ = s.write_all(&bytes).await;
            let _ = s.shutdown().await;
        }
        Reply::Silent => {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        }
    }
}

/// A self-signed certificate for `name`: (server config, certificate PEM).
pub(crate) fn self_signed(name: &str) -> (Arc<rustls::ServerConfig>, String) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert_pem = ck.cert.pem();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    (Arc::new(cfg), cert_pem)
}
