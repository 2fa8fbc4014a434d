//! The checker runtime against local peers, timed with the real clock at
//! short intervals.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sluice_core::health::{FailureReason, Health, HealthConfig};
use sluice_core::service::{Effective, OperatorState, table};
use sluice_health::{
    CheckSpec, Checker, CheckerError, ContentSpec, HealthEvent, HttpSpec, ProbeSpec, SpecError,
    Target,
};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::time::Instant;

const MS: Duration = Duration::from_millis(1);
/// Scheduling slack on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_millis(150);

fn spec(probe: ProbeSpec, interval: Duration, down_interval: Duration) -> CheckSpec {
    CheckSpec {
        probe,
        port: None,
        timeout: 50 * MS,
        health: HealthConfig {
            rise: 2,
            fall: 3,
            interval,
            down_interval,
            initial: Health::Up,
        },
        jitter_percent: 0,
        fwmark: None,
    }
}

fn target(id: &str, addr: SocketAddr, spec: CheckSpec) -> Target {
    Target {
        id: id.into(),
        addr: addr.ip(),
        port: addr.port(),
        spec,
        on_down: Default::default(),
    }
}

async fn next_event(rx: &mut broadcast::Receiver<HealthEvent>, within: Duration) -> HealthEvent {
    tokio::time::timeout(within, rx.recv())
        .await
        .expect("no health event in time")
        .unwrap()
}

#[tokio::test]
async fn falls_after_fall_probes_and_rises_after_rise() {
    let server = counting_listener("127.0.0.1:0").await;
    let addr = server.addr;
    let interval = 100 * MS;
    let down_interval = 150 * MS;
    let s = spec(ProbeSpec::Tcp, interval, down_interval);
    let (timeout, fall, rise) = (s.timeout, s.health.fall, s.health.rise);
    let (checker, mut rx) = Checker::start(vec![target("web/1", addr, s)]).unwrap();

    // Healthy: a few passing probes, no event.
    tokio::time::sleep(3 * interval).await;
    let st = checker.status("web/1").unwrap();
    assert_eq!(st.health, Health::Up);
    assert!(st.checks_total >= 2, "{st:?}");
    assert!(st.last.as_ref().unwrap().passed());
    assert!(st.last_latency.is_some());
    assert_eq!(st.check, "tcp");
    assert!(rx.try_recv().is_err(), "no transition while healthy");

    // Break it: the port now refuses.
    drop(server);
    let broke = Instant::now();
    let ev = next_event(&mut rx, 2 * fall * interval + timeout + SLACK).await;
    let took = broke.elapsed();
    assert_eq!((ev.from, ev.to), (Health::Up, Health::Down));
    assert_eq!(ev.id, "web/1");
    assert_eq!(ev.failure, Some(FailureReason::Refused));
    assert_eq!(ev.reason.as_deref(), Some("connection refused"));
    assert_eq!(ev.latency, None);
    // `fall` failing probes: at least (fall - 1) intervals, at most
    // fall intervals plus one timeout.
    assert!(
        took >= (fall - 1) * interval - 10 * MS,
        "down too early: {took:?}"
    );
    assert!(
        took <= fall * interval + timeout + SLACK,
        "down too late: {took:?}"
    );
    let st = checker.status("web/1").unwrap();
    assert_eq!(st.health, Health::Down);
    // The target's service keeps a down real's flows (the default).
    assert_eq!(st.effective, Effective::Draining);
    assert!(st.consecutive_failures >= fall);
    assert_eq!(st.last_change, Some(ev.at));
    assert_eq!(
        st.last.as_ref().unwrap().reason.as_deref(),
        Some("connection refused")
    );

    // Repair it on the same port: up after `rise` probes at down_interval.
    let listener = TcpListener::bind(addr).await.unwrap();
    let accept = tokio::spawn(async move {
        loop {
            let _ = listener.accept().await;
        }
    });
    let repaired = Instant::now();
    let ev = next_event(&mut rx, 2 * rise * down_interval + timeout + SLACK).await;
    let took = repaired.elapsed();
    accept.abort();
    assert_eq!((ev.from, ev.to), (Health::Down, Health::Up));
    assert!(ev.latency.is_some());
    assert_eq!(ev.reason, None);
    assert!(
        took >= (rise - 1) * down_interval - 10 * MS,
        "up too early: {took:?}"
    );
    assert!(
        took <= rise * down_interval + timeout + SLACK,
        "up too late: {took:?}"
    );
    let st = checker.status("web/1").unwrap();
    assert_eq!((st.health, st.transitions_total), (Health::Up, 2));
    checker.shutdown().await;
}

