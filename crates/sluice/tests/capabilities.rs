//! Least privilege: `sluice run` as an unprivileged user (nobody) holding
//! only the capabilities its configuration needs, as the systemd unit
//! runs it (`DynamicUser=yes`, `AmbientCapabilities=`), started through
//! capsh(1) in the lab's LB namespace. With the whole set an L4 `dr`
//! service (XDP), a `tcp-half-open` check, a VRRP instance (with the HA
//! guard's nftables table) and a proxy frontend on a port below 1024 all
//! work; without any one of them `sluice run` refuses to start and names
//! the missing capability. A proxy alone on port 80 needs only
//! `CAP_NET_BIND_SERVICE`. Needs root (and capsh, from libcap2-bin).
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use sluice_lab::Node;

/// Everything the configuration below needs (docs/OPERATIONS.md says why).
const NEEDED: [&str; 5] = [
    "cap_bpf",
    "cap_perfmon",
    "cap_net_admin",
    "cap_net_raw",
    "cap_net_bind_service",
];
/// The unprivileged user the daemon runs as.
const USER: &str = "nobody";
/// The proxy frontend's port: below `ip_unprivileged_port_start` (1024).
const FRONTEND_PORT: u16 = 81;
/// How long the single VRRP node may take to become master (3 intervals
/// of 100 ms and the skew) and the check to succeed once, with plenty of
/// room on a loaded machine: a bound on waiting, not a measurement.
const MASTER_WITHIN: Duration = Duration::from_secs(20);

fn config() -> String {
    format!(
        r#"[global]
admin = "{ADMIN}"

[health_check.half]
type = "tcp-half-open"
interval = "1s"
timeout = "500ms"

[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
interface = "lb0"
health_check = "half"

[[l4_service.real]]
address = "10.99.0.11"

[[vrrp_instance]]
name = "vi1"
interface = "lb0"
virtual_router_id = 51
priority = 100
advert_interval = "100ms"
virtual_addresses = ["10.99.255.1"]

[[frontend]]
name = "www"
bind = ["0.0.0.0:{FRONTEND_PORT}"]
mode = "http"
default_backend = "app"

[[backend]]
name = "app"
mode = "http"

[[backend.server]]
name = "s1"
address = "10.99.0.11:80"
"#
    )
}

/// capsh's arguments that run `sluice` as [`USER`] with exactly `caps`
/// (effective, permitted and ambient; capsh keeps set-uid rights only
/// until it switches user).
fn launcher(caps: &[&str]) -> Vec<String> {
    let list = caps.join(",");
    let held = if caps.is_empty() {
        String::new()
    } else {
        format!("{list}+eip ")
    };
    let mut v = vec![
        "capsh".to_owned(),
        format!("--caps={held}cap_setpcap,cap_setuid,cap_setgid+ep"),
        "--keep=1".to_owned(),
        format!("--user={USER}"),
    ];
    if !caps.is_empty() {
        v.push(format!("--addamb={list}"));
    }
    v.push(format!("--shell={SLUICE}"));
    v.push("--".to_owned());
    v
}

/// `sluice run` of `cfg` as [`USER`] with `caps` fails, naming `missing`.
fn refused_naming(lab: &sluice_lab::Lab, cfg: &str, caps: &[&str], missing: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sluice.toml");
    std::fs::write(&file, cfg).unwrap();
    readable_by_all(dir.path());
    let argv: Vec<String> = launcher(caps)
        .into_iter()
        .chain(["run", "-c", file.to_str().unwrap()].map(String::from))
        .collect();
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = lab.exec(Node::Lb, &argv).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "ran without {missing}: {err}");
    let name = missing.to_uppercase();
    assert!(
        err.contains("missing capabilities") && err.contains(&format!("  {name} ")),
        "without {missing}, the error names it: {err}"
    );
}

/// A proxy alone on port 80 needs `CAP_NET_BIND_SERVICE` and nothing else.
#[test]
fn a_proxy_on_port_80_needs_only_net_bind_service() {
    let lab = l4_lab("capsl7", 1);
    let cfg = format!(
        "[global]\nadmin = \"{ADMIN}\"\n\n[[frontend]]\nname = \"www\"\n\
         bind = [\"0.0.0.0:80\"]\nmode = \"http\"\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nmode = \"http\"\n\n[[backend.server]]\n\
         name = \"s1\"\naddress = \"10.99.0.11:80\"\n"
    );
    refused_naming(&lab, &cfg, &[], "cap_net_bind_service");
    let argv = launcher(&["cap_net_bind_service"]);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let d = start_daemon_as(&lab, Node::Lb, &argv, &cfg, &[]);
    let fe: SocketAddr = "10.99.0.1:80".parse().unwrap();
    let (code, len, _) = get(&lab, fe, "/").unwrap();
    assert_eq!((code, len), (200, 5120), "{}", read_all(&d.log));
}

#[test]
fn run_works_with_only_its_capabilities_and_names_a_missing_one() {
    let lab = l4_lab("caps", 1);
    let cfg = config();

    // Each capability left out in turn: refused before anything starts,
    // naming it.
    for missing in NEEDED {
        let caps: Vec<&str> = NEEDED.iter().copied().filter(|c| *c != missing).collect();
        refused_naming(&lab, &cfg, &caps, missing);
    }

    // The whole set: every plane works.
    let argv = launcher(&NEEDED);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let d = start_daemon_as(&lab, Node::Lb, &argv, &cfg, &[]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "runs as {USER}: {status}"
    );

    // VRRP: the only node becomes master (raw sockets, netlink addresses,
    // the guard's nftables table).
    let deadline = Instant::now() + MASTER_WITHIN;
    loop {
        let out = sluice_in_lb(&lab, &["ctl", "--admin", ADMIN, "vrrp", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v[0]["state"] == "master" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no master: {v}\n{}",
            read_all(&d.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let nft = lab.exec(Node::Lb, &["nft", "list", "tables"]).unwrap();
    assert!(
        String::from_utf8_lossy(&nft.stdout).contains("sluice_guard"),
        "the HA guard's table: {}",
        read_all(&d.log)
    );

    // XDP `dr`: through the VIP to the real.
    let vip: SocketAddr = "10.99.255.1:80".parse().unwrap();
    let (code, len, _) = get(&lab, vip, "/").unwrap();
    assert_eq!((code, len), (200, 5120), "{}", read_all(&d.log));
    // The proxy on port 81 (CAP_NET_BIND_SERVICE).
    let fe: SocketAddr = format!("10.99.0.1:{FRONTEND_PORT}").parse().unwrap();
    let (code, len, _) = get(&lab, fe, "/").unwrap();
    assert_eq!((code, len), (200, 5120), "{}", read_all(&d.log));
    // The half-open check (a raw socket) succeeds.
    let deadline = Instant::now() + MASTER_WITHIN;
    loop {
        let out = sluice_in_lb(&lab, &["ctl", "checks"]);
        let table = String::from_utf8_lossy(&out.stdout).into_owned();
        if table
            .lines()
            .any(|l| l.contains("10.99.0.11") && l.contains("half") && l.ends_with(" ok"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no successful check: {table}\n{}",
            read_all(&d.log)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
