//! `mode http` end to end: real hyper backends, the proxy, hyper and curl clients.
#![allow(clippy::unwrap_used, missing_docs)]

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::BodyExt;
use sluice_proxy::{L7Algorithm, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn weighted_roundrobin_across_three_servers() {
    bounded!(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let mut srv = servers(&[&a, &b, &c]);
        srv[0].weight = 2;
        let (fe, be) = simple_config(srv);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let client = client();
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..40 {
            let resp = client
                .get(format!("http://{addr}/").parse().unwrap())
                .await
                .unwrap();
            let r = collect(resp).await;
            assert_eq!(r.status, 200);
            *counts
                .entry(r.headers["x-server"].to_str().unwrap().to_owned())
                .or_default() += 1;
        }
        assert_eq!(counts["a"], 20, "{counts:?}");
        assert_eq!(counts["b"], 10, "{counts:?}");
        assert_eq!(counts["c"], 10, "{counts:?}");
        let st = proxy.stats();
        let be = st.backend("be").unwrap();
        assert_eq!(be.counters.requests, 40);
        assert_eq!(be.counters.responses.http_2xx, 40);
        assert_eq!(be.server("a").unwrap().counters.sessions_total, 20);
        assert_eq!(st.frontend("fe").unwrap().requests, 40);
        // The snapshot serialises.
        let json = serde_json::to_string(&st).unwrap();
        assert!(json.contains("\"http_2xx\":40"), "{json}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn backend_connections_are_reused_across_client_connections() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        for _ in 0..20 {
            // A new client connection each time.
            let r = get(addr, "/").await;
            assert_eq!(r.status, 200);
            // Let the pool take the connection back before the next request.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let accepts = a.accepts.load(SeqCst);
        assert_eq!(a.requests.load(SeqCst), 20);
        assert!(
            accepts < 5,
            "backend accepted {accepts} connections for 20 requests"
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn idle_backend_connections_expire_after_the_pool_timeout() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, mut be) = simple_config(servers(&[&a]));
        be.pool_idle_timeout = Duration::from_millis(150);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut accepts = vec![];
        for pause_ms in [5, 5, 400, 5] {
            let r = get(addr, "/").await;
            assert_eq!(r.status, 200);
            accepts.push(a.accepts.load(SeqCst));
            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        }
        // Reused while fresh; after a pause beyond the idle timeout the
        // pooled connection is not used again, one new one is made and
        // reused in turn.
        assert_eq!(accepts, [1, 1, 1, 2], "backend accepts after each request");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn chunked_request_and_response_are_streamed() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();

        // Response: 5 chunks with pauses between them.
        let r = get(addr, "/chunked").await;
        assert_eq!(r.body, "chunk0;chunk1;chunk2;chunk3;chunk4;");

        // Request: the echo must start before the upload ends (streaming, not buffering).
        let (tx, body) = ChannelBody::new();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::post("/echo")
            .header("host", "t")
            .body(body.boxed())
            .unwrap();
        let resp_fut = tokio::spawn(sender.send_request(req));
        tx.send(Bytes::from_static(b"first;")).await.unwrap();
        let resp = resp_fut.await.unwrap().unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "first;");
        tx.send(Bytes::from_static(b"second;")).await.unwrap();
        drop(tx);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(rest, "second;");
        let h = a.last_headers.lock().unwrap().clone().unwrap();
        assert_eq!(h["transfer-encoding"], "chunked");

        // The same with curl (chunked upload from stdin).
        let out = tokio::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "5",
                "-H",
                "Transfer-Encoding: chunked",
                "--data-binary",
                "@-",
            ])
            .arg(format!("http://{addr}/echo"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut child = out;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"hello from curl")
            .await
            .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from curl");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn forwarded_headers_and_hop_by_hop() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.forwardfor = true;
        fe.via = true;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let req = Request::get("/")
            .header("host", "example.test")
            .header("x-forwarded-for", "10.1.1.1")
            .header("connection", "keep-alive, x-private")
            .header("x-private", "secret")
            .header("keep-alive", "timeout=5")
            .header("proxy-connection", "keep-alive")
            .header("te", "trailers")
            .header("x-normal", "kept")
            .body(empty())
            .unwrap();
        let r = send(addr, req).await;
        assert_eq!(r.status, 200);
        let h = a.last_headers.lock().unwrap().clone().unwrap();
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["host"], "example.test");
        assert_eq!(h["x-normal"], "kept");
        assert_eq!(h["via"], "1.1 sluice");
        for gone in ["x-private", "keep-alive", "proxy-connection", "te"] {
            assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
        }
        // Response side: the backend's Keep-Alive header is not passed on.
        assert!(!r.headers.contains_key("keep-alive"));
        assert_eq!(r.headers["via"], "1.1 sluice");

        // curl sees the same proxy.
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "5", "-D", "-"])
            .arg(format!("http://{addr}/"))
            .output()
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{text}");
        assert!(text.contains("x-server: a"), "{text}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn smuggling_attempts_are_neutralised() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // Differing Content-Length values: 400, no backend contact.
        let two_cl =
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde";
        let out = raw_exchange(addr, two_cl, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert_eq!(a.accepts.load(SeqCst), 0);
        // Non-chunked Transfer-Encoding: 400 (hyper).
        let te = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n";
        let out = raw_exchange(addr, te, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert_eq!(a.accepts.load(SeqCst), 0);
        // CL.TE and TE.CL smuggling: hyper drops Content-Length before the
        // proxy sees the parsed request, but the raw head scanner saw both:
        // 400, connection closed, no backend contact.
        let smuggle = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";
        for order in [
            format!(
                "Content-Length: {}\r\nTransfer-Encoding: chunked",
                smuggle.len()
            ),
            format!(
                "Transfer-Encoding: chunked\r\nContent-Length: {}",
                smuggle.len()
            ),
        ] {
            let req = format!("POST /first HTTP/1.1\r\nHost: t\r\n{order}\r\n\r\n{smuggle}");
            let out = raw_exchange(addr, req.as_bytes(), Duration::from_secs(3)).await;
            assert!(out.starts_with("HTTP/1.1 400"), "{out}");
            assert!(
                out.to_ascii_lowercase().contains("connection: close"),
                "{out}"
            );
            assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
        }
        assert_eq!(a.accepts.load(SeqCst), 0);
        let st = proxy.stats();
        assert!(st.frontend("fe").unwrap().errors.request >= 2);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn ambiguous_framing_is_rejected_per_request_on_a_kept_alive_connection() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // Lowercase names, obs-fold, and a pipelined bad request after two
        // good ones (one with a chunked body that hides a fake head).
        for bad in [
            "content-length: 5\r\ntransfer-encoding: chunked",
            "X-A: 1\r\n Transfer-Encoding: chunked\r\nContent-Length: 5",
            "Transfer-Encoding : chunked\r\nContent-Length: 5",
        ] {
            let hidden =
                "GET /hidden HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
            let req = format!(
                "GET /one HTTP/1.1\r\nHost: t\r\n\r\n\
                 POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{hidden}\r\n0\r\n\r\n\
                 POST /bad HTTP/1.1\r\nHost: t\r\n{bad}\r\n\r\n0\r\n\r\n\
                 GET /after HTTP/1.1\r\nHost: t\r\n\r\n",
                hidden.len()
            );
            let out = raw_exchange(addr, req.as_bytes(), Duration::from_secs(3)).await;
            let statuses: Vec<&str> = out
                .match_indices("HTTP/1.1 ")
                .map(|(i, _)| &out[i + 9..i + 12])
                .collect();
            assert_eq!(statuses, ["200", "200", "400"], "{bad}: {out}");
            assert!(out.contains(hidden), "the echoed body is intact: {out}");
        }
        let paths = a.paths.lock().unwrap().clone();
        assert_eq!(paths.len(), 6, "{paths:?}");
        assert!(
            paths.iter().all(|p| p == "/one" || p == "/echo"),
            "{paths:?}"
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_timeout_http_keep_alive() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.timeout_http_keep_alive = Duration::from_millis(300);
        fe.timeout_http_request = Duration::from_secs(10);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        let closed = tokio::spawn(async move {
            let _ = conn.await;
            Instant::now()
        });
        let req = || Request::get("/").header("host", "t").body(empty()).unwrap();
        let r = collect(sender.send_request(req()).await.unwrap()).await;
        assert_eq!(r.status, 200);
        // Within the keep-alive time the connection is reused.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let r = collect(sender.send_request(req()).await.unwrap()).await;
        assert_eq!(r.status, 200);
        let idle_from = Instant::now();
        let closed_at = closed.await.unwrap();
        let idle = closed_at - idle_from;
        assert!(
            idle >= Duration::from_millis(250) && idle < Duration::from_secs(3),
            "closed after {idle:?} idle"
        );
        assert_eq!(a.requests.load(SeqCst), 2);
        // An idle close is not an error.
        assert_eq!(proxy.stats().frontend("fe").unwrap().errors.request, 0);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn keep_alive_idleness_is_not_bounded_by_timeout_http_request() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.timeout_http_request = Duration::from_millis(200);
        fe.timeout_http_keep_alive = Duration::from_secs(10);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n";
        let mut buf = vec![0u8; 4096];
        for _ in 0..2 {
            s.write_all(req).await.unwrap();
            let n = s.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            // Idle longer than timeout_http_request, shorter than keep-alive.
            tokio::time::sleep(Duration::from_millis(600)).await;
        }
        // A slow head on the same connection is still cut by timeout_http_request.
        let t = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest))
            .await
            .expect("slow head not cut")
            .unwrap();
        assert!(
            t.elapsed() >= Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(a.requests.load(SeqCst), 2);
        assert_eq!(proxy.stats().frontend("fe").unwrap().errors.request, 1);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn oversized_headers_get_431() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.max_header_size = 2048;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(4096)
        );
        let out = raw_exchange(addr, big.as_bytes(), Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        // Under the limit is fine.
        let ok = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: {}\r\n\r\n",
            "a".repeat(1024)
        );
        let out = raw_exchange(addr, ok.as_bytes(), Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(a.requests.load(SeqCst), 1);
        // hyper sent the 431 itself; the frontend still counts it.
        let stats = proxy.stats();
        let fe = stats.frontend("fe").unwrap();
        assert_eq!((fe.responses.http_4xx, fe.errors.request), (1, 1), "{fe:?}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn slowloris_is_cut_after_timeout_http_request() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.timeout_http_request = Duration::from_millis(300);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let t = Instant::now();
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").await.unwrap();
        let mut buf = Vec::new();
        // The proxy must close (possibly after a 408) well before our 5 s limit.
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection still open after 5 s");
        let elapsed = t.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250),
            "closed too early: {elapsed:?}"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
        assert_eq!(a.accepts.load(SeqCst), 0);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn a_client_stalling_mid_body_gets_408_after_timeout_client() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.timeout_client = Duration::from_millis(300);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let t = Instant::now();
        // 10 of the 100 announced bytes, then silence.
        s.write_all(b"POST /collect HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n0123456789")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "connection still open after 5 s");
        let elapsed = t.elapsed();
        assert!(
            elapsed >= Duration::from_millis(250),
            "cut too early: {elapsed:?}"
        );
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn a_slow_but_steady_body_is_not_cut() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.timeout_client = Duration::from_millis(300);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /collect HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
        // 8 bytes, one every 150 ms: 1.2 s in all, never 300 ms idle.
        for b in b"abcdefgh" {
            tokio::time::sleep(Duration::from_millis(150)).await;
            s.write_all(&[*b]).await.unwrap();
        }
        let mut buf = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("\n8") || text.ends_with("8"), "{text}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn connect_failure_is_retried_on_another_server_then_503() {
    bounded!(async {
        let a = Backend::start("a").await;
        let dead = dead_addr().await;
        let srv = vec![
            ServerConfig::new("dead", dead),
            ServerConfig::new("a", a.addr),
        ];
        let (fe, be) = simple_config(srv);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        for _ in 0..6 {
            let r = get(addr, "/").await;
            assert_eq!(r.status, 200);
            assert_eq!(r.headers["x-server"], "a");
        }
        let st = proxy.stats();
        let be = st.backend("be").unwrap();
        assert!(be.counters.retries >= 3, "{:?}", be.counters);
        assert!(be.counters.redispatches >= 3);
        assert!(be.server("dead").unwrap().counters.errors.connect >= 3);
        proxy.shutdown().await;

        // Every server down: 503 after the retries.
        let srv = vec![
            ServerConfig::new("d1", dead_addr().await),
            ServerConfig::new("d2", dead_addr().await),
        ];
        let (fe, be) = simple_config(srv);
        let proxy = start(fe, be).await;
        let r = get(proxy.local_addr("fe").unwrap(), "/").await;
        assert_eq!(r.status, 503);
        let st = proxy.stats();
        let be = st.backend("be").unwrap();
        assert_eq!(be.counters.errors.connect, 4, "1 try + 3 retries");
        assert_eq!(be.counters.responses.http_5xx, 1);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn every_algorithm_serves_and_redispatches_past_a_dead_server() {
    bounded!(async {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        for balance in L7Algorithm::ALL {
            let mut srv = servers(&[&a, &b]);
            srv.insert(1, ServerConfig::new("dead", dead_addr().await));
            let (fe, mut be) = simple_config(srv);
            be.balance = balance;
            let proxy = start(fe, be).await;
            let addr = proxy.local_addr("fe").unwrap();
            for i in 0..24 {
                let r = get(addr, &format!("/p{i}")).await;
                assert_eq!(r.status, 200, "{balance:?}");
                assert_ne!(r.headers["x-server"], "dead", "{balance:?}");
            }
            let st = proxy.stats();
            let be = st.backend("be").unwrap();
            // Every failed connect was followed by a redispatch that succeeded.
            assert_eq!(
                be.counters.errors.connect, be.counters.redispatches,
                "{balance:?}"
            );
            assert_eq!(be.counters.responses.http_2xx, 24, "{balance:?}");
            if matches!(
                balance,
                L7Algorithm::RoundRobin | L7Algorithm::StaticRr | L7Algorithm::Uri
            ) {
                assert!(
                    be.counters.errors.connect > 0,
                    "{balance:?} never chose the dead server"
                );
            }
            proxy.shutdown().await;
        }
    });
}

#[tokio::test]
async fn uri_balance_is_sticky_per_path() {
    bounded!(async {
        let (a, b, c) = (
            Backend::start("a").await,
            Backend::start("b").await,
            Backend::start("c").await,
        );
        let (fe, mut be) = simple_config(servers(&[&a, &b, &c]));
        be.balance = L7Algorithm::Uri;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut seen = std::collections::HashSet::new();
        for p in 0..30 {
            let first = get(addr, &format!("/obj{p}?v=1")).await.headers["x-server"].clone();
            let again = get(addr, &format!("/obj{p}?v=2")).await.headers["x-server"].clone();
            assert_eq!(first, again, "/obj{p}");
            seen.insert(first);
        }
        assert_eq!(seen.len(), 3, "{seen:?}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn server_closing_mid_response_gives_502() {
    bounded!(async {
        let (bad, _, _task) = raw_server(|mut s: TcpStream| async move {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le").await;
        })
        .await;
        let (fe, be) = simple_config(vec![ServerConfig::new("bad", bad)]);
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
async fn server_timeout_gives_504() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, mut be) = simple_config(servers(&[&a]));
        be.timeout_server = Duration::from_millis(200);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let t = Instant::now();
        let r = get(addr, "/slow?ms=3000").await;
        assert_eq!(r.status, 504);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(get(addr, "/slow?ms=10").await.status, 200);
        assert_eq!(
            proxy.stats().backend("be").unwrap().counters.errors.timeout,
            1
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn backup_used_only_when_primaries_are_down() {
    bounded!(async {
        let (p1, p2, bk) = (
            Backend::start("p1").await,
            Backend::start("p2").await,
            Backend::start("bk").await,
        );
        let mut srv = servers(&[&p1, &p2, &bk]);
        srv[2].backup = true;
        let (fe, be) = simple_config(srv);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        for _ in 0..6 {
            assert_ne!(get(addr, "/").await.headers["x-server"], "bk");
        }
        proxy.set_server_state("be", "p1", false).unwrap();
        for _ in 0..3 {
            assert_eq!(get(addr, "/").await.headers["x-server"], "p2");
        }
        proxy.set_server_state("be", "p2", false).unwrap();
        for _ in 0..3 {
            assert_eq!(get(addr, "/").await.headers["x-server"], "bk");
        }
        proxy.set_server_state("be", "p1", true).unwrap();
        assert_eq!(get(addr, "/").await.headers["x-server"], "p1");
        // Weight 0 drains a server; unknown names are errors.
        proxy.set_weight("be", "p1", 0).unwrap();
        assert_eq!(get(addr, "/").await.headers["x-server"], "bk");
        assert!(proxy.set_weight("be", "nope", 1).is_err());
        assert!(proxy.set_server_state("nope", "p1", true).is_err());
        let st = proxy.stats();
        assert!(!st.backend("be").unwrap().server("p2").unwrap().up);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn leastconn_and_source_balance() {
    bounded!(async {
        let (a, b) = (Backend::start("a").await, Backend::start("b").await);
        let (fe, mut be) = simple_config(servers(&[&a, &b]));
        be.balance = L7Algorithm::LeastConn;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // One slow request holds a; the next requests go to b.
        let slow = tokio::spawn(get(addr, "/slow?ms=500"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let busy = if a.in_flight.load(SeqCst) == 1 {
            "a"
        } else {
            "b"
        };
        for _ in 0..3 {
            assert_ne!(get(addr, "/").await.headers["x-server"], busy);
        }
        assert_eq!(slow.await.unwrap().status, 200);
        proxy.shutdown().await;

        let (fe, mut be) = simple_config(servers(&[&a, &b]));
        be.balance = L7Algorithm::Source;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let first = get(addr, "/").await.headers["x-server"].clone();
        for _ in 0..5 {
            assert_eq!(get(addr, "/").await.headers["x-server"], first);
        }
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn server_maxconn_queues_then_times_out() {
    bounded!(async {
        let a = Backend::start("a").await;
        let mut srv = servers(&[&a]);
        srv[0].maxconn = 1;
        let (fe, be) = simple_config(srv.clone());
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let t = Instant::now();
        let tasks: Vec<_> = (0..3)
            .map(|_| tokio::spawn(get(addr, "/slow?ms=200")))
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().status, 200);
        }
        assert_eq!(a.max_in_flight.load(SeqCst), 1, "maxconn 1 exceeded");
        assert!(
            t.elapsed() >= Duration::from_millis(550),
            "{:?}",
            t.elapsed()
        );
        proxy.shutdown().await;

        // timeout_queue shorter than a request: the waiting one gets a 503.
        let (fe, mut be) = simple_config(srv);
        be.timeout_queue = Duration::from_millis(100);
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let first = tokio::spawn(get(addr, "/slow?ms=600"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let second = get(addr, "/").await;
        assert_eq!(second.status, 503);
        assert_eq!(first.await.unwrap().status, 200);
        assert_eq!(
            proxy.stats().backend("be").unwrap().counters.errors.queue,
            1
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn frontend_maxconn_stops_accepting() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.maxconn = 1;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // Connection A holds the only slot (keep-alive, idle after one request).
        let sa = TcpStream::connect(addr).await.unwrap();
        let (mut ca, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(sa))
                .await
                .unwrap();
        let conn_a = tokio::spawn(conn);
        let r = ca
            .send_request(Request::get("/").header("host", "t").body(empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // Connection B's request waits in the backlog while A is open.
        let b = tokio::spawn(get(addr, "/"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !b.is_finished(),
            "second connection was served past maxconn 1"
        );
        assert_eq!(a.requests.load(SeqCst), 1);
        drop(ca);
        conn_a.abort();
        let r = b.await.unwrap();
        assert_eq!(r.status, 200);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn session_rate_limit() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.rate_limit_sessions = 5;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let t = Instant::now();
        let tasks: Vec<_> = (0..10).map(|_| tokio::spawn(get(addr, "/"))).collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().status, 200);
        }
        // Burst of 5, then one every 200 ms: the 10th is accepted at ~1 s.
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(850),
            "10 sessions at 5/s took only {e:?}"
        );
        assert!(e < Duration::from_secs(3), "{e:?}");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn proxy_protocol_sent_to_servers() {
    bounded!(async {
        for v in [sluice_proxy::SendProxy::V1, sluice_proxy::SendProxy::V2] {
            let a = Backend::start_with("a", true).await;
            let (fe, mut be) = simple_config(servers(&[&a]));
            be.send_proxy = v;
            let proxy = start(fe, be).await;
            let addr = proxy.local_addr("fe").unwrap();
            let s = TcpStream::connect(addr).await.unwrap();
            let client_addr = s.local_addr().unwrap();
            let (mut c, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s))
                    .await
                    .unwrap();
            tokio::spawn(conn);
            for _ in 0..2 {
                let r = c
                    .send_request(Request::get("/").header("host", "t").body(empty()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let _ = r.into_body().collect().await;
            }
            let hs = a.proxy_headers.lock().unwrap().clone();
            assert!(!hs.is_empty());
            for h in hs {
                assert_eq!(
                    h,
                    sluice_proxy::proxy_protocol::ProxyHeader::Proxied {
                        src: client_addr,
                        dst: addr
                    },
                    "{v:?}"
                );
            }
            proxy.shutdown().await;
        }
    });
}

#[tokio::test]
async fn proxy_protocol_accepted_feeds_xff() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.accept_proxy = true;
        fe.forwardfor = true;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let hdr = sluice_proxy::proxy_protocol::encode_v2(
            "203.0.113.7:4000".parse().unwrap(),
            "198.51.100.1:80".parse().unwrap(),
        );
        let mut req = hdr;
        req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(addr, &req, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let h = a.last_headers.lock().unwrap().clone().unwrap();
        assert_eq!(h["x-forwarded-for"], "203.0.113.7");

        // v1 works too; garbage instead of a header closes the connection.
        let mut req = b"PROXY TCP4 192.0.2.9 192.0.2.1 5555 80\r\n".to_vec();
        req.extend_from_slice(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let out = raw_exchange(addr, &req, Duration::from_secs(3)).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert_eq!(
            a.last_headers.lock().unwrap().clone().unwrap()["x-forwarded-for"],
            "192.0.2.9"
        );
        let out = raw_exchange(
            addr,
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(3),
        )
        .await;
        assert_eq!(out, "");
        assert_eq!(proxy.stats().frontend("fe").unwrap().denied, 1);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn websocket_upgrade_is_tunnelled() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
        let mut buf = vec![0u8; 1024];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&got).to_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(head.contains("upgrade: websocket"), "{head}");
        s.write_all(b"ping over the tunnel").await.unwrap();
        let mut echo = vec![0u8; 20];
        s.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, b"ping over the tunnel");
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn several_bind_addresses_share_limits_and_counters() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        fe.bind.push("127.0.0.1:0".parse().unwrap());
        fe.bind.push("[::1]:0".parse().unwrap());
        fe.maxconn = 2;
        let proxy = match sluice_proxy::Proxy::start(sluice_proxy::ProxyConfig::new(
            vec![fe.clone()],
            vec![be.clone()],
        ))
        .await
        {
            Ok(p) => p,
            Err(e) => {
                // No IPv6 loopback here: two IPv4 binds still show the sharing.
                eprintln!("no [::1] ({e}); testing two IPv4 binds");
                fe.bind.pop();
                start(fe, be).await
            }
        };
        let addrs = proxy.local_addrs_of("fe");
        assert!(addrs.len() >= 2, "{addrs:?}");
        assert_eq!(proxy.local_addrs().len(), addrs.len());
        assert_eq!(proxy.local_addr("fe"), Some(addrs[0]));
        assert_ne!(addrs[0], addrs[1]);
        for &addr in &addrs {
            assert_eq!(get(addr, "/").await.status, 200, "{addr}");
        }
        let st = proxy.stats();
        let n = addrs.len() as u64;
        assert_eq!(st.frontend("fe").unwrap().requests, n);
        assert_eq!(st.frontend("fe").unwrap().sessions_total, n);

        // maxconn 2 counts connections on every bind together: two open
        // connections on the first address block accepting on the second.
        let hold1 = TcpStream::connect(addrs[0]).await.unwrap();
        let hold2 = TcpStream::connect(addrs[0]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let blocked = tokio::spawn(get(addrs[1], "/"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!blocked.is_finished(), "accepted past the shared maxconn");
        drop(hold1);
        assert_eq!(blocked.await.unwrap().status, 200);
        drop(hold2);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn bind_errors_are_reported_before_serving() {
    // (`fe` binds 127.0.0.1:0 first, then the taken address.)
    bounded!(async {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = Backend::start("a").await;
        let (mut fe, be) = simple_config(servers(&[&a]));
        // The second address is taken: nothing is served, not even the first.
        fe.bind.push(taken.local_addr().unwrap());
        let err = sluice_proxy::Proxy::start(sluice_proxy::ProxyConfig::new(
            vec![fe.clone()],
            vec![be.clone()],
        ))
        .await
        .unwrap_err();
        assert!(
            matches!(err, sluice_proxy::ProxyError::Bind { .. }),
            "{err}"
        );
        fe.bind.pop();
        fe.default_backend = "missing".into();
        let err = sluice_proxy::Proxy::start(sluice_proxy::ProxyConfig::new(vec![fe], vec![be]))
            .await
            .unwrap_err();
        assert!(matches!(err, sluice_proxy::ProxyError::Config(_)), "{err}");
    });
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    bounded!(async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        let slow = tokio::spawn(get(addr, "/slow?ms=300"));
        tokio::time::sleep(Duration::from_millis(100)).await;
        proxy.shutdown().await;
        assert_eq!(slow.await.unwrap().status, 200);
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
    });
}