#[tokio::test]
async fn timeouts_mark_down_with_reason() {
    let (silent, _) = http_server(Reply::Silent).await;
    let interval = 100 * MS;
    let mut s = spec(ProbeSpec::Http(HttpSpec::default()), interval, interval);
    s.health.fall = 2;
    let (checker, mut rx) = Checker::start(vec![target("api", silent.addr, s)]).unwrap();
    let start = Instant::now();
    // Initial Up; first probe within one interval, down after the 2nd.
    let ev = next_event(&mut rx, 4 * interval + SLACK).await;
    assert!(
        start.elapsed() <= 2 * interval + 50 * MS + SLACK,
        "{:?}",
        start.elapsed()
    );
    assert_eq!(ev.to, Health::Down);
    assert_eq!(ev.failure, Some(FailureReason::Timeout));
    assert_eq!(ev.reason.as_deref(), Some("timeout after 50ms"));
    checker.shutdown().await;
}

#[tokio::test]
async fn initial_down_must_prove_itself() {
    let server = counting_listener("127.0.0.1:0").await;
    let mut s = spec(ProbeSpec::Tcp, 100 * MS, 50 * MS);
    s.health.initial = Health::Down;
    s.health.rise = 3;
    let (checker, mut rx) = Checker::start(vec![target("t", server.addr, s)]).unwrap();
    assert_eq!(checker.snapshot()[0].health, Health::Down);
    let ev = next_event(&mut rx, Duration::from_secs(2)).await;
    assert_eq!((ev.from, ev.to), (Health::Down, Health::Up));
    let st = checker.status("t").unwrap();
    assert_eq!(st.checks_total, 3, "exactly `rise` probes: {st:?}");
    checker.shutdown().await;
}

#[tokio::test]
async fn operator_state_is_kept_apart_from_health() {
    let server = counting_listener("127.0.0.1:0").await;
    let s = spec(ProbeSpec::Tcp, 50 * MS, 50 * MS);
    let (checker, _rx) = Checker::start(vec![
        target("a", server.addr, s.clone()),
        target("b", server.addr, s),
    ])
    .unwrap();
    checker
        .set_operator_state("a", OperatorState::Drain)
        .unwrap();
    checker
        .set_operator_state("b", OperatorState::Maintenance)
        .unwrap();
    assert!(matches!(
        checker.set_operator_state("zz", OperatorState::Drain),
        Err(CheckerError::UnknownTarget(id)) if id == "zz"
    ));
    tokio::time::sleep(200 * MS).await;
    let snap = checker.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(
        (snap[0].id.as_str(), snap[0].operator, snap[0].effective),
        ("a", OperatorState::Drain, Effective::Draining)
    );
    assert_eq!(snap[1].effective, Effective::Out);
    assert!(
        snap[1].checks_total >= 2,
        "checks keep running in maintenance"
    );
    checker.shutdown().await;
}

#[tokio::test]
async fn spec_errors_are_reported_and_nothing_starts() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let ok = spec(ProbeSpec::Tcp, 100 * MS, 100 * MS);
    let dup = Checker::start(vec![
        target("x", addr, ok.clone()),
        target("x", addr, ok.clone()),
    ]);
    assert!(matches!(dup, Err(CheckerError::DuplicateId(id)) if id == "x"));

    let mut bad = ok.clone();
    bad.health.rise = 0;
    let err = Checker::start(vec![target("r", addr, bad)]).unwrap_err();
    assert!(matches!(
        err,
        CheckerError::Spec {
            source: SpecError::Health(_),
            ..
        }
    ));

    let mut bad = ok.clone();
    bad.timeout = Duration::ZERO;
    let err = Checker::start(vec![target("t", addr, bad)]).unwrap_err();
    assert!(matches!(
        err,
        CheckerError::Spec {
            source: SpecError::ZeroTimeout,
            ..
        }
    ));

    let mut bad = ok;
    bad.probe = ProbeSpec::HttpContent(
        HttpSpec::default(),
        ContentSpec {
            body_regex: Some("[".into()),
            ..ContentSpec::default()
        },
    );
    let err = Checker::start(vec![target("re", addr, bad)]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("health check of re: invalid body regex"),
        "{err}"
    );
}

/// A listener recording when each connection arrived.
async fn timestamping_listener() -> (
    SocketAddr,
    Arc<Mutex<Vec<Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let times = Arc::new(Mutex::new(Vec::new()));
    let t = times.clone();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            t.lock().unwrap().push(Instant::now());
            drop(s);
        }
    });
    (addr, times, task)
}

