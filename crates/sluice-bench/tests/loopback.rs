//! End-to-end runs of the generator against tiny hyper servers on
//! 127.0.0.1:0 started inside each test.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sluice_bench::{BenchError, BenchSpec, Report, run};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

const BODY_LEN: usize = 5120;

#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// 200 with a 5120-byte body.
    Ok,
    /// 500 with a 5120-byte body.
    Status500,
    /// Reads the request, then closes the connection without answering.
    Close,
    /// Answers 200 after this long.
    Sleep(Duration),
}

/// What the server saw, to cross-check the client's counts.
#[derive(Debug, Default)]
struct Seen {
    requests: AtomicU64,
    connections: AtomicU64,
    connection_close: AtomicU64,
}

/// A server task; dropping it aborts the accept loop, which drops (and so
/// aborts) every connection task.
struct TestServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
    task: JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    fn url(&self) -> String {
        format!("http://{}/file", self.addr)
    }
}

async fn serve(behaviour: Behaviour) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            seen2.connections.fetch_add(1, Ordering::Relaxed);
            let seen = Arc::clone(&seen2);
            if let Behaviour::Close = behaviour {
                conns.spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    seen.requests.fetch_add(1, Ordering::Relaxed);
                    drop(stream);
                });
            } else {
                conns.spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let seen = Arc::clone(&seen);
                        async move { Ok::<_, Infallible>(answer(behaviour, &seen, &req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            while conns.try_join_next().is_some() {}
        }
    });
    TestServer { addr, seen, task }
}

async fn answer(
    behaviour: Behaviour,
    seen: &Seen,
    req: &Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    seen.requests.fetch_add(1, Ordering::Relaxed);
    if req
        .headers()
        .get("connection")
        .is_some_and(|v| v == "close")
    {
        seen.connection_close.fetch_add(1, Ordering::Relaxed);
    }
    // The generator must send these; answer 400 otherwise so `ok` drops.
    let ua_ok = req
        .headers()
        .get("user-agent")
        .is_some_and(|v| v == "sluice-bench");
    let host_ok = req.headers().get("host").is_some();
    let status = match behaviour {
        _ if !(ua_ok && host_ok && req.uri().path() == "/file") => StatusCode::BAD_REQUEST,
        Behaviour::Status500 => StatusCode::INTERNAL_SERVER_ERROR,
        Behaviour::Sleep(d) => {
            tokio::time::sleep(d).await;
            StatusCode::OK
        }
        Behaviour::Ok | Behaviour::Close => StatusCode::OK,
    };
    let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; BODY_LEN])));
    *resp.status_mut() = status;
    resp
}

fn spec(url: String, n: u64, c: u32, keep_alive: bool) -> BenchSpec {
    BenchSpec {
        concurrency: c,
        requests: Some(n),
        keep_alive,
        ..BenchSpec::new(url)
    }
}

async fn run_to_end(spec: BenchSpec) -> Report {
    run(spec, std::future::pending()).await.unwrap()
}

