//! VRRP failover time, sluice next to keepalived on the same lab (issue
//! 17, point 7): two LBs on one bridge (`lb` 10.99.0.1 priority 150,
//! `lb2` 10.99.0.3 priority 100), a client sending one UDP datagram to
//! the VIP every millisecond, and the master killed with SIGKILL
//! `FAILOVERS` times per advertisement interval (1 s, 100 ms, 20 ms).
//!
//! A capture on the real's switch port (tcpdump, wall-clock timestamps)
//! holds the old master's adverts, the new master's gratuitous ARPs and
//! the datagrams it forwards. Per failover:
//!
//! - **to GARP**: the old master's last advert → the new master's first
//!   gratuitous ARP (both implementations);
//! - **to forward**: the old master's last advert → the first datagram the
//!   new master forwards to the real (sluice; keepalived's node has no
//!   data plane here, so only its GARP is timed).
//!
//! Between failovers the killed master is restarted and preempts back;
//! the client's neighbour entry must point at it again before the next
//! kill. Needs root; about 5 minutes.
//! `cargo bench -p sluice --bench failover` (`FAILOVERS=5` for a quick run).
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::net::UdpSocket;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use sluice_lab::{Lab, LabSpec, LbForwarding, Node, RealBackend};

/// Failovers per interval and implementation.
const FAILOVERS: usize = 20;
/// Advertisement intervals measured.
const INTERVALS: [(&str, &str); 3] = [("1s", "1"), ("100ms", "0.1"), ("20ms", "0.02")];
/// The probe: one datagram per this.
const PROBE_GAP: Duration = Duration::from_millis(1);
/// UDP port of the probe service.
const PROBE_PORT: u16 = 9999;
/// MAC of `lb2`, the new master in every failover.
const LB2_MAC: &str = "02:99:00:00:00:03";
/// MAC of `lb`.
const LB_MAC: &str = "02:99:00:00:00:01";
/// Longest wait for a state.
const SETTLE: Duration = Duration::from_secs(15);

