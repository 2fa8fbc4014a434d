//! The HTTP/1 fast path end to end: requests it relays itself, requests it
//! hands to hyper's path on the same connection, response framings, and
//! pooled connections the server closed.
#![allow(clippy::unwrap_used, missing_docs)]

#[macro_use]
mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::*;
use sluice_proxy::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A proxy in front of one test backend, and a client connected to it.
/// The backend must be kept alive as long as the proxy is used.
async fn proxy_with_client() -> (Backend, sluice_proxy::ProxyHandle, TcpStream) {
    let a = Backend::start("a").await;
    let (fe, be) = simple_config(servers(&[&a]));
    let proxy = start(fe, be).await;
    let c = TcpStream::connect(proxy.local_addr("fe").unwrap())
        .await
        .unwrap();
    (a, proxy, c)
}

/// Read from `c` until what came ends with `end` (a response whose body
/// is known); the connection must stay open until then.
async fn read_until_end(c: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    while !got.ends_with(end) {
        let mut b = [0u8; 1024];
        let n = c.read(&mut b).await.unwrap();
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&b[..n]);
    }
    got
}

/// Read one HTTP/1 request head and its `Content-Length` body from `s`.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let whole = String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            buf.drain(..end + 4 + len);
            return Some(whole);
        }
        let mut chunk = [0u8; 4096];
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test]
async fn pipelined_requests_switch_to_hyper_at_a_request_boundary() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        // Fast path, then a chunked body (hyper's path), then HTTP/1.1
        // again (hyper's path keeps the connection), all in one write.
        let raw = b"GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
            POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n\
            GET /three HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
        let out = raw_exchange(proxy.local_addr("fe").unwrap(), raw, Duration::from_secs(5)).await;
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
        assert!(out.contains("hello"), "{out}");
        assert_eq!(*a.paths.lock().unwrap(), ["/one", "/echo", "/three"]);
        assert_eq!(proxy.stats().frontend("fe").unwrap().requests, 3);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn pipelined_fast_requests_are_answered_in_order() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let mut raw = Vec::new();
        for i in 0..5 {
            raw.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        }
        raw.extend_from_slice(
            b"POST /collect HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
        );
        let out = raw_exchange(
            proxy.local_addr("fe").unwrap(),
            &raw,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 6, "{out}");
        assert!(out.ends_with("3"), "{out}");
        assert_eq!(
            *a.paths.lock().unwrap(),
            ["/p0", "/p1", "/p2", "/p3", "/p4", "/collect"]
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn response_framings_are_relayed_and_keep_alive_follows_them() {
    bounded!(async {
        // A raw server answering by path: chunked in pieces, 204, HEAD, and
        // a body delimited by closing the connection.
        let (srv, accepts, _task) = raw_server(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            while let Some(req) = read_request(&mut s, &mut buf).await {
                let parts: &[&[u8]] = if req.starts_with("GET /chunked") {
                    &[
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n",
                        b"3;x=y\r\nefg\r\n0\r\nX-Trailer: 1\r\n\r\n",
                    ]
                } else if req.starts_with("GET /nocontent") {
                    &[b"HTTP/1.1 204 No Content\r\n\r\n"]
                } else if req.starts_with("HEAD") {
                    &[b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"]
                } else {
                    &[b"HTTP/1.1 200 OK\r\n\r\nuntil-close"]
                };
                for p in parts {
                    s.write_all(p).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                if req.starts_with("GET /close") {
                    return;
                }
            }
        })
        .await;
        let (fe, be) = simple_config(vec![ServerConfig::new("raw", srv)]);
        let proxy = start(fe, be).await;
        let mut c = TcpStream::connect(proxy.local_addr("fe").unwrap())
            .await
            .unwrap();
        let ask = async |c: &mut TcpStream, req: &str, until: &str| {
            c.write_all(req.as_bytes()).await.unwrap();
            let mut out = Vec::new();
            while !String::from_utf8_lossy(&out).ends_with(until) {
                let mut b = [0u8; 4096];
                let n = c.read(&mut b).await.unwrap();
                assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&out));
                out.extend_from_slice(&b[..n]);
            }
            String::from_utf8(out).unwrap()
        };
        let out = ask(
            &mut c,
            "GET /chunked HTTP/1.1\r\nHost: t\r\n\r\n",
            "efg\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .await;
        assert!(out.contains("Transfer-Encoding: chunked"), "{out}");
        assert!(out.contains("4\r\nabcd\r\n3;x=y\r\nefg\r\n"), "{out}");
        let out = ask(
            &mut c,
            "GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\n",
            "\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 204"), "{out}");
        let out = ask(&mut c, "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n", "\r\n\r\n").await;
        assert!(
            out.to_ascii_lowercase().contains("content-length: 1000"),
            "{out}"
        );
        // All of that on one server connection, reused from the pool.
        assert_eq!(accepts.load(SeqCst), 1);
        // A body that ends when the server closes: the client connection
        // closes after it too, and says so.
        c.write_all(b"GET /close HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nuntil-close"), "{out}");
        let s = proxy.stats();
        assert_eq!(s.frontend("fe").unwrap().requests, 4);
        assert_eq!(s.backend("be").unwrap().counters.errors.response, 0);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced() {
    bounded!(async {
        // Answers one request per connection, then closes without saying
        // so (as a server whose keep-alive timeout just ran out).
        let (srv, accepts, _task) = raw_server(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            if read_request(&mut s, &mut buf).await.is_some() {
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await
                    .unwrap();
            }
        })
        .await;
        let (fe, be) = simple_config(vec![ServerConfig::new("raw", srv)]);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        for _ in 0..5 {
            let r = get(addr, "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.body, "ok");
        }
        assert_eq!(accepts.load(SeqCst), 5);
        let s = proxy.stats();
        let be = s.backend("be").unwrap();
        assert_eq!(be.counters.errors.response, 0);
        assert_eq!(be.counters.errors.connect, 0);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn a_response_head_that_does_not_parse_gives_502() {
    bounded!(async {
        let (srv, _, _task) = raw_server(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            if read_request(&mut s, &mut buf).await.is_some() {
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
                    )
                    .await;
            }
        })
        .await;
        let (fe, be) = simple_config(vec![ServerConfig::new("raw", srv)]);
        let proxy = start(fe, be).await;
        let r = get(proxy.local_addr("fe").unwrap(), "/").await;
        assert_eq!(r.status, 502);
        assert_eq!(
            proxy
                .stats()
                .backend("be")
                .unwrap()
                .counters
                .errors
                .response,
            1
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn draining_ends_a_kept_alive_connection_after_the_response_in_flight() {
    bounded!(async {
        let (_a, proxy, mut c) = proxy_with_client().await;
        c.write_all(b"GET /slow?ms=300 HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let shutdown = tokio::spawn(async move { proxy.shutdown().await });
        // The response still comes, says it is the last, and the
        // connection closes after it (read_to_string returns).
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\na"), "{out}");
        shutdown.await.unwrap();
    });
}

/// An idle kept-alive connection (its response delivered, no request in
/// flight) is closed as soon as the proxy drains, not at the end of the
/// shutdown grace period (10 s by default): the connection's drain wait
/// must wake it even though it is polled only on its own wake-up.
#[tokio::test]
async fn draining_closes_an_idle_kept_alive_connection_at_once() {
    bounded!(async {
        let (_a, proxy, mut c) = proxy_with_client().await;
        // Several exchanges first: the task wakes many times for its
        // sockets before the drain comes.
        for _ in 0..5 {
            c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .await
                .unwrap();
            read_until_end(&mut c, b"\r\n\r\na").await;
        }
        let started = std::time::Instant::now();
        let shutdown = tokio::spawn(async move { proxy.shutdown().await });
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        shutdown.await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the idle connection was kept until the grace period ran out ({:?})",
            started.elapsed()
        );
    });
}

#[tokio::test]
async fn http10_clients_get_bodies_without_chunking_and_keep_alive_when_asked() {
    bounded!(async {
        let (srv, _, _task) = raw_server(|mut s: TcpStream| async move {
            let mut buf = Vec::new();
            while let Some(req) = read_request(&mut s, &mut buf).await {
                // The proxy asks in HTTP/1.1 whatever the client spoke.
                assert!(req.contains(" HTTP/1.1\r\n"), "{req}");
                let resp: &[u8] = if req.starts_with("GET /chunked") {
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
                } else {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
                };
                s.write_all(resp).await.unwrap();
            }
        })
        .await;
        let (fe, be) = simple_config(vec![ServerConfig::new("raw", srv)]);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // Chunked from the server: plain bytes to the client, ended by the
        // close; the interim 100 is not passed on.
        let out = raw_exchange(
            addr,
            b"GET /chunked HTTP/1.0\r\n\r\n",
            Duration::from_secs(5),
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(!out.contains("100 Continue"), "{out}");
        assert!(!out.to_lowercase().contains("transfer-encoding"), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nabcdefg"), "{out}");
        // Keep-alive when asked: two requests on one connection.
        let mut c = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            c.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .await
                .unwrap();
            let got = read_until_end(&mut c, b"\r\n\r\nok").await;
            let got = String::from_utf8(got).unwrap();
            assert!(got.contains("connection: keep-alive\r\n"), "{got}");
        }
        // Without it, the connection closes after the response.
        let out = raw_exchange(addr, b"GET / HTTP/1.0\r\n\r\n", Duration::from_secs(5)).await;
        assert!(out.ends_with("\r\n\r\nok"), "{out}");
        proxy.shutdown().await;
    });
}
