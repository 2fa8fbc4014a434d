//! Every probe type against real local peers on 127.0.0.1 / ::1.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use sluice_core::health::FailureReason;
use sluice_health::{
    ContentSpec, HttpMethod, HttpSpec, Probe, ProbeFailure, ProbeSpec, StatusRange, TlsSpec,
    TlsVerify,
};

const TIMEOUT: Duration = Duration::from_secs(2);

async fn run(spec: &ProbeSpec, addr: SocketAddr) -> Result<Duration, ProbeFailure> {
    run_with(spec, addr, TIMEOUT).await
}

async fn run_with(
    spec: &ProbeSpec,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Duration, ProbeFailure> {
    Probe::new(spec)
        .unwrap()
        .run(addr.ip(), addr.port(), timeout)
        .await
}

fn http(spec: HttpSpec) -> ProbeSpec {
    ProbeSpec::Http(spec)
}

fn content(contains: Option<&str>, regex: Option<&str>, max: usize) -> ProbeSpec {
    ProbeSpec::HttpContent(
        HttpSpec::default(),
        ContentSpec {
            body_contains: contains.map(str::to_owned),
            body_regex: regex.map(str::to_owned),
            max_body_bytes: max,
        },
    )
}

// --- tcp ---------------------------------------------------------------

#[tokio::test]
async fn tcp_up_and_refused_v4_v6() {
    for ip in ["127.0.0.1", "::1"] {
        let server = counting_listener(&SocketAddr::new(ip.parse().unwrap(), 0).to_string()).await;
        let latency = run(&ProbeSpec::Tcp, server.addr).await.unwrap();
        assert!(latency < TIMEOUT);
        let err = run(&ProbeSpec::Tcp, closed_port(ip)).await.unwrap_err();
        assert_eq!(err.reason, FailureReason::Refused);
        assert_eq!(err.detail, "connection refused");
    }
}

// --- tcp-half-open -----------------------------------------------------

/// The whole point of half-open: the application's accept() never returns.
#[tokio::test]
async fn half_open_never_reaches_accept() {
    require_root();
    for ip in ["127.0.0.1", "::1"] {
        let server = counting_listener(&SocketAddr::new(ip.parse().unwrap(), 0).to_string()).await;
        for i in 0..20 {
            let r = run(&ProbeSpec::TcpHalfOpen, server.addr).await;
            assert!(r.is_ok(), "{ip} probe {i}: {r:?}");
        }
        // Give a wrongly completed handshake time to show up in accept().
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(server.accepted(), 0, "{ip}: a half-open probe was accepted");
        // Control: a full TCP connect on the same listener is accepted.
        run(&ProbeSpec::Tcp, server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            server.accepted(),
            1,
            "{ip}: the control connect was not counted"
        );
    }
}

#[tokio::test]
async fn half_open_closed_port_is_down_with_rst() {
    require_root();
    for ip in ["127.0.0.1", "::1"] {
        let err = run(&ProbeSpec::TcpHalfOpen, closed_port(ip))
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::Refused, "{ip}: {err}");
        assert!(err.detail.contains("RST"), "{ip}: {err}");
    }
}

#[tokio::test]
async fn many_concurrent_half_open_probes_do_not_mix_answers() {
    require_root();
    let up = counting_listener("127.0.0.1:0").await;
    let down = closed_port("127.0.0.1");
    let mut tasks = Vec::new();
    for i in 0..40 {
        let addr = if i % 2 == 0 { up.addr } else { down };
        tasks.push(tokio::spawn(async move {
            (i, run(&ProbeSpec::TcpHalfOpen, addr).await)
        }));
    }
    for t in tasks {
        let (i, r) = t.await.unwrap();
        assert_eq!(r.is_ok(), i % 2 == 0, "probe {i}: {r:?}");
    }
    assert_eq!(up.accepted(), 0);
}

// --- icmp --------------------------------------------------------------

#[tokio::test]
async fn icmp_echo_to_loopback_v4_v6() {
    for ip in ["127.0.0.1", "::1"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), 0);
        for _ in 0..3 {
            let latency = run(&ProbeSpec::Icmp, addr).await;
            assert!(latency.is_ok(), "{ip}: {latency:?}");
        }
    }
}

