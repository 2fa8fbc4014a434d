//! `mode tcp` end to end.
#![allow(clippy::unwrap_used, missing_docs)]

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_proxy::proxy_protocol::{self, ProxyHeader};
use sluice_proxy::{Mode, SendProxy, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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

/// Deterministic test payload: `len` bytes that differ from position to
/// position (so a reordered, lost or repeated chunk shows).
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            // xorshift32
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_le_bytes()[0]
        })
        .collect()
}

/// Bytes each way in the bulk tests: far past `SPLICE_AUTO_FULL_READS`
/// full copy buffers, and many pipe-fulls.
const BULK_BYTES: usize = 8 << 20;

/// 8 MiB up, then (after the client's half-close) 8 MiB down, through the
/// relay in each splice mode; both sides check every byte. `always` and
/// `auto` must have moved bulk with splice(2), `never` nothing; the byte
/// counters count the same either way.
#[tokio::test]
async fn tcp_bulk_both_ways_in_every_splice_mode() {
    use sluice_proxy::Splice;
    bounded!(async {
        let (got_tx, mut got_rx) = tokio::sync::mpsc::unbounded_channel::<bool>();
        let (srv, _, _t) = raw_server(move |mut s: TcpStream| {
            let got_tx = got_tx.clone();
            async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                let _ = got_tx.send(all == pattern(BULK_BYTES, 1));
                s.write_all(&pattern(BULK_BYTES, 2)).await.unwrap();
            }
        })
        .await;
        for mode in [Splice::Always, Splice::Auto, Splice::Never] {
            let (mut fe, be) = simple_config(vec![ServerConfig::new("srv", srv)]);
            fe.mode = Mode::Tcp;
            fe.splice = mode;
            let proxy = start(fe, be).await;
            let s = TcpStream::connect(proxy.local_addr("fe").unwrap())
                .await
                .unwrap();
            let (mut rd, mut wr) = s.into_split();
            let reader = tokio::spawn(async move {
                let mut back = Vec::new();
                rd.read_to_end(&mut back).await.unwrap();
                back
            });
            wr.write_all(&pattern(BULK_BYTES, 1)).await.unwrap();
            wr.shutdown().await.unwrap();
            let back = reader.await.unwrap();
            assert!(got_rx.recv().await.unwrap(), "{mode:?}: upload corrupted");
            assert!(
                back == pattern(BULK_BYTES, 2),
                "{mode:?}: download corrupted ({} bytes)",
                back.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            let st = proxy.stats();
            let c = &st.backend("be").unwrap().server("srv").unwrap().counters;
            assert_eq!(c.bytes_in, BULK_BYTES as u64, "{mode:?}");
            assert_eq!(c.bytes_out, BULK_BYTES as u64, "{mode:?}");
            match mode {
                Splice::Always => assert_eq!(c.bytes_spliced, 2 * BULK_BYTES as u64),
                // The first full buffers of each direction are copied.
                Splice::Auto => assert!(
                    c.bytes_spliced > BULK_BYTES as u64,
                    "auto spliced only {}",
                    c.bytes_spliced
                ),
                Splice::Never => assert_eq!(c.bytes_spliced, 0),
            }
            assert_eq!(st.frontend("fe").unwrap().bytes_spliced, c.bytes_spliced);
            proxy.shutdown().await;
        }
    });
}

/// With `splice = "always"`, bytes that arrived together with the PROXY
/// header (read ahead by the header parser) reach the server first, before
/// the spliced rest.
#[tokio::test]
async fn tcp_splice_keeps_bytes_read_with_the_proxy_header() {
    use sluice_proxy::Splice;
    bounded!(async {
        let (srv, _, _t) = raw_server(|mut s: TcpStream| async move {
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            let _ = s.write_all(&all).await;
        })
        .await;
        let (mut fe, be) = simple_config(vec![ServerConfig::new("srv", srv)]);
        fe.mode = Mode::Tcp;
        fe.accept_proxy = true;
        fe.splice = Splice::Always;
        let proxy = start(fe, be).await;
        let mut s = TcpStream::connect(proxy.local_addr("fe").unwrap())
            .await
            .unwrap();
        let hdr = proxy_protocol::encode_v1(
            "192.0.2.7:4000".parse().unwrap(),
            "192.0.2.1:80".parse().unwrap(),
        );
        let body = pattern(100_000, 3);
        let mut first = hdr.clone();
        first.extend_from_slice(&body[..1000]);
        s.write_all(&first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.write_all(&body[1000..]).await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert!(back == body, "echo differs ({} bytes)", back.len());
        proxy.shutdown().await;
    });
}

/// Echoes every read straight back until EOF.
async fn echo_each_read(mut s: TcpStream) {
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
}

/// Request/response rounds of small messages, some sent in two pieces with
/// a pause between them: every read of the relay is short, so after each
/// one it clears the socket's read readiness instead of reading again
/// (`EAGAIN`). A wrongly cleared wake-up would stall a round (and time the
/// test out); every round must come back whole and in order.
#[tokio::test]
async fn tcp_ping_pong_rounds_with_short_reads() {
    /// Rounds of one message out, the same message back.
    const ROUNDS: usize = 200;
    bounded!(async {
        let (echo, _, _t) = raw_server(echo_each_read).await;
        let (mut fe, be) = simple_config(vec![ServerConfig::new("echo", echo)]);
        fe.mode = Mode::Tcp;
        let proxy = start(fe, be).await;
        let mut s = TcpStream::connect(proxy.local_addr("fe").unwrap())
            .await
            .unwrap();
        s.set_nodelay(true).unwrap();
        for i in 0..ROUNDS {
            let msg = format!("ping {i:05} {}", "x".repeat(i % 97));
            let (a, b) = msg.as_bytes().split_at(msg.len() / 2);
            s.write_all(a).await.unwrap();
            if i % 3 == 0 {
                // The second piece arrives after the relay read the first.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            s.write_all(b).await.unwrap();
            let mut back = vec![0u8; msg.len()];
            s.read_exact(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes(), "round {i}");
        }
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty(), "{} stray bytes", rest.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
        let st = proxy.stats();
        let c = &st.backend("be").unwrap().server("echo").unwrap().counters;
        let total: u64 = (0..ROUNDS)
            .map(|i| format!("ping {i:05} {}", "x".repeat(i % 97)).len() as u64)
            .sum();
        assert_eq!((c.bytes_in, c.bytes_out), (total, total));
        proxy.shutdown().await;
    });
}