/// `sync`: with `[sync]` between the two LBs, whose heartbeats let the
/// backup take a silent master for one that gave up (docs/HA.md).
fn sluice_config(priority: u8, advert: &str, sync: bool) -> String {
    let (me, peer) = if priority == 150 {
        ("10.99.0.1", "10.99.0.3")
    } else {
        ("10.99.0.3", "10.99.0.1")
    };
    let sync = if sync {
        format!("[sync]\nenabled = true\nlisten = \"{me}:7946\"\npeers = [\"{peer}:7946\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"[global]
admin = "{ADMIN}"

[[l4_service]]
name = "probe"
vip = "10.99.255.1"
port = {PROBE_PORT}
protocol = "udp"
method = "dr"
scheduler = "mh"
maglev_table_size = 1009
interface = "lb0"

[[l4_service.real]]
address = "10.99.0.11"

[[vrrp_instance]]
name = "vi1"
interface = "lb0"
virtual_router_id = 51
priority = {priority}
advert_interval = "{advert}"
virtual_addresses = ["10.99.255.1"]

{sync}
"#
    )
}

fn holds_vip(lab: &Lab, node: Node) -> bool {
    let out = lab
        .exec(node, &["ip", "-4", "-o", "addr", "show", "dev", "lb0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("10.99.255.1/32")
}

fn wait(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The client's neighbour entry for the VIP names `mac`.
fn client_at(lab: &Lab, mac: &str) -> bool {
    let out = lab
        .exec(
            Node::Client,
            &["ip", "-j", "neigh", "show", "10.99.255.1", "dev", "c0"],
        )
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v[0]["lladdr"] == mac
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One failover: the kill time and which run it belongs to.
struct Kill {
    imp: &'static str,
    interval: &'static str,
    at: f64,
}

/// A captured event: time, kind.
#[derive(Clone, Copy, PartialEq)]
enum Ev {
    AdvertFromLb,
    GarpFromLb2,
    ForwardByLb2,
}

fn parse_capture(pcap: &std::path::Path) -> Vec<(f64, Ev)> {
    let out = std::process::Command::new("tcpdump")
        .args(["-r", pcap.to_str().unwrap(), "-tt", "-n", "-e"])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut evs = Vec::new();
    for l in text.lines() {
        let Some(t) = l
            .split_whitespace()
            .next()
            .and_then(|t| t.parse::<f64>().ok())
        else {
            continue;
        };
        let from_lb2 = l.contains(&format!("{LB2_MAC} >"));
        if l.contains("VRRP") && l.contains("10.99.0.1 >") {
            evs.push((t, Ev::AdvertFromLb));
        } else if from_lb2 && l.contains("ARP") {
            evs.push((t, Ev::GarpFromLb2));
        } else if from_lb2 && l.contains(&format!("10.99.255.1.{PROBE_PORT}")) {
            evs.push((t, Ev::ForwardByLb2));
        }
    }
    evs
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v.get(i).copied().unwrap_or(f64::NAN)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("failover: benchmark");
        return;
    }
    let runs: usize = std::env::var("FAILOVERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FAILOVERS);
    let mut spec = LabSpec::new(&LabSpec::unique_label("fo"));
    spec.reals = 1;
    spec.vip6 = None;
    spec.peer_lb = true;
    spec.lb_forwarding = LbForwarding::None;
    spec.backend = RealBackend::None;
    let lab = Lab::up(spec).expect("lab up (needs root)");

    // The probe: a datagram to the VIP every millisecond from the client.
    let stop = Arc::new(AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        let ns = lab.netns(Node::Client).unwrap().to_owned();
        std::thread::spawn(move || {
            sluice_lab::netns::run_in_netns(&ns, move || {
                let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                let to = format!("10.99.255.1:{PROBE_PORT}");
                while !stop.load(Ordering::Relaxed) {
                    let _ = s.send_to(b"probe", &to);
                    std::thread::sleep(PROBE_GAP);
                }
            })
            .unwrap();
        })
    };

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("fo.pcap");
    let port = lab.topology().reals[0].switch_port.clone();
    let filter = format!(
        "(ip proto 112 and src host 10.99.0.1) or (ether src {LB2_MAC} and (arp or udp dst port {PROBE_PORT}))"
    );
    let mut cap = lab
        .command(
            Node::Switch,
            &[
                "tcpdump",
                "-i",
                &port,
                "-n",
                "-U",
                "-s",
                "96",
                "-w",
                pcap.to_str().unwrap(),
                &filter,
            ],
        )
        .unwrap();
    cap.stdout(Stdio::null()).stderr(Stdio::null());
    let mut cap = cap.spawn().unwrap();
    lab.track(Node::Switch, &cap, "tcpdump");
    std::thread::sleep(Duration::from_secs(1));

    let mut kills = Vec::new();
    for (interval, ka_interval) in INTERVALS {
        // sluice (without, then with sync): lb2 stays up; lb is killed
        // and restarted.
        for (imp, sync) in [("sluice", false), ("sluice + sync", true)] {
            let b = start_daemon_on(&lab, Node::PeerLb, &sluice_config(100, interval, sync), &[]);
            for _ in 0..runs {
                let mut a =
                    start_daemon_on(&lab, Node::Lb, &sluice_config(150, interval, sync), &[]);
                wait("lb master", || {
                    holds_vip(&lab, Node::Lb) && !holds_vip(&lab, Node::PeerLb)
                });
                wait("the client at lb", || client_at(&lab, LB_MAC));
                std::thread::sleep(Duration::from_millis(300));
                kills.push(Kill {
                    imp,
                    interval,
                    at: now_s(),
                });
                a.kill();
                drop(a);
                wait("lb2 master", || holds_vip(&lab, Node::PeerLb));
                wait("the client at lb2", || client_at(&lab, LB2_MAC));
            }
            drop(b);
        }
        // keepalived, the same way.
        let _kb = Keepalived::start(&lab, Node::PeerLb, 100, ka_interval, true);
        for _ in 0..runs {
            let mut ka = Keepalived::start(&lab, Node::Lb, 150, ka_interval, true);
            wait("keepalived lb master", || {
                holds_vip(&lab, Node::Lb) && !holds_vip(&lab, Node::PeerLb)
            });
            wait("the client at lb", || {
                let _ = lab.exec(Node::Client, &["ping", "-c1", "-W1", "10.99.255.1"]);
                client_at(&lab, LB_MAC)
            });
            std::thread::sleep(Duration::from_millis(300));
            kills.push(Kill {
                imp: "keepalived",
                interval,
                at: now_s(),
            });
            ka.kill();
            // keepalived killed with SIGKILL leaves its VIP behind (as
            // sluice does); remove it as a restart would.
            let _ = lab.exec(
                Node::Lb,
                &["ip", "addr", "del", "10.99.255.1/32", "dev", "lb0"],
            );
            wait("keepalived lb2 master", || holds_vip(&lab, Node::PeerLb));
            wait("the client at lb2", || {
                let _ = lab.exec(Node::Client, &["ping", "-c1", "-W1", "10.99.255.1"]);
                client_at(&lab, LB2_MAC)
            });
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let _ = probe.join();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cap.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    );
    let _ = cap.wait();
    let evs = parse_capture(&pcap);

    println!(
        "| implementation | advert interval | failovers | to GARP: median / p90 / max (ms) | to first forwarded packet: median / p90 / max (ms) |"
    );
    println!("|---|---|---|---|---|");
    for (interval, _) in INTERVALS {
        for imp in ["sluice", "sluice + sync", "keepalived"] {
            let (mut garp, mut fwd) = (Vec::new(), Vec::new());
            for k in kills
                .iter()
                .filter(|k| k.imp == imp && k.interval == interval)
            {
                // The last advert at or before the kill (in flight: +5 ms).
                let last = evs
                    .iter()
                    .filter(|(t, e)| *e == Ev::AdvertFromLb && *t <= k.at + 0.005)
                    .map(|(t, _)| *t)
                    .fold(f64::NAN, f64::max);
                let first = |want: Ev| {
                    evs.iter()
                        .filter(|(t, e)| *e == want && *t > k.at)
                        .map(|(t, _)| *t)
                        .fold(f64::NAN, f64::min)
                };
                let g = first(Ev::GarpFromLb2);
                if (g - last).is_finite() {
                    garp.push((g - last) * 1000.0);
                }
                let f = first(Ev::ForwardByLb2);
                if imp != "keepalived" && (f - last).is_finite() {
                    fwd.push((f - last) * 1000.0);
                }
            }
            let fmt = |v: &mut Vec<f64>| {
                if v.is_empty() {
                    "–".to_owned()
                } else {
                    format!(
                        "{:.0} / {:.0} / {:.0}",
                        percentile(v, 0.5),
                        percentile(v, 0.9),
                        percentile(v, 1.0)
                    )
                }
            };
            println!(
                "| {imp} | {interval} | {} | {} | {} |",
                garp.len(),
                fmt(&mut garp),
                fmt(&mut fwd)
            );
        }
    }
    drop(lab);
}