fn assert_ordered(r: &Report) {
    let l = &r.latency_us;
    assert!(l.min <= l.p50, "{l:?}");
    assert!(
        l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max,
        "{l:?}"
    );
    // No HTTP round trip over loopback takes less than 10 us.
    assert!(l.min >= 10, "{l:?}");
    assert!(l.mean >= l.min as f64 && l.mean <= l.max as f64, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_exact_counts_and_bytes() {
    let server = serve(Behaviour::Ok).await;
    let r = run_to_end(spec(server.url(), 500, 8, true)).await;
    assert_eq!(r.requests, 500);
    assert_eq!(r.responses, 500);
    assert_eq!(r.ok, 500);
    assert_eq!(r.latency_us.count, 500);
    assert_eq!(r.body_bytes, 500 * BODY_LEN as u64);
    // Status line and headers come on top of the bodies.
    assert!(r.bytes_read > r.body_bytes + 500 * 30, "{}", r.bytes_read);
    assert_eq!(r.errors, sluice_bench::Errors::default());
    // One connection per worker, at most.
    assert!((1..=8).contains(&r.connections), "{}", r.connections);
    assert_eq!(
        server.seen.connections.load(Ordering::Relaxed),
        r.connections
    );
    assert_eq!(server.seen.requests.load(Ordering::Relaxed), 500);
    assert_eq!(server.seen.connection_close.load(Ordering::Relaxed), 0);
    assert!(!r.interrupted);
    assert!(r.duration_secs > 0.0 && r.requests_per_sec > 0.0 && r.transfer_mb_per_sec > 0.0);
    assert_ordered(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connection_per_request() {
    let server = serve(Behaviour::Ok).await;
    let r = run_to_end(spec(server.url(), 500, 8, false)).await;
    assert_eq!((r.requests, r.responses, r.ok), (500, 500, 500));
    assert_eq!(r.connections, 500);
    assert_eq!(r.body_bytes, 500 * BODY_LEN as u64);
    assert_eq!(
        r.errors.transport() + r.errors.non_2xx(),
        0,
        "{:?}",
        r.errors
    );
    assert_eq!(server.seen.connections.load(Ordering::Relaxed), 500);
    assert_eq!(server.seen.connection_close.load(Ordering::Relaxed), 500);
    assert_ordered(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_2xx_is_counted_by_class() {
    let server = serve(Behaviour::Status500).await;
    for keep_alive in [true, false] {
        let r = run_to_end(spec(server.url(), 100, 4, keep_alive)).await;
        assert_eq!((r.requests, r.responses, r.ok), (100, 100, 0));
        assert_eq!(r.errors.status_5xx, 100);
        assert_eq!(r.errors.non_2xx(), 100);
        assert_eq!(r.errors.transport(), 0);
        assert_eq!(r.body_bytes, 100 * BODY_LEN as u64);
        // Non-2xx responses are still responses with a latency.
        assert_eq!(r.latency_us.count, 100);
        assert!(r.to_text().contains("5xx 100"), "{}", r.to_text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_without_answer_is_an_io_error() {
    let server = serve(Behaviour::Close).await;
    for keep_alive in [true, false] {
        let r = run_to_end(spec(server.url(), 50, 4, keep_alive)).await;
        assert_eq!(r.requests, 50);
        assert_eq!(r.responses, 0);
        assert_eq!(r.errors.io, 50, "{:?}", r.errors);
        assert_eq!(r.errors.connect + r.errors.timeout, 0);
        assert!(r.errors.first.is_some());
        assert_eq!(r.latency_us, sluice_bench::Latency::default());
        // A failed connection is never reused.
        assert_eq!(r.connections, 50);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_server_times_out() {
    let server = serve(Behaviour::Sleep(Duration::from_secs(10))).await;
    let spec = BenchSpec {
        timeout: Duration::from_millis(200),
        ..spec(server.url(), 6, 3, true)
    };
    let started = std::time::Instant::now();
    let r = run_to_end(spec).await;
    assert_eq!(r.requests, 6);
    assert_eq!(r.errors.timeout, 6, "{:?}", r.errors);
    assert_eq!(r.responses, 0);
    assert!(r.errors.first.as_deref().unwrap().contains("200ms"));
    // Two rounds of 200 ms, not the server's 10 s.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_counts_connect_errors() {
    // Bind then drop: nothing listens on this port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    for keep_alive in [true, false] {
        let r = run_to_end(spec(format!("http://{addr}/"), 20, 2, keep_alive)).await;
        assert_eq!(r.requests, 20);
        assert_eq!(r.errors.connect, 20);
        assert_eq!((r.responses, r.connections), (0, 0));
        let first = r.errors.first.clone().unwrap();
        assert!(
            first.contains("connect to") && first.contains("refused"),
            "{first}"
        );
        assert!(r.to_text().contains("connect 20"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_is_roughly_kept() {
    let server = serve(Behaviour::Ok).await;
    let spec = BenchSpec {
        concurrency: 8,
        requests: None,
        duration: Some(Duration::from_secs(2)),
        rate: Some(200.0),
        keep_alive: true,
        ..BenchSpec::new(server.url())
    };
    let r = run_to_end(spec).await;
    assert!((300..=500).contains(&r.requests), "{}", r.requests);
    assert_eq!(r.ok, r.requests);
    assert_eq!(r.rate, Some(200.0));
    assert!((1.5..3.0).contains(&r.duration_secs), "{}", r.duration_secs);
    assert_ordered(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_rate_latency_counts_from_the_schedule() {
    // One worker, 200 ms per response, asked for 50 req/s: the worker falls
    // further behind with every request. Measured from the actual send time
    // every latency would be about 200 ms; from the schedule they grow.
    let server = serve(Behaviour::Sleep(Duration::from_millis(200))).await;
    let spec = BenchSpec {
        concurrency: 1,
        requests: Some(5),
        rate: Some(50.0),
        keep_alive: true,
        ..BenchSpec::new(server.url())
    };
    let r = run_to_end(spec).await;
    assert_eq!(r.responses, 5);
    assert!(r.latency_us.min >= 190_000, "{:?}", r.latency_us);
    // The 5th request was due at 80 ms and done at about 1000 ms.
    assert!(r.latency_us.max >= 700_000, "{:?}", r.latency_us);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duration_mode_stops_on_time() {
    let server = serve(Behaviour::Ok).await;
    let spec = BenchSpec {
        concurrency: 4,
        requests: None,
        duration: Some(Duration::from_millis(500)),
        keep_alive: true,
        ..BenchSpec::new(server.url())
    };
    let started = std::time::Instant::now();
    let r = run_to_end(spec).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!((0.5..0.6).contains(&r.duration_secs), "{}", r.duration_secs);
    assert!(r.requests > 10, "{}", r.requests);
    assert_eq!(r.ok, r.responses);
    assert_eq!(r.body_bytes, r.responses * BODY_LEN as u64);
    assert!(!r.interrupted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_gives_a_partial_report() {
    let server = serve(Behaviour::Ok).await;
    let spec = BenchSpec {
        concurrency: 2,
        requests: Some(100_000_000),
        keep_alive: true,
        ..BenchSpec::new(server.url())
    };
    let started = std::time::Instant::now();
    let r = run(spec, tokio::time::sleep(Duration::from_millis(300)))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(r.interrupted);
    assert!(r.requests > 0 && r.requests < 100_000_000);
    assert!(
        (0.25..1.0).contains(&r.duration_secs),
        "{}",
        r.duration_secs
    );
    assert!(r.to_text().contains("Interrupted"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_errors_not_panics() {
    let https = run(BenchSpec::new("https://127.0.0.1/"), std::future::pending()).await;
    assert!(matches!(https, Err(BenchError::BadUrl { .. })), "{https:?}");
    assert!(
        https
            .unwrap_err()
            .to_string()
            .contains("https is not supported")
    );

    let zero = BenchSpec {
        concurrency: 0,
        ..BenchSpec::new("http://127.0.0.1/")
    };
    assert!(matches!(
        run(zero, std::future::pending()).await,
        Err(BenchError::Spec(_))
    ));

    let unresolvable = run(
        BenchSpec::new("http://no-such-host.invalid/"),
        std::future::pending(),
    )
    .await;
    assert!(
        matches!(unresolvable, Err(BenchError::Resolve { .. })),
        "{unresolvable:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_has_the_documented_fields() {
    let server = serve(Behaviour::Ok).await;
    let r = run_to_end(spec(server.url(), 10, 2, true)).await;
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "version",
        "url",
        "peer",
        "concurrency",
        "keep_alive",
        "rate",
        "interrupted",
        "requests",
        "responses",
        "ok",
        "connections",
        "duration_secs",
        "requests_per_sec",
        "bytes_read",
        "body_bytes",
        "transfer_mb_per_sec",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    for key in ["count", "min", "mean", "p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"].get(key).is_some(),
            "missing latency_us.{key}"
        );
    }
    for key in [
        "connect",
        "timeout",
        "io",
        "status_3xx",
        "status_4xx",
        "status_5xx",
        "status_other",
        "first",
    ] {
        assert!(v["errors"].get(key).is_some(), "missing errors.{key}");
    }
    assert_eq!(v["requests"], 10);
    assert_eq!(v["body_bytes"], 10 * BODY_LEN as u64);
    assert_eq!(v["rate"], serde_json::Value::Null);
}