// --- http --------------------------------------------------------------

#[tokio::test]
async fn http_status_decides() {
    let (ok, seen) = http_server(response(200, b"fine")).await;
    run(&http(HttpSpec::default()), ok.addr).await.unwrap();
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
    assert!(
        head.to_lowercase()
            .contains(&format!("host: {}\r\n", ok.addr)),
        "default Host is the target: {head}"
    );

    let (bad, _) = http_server(response(500, b"oops")).await;
    let err = run(&http(HttpSpec::default()), bad.addr).await.unwrap_err();
    assert_eq!(err.reason, FailureReason::BadStatus(500));
    assert_eq!(err.detail, "status 500 not in 200-399");

    // An explicit list: 500 accepted, 200 not.
    let spec = http(HttpSpec {
        method: HttpMethod::Head,
        path: "/healthz?full=1".into(),
        host: Some("svc.example".into()),
        expect_status: vec![StatusRange::single(204), StatusRange { min: 500, max: 503 }],
        tls: None,
    });
    run(&spec, bad.addr).await.unwrap();
    let err = run(&spec, ok.addr).await.unwrap_err();
    assert_eq!(err.detail, "status 200 not in 204, 500-503");
    let head = seen.lock().unwrap()[1].clone();
    assert!(
        head.starts_with("HEAD /healthz?full=1 HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.to_lowercase().contains("host: svc.example\r\n"),
        "{head}"
    );
}

#[tokio::test]
async fn http_silent_server_times_out_and_refused_is_refused() {
    let (silent, _) = http_server(Reply::Silent).await;
    let start = std::time::Instant::now();
    let err = run_with(
        &http(HttpSpec::default()),
        silent.addr,
        Duration::from_millis(300),
    )
    .await
    .unwrap_err();
    assert_eq!(err.reason, FailureReason::Timeout);
    assert_eq!(err.detail, "timeout after 300ms");
    assert!(start.elapsed() < Duration::from_secs(2));

    let err = run(&http(HttpSpec::default()), closed_port("127.0.0.1"))
        .await
        .unwrap_err();
    assert_eq!(err.reason, FailureReason::Refused);
}

#[tokio::test]
async fn http_content_string_regex_and_size_limit() {
    let (ok, _) = http_server(response(200, b"{\"status\": \"ok\", \"db\": 3}")).await;
    run(&content(Some("\"ok\""), None, 1024), ok.addr)
        .await
        .unwrap();
    run(&content(None, Some(r#""db": \d+"#), 1024), ok.addr)
        .await
        .unwrap();
    run(&content(Some("ok"), Some(r"db"), 1024), ok.addr)
        .await
        .unwrap();

    let err = run(&content(Some("healthy"), None, 1024), ok.addr)
        .await
        .unwrap_err();
    assert_eq!(err.reason, FailureReason::ContentMismatch);
    assert!(
        err.detail.starts_with("body does not contain \"healthy\""),
        "{err}"
    );
    let err = run(&content(Some("ok"), Some(r"^down"), 1024), ok.addr)
        .await
        .unwrap_err();
    assert!(
        err.detail.starts_with("body does not match /^down/"),
        "{err}"
    );

    // Too big: declared by content-length, and streamed (chunked).
    let big = vec![b'x'; 5000];
    let (declared, _) = http_server(response(200, &big)).await;
    let (streamed, _) = http_server(chunked(200, &big)).await;
    for addr in [declared.addr, streamed.addr] {
        let err = run(&content(Some("x"), None, 4096), addr)
            .await
            .unwrap_err();
        assert_eq!(err.reason, FailureReason::ContentMismatch);
        assert_eq!(err.detail, "body larger than 4096 bytes");
        // The same body under a large enough limit passes.
        run(&content(Some("xxx"), None, 5000), addr).await.unwrap();
    }

    // The status is still checked first.
    let (bad, _) = http_server(response(503, b"ok")).await;
    let err = run(&content(Some("ok"), None, 1024), bad.addr)
        .await
        .unwrap_err();
    assert_eq!(err.reason, FailureReason::BadStatus(503));
}

#[tokio::test]
async fn https_with_and_without_verification() {
    let (tls, cert_pem) = self_signed("real.test");
    let (server, _) = https_server(response(200, b"ok"), tls).await;
    let https = |verify: Option<TlsVerify>, name: Option<&str>| {
        http(HttpSpec {
            tls: Some(TlsSpec {
                verify,
                server_name: name.map(str::to_owned),
            }),
            ..HttpSpec::default()
        })
    };

    // Default: no verification (self-signed, name is the IP) -> up.
    run(&https(None, None), server.addr).await.unwrap();
    // Verified against its own CA, right name -> up.
    let ca = Some(TlsVerify {
        ca_pem: cert_pem.clone(),
    });
    run(&https(ca.clone(), Some("real.test")), server.addr)
        .await
        .unwrap();
    // Wrong name -> down.
    let err = run(&https(ca, Some("other.test")), server.addr)
        .await
        .unwrap_err();
    assert!(err.detail.starts_with("TLS handshake"), "{err}");
    // Another CA -> down.
    let (_, other_pem) = self_signed("real.test");
    let err = run(
        &https(Some(TlsVerify { ca_pem: other_pem }), Some("real.test")),
        server.addr,
    )
    .await
    .unwrap_err();
    assert!(err.detail.starts_with("TLS handshake"), "{err}");
    // Plain HTTP to a TLS port -> down.
    let r = run(&http(HttpSpec::default()), server.addr).await;
    assert!(r.is_err());
}

// --- script ------------------------------------------------------------

fn script(cmd: &str) -> ProbeSpec {
    ProbeSpec::Script {
        command: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
    }
}

fn any_addr() -> SocketAddr {
    SocketAddr::new(IpAddr::from([127, 0, 0, 1]), 8080)
}

/// True if `pid` is gone or a zombie (dead, only waiting for its parent).
fn dead(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // Field 3, after "pid (comm)".
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
        }
    }
}

#[tokio::test]
async fn script_exit_codes_and_environment() {
    run(&script("exit 0"), any_addr()).await.unwrap();
    let err = run(&script("exit 3"), any_addr()).await.unwrap_err();
    assert_eq!(err.reason, FailureReason::ScriptExit(3));
    assert_eq!(err.detail, "script exited with status 3");
    // The target is in the environment.
    run(
        &script(r#"[ "$SLUICE_CHECK_ADDR" = 127.0.0.1 ] && [ "$SLUICE_CHECK_PORT" = 8080 ]"#),
        any_addr(),
    )
    .await
    .unwrap();
    // A missing program is a failure, not a panic.
    let missing = ProbeSpec::Script {
        command: vec!["/nonexistent/check".into()],
    };
    let err = run(&missing, any_addr()).await.unwrap_err();
    assert!(
        err.detail.starts_with("cannot run /nonexistent/check"),
        "{err}"
    );
    assert!(Probe::new(&ProbeSpec::Script { command: vec![] }).is_err());
}

#[tokio::test]
async fn script_timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // The shell starts a background sleep, records both pids, then waits.
    let cmd = format!("sleep 30 & echo $$ $! > {}; wait", pids.to_str().unwrap());
    let start = std::time::Instant::now();
    let err = run_with(&script(&cmd), any_addr(), Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(err.reason, FailureReason::Timeout);
    assert_eq!(err.detail, "script timeout after 500ms (killed)");

    let text = std::fs::read_to_string(&pids).unwrap();
    let ids: Vec<i32> = text
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{text}");
    // The script itself was reaped by us: no process, not even a zombie.
    assert!(
        std::fs::metadata(format!("/proc/{}", ids[0])).is_err(),
        "script {} still exists",
        ids[0]
    );
    // Its child died with the group (it was re-parented, so its zombie, if
    // any, belongs to the re-parenting process, not to us).
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while !dead(ids[1]) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dead(ids[1]), "background sleep {} survived", ids[1]);
}
