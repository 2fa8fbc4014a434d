//! Health checks driving the L4 data plane in the lab: a real that stops
//! answering is marked down within interval × fall + timeout, new flows
//! avoid it, and it comes back after `rise` good checks. Needs root.
#![allow(missing_docs, clippy::unwrap_used, unreachable_pub)]

mod common;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use common::*;
use sluice_lab::{Lab, Node};

const INTERVAL_MS: u64 = 200;
const TIMEOUT_MS: u64 = 100;
const FALL: u64 = 2;
const RISE: u64 = 2;
/// Polling granularity and scheduling slack allowed on top of the bound.
const SLACK_MS: u64 = 400;

fn config(check: &str) -> String {
    format!(
        r#"[global]
admin = "{ADMIN}"

[health_check.web]
{check}
interval = "{INTERVAL_MS}ms"
timeout = "{TIMEOUT_MS}ms"
fall = {FALL}
rise = {RISE}
jitter = 0
initial_state = "up"

[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
scheduler = "rr"
interface = "lb0"
health_check = "web"

[[l4_service.real]]
address = "10.99.0.11"
[[l4_service.real]]
address = "10.99.0.12"
[[l4_service.real]]
address = "10.99.0.13"
"#
    )
}

fn vip() -> SocketAddr {
    "10.99.255.1:80".parse().unwrap()
}

fn health_of(lab: &Lab, addr: &str) -> String {
    let list = ctl_list(lab);
    list[0]["reals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == addr)
        .map(|r| r["health"].as_str().unwrap().to_owned())
        .unwrap()
}

/// Waits until `addr` has health `want`; returns the time it took.
/// On a timeout the assertion shows `ctl checks` (did the checks run, what
/// did they see) and the daemon's log (its health transitions and
/// warnings), so a check that passes wrongly can be told apart from one
/// that did not run and from a slow control plane.
fn wait_health(lab: &Lab, d: &Daemon, addr: &str, want: &str, limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        if health_of(lab, addr) == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{addr} not {want} after {:?}; checks:\n{}\ndaemon log:\n{}",
            t.elapsed(),
            String::from_utf8_lossy(&sluice_in_lb(lab, &["ctl", "checks"]).stdout),
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn blackhole(lab: &Lab, real: usize, on: bool) {
    let node = Node::Real(real);
    if on {
        for cmd in [
            "add table inet sltest",
            "add chain inet sltest in { type filter hook input priority 0 ; }",
            "add rule inet sltest in tcp dport 80 drop",
        ] {
            let argv: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
            let out = lab.exec(node, &argv).unwrap();
            assert!(
                out.status.success(),
                "nft {cmd}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    } else {
        let out = lab
            .exec(node, &["nft", "delete", "table", "inet", "sltest"])
            .unwrap();
        assert!(out.status.success());
    }
}

#[test]
fn http_check_takes_a_blackholed_real_out_and_back() {
    let lab = l4_lab("hchk", 3);
    let d = start_daemon(&lab, &config("type = \"http\"\npath = \"/health\""));
    for a in ["10.99.0.11", "10.99.0.12", "10.99.0.13"] {
        assert_eq!(health_of(&lab, a), "up");
    }
    blackhole(&lab, 2, true);
    let bound = Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS + SLACK_MS);
    let took = wait_health(&lab, &d, "10.99.0.12", "down", Duration::from_secs(5));
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    // New flows only reach healthy reals, and all succeed.
    for _ in 0..30 {
        let (status, _, who) = get(&lab, vip(), "/").unwrap();
        assert_eq!(status, 200);
        assert_ne!(who, "rs2");
    }
    let report = wrk(&lab, "http://10.99.255.1/", 10, 2);
    assert_eq!(wrk_errors(&report), 0, "{report}");
    blackhole(&lab, 2, false);
    let back = wait_health(&lab, &d, "10.99.0.12", "up", Duration::from_secs(5));
    assert!(
        back <= Duration::from_millis(INTERVAL_MS * RISE + TIMEOUT_MS + SLACK_MS),
        "up after {back:?}"
    );
    let seen: std::collections::BTreeSet<String> =
        (0..12).map(|_| get(&lab, vip(), "/").unwrap().2).collect();
    assert!(seen.contains("rs2"), "{seen:?}");
}

#[test]
fn half_open_check_never_reaches_accept() {
    let lab = l4_lab("hhalf", 3);
    let accepted = |lab: &Lab, ip: &str| -> u64 {
        let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
        lab.in_netns(Node::Client, move || {
            let r = sluice_lab::http_get(addr, "/stats", Duration::from_secs(3)).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            v["accepted"].as_u64().unwrap()
        })
        .unwrap()
    };
    let before = accepted(&lab, "10.99.0.13");
    let d = start_daemon(&lab, &config("type = \"tcp-half-open\""));
    // 2 s of checks at 200 ms: ~10 half-open probes reached rs3.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(health_of(&lab, "10.99.0.13"), "up");
    // Only our own /stats reads were accepted: one per read.
    let after = accepted(&lab, "10.99.0.13");
    assert_eq!(
        after,
        before + 1,
        "half-open checks were accepted by the application"
    );
    // And a blackholed real goes down.
    blackhole(&lab, 3, true);
    let took = wait_health(&lab, &d, "10.99.0.13", "down", Duration::from_secs(5));
    assert!(
        took <= Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS + SLACK_MS),
        "{took:?}"
    );
}

#[test]
fn icmp_check_follows_dropped_pings() {
    let lab = l4_lab("hicmp", 3);
    let d = start_daemon(&lab, &config("type = \"icmp\""));
    assert_eq!(health_of(&lab, "10.99.0.11"), "up");
    for cmd in [
        "add table inet sltest",
        "add chain inet sltest in { type filter hook input priority 0 ; }",
        "add rule inet sltest in icmp type echo-request drop",
    ] {
        let argv: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
        assert!(lab.exec(Node::Real(1), &argv).unwrap().status.success());
    }
    let took = wait_health(&lab, &d, "10.99.0.11", "down", Duration::from_secs(5));
    assert!(
        took <= Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS + SLACK_MS),
        "{took:?}"
    );
    for _ in 0..20 {
        assert_ne!(get(&lab, vip(), "/").unwrap().2, "rs1");
    }
    assert!(
        lab.exec(Node::Real(1), &["nft", "delete", "table", "inet", "sltest"])
            .unwrap()
            .status
            .success()
    );
    wait_health(&lab, &d, "10.99.0.11", "up", Duration::from_secs(5));
}

#[test]
fn tcp_check_and_failures_under_load() {
    let lab = l4_lab("htcp", 3);
    let d = start_daemon(&lab, &config("type = \"tcp\""));
    // wrk runs across the failure; its errors are the detection window's cost.
    let during = std::thread::scope(|s| {
        let w = s.spawn(|| wrk(&lab, "http://10.99.255.1/", 10, 3));
        std::thread::sleep(Duration::from_millis(700));
        blackhole(&lab, 3, true);
        w.join().unwrap()
    });
    let took = wait_health(&lab, &d, "10.99.0.13", "down", Duration::from_secs(5));
    assert!(
        took <= Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS + SLACK_MS),
        "{took:?}"
    );
    eprintln!(
        "failed requests during the detection window: {}",
        wrk_errors(&during)
    );
    // After detection: no failures at all.
    let after = wrk(&lab, "http://10.99.255.1/", 10, 2);
    assert_eq!(wrk_errors(&after), 0, "{after}");
    assert!(wrk_requests(&after) > 500, "{after}");
}

#[test]
fn http_content_check_compares_the_body() {
    let lab = l4_lab("hcont", 3);
    // /whoami names the real: only rs2's body contains "rs2".
    let d = start_daemon(
        &lab,
        &config("type = \"http-content\"\npath = \"/whoami\"\nbody_contains = \"rs2\""),
    );
    wait_health(&lab, &d, "10.99.0.11", "down", Duration::from_secs(5));
    wait_health(&lab, &d, "10.99.0.13", "down", Duration::from_secs(5));
    assert_eq!(health_of(&lab, "10.99.0.12"), "up");
    for _ in 0..20 {
        assert_eq!(get(&lab, vip(), "/").unwrap().2, "rs2");
    }
}

#[test]
fn script_check_runs_the_command() {
    let lab = l4_lab("hscr", 3);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("down-10.99.0.11");
    let check = format!(
        "type = \"script\"\ncommand = [\"sh\", \"-c\", \"test ! -e {}/down-$SLUICE_CHECK_ADDR\"]",
        dir.path().display()
    );
    let d = start_daemon(&lab, &config(&check));
    assert_eq!(health_of(&lab, "10.99.0.11"), "up");
    std::fs::write(&flag, "").unwrap();
    wait_health(&lab, &d, "10.99.0.11", "down", Duration::from_secs(5));
    assert_eq!(health_of(&lab, "10.99.0.12"), "up");
    std::fs::remove_file(&flag).unwrap();
    wait_health(&lab, &d, "10.99.0.11", "up", Duration::from_secs(5));
}

#[test]
fn operator_state_is_kept_apart_from_health() {
    let lab = l4_lab("hop", 3);
    let _d = start_daemon(&lab, &config("type = \"tcp\""));
    let out = sluice_in_lb(
        &lab,
        &["ctl", "set-state", "web", "10.99.0.11", "maintenance"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..20 {
        assert_ne!(get(&lab, vip(), "/").unwrap().2, "rs1");
    }
    // Health still passes: the operator state is separate.
    let checks =
        String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "checks"]).stdout).into_owned();
    let line = checks
        .lines()
        .find(|l| l.starts_with("web/10.99.0.11"))
        .unwrap();
    assert!(
        line.contains(" up ") && line.contains("maintenance") && line.contains("out"),
        "{checks}"
    );
    assert_eq!(health_of(&lab, "10.99.0.11"), "up");
    let list = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(list.contains("maintenance"), "{list}");
    // A bad state is refused with the reason.
    let out = sluice_in_lb(&lab, &["ctl", "set-state", "web", "10.99.0.11", "sleeping"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected enabled, drain or maintenance")
    );
    let out = sluice_in_lb(&lab, &["ctl", "set-state", "web", "10.99.0.11", "enabled"]);
    assert!(out.status.success());
    let seen: std::collections::BTreeSet<String> =
        (0..12).map(|_| get(&lab, vip(), "/").unwrap().2).collect();
    assert!(seen.contains("rs1"), "{seen:?}");
}

#[test]
fn via_vip_check_catches_a_real_without_the_vip() {
    let lab = l4_lab("hvia", 3);
    let d = start_daemon(&lab, &config("type = \"tcp\"\nvia_vip = true"));
    for a in ["10.99.0.11", "10.99.0.12", "10.99.0.13"] {
        assert_eq!(health_of(&lab, a), "up");
    }
    // rs2 still answers on its own address, but no longer owns the VIP:
    // only a check through the data path can tell.
    let del = lab
        .exec(
            Node::Real(2),
            &["ip", "addr", "del", "10.99.255.1/32", "dev", "lo"],
        )
        .unwrap();
    assert!(
        del.status.success(),
        "{}",
        String::from_utf8_lossy(&del.stderr)
    );
    let own = get(&lab, "10.99.0.12:80".parse().unwrap(), "/health").unwrap();
    assert_eq!(own.0, 200, "rs2 still answers on its own address");
    let took = wait_health(&lab, &d, "10.99.0.12", "down", Duration::from_secs(5));
    assert!(
        took <= Duration::from_millis(INTERVAL_MS * FALL + TIMEOUT_MS + SLACK_MS),
        "{took:?}"
    );
    assert_eq!(health_of(&lab, "10.99.0.11"), "up");
    for _ in 0..20 {
        let (status, _, who) = get(&lab, vip(), "/").unwrap();
        assert_eq!(status, 200);
        assert_ne!(who, "rs2");
    }
    let add = lab
        .exec(
            Node::Real(2),
            &["ip", "addr", "add", "10.99.255.1/32", "dev", "lo"],
        )
        .unwrap();
    assert!(add.status.success());
    wait_health(&lab, &d, "10.99.0.12", "up", Duration::from_secs(5));
}
