//! The access log line (target `sluice::access`), captured with a global
//! tracing subscriber (one test per binary, so the global is ours).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn access_log_has_timers_and_identity() {
    let cap = Capture::default();
    let cap2 = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_env_filter("sluice::access=info")
        .json()
        .with_writer(move || cap2.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    tokio::time::timeout(TEST_TIMEOUT, async {
        let a = Backend::start("a").await;
        let (fe, be) = simple_config(servers(&[&a]));
        let proxy = start(fe, be).await;
        let addr = proxy.local_addr("fe").unwrap();
        assert_eq!(get(addr, "/slow?ms=120").await.status, 200);
        proxy.set_server_state("be", "a", false).unwrap();
        assert_eq!(get(addr, "/x").await.status, 503);
        proxy.shutdown().await;
    })
    .await
    .unwrap();

    let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    let ok = &lines[0]["fields"];
    assert_eq!(lines[0]["target"], "sluice::access");
    assert_eq!(ok["frontend"], "fe");
    assert_eq!(ok["backend"], "be");
    assert_eq!(ok["server"], "a");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["uri"], "/slow?ms=120");
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["termination"], "--");
    assert_eq!(ok["bytes_out"], 1);
    assert!(ok["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    let (tq, tw, tc, tr, tt) = (
        ok["tq"].as_i64().unwrap(),
        ok["tw"].as_i64().unwrap(),
        ok["tc"].as_i64().unwrap(),
        ok["tr"].as_i64().unwrap(),
        ok["tt"].as_i64().unwrap(),
    );
    assert!(tq >= 0 && tw >= 0 && tc >= 0, "{ok}");
    assert!(tr >= 120, "Tr covers the server's 120 ms: {ok}");
    assert!(tt >= tr + tc + tw, "{ok}");
    let msg = ok["message"].as_str().unwrap();
    assert!(msg.contains("[fe] be/a") && msg.contains(" 200 "), "{msg}");

    let no = &lines[1]["fields"];
    assert_eq!(no["status"], 503);
    assert_eq!(no["server"], "<NOSRV>");
    assert_eq!(no["tc"], -1);
    assert_eq!(no["tr"], -1);
}
