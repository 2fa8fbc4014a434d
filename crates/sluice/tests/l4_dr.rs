//! The L4 `dr` (L2 DSR) data plane end to end in the lab: `sluice run`
//! attaches `sluice_xdp` natively to the LB's veth; clients in the client
//! namespace reach the VIP; reals answer directly. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use common::*;
use sluice_lab::Node;

/// New-connection requests in the spread check.
const SPREAD_REQUESTS: usize = 60;
/// Persistent connections in the remove-a-real check.
const KEEPALIVE_CONNS: usize = 30;

fn config(sched: &str) -> String {
    format!(
        r#"[global]
admin = "{ADMIN}"

[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
scheduler = "{sched}"
interface = "lb0"
{table}

[[l4_service.real]]
address = "10.99.0.11"
[[l4_service.real]]
address = "10.99.0.12"
[[l4_service.real]]
address = "10.99.0.13"
"#,
        table = if sched == "mh" {
            "maglev_table_size = 1009"
        } else {
            ""
        }
    )
}

fn vip() -> SocketAddr {
    "10.99.255.1:80".parse().unwrap()
}

#[test]
fn dr_serves_through_xdp_and_replies_bypass_the_lb() {
    let lab = l4_lab("dr", 3);
    let _d = start_daemon(&lab, &config("mh"));
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..SPREAD_REQUESTS {
        let (status, len, real) = get(&lab, vip(), "/").unwrap();
        assert_eq!((status, len), (200, 5120));
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(by_real.len(), 3, "every real serves: {by_real:?}");

    // Every byte arriving at the LB passes the XDP program, so its byte
    // counter bounds what entered the LB: the 60 × 5 KiB of replies did not.
    let rx_bytes = counter(&lab, "rx_bytes");
    let reply_bytes = (SPREAD_REQUESTS * 5120) as u64;
    assert!(
        rx_bytes < reply_bytes / 4,
        "LB received {rx_bytes} bytes for {reply_bytes} bytes of replies"
    );
    let fwd = counter(&lab, "tx_forwarded");
    assert!(fwd >= (SPREAD_REQUESTS * 4) as u64, "forwarded {fwd}");
    assert!(counter(&lab, "session_miss") >= SPREAD_REQUESTS as u64);

    // ctl list: the service, its reals and their sessions.
    let list = ctl_list(&lab);
    let svc = &list[0];
    assert_eq!(svc["name"], "web");
    assert_eq!(svc["address"], "10.99.255.1:80/tcp");
    let reals = svc["reals"].as_array().unwrap();
    assert_eq!(reals.len(), 3);
    let sessions: u64 = reals.iter().map(|r| r["sessions"].as_u64().unwrap()).sum();
    assert!(sessions >= SPREAD_REQUESTS as u64, "{list}");
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(
        text.contains("TCP  10.99.255.1:80") && text.contains("-> 10.99.0.12"),
        "{text}"
    );

    // ctl metrics: the XDP counters and the per-real traffic for Prometheus,
    // the same numbers as ctl counters / ctl list.
    let m = metrics(&lab);
    let fwd_now = metric(&m, "sluice_l4_tx_forwarded_total").unwrap();
    assert!(fwd_now >= fwd, "{m}");
    let real_sessions: u64 = ["10.99.0.11", "10.99.0.12", "10.99.0.13"]
        .iter()
        .map(|r| {
            let series = format!(r#"sluice_l4_real_sessions_total{{service="web",real="{r}"}}"#);
            metric(&m, &series).unwrap()
        })
        .sum();
    assert!(real_sessions >= SPREAD_REQUESTS as u64, "{m}");
    assert_eq!(
        metric(
            &m,
            r#"sluice_l4_real_healthy{service="web",real="10.99.0.11"}"#
        ),
        Some(1),
        "{m}"
    );

    // wrk with keep-alive through the VIP.
    let report = wrk(&lab, "http://10.99.255.1/", 20, 3);
    assert!(wrk_requests(&report) > 1000, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
}

#[test]
fn drain_keeps_open_connections_and_sends_new_ones_elsewhere() {
    let lab = l4_lab("drain", 3);
    let _d = start_daemon(&lab, &config("wrr"));
    // Open persistent connections until some land on rs1.
    let mut on_rs1 = Vec::new();
    let mut others = Vec::new();
    for _ in 0..12 {
        let mut c = KeepAlive::connect(&lab, vip()).unwrap();
        let who = c.get("/").unwrap();
        if who == "rs1" {
            on_rs1.push(c)
        } else {
            others.push(c)
        }
    }
    assert!(!on_rs1.is_empty(), "wrr over 3 reals put nothing on rs1");

    // Drain rs1 while wrk is loading the VIP: no request may fail.
    let report = std::thread::scope(|sc| {
        let w = sc.spawn(|| wrk(&lab, "http://10.99.255.1/", 10, 3));
        std::thread::sleep(Duration::from_millis(1000));
        let out = sluice_in_lb(&lab, &["ctl", "set-weight", "web", "10.99.0.11", "0"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        w.join().unwrap()
    });
    assert_eq!(wrk_errors(&report), 0, "{report}");
    let before = real_requests(&lab, "10.99.0.11".parse().unwrap());

    // Open connections to the drained real keep working...
    for c in &mut on_rs1 {
        for _ in 0..5 {
            assert_eq!(c.get("/").unwrap(), "rs1");
        }
    }
    // ...and new connections avoid it, also under load.
    for _ in 0..30 {
        let (_, _, who) = get(&lab, vip(), "/").unwrap();
        assert_ne!(who, "rs1");
    }
    let report = wrk(&lab, "http://10.99.255.1/", 10, 2);
    assert_eq!(wrk_errors(&report), 0, "{report}");
    let after = real_requests(&lab, "10.99.0.11".parse().unwrap());
    // Exactly the 5 requests per drained connection (+1 for the /stats read itself).
    assert_eq!(
        after - before,
        5 * on_rs1.len() as u64 + 1,
        "drained real got new work"
    );

    // Bad requests are refused with a reason and change nothing.
    let out = sluice_in_lb(&lab, &["ctl", "set-weight", "web", "10.99.0.99", "1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no real 10.99.0.99"));
    let out = sluice_in_lb(&lab, &["ctl", "set-weight", "nosuch", "10.99.0.11", "1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no L4 service named \"nosuch\""));
    let out = sluice_in_lb(&lab, &["ctl", "set-weight", "web", "10.99.0.11", "70000"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range"));
    let list = ctl_list(&lab);
    assert_eq!(list[0]["reals"][0]["weight"], 0);
}

#[test]
fn removing_a_real_moves_only_its_flows() {
    let lab = l4_lab("rm", 3);
    let _d = start_daemon(&lab, &config("mh"));
    let mut conns = Vec::new();
    for _ in 0..KEEPALIVE_CONNS {
        let mut c = KeepAlive::connect(&lab, vip()).unwrap();
        let who = c.get("/").unwrap();
        conns.push((who, c));
    }
    let victims = conns.iter().filter(|(w, _)| w == "rs2").count();
    assert!(
        victims > 0 && victims < KEEPALIVE_CONNS,
        "Maglev put {victims} of {KEEPALIVE_CONNS} on rs2"
    );

    let out = sluice_in_lb(&lab, &["ctl", "remove-real", "web", "10.99.0.12"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (who, c) in &mut conns {
        let r = c.get("/");
        if who == "rs2" {
            // Its packets now reach another real, which knows no such
            // connection and resets it: the flow moved.
            assert!(r.is_err(), "a flow of the removed real still reached {r:?}");
        } else {
            assert_eq!(r.unwrap(), *who, "a flow of another real moved");
        }
    }
    // New connections never reach the removed real.
    for _ in 0..20 {
        let (_, _, who) = get(&lab, vip(), "/").unwrap();
        assert_ne!(who, "rs2");
    }
    let list = ctl_list(&lab);
    assert_eq!(list[0]["reals"].as_array().unwrap().len(), 2);
    // Adding it back works too.
    let out = sluice_in_lb(
        &lab,
        &["ctl", "add-real", "web", "10.99.0.12", "--weight", "2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(100));
    let seen: std::collections::BTreeSet<String> =
        (0..40).map(|_| get(&lab, vip(), "/").unwrap().2).collect();
    assert!(seen.contains("rs2"), "{seen:?}");
    let _ = lab.exec(Node::Client, &["true"]);
}
