//! Connection sync end to end, every method with `rr`: two `sluice run` daemons,
//! LB A (the lab's LB, 10.99.0.1) and LB B (a namespace of this test on
//! the lab's segment, 10.99.0.3), each with the same service and
//! `[sync]` pointing at the other. Clients open keep-alive connections
//! through A; then the VIP moves to B by hand (the client's route to the
//! VIP now goes via B, as a VRRP failover would make it), and the next
//! request on each connection must reach the same real through B: B
//! never saw these connections' first packets, and `rr` cannot recompute
//! A's choices, so only the sessions A sent let them continue (a real
//! that gets another's connection answers with a reset). For `nat` the
//! reals' route to the client moves to B as well (a VRRP gateway address
//! would), and B must rewrite their replies: the reverse entries A sent;
//! for `fullnat` the local address moves (the reals' neighbour entry for
//! it), and B must translate the replies to A's local ports.
//! Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use common::*;
use sluice_l4::{AttachMode, Helper, HelperProgram};
use sluice_lab::{Netns, Node, http_get};

/// Keep-alive connections carried across the failover.
const CONNS: usize = 6;
/// LB B's address on the lab's segment.
const LB_B: &str = "10.99.0.3";
/// `fullnat`'s local address, on both LBs: the reals' neighbour entry
/// for it is pinned to the active one's MAC and moved with the VIP (as a
/// VRRP address with its gratuitous ARP would be).
const LOCAL: &str = "10.99.0.200";
/// Time for a new session to reach the peer (the target is 100 ms).
const SYNC_WAIT: Duration = Duration::from_millis(500);

