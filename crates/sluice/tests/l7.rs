//! The L7 proxy run by `sluice run` in the lab: a frontend on the LB's
//! address in front of the three real servers, driven by curl, wrk and ab
//! from the client namespace; health checks take a server out of the pool;
//! PROXY protocol is read by a real nginx. Needs root.
#![allow(missing_docs, clippy::unwrap_used, unreachable_pub)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use sluice_lab::{Lab, Node};

fn config(extra: &str) -> String {
    format!(
        r#"[global]
admin = "{ADMIN}"
threads = 2

[health_check.web]
type = "http"
path = "/health"
interval = "200ms"
timeout = "100ms"
fall = 2
rise = 2
jitter = 0
initial_state = "up"

[[frontend]]
name = "www"
bind = ["10.99.0.1:8080"]
mode = "http"
default_backend = "web"

[[backend]]
name = "web"
mode = "http"
balance = "roundrobin"
health_check = "web"

[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
[[backend.server]]
name = "rs2"
address = "10.99.0.12:80"
[[backend.server]]
name = "rs3"
address = "10.99.0.13:80"
{extra}"#
    )
}

fn curl_ok(lab: &Lab, url: &str) -> (u16, usize, String) {
    curl(lab, &[], url).unwrap()
}

fn server_up(lab: &Lab, name: &str) -> bool {
    let out = sluice_in_lb(lab, &["ctl", "stats", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["backends"][0]["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["up"].as_bool().unwrap())
        .unwrap()
}

#[test]
fn http_proxy_balances_forwards_and_survives_a_dead_server() {
    let lab = l4_lab("l7", 3);
    let d = start_daemon_with(&lab, &config(""), &["--access-log"]);
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        let (status, len, who) = curl_ok(&lab, "http://10.99.0.1:8080/");
        assert_eq!((status, len), (200, 5120));
        seen.insert(who);
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    // The real sees the client's address in X-Forwarded-For.
    let out = lab
        .exec(
            Node::Client,
            &[
                "curl",
                "-sS",
                "--max-time",
                "3",
                "http://10.99.0.1:8080/headers",
            ],
        )
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(body.contains("x-forwarded-for: 10.99.0.2"), "{body}");
    // wrk (keep-alive) and ab (a connection per request): no failures.
    let report = wrk(&lab, "http://10.99.0.1:8080/", 20, 2);
    assert!(wrk_requests(&report) > 500, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    let ab = lab
        .exec(
            Node::Client,
            &[
                "ab",
                "-q",
                "-n",
                "500",
                "-c",
                "10",
                "http://10.99.0.1:8080/",
            ],
        )
        .unwrap();
    let ab = String::from_utf8_lossy(&ab.stdout);
    assert!(ab.contains("Complete requests:      500"), "{ab}");
    assert!(ab.contains("Failed requests:        0"), "{ab}");
    // `--access-log`: a line per request, HAProxy-style (curl and wrk
    // speak HTTP/1.1, ab HTTP/1.0).
    let log = std::fs::read_to_string(&d.log).unwrap();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("[www] web/rs")).collect();
    assert!(lines.len() > 30 + 500 + 500, "{} access lines", lines.len());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("10.99.0.2:") && l.contains(" 200 5120 -- \"GET /\"")),
        "{}",
        lines.first().unwrap_or(&"")
    );
    // The log goes to a file here, not a terminal: no colour escapes.
    assert!(
        !log.contains('\x1b'),
        "ANSI escapes in a log file: {:?}",
        lines.first()
    );
    // ctl stats: the frontend counted them, every server answered 2xx.
    let stats = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "stats"]).stdout).into_owned();
    assert!(
        stats.contains("frontend") && stats.contains("web/rs2"),
        "{stats}"
    );

    // ctl metrics: the same counters for Prometheus. Every request so far
    // (31 curl, wrk, 500 ab) went through the frontend, and the three
    // servers' 2xx add up to the frontend's.
    let m = metrics(&lab);
    let fe = metric(&m, r#"sluice_frontend_requests_total{frontend="www"}"#).unwrap();
    assert!(fe > 30 + 500 + 500, "{m}");
    let fe_2xx = metric(
        &m,
        r#"sluice_frontend_responses_total{frontend="www",code="2xx"}"#,
    )
    .unwrap();
    // (wrk may cut requests short at the end of its run: no 2xx for those.)
    assert!(fe_2xx > 30 + 500 + 500 && fe_2xx <= fe, "{m}");
    let servers_2xx: u64 = ["rs1", "rs2", "rs3"]
        .iter()
        .map(|s| {
            let series = format!(
                r#"sluice_server_responses_total{{backend="web",server="{s}",code="2xx"}}"#
            );
            metric(&m, &series).unwrap()
        })
        .sum();
    assert_eq!(servers_2xx, fe_2xx, "{m}");
    assert_eq!(
        metric(&m, r#"sluice_server_up{backend="web",server="rs2"}"#),
        Some(1)
    );
    assert!(
        m.contains("# TYPE sluice_frontend_requests_total counter\n"),
        "{m}"
    );

    // A server that stops answering leaves the pool by health check...
    let t = Instant::now();
    for cmd in [
        "add table inet sltest",
        "add chain inet sltest in { type filter hook input priority 0 ; }",
        "add rule inet sltest in tcp dport 80 drop",
    ] {
        let argv: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
        assert!(lab.exec(Node::Real(2), &argv).unwrap().status.success());
    }
    while server_up(&lab, "rs2") {
        assert!(t.elapsed() < Duration::from_secs(3), "rs2 still up");
        std::thread::sleep(Duration::from_millis(25));
    }
    // ...which the health-check and server metrics show.
    let m = metrics(&lab);
    assert_eq!(
        metric(&m, r#"sluice_server_up{backend="web",server="rs2"}"#),
        Some(0),
        "{m}"
    );
    let down: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("sluice_check_up{") && l.ends_with(" 0"))
        .collect();
    assert_eq!(down.len(), 1, "{m}");
    assert!(
        down[0].starts_with(r#"sluice_check_up{target="web/rs2",check="http"}"#),
        "{m}"
    );
    // `ctl checks` lists the proxy's server checks too.
    let checks =
        String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "checks"]).stdout).into_owned();
    let rs2 = checks
        .lines()
        .find(|l| l.starts_with("web/rs2 "))
        .unwrap_or_else(|| panic!("{checks}"));
    assert!(rs2.contains("down"), "{checks}");
    // ...and requests keep working without it.
    for _ in 0..20 {
        let (status, _, who) = curl_ok(&lab, "http://10.99.0.1:8080/");
        assert_eq!(status, 200);
        assert_ne!(who, "rs2");
    }
    assert!(
        lab.exec(Node::Real(2), &["nft", "delete", "table", "inet", "sltest"])
            .unwrap()
            .status
            .success()
    );
    let t = Instant::now();
    while !server_up(&lab, "rs2") {
        assert!(t.elapsed() < Duration::from_secs(3), "rs2 not back");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A `mode tcp` frontend with `splice = "always"` in `sluice run`: curl and
/// wrk through it get every byte, and `ctl stats` shows that all of them
/// were moved with splice(2).
#[test]
fn tcp_frontend_splices_through_sluice_run() {
    let lab = l4_lab("l7sp", 1);
    let _d = start_daemon(
        &lab,
        &config(
            r#"
[[frontend]]
name = "tcp-in"
bind = ["10.99.0.1:8081"]
mode = "tcp"
default_backend = "web-tcp"
splice = "always"

[[backend]]
name = "web-tcp"
mode = "tcp"
[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
"#,
        ),
    );
    for _ in 0..10 {
        let (status, len, _) = curl_ok(&lab, "http://10.99.0.1:8081/");
        assert_eq!((status, len), (200, 5120));
    }
    let report = wrk(&lab, "http://10.99.0.1:8081/", 10, 2);
    assert!(wrk_requests(&report) > 200, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    // Byte counters are added when a session ends; wrk's just did.
    let t = Instant::now();
    loop {
        let out = sluice_in_lb(&lab, &["ctl", "stats", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let fe = v["frontends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == "tcp-in")
            .cloned()
            .unwrap();
        let n = |k: &str| fe[k].as_u64().unwrap();
        if n("sessions_current") == 0 {
            assert!(n("bytes_out") > 10 * 5120, "{fe}");
            assert_eq!(n("bytes_spliced"), n("bytes_in") + n("bytes_out"), "{fe}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "sessions still open: {fe}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn proxy_protocol_reaches_a_real_nginx() {
    let lab = l4_lab("l7pp", 1);
    // nginx on rs1 reads the PROXY header and answers with the address in it.
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\ndaemon off;\n\
             events {{ worker_connections 64; }}\n\
             http {{ access_log off; client_body_temp_path {d}; proxy_temp_path {d}; \
             fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n\
             server {{ listen 8081 proxy_protocol; location / {{ return 200 \"pp=$proxy_protocol_addr\\n\"; }} }} }}\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let nginx = lab
        .spawn(Node::Real(1), &["nginx", "-c", conf.to_str().unwrap()])
        .unwrap();
    let extra = r#"
[[frontend]]
name = "pp"
bind = ["10.99.0.1:8082"]
mode = "http"
default_backend = "pp"

[[backend]]
name = "pp"
mode = "http"
send_proxy = "v1"

[[backend.server]]
name = "nginx"
address = "10.99.0.11:8081"
"#;
    let cfg = config(extra).replace(
        "[[backend.server]]\nname = \"rs2\"\naddress = \"10.99.0.12:80\"\n[[backend.server]]\nname = \"rs3\"\naddress = \"10.99.0.13:80\"\n",
        "",
    );
    let _d = start_daemon(&lab, &cfg);
    let t = Instant::now();
    let body = loop {
        let out = lab
            .exec(
                Node::Client,
                &["curl", "-sS", "--max-time", "3", "http://10.99.0.1:8082/"],
            )
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        if body.starts_with("pp=") || t.elapsed() > Duration::from_secs(5) {
            break body;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(body.trim(), "pp=10.99.0.2", "nginx saw {body:?}");
    drop(nginx);
}
