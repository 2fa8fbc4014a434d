//! `mode tcp` end to end.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_proxy::proxy_protocol::{self, ProxyHeader};
use sluice_proxy::{Mode, SendProxy, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

macro_rules! bounded {
    ($body:expr) => {
        tokio::time::timeout(TEST_TIMEOUT, $body)
            .await
            .expect("test timed out")
    };
}

/// Reads to EOF, then echoes everything back and closes: only works if the
/// proxy passes the client's half-close on.
async fn echo_after_eof(mut s: TcpStream) {
    let mut all = Vec::new();
    if s.read_to_end(&mut all).await.is_ok() {
        let _ = s.write_all(&all).await;
    }
}

#[tokio::test]
async fn tcp_relay_with_half_close_and_retry() {
    bounded!(async {
        let (echo, accepts, _t) = raw_server(echo_after_eof).await;
        let dead = dead_addr().await;
        let (mut fe, be) = simple_config(vec![
            ServerConfig::new("dead", dead),
            ServerConfig::new("echo", echo),
        ]);
        fe.mode = Mode::Tcp;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        for _ in 0..3 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"hello, half-closed world").await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).await.unwrap();
            assert_eq!(back, "hello, half-closed world");
        }
        assert_eq!(accepts.load(std::sync::atomic::Ordering::SeqCst), 3);
        // Byte counters are updated when sessions end.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let st = proxy.stats();
        let be = st.backend("be").unwrap();
        assert_eq!(be.server("echo").unwrap().counters.bytes_in, 3 * 24);
        assert_eq!(be.server("echo").unwrap().counters.bytes_out, 3 * 24);
        assert!(be.counters.retries >= 1);
        assert_eq!(st.frontend("fe").unwrap().sessions_total, 3);
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn tcp_idle_timeout_closes_session() {
    bounded!(async {
        let (hold, _, _t) = raw_server(|mut s: TcpStream| async move {
            // Never send, keep the socket open until the peer closes.
            let mut buf = [0u8; 64];
            while s.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
        })
        .await;
        let (mut fe, mut be) = simple_config(vec![ServerConfig::new("hold", hold)]);
        fe.mode = Mode::Tcp;
        fe.timeout_client = Duration::from_millis(300);
        be.timeout_server = Duration::from_millis(300);
        let proxy = start(fe, be).await;
        let mut s = TcpStream::connect(proxy.local_addr("fe").unwrap())
            .await
            .unwrap();
        let t = Instant::now();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok(), "idle session not closed");
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            proxy.stats().backend("be").unwrap().counters.errors.timeout,
            1
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn tcp_all_servers_down_closes_client() {
    bounded!(async {
        let (mut fe, be) = simple_config(vec![ServerConfig::new("d", dead_addr().await)]);
        fe.mode = Mode::Tcp;
        let proxy = start(fe, be).await;
        let mut s = TcpStream::connect(proxy.local_addr("fe").unwrap())
            .await
            .unwrap();
        let mut buf = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
        assert!(r.is_ok());
        assert_eq!(
            proxy.stats().backend("be").unwrap().counters.errors.connect,
            4
        );
        proxy.shutdown().await;
    });
}

#[tokio::test]
async fn tcp_proxy_protocol_sent_and_accepted() {
    bounded!(async {
        // The server parses the PROXY header, then echoes it as text and closes.
        let (srv, _, _t) = raw_server(|mut s: TcpStream| async move {
            let mut buf = vec![0u8; 600];
            let mut n = 0;
            loop {
                n += s.read(&mut buf[n..]).await.unwrap();
                match proxy_protocol::parse(&buf[..n]) {
                    Ok((h, _)) => {
                        let _ = s.write_all(format!("{h:?}").as_bytes()).await;
                        return;
                    }
                    Err(proxy_protocol::ParseError::Incomplete) => {}
                    Err(e) => {
                        let _ = s.write_all(format!("ERR {e}").as_bytes()).await;
                        return;
                    }
                }
            }
        })
        .await;
        for v in [SendProxy::V1, SendProxy::V2] {
            let (mut fe, mut be) = simple_config(vec![ServerConfig::new("srv", srv)]);
            fe.mode = Mode::Tcp;
            fe.accept_proxy = true;
            be.send_proxy = v;
            let proxy = start(fe, be).await;
            let mut s = TcpStream::connect(proxy.local_addr("fe").unwrap())
                .await
                .unwrap();
            let (src, dst) = (
                "[2001:db8::7]:4000".parse().unwrap(),
                "[2001:db8::1]:443".parse().unwrap(),
            );
            s.write_all(&proxy_protocol::encode_v2(src, dst))
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            assert_eq!(
                out,
                format!("{:?}", ProxyHeader::Proxied { src, dst }),
                "{v:?}"
            );
            // Our write side is still open (half-close): close it so the
            // graceful shutdown does not wait for the session.
            drop(s);
            proxy.shutdown().await;
        }
    });
}