fn config(method: &str, me: &str, peer: &str) -> String {
    // `nat` sends to the reals' port 80 (the VIP's too).
    let port = if matches!(method, "nat" | "fullnat") {
        "port = 80\n"
    } else {
        ""
    };
    let locals = if method == "fullnat" {
        format!("local_addresses = [\"{LOCAL}\"]\nlocal_port_range = [20000, 29999]\n")
    } else {
        String::new()
    };
    // `tun`'s reals are on the routed subnet behind the lab's router.
    let net = if method == "tun" {
        "10.98.0"
    } else {
        "10.99.0"
    };
    format!(
        r#"[global]
admin = "{ADMIN}"

[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "{method}"
scheduler = "rr"
interface = "lb0"
{locals}
[[l4_service.real]]
address = "{net}.11"
{port}
[[l4_service.real]]
address = "{net}.12"
{port}
[[l4_service.real]]
address = "{net}.13"
{port}

[sync]
enabled = true
listen = "{me}:7946"
peers = ["{peer}:7946"]
interval = "1s"
"#
    )
}

fn vip() -> SocketAddr {
    "10.99.255.1:80".parse().unwrap()
}

/// `sluice run` in LB B's namespace; stopped with SIGTERM on drop.
struct DaemonB {
    child: Child,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Drop for DaemonB {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_b(ns: &Netns, config: &str) -> DaemonB {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, config).unwrap();
    let log = dir.path().join("daemon.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = ns
        .command(&[SLUICE, "run", "-c", cfg.to_str().unwrap()])
        .unwrap();
    cmd.stdout(logf.try_clone().unwrap()).stderr(logf);
    let mut d = DaemonB {
        child: cmd.spawn().unwrap(),
        _dir: dir,
        log,
    };
    let admin: SocketAddr = ADMIN.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = ns
            .in_netns(move || http_get(admin, "/v1/health", Duration::from_millis(300)).is_ok())
            .unwrap();
        if up {
            return d;
        }
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!(
                "LB B's sluice run exited with {st}:\n{}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "LB B did not come up:\n{}",
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One global counter of LB B.
fn counter_b(ns: &Netns, name: &str) -> u64 {
    let out = ns.exec(&[SLUICE, "ctl", "counters"]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            (it.next() == Some(name)).then(|| it.next().and_then(|n| n.parse().ok()))?
        })
        .unwrap_or_else(|| panic!("no counter {name} in {text}"))
}

/// `nat`: the reals' route to the client goes via `lb` (and their
/// checksums are full: docs, gotcha 3).
fn route_reals_via(lab: &sluice_lab::Lab, lb: &str) {
    for i in 1..=3 {
        for argv in [
            &["ip", "route", "replace", "10.99.0.2/32", "via", lb][..],
            &["ethtool", "-K", "eth0", "tx", "off"][..],
        ] {
            let out = lab.exec(Node::Real(i), argv).unwrap();
            assert!(
                out.status.success(),
                "{argv:?} in real {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn established_dr_flows_continue_through_the_peer_after_the_vip_moves() {
    failover("dr");
}

#[test]
fn established_nat_flows_continue_through_the_peer_after_the_vip_moves() {
    failover("nat");
}

#[test]
fn established_tun_flows_continue_through_the_peer_after_the_vip_moves() {
    failover("tun");
}

#[test]
fn established_fullnat_flows_continue_through_the_peer_after_the_vip_moves() {
    failover("fullnat");
}

/// The MAC of `lb0` as `ip -j link show` (run by `exec`) prints it.
fn mac_of(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["address"].as_str().unwrap().to_owned()
}

/// `fullnat`: each real sends to the local address at `mac`.
fn pin_local_to(lab: &sluice_lab::Lab, mac: &str) {
    for i in 1..=3 {
        for argv in [
            &[
                "ip",
                "neigh",
                "replace",
                LOCAL,
                "lladdr",
                mac,
                "dev",
                "eth0",
                "nud",
                "permanent",
            ][..],
            &["ethtool", "-K", "eth0", "tx", "off"][..],
        ] {
            let out = lab.exec(Node::Real(i), argv).unwrap();
            assert!(
                out.status.success(),
                "{argv:?} in real {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

fn failover(method: &str) {
    let tag = format!("sync{method}");
    let lab = if method == "tun" {
        tun_lab(&tag, 3)
    } else {
        l4_lab(&tag, 3)
    };
    // LB B: a namespace of its own on the lab's bridge.
    let ns_b = Netns::create(&format!("{}-lb2", lab.netns(Node::Lb).unwrap())).unwrap();
    let switch = lab.netns(Node::Switch).unwrap().to_owned();
    ns_b.ip(&[
        "link", "add", "lb0", "type", "veth", "peer", "name", "swlb2", "netns", &switch,
    ])
    .unwrap();
    let out = lab
        .exec(
            Node::Switch,
            &["ip", "link", "set", "swlb2", "master", "br0", "up"],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ns_b.ip(&["addr", "add", &format!("{LB_B}/24"), "dev", "lb0"])
        .unwrap();
    if method == "tun" {
        // As the lab's LB: room for the outer header on the path, and
        // the reals' subnet through the router.
        let mtu = sluice_lab::TUN_PATH_MTU.to_string();
        ns_b.ip(&["link", "set", "lb0", "mtu", &mtu]).unwrap();
        let out = lab
            .exec(Node::Switch, &["ip", "link", "set", "swlb2", "mtu", &mtu])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    ns_b.ip(&["link", "set", "lb0", "up"]).unwrap();
    if method == "tun" {
        ns_b.ip(&["route", "add", "10.98.0.0/24", "via", "10.99.0.254"])
            .unwrap();
    }
    // Native XDP_TX into a veth needs a program on the peer end.
    let _pass_b = lab
        .in_netns(Node::Switch, || {
            HelperProgram::attach(Helper::Pass, "swlb2", AttachMode::Native)
        })
        .unwrap()
        .unwrap();

    let lb_a = lab.node(Node::Lb).unwrap().ipv4.to_string();
    if method == "nat" {
        route_reals_via(&lab, &lb_a);
    }
    let local_macs = if method == "fullnat" {
        let out = lab
            .exec(
                Node::Lb,
                &["ip", "addr", "add", &format!("{LOCAL}/32"), "dev", "lb0"],
            )
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns_b.ip(&["addr", "add", &format!("{LOCAL}/32"), "dev", "lb0"])
            .unwrap();
        let a = mac_of(
            lab.exec(Node::Lb, &["ip", "-j", "link", "show", "lb0"])
                .unwrap(),
        );
        let b = mac_of(ns_b.exec(&["ip", "-j", "link", "show", "lb0"]).unwrap());
        pin_local_to(&lab, &a);
        Some(b)
    } else {
        None
    };
    let _a = start_daemon(&lab, &config(method, &lb_a, LB_B));
    let _b = start_b(&ns_b, &config(method, LB_B, &lb_a));

    // Keep-alive connections through A, each on the real `rr` gave it.
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let mut c = KeepAlive::connect(&lab, vip()).unwrap();
        let real = c.get("/").unwrap();
        conns.push((c, real));
    }
    let reals: std::collections::BTreeSet<_> = conns.iter().map(|(_, r)| r.clone()).collect();
    assert!(reals.len() > 1, "rr spread the connections: {reals:?}");
    std::thread::sleep(SYNC_WAIT);

    // The failover, by hand: the VIP is reached through B from now on.
    let out = lab
        .exec(
            Node::Client,
            &[
                "ip",
                "route",
                "replace",
                "10.99.255.1/32",
                "via",
                LB_B,
                "dev",
                "c0",
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    if method == "nat" {
        route_reals_via(&lab, LB_B);
    }
    if let Some(b) = &local_macs {
        pin_local_to(&lab, b);
    }
    let misses_before = counter_b(&ns_b, "session_miss");

    // In the reverse order of their first packets on A: without sync, B
    // would not even replay A's choices by chance (its `rr` cursor and
    // `fullnat` port cursor start where A's did).
    let mut broken = Vec::new();
    for (i, (c, real)) in conns.iter_mut().enumerate().rev() {
        match c.get("/") {
            Ok(now) if now == *real => {}
            Ok(now) => broken.push(format!("connection {i}: {real} then {now}")),
            Err(e) => broken.push(format!("connection {i} (on {real}): {e}")),
        }
    }
    assert!(
        broken.is_empty(),
        "established flows broken by the failover: {broken:?}\nLB B's log:\n{}",
        std::fs::read_to_string(&_b.log).unwrap_or_default()
    );
    // They went through B, on the sessions A sent: hits, no new session.
    assert!(counter_b(&ns_b, "session_hit") >= CONNS as u64);
    assert_eq!(counter_b(&ns_b, "session_miss"), misses_before);
    if method == "nat" {
        let replies = counter_b(&ns_b, "tx_nat_reply");
        let all = ns_b.exec(&[SLUICE, "ctl", "counters"]).unwrap();
        assert!(
            replies >= CONNS as u64,
            "B rewrote {replies} replies: {}",
            String::from_utf8_lossy(&all.stdout)
        );
    }
    if method == "fullnat" {
        let replies = counter_b(&ns_b, "tx_fullnat_reply");
        assert!(replies >= CONNS as u64, "B translated {replies} replies");
    }
    // New connections go through B too.
    let (status, _, _) = get(&lab, vip(), "/").unwrap();
    assert_eq!(status, 200);
}