#[tokio::test]
async fn first_probes_are_spread_over_the_interval() {
    let (addr, times, task) = timestamping_listener().await;
    let interval = 400 * MS;
    let mut s = spec(ProbeSpec::Tcp, interval, interval);
    s.jitter_percent = 10;
    let targets = (0..50)
        .map(|i| target(&format!("t{i}"), addr, s.clone()))
        .collect();
    let start = Instant::now();
    let (checker, _rx) = Checker::start(targets).unwrap();
    // Every target fires once in its first (jittered) interval; the second
    // round starts at least 0.9 interval after each first probe.
    tokio::time::sleep(interval + interval / 10 + 50 * MS).await;
    let firsts: Vec<Duration> = {
        let t = times.lock().unwrap();
        t.iter().take(50).map(|i| i.duration_since(start)).collect()
    };
    checker.shutdown().await;
    task.abort();
    assert!(
        firsts.len() == 50,
        "only {} first probes arrived",
        firsts.len()
    );
    let min = *firsts.iter().min().unwrap();
    let max = *firsts.iter().max().unwrap();
    assert!(max - min > MS, "all first probes within 1 ms");
    // Uniform over ~400 ms: 50 samples span far more than a quarter of it.
    assert!(max - min > interval / 4, "spread only {:?}", max - min);
    // And no 10 ms window holds more than a fifth of them (no burst).
    let mut sorted = firsts.clone();
    sorted.sort();
    let burst = sorted.windows(10).filter(|w| w[9] - w[0] < 10 * MS).count();
    assert!(burst < 5, "bursty first probes: {sorted:?}");
}

#[tokio::test]
async fn shutdown_stops_probing() {
    let server = counting_listener("127.0.0.1:0").await;
    let s = spec(ProbeSpec::Tcp, 30 * MS, 30 * MS);
    let (checker, _rx) = Checker::start(vec![target("t", server.addr, s)]).unwrap();
    tokio::time::sleep(200 * MS).await;
    checker.shutdown().await;
    tokio::time::sleep(50 * MS).await;
    let after = server.accepted();
    assert!(after >= 3, "probes ran: {after}");
    tokio::time::sleep(200 * MS).await;
    assert_eq!(server.accepted(), after, "probes continued after shutdown");
}

/// Collects formatted log lines.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn transitions_are_logged_with_reason_and_latency() {
    let logs = LogBuf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // #[tokio::test] runs every task on this thread, so a thread-local
    // default subscriber sees the checker's logs.
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = counting_listener("127.0.0.1:0").await;
    let addr = server.addr;
    let mut s = spec(ProbeSpec::Tcp, 50 * MS, 50 * MS);
    (s.health.rise, s.health.fall) = (1, 1);
    let (checker, mut rx) = Checker::start(vec![target("web/9", addr, s)]).unwrap();
    tokio::time::sleep(100 * MS).await;
    drop(server);
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(1)).await.to,
        Health::Down
    );
    let _listener = counting_listener(&addr.to_string()).await;
    assert_eq!(
        next_event(&mut rx, Duration::from_secs(1)).await.to,
        Health::Up
    );
    checker.shutdown().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let down = text.lines().find(|l| l.contains("is DOWN")).expect(&text);
    assert!(
        down.contains("WARN") && down.contains("sluice::health"),
        "{down}"
    );
    // The listener is gone: the next connect is refused, or, when the
    // probe's reused socket still held the old connection, reset.
    assert!(
        down.contains("web/9 is DOWN: connection refused")
            || down.contains("web/9 is DOWN: connect: connection reset"),
        "{down}"
    );
    let up = text.lines().find(|l| l.contains("is UP")).expect(&text);
    assert!(up.contains("INFO") && up.contains("latency"), "{up}");
}

/// The checker shows each target's effective state by sluice-core's one
/// rule (`sluice_core::service`): every case of its table that a single
/// target can show (fail-open needs the whole service, so only the cases
/// where it cannot trigger), with real health from a live and a refused
/// port.
#[tokio::test]
async fn effective_states_follow_the_service_table() {
    let live = counting_listener("127.0.0.1:0").await;
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let cases: Vec<table::Case> = table::cases()
        .into_iter()
        .filter(|c| !c.policy.fail_open || c.with_healthy_peer)
        .collect();
    let mut s = spec(ProbeSpec::Tcp, 30 * MS, 30 * MS);
    s.health.rise = 1;
    s.health.fall = 1;
    let targets = cases
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let addr = if c.real.health == Health::Up {
                live.addr
            } else {
                refused
            };
            Target {
                on_down: c.policy.on_real_down,
                ..target(&i.to_string(), addr, s.clone())
            }
        })
        .collect();
    let (checker, _rx) = Checker::start(targets).unwrap();
    for (i, c) in cases.iter().enumerate() {
        checker
            .set_operator_state(&i.to_string(), c.real.operator)
            .unwrap();
    }
    tokio::time::sleep(300 * MS).await;
    for (i, c) in cases.iter().enumerate() {
        let st = checker.status(&i.to_string()).unwrap();
        assert_eq!(st.health, c.real.health, "{c:?}");
        assert_eq!(st.effective, c.expect, "{c:?}");
    }
    checker.shutdown().await;
}
