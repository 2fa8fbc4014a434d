//! Timeouts as HAProxy defines them: `timeout_server` is the server's
//! inactivity (a request body that keeps moving is never cut, on either
//! HTTP/1 engine), `timeout_tunnel` bounds an idle WebSocket/Upgrade
//! tunnel, a tunnel counts against `maxconn` until it ends, and a
//! graceful shutdown waits for tunnels, then cuts them after its grace
//! (`hard_stop_after`).
#![allow(clippy::unwrap_used, missing_docs)]

#[macro_use]
mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's inactivity limit in these tests.
const SERVER_IDLE: Duration = Duration::from_millis(300);

/// Pieces of the slow upload, and the pause between them: the upload
/// takes five times `SERVER_IDLE`, but never pauses for as long.
const UPLOAD_PIECES: usize = 15;
const UPLOAD_PAUSE: Duration = Duration::from_millis(100);

/// Read an HTTP/1 response head (and return it) from `s`.
async fn read_head(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut b).await.unwrap();
        assert!(
            n > 0,
            "closed before a head: {}",
            String::from_utf8_lossy(&got)
        );
        got.push(b[0]);
    }
    String::from_utf8(got).unwrap().to_ascii_lowercase()
}

/// Upload `UPLOAD_PIECES` bytes one at a time, `UPLOAD_PAUSE` apart, to
/// the backend's `/collect` (which answers once it has the whole body)
/// and return the answer's status line and body.
async fn slow_upload(addr: SocketAddr, chunked: bool) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {UPLOAD_PIECES}")
    };
    s.write_all(format!("POST /collect HTTP/1.1\r\nHost: t\r\n{framing}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    for _ in 0..UPLOAD_PIECES {
        tokio::time::sleep(UPLOAD_PAUSE).await;
        let piece: &[u8] = if chunked { b"1\r\nx\r\n" } else { b"x" };
        s.write_all(piece).await.unwrap();
    }
    if chunked {
        s.write_all(b"0\r\n\r\n").await.unwrap();
    }
    let head = read_head(&mut s).await;
    let mut body = vec![0u8; 2];
    s.read_exact(&mut body).await.unwrap();
    format!(
        "{} {}",
        head.lines().next().unwrap_or(""),
        String::from_utf8_lossy(&body)
    )
}

#[tokio::test]
async fn a_moving_upload_outlasts_timeout_server_on_both_engines() {
    bounded!(async {
        let a = Backend::start("a").await;
        for fast in [true, false] {
            let (mut fe, mut be) = simple_config(servers(&[&a]));
            fe.h1_fast_path = fast;
            be.timeout_server = SERVER_IDLE;
            let proxy = start(fe, be).await;
            let addr = proxy.local_addr("fe").unwrap();
            for chunked in [false, true] {
                let t = Instant::now();
                let out = slow_upload(addr, chunked).await;
                assert_eq!(
                    out, "http/1.1 200 ok 15",
                    "fast path {fast}, chunked {chunked}"
                );
                assert!(t.elapsed() > SERVER_IDLE * 4);
            }
            let st = proxy.stats();
            assert_eq!(st.backend("be").unwrap().counters.errors.timeout, 0);
            // A server that stays silent is still cut: 504.
            let r = get(addr, "/slow?ms=3000").await;
            assert_eq!(r.status, 504, "fast path {fast}");
            assert_eq!(
                proxy.stats().backend("be").unwrap().counters.errors.timeout,
                1
            );
            proxy.shutdown().await;
        }
    });
}

/// Open a WebSocket-style tunnel through `addr` to the backend's `/ws`
/// echo; returns the client side once the `101` is in.
async fn open_tunnel(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("http/1.1 101"), "{head}");
    s
}

/// Send `msg` through the tunnel and read its echo.
async fn echo(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Wait until the peer closes `s`; how long that took.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> Duration {
    let t = Instant::now();
    let mut b = [0u8; 64];
    let n = tokio::time::timeout(limit, s.read(&mut b))
        .await
        .expect("the tunnel stayed open")
        .unwrap_or(0);
    assert_eq!(n, 0, "data instead of a close");
    t.elapsed()
}

#[tokio::test]
async fn an_idle_tunnel_is_closed_after_timeout_tunnel() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, mut be) = simple_config(servers(&[&a]));
        be.timeout_tunnel = Some(Duration::from_millis(400));
        // Longer than the tunnel's limit: the tunnel's own limit applies.
        be.timeout_server = Duration::from_secs(30);
        let proxy = start(fe, be).await;
        let mut s = open_tunnel(proxy.local_addr("fe").unwrap()).await;
        // Traffic every 200 ms keeps it open well past its idle limit.
        for i in 0..8u8 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            echo(&mut s, &[b'a' + i; 8]).await;
        }
        let idle = closed_within(&mut s, Duration::from_secs(5)).await;
        assert!(idle >= Duration::from_millis(350), "closed after {idle:?}");
        let st = proxy.stats();
        assert_eq!(st.frontend("fe").unwrap().sessions_current, 0);
        assert_eq!(st.backend("be").unwrap().counters.errors.timeout, 1);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn a_tunnel_holds_its_maxconn_slot_until_it_ends() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.maxconn = 1;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = open_tunnel(addr).await;
        echo(&mut s, b"hello").await;
        assert_eq!(proxy.stats().frontend("fe").unwrap().sessions_current, 1);
        let blocked = tokio::spawn(get(addr, "/"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !blocked.is_finished(),
            "served past maxconn while a tunnel was open"
        );
        drop(s);
        assert_eq!(blocked.await.unwrap().status, 200);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn shutdown_waits_for_a_tunnel_then_cuts_it_after_the_grace() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let mut cfg = sluice_proxy::ProxyConfig::new(vec![fe], vec![be]);
        let grace = Duration::from_millis(500);
        cfg.shutdown_grace = grace;
        let proxy = sluice_proxy::Proxy::start(cfg).await.unwrap();
        let mut s = open_tunnel(proxy.local_addr("fe").unwrap()).await;
        echo(&mut s, b"before").await;
        let t = Instant::now();
        let stopping = tokio::spawn(async move { proxy.shutdown().await });
        // Draining: the tunnel still works.
        tokio::time::sleep(grace / 5).await;
        echo(&mut s, b"during").await;
        closed_within(&mut s, Duration::from_secs(5)).await;
        stopping.await.unwrap();
        let took = t.elapsed();
        assert!(
            took >= grace,
            "shutdown did not wait for the tunnel: {took:?}"
        );
        assert!(took < grace + Duration::from_secs(2), "{took:?}");
    });
}
