//! sluice-core's one rule for what a server gets (`sluice_core::service`),
//! run through the proxy: every case of the rule's table that the proxy's
//! policy can show (operator Enabled, `on_real_down = keep`, no
//! fail-open: the proxy has no operator state of its own, keeps a down
//! server's sessions as HAProxy does, and uses backup servers instead of
//! failing open). Health comes from `set_server_state`, as the health
//! checks set it; a `mode tcp` session shows whether a server keeps its
//! flows, new connections whether it gets new ones. The L4 plane and the
//! checker run the same table (sluice-l4's and sluice-health's
//! `service_rule` / `checker` tests).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use common::*;
use sluice_core::health::Health;
use sluice_core::service::{OnRealDown, OperatorState, table};
use sluice_proxy::{Mode, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// New connections opened to see whether a server gets any (round robin
/// over at most two servers: two are enough; a few more for margin).
const NEW_CONNECTIONS: usize = 6;

/// A TCP echo server: its address and its count of accepted connections.
async fn echo() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let (addr, accepts, _task) = raw_server(|mut s: TcpStream| async move {
        let mut b = [0u8; 256];
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&b[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    (addr, accepts)
}

/// Whether `s` still relays: a message and its echo.
async fn relays(s: &mut TcpStream) -> bool {
    if s.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut b = [0u8; 4];
    matches!(
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b)).await,
        Ok(Ok(_))
    ) && &b == b"ping"
}

#[tokio::test]
async fn the_proxy_follows_the_service_table() {
    let cases: Vec<table::Case> = table::cases()
        .into_iter()
        .filter(|c| {
            c.real.operator == OperatorState::Enabled
                && c.policy.on_real_down == OnRealDown::Keep
                && !c.policy.fail_open
        })
        .collect();
    assert_eq!(cases.len(), 4);
    let mut failures = Vec::new();
    for c in cases {
        let (r_addr, r_accepts) = echo().await;
        let (p_addr, _) = echo().await;
        let mut servers = vec![ServerConfig::new("r", r_addr)];
        if c.with_healthy_peer {
            servers.push(ServerConfig::new("p", p_addr));
        }
        let (mut fe, be) = simple_config(servers);
        fe.mode = Mode::Tcp;
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        // An established session on the server under test (round robin
        // starts with the first server).
        let mut held = TcpStream::connect(addr).await.unwrap();
        assert!(relays(&mut held).await);
        assert_eq!(r_accepts.load(SeqCst), 1, "{c:?}");
        proxy
            .set_server_state("be", "r", c.real.health == Health::Up)
            .unwrap();
        let keeps = relays(&mut held).await;
        let before = r_accepts.load(SeqCst);
        for _ in 0..NEW_CONNECTIONS {
            if let Ok(mut s) = TcpStream::connect(addr).await {
                let _ = relays(&mut s).await;
            }
        }
        let gets_new = r_accepts.load(SeqCst) > before;
        if (keeps, gets_new) != (c.expect.keeps_flows(), c.expect.new_flows()) {
            failures.push(format!("{c:?}: keeps {keeps}, gets new {gets_new}"));
        }
        drop(held);
        proxy.shutdown().await;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
