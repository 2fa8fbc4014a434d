//! VRRP end to end in the lab: two LBs on one segment (`lb`, 10.99.0.1,
//! and `lb2`, 10.99.0.3), each running `sluice run` with the same `dr`
//! service and a `[[vrrp_instance]]` for its VIP; the client reaches the
//! VIP on-link, so whichever LB holds it serves. Also: sluice against
//! keepalived (Debian's package) as the peer, and tshark decoding
//! sluice's adverts. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;
use sluice_lab::{Lab, LabSpec, LbForwarding, Node, RealBackend};

/// Advertisement interval of the pair.
const ADVERT: &str = "100ms";
/// Longest a state change may take here: master down (3 intervals plus
/// skew), announcements, and slack for a loaded 2-vCPU machine.
const SETTLE: Duration = Duration::from_secs(10);

fn ha_lab(tag: &str) -> Lab {
    ha_lab_with(tag, false)
}

fn ha_lab_with(tag: &str, v6: bool) -> Lab {
    ha_lab_sized(tag, v6, sluice_lab::webserver::DEFAULT_BODY_SIZE)
}

/// The HA lab with a `/` of `body` bytes on the reals.
fn ha_lab_sized(tag: &str, v6: bool, body: usize) -> Lab {
    let mut spec = LabSpec::new(&LabSpec::unique_label(tag));
    spec.reals = 2;
    spec.body_size = body;
    if !v6 {
        spec.vip6 = None;
    }
    spec.peer_lb = true;
    spec.lb_forwarding = LbForwarding::None;
    spec.backend = RealBackend::Sluice {
        binary: PathBuf::from(SLUICE),
    };
    lab_up(spec)
}

/// One LB's configuration: the `dr` service and the VRRP instance.
fn config(priority: u8, vrrp_extra: &str) -> String {
    config_with(
        &service("dr", "mh", &["10.99.0.11", "10.99.0.12"], ""),
        priority,
        vrrp_extra,
        "",
    )
}

/// A service `web` on 10.99.255.1:80 with `method`, `sched`, `reals` and
/// `extra` lines.
fn service(method: &str, sched: &str, reals: &[&str], extra: &str) -> String {
    let mut s = format!(
        "[[l4_service]]\nname = \"web\"\nvip = \"10.99.255.1\"\nport = 80\nmethod = \"{method}\"\n\
         scheduler = \"{sched}\"\ninterface = \"lb0\"\n{extra}\n"
    );
    if sched == "mh" {
        s.push_str("maglev_table_size = 1009\n");
    }
    for r in reals {
        s.push_str(&format!("\n[[l4_service.real]]\naddress = \"{r}\"\n"));
    }
    s
}

/// An LB's whole file: `services`, the VRRP instance for the VIP (and
/// `vrrp_extra` lines), and `tail` (e.g. `[sync]`).
fn config_with(services: &str, priority: u8, vrrp_extra: &str, tail: &str) -> String {
    config_full(services, priority, &["10.99.255.1"], vrrp_extra, tail)
}

/// [`config_with`] with the instance's `virtual_addresses`.
fn config_full(
    services: &str,
    priority: u8,
    vaddrs: &[&str],
    vrrp_extra: &str,
    tail: &str,
) -> String {
    let vaddrs: Vec<String> = vaddrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        r#"[global]
admin = "{ADMIN}"

{services}
[[vrrp_instance]]
name = "vi1"
interface = "lb0"
virtual_router_id = 51
priority = {priority}
advert_interval = "{ADVERT}"
virtual_addresses = [{}]
{vrrp_extra}

{tail}
"#,
        vaddrs.join(", ")
    )
}

/// Both families on one LB: the IPv4 VIP's instance with unicast adverts
/// to `peer`, the IPv6 VIP's with multicast ones (from the link-local
/// address).
fn dual_config(priority: u8, peer: &str) -> String {
    format!(
        r#"{}
[[l4_service]]
name = "web6"
vip = "fd99:ffff::1"
port = 80
method = "dr"
scheduler = "mh"
maglev_table_size = 1009
interface = "lb0"

[[l4_service.real]]
address = "fd99::11"
[[l4_service.real]]
address = "fd99::12"

[[vrrp_instance]]
name = "vi6"
interface = "lb0"
virtual_router_id = 52
priority = {priority}
advert_interval = "{ADVERT}"
virtual_addresses = ["fd99:ffff::1"]
"#,
        config(priority, &format!("unicast_peers = [\"{peer}\"]"))
    )
}

fn vip6() -> SocketAddr {
    "[fd99:ffff::1]:80".parse().unwrap()
}

fn vip() -> SocketAddr {
    "10.99.255.1:80".parse().unwrap()
}

/// `sluice ctl vrrp --json` of the daemon on `node`.
fn vrrp(lab: &Lab, node: Node) -> serde_json::Value {
    let out = lab
        .exec(node, &[SLUICE, "ctl", "--admin", ADMIN, "vrrp", "--json"])
        .unwrap();
    assert!(
        out.status.success(),
        "ctl vrrp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn state(lab: &Lab, node: Node) -> String {
    vrrp(lab, node)[0]["state"].as_str().unwrap().to_owned()
}

/// Every instance's state on `node`, in file order.
fn states(lab: &Lab, node: Node) -> Vec<String> {
    vrrp(lab, node)
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["state"].as_str().unwrap().to_owned())
        .collect()
}

fn wait_states(lab: &Lab, node: Node, want: &[&str]) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let s = states(lab, node);
        if s == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} is {s:?}, expected {want:?}: {}",
            vrrp(lab, node)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_state(lab: &Lab, node: Node, want: &str) {
    wait_states(lab, node, &[want]);
}

/// Waits until `node`'s first instance has heard `master`.
fn wait_master(lab: &Lab, node: Node, master: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let v = vrrp(lab, node);
        if v[0]["master"] == master && v[0]["adverts_received"].as_u64() > Some(0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node} never heard {master}: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `node`'s kernel has the HA guard's nftables table.
fn guarded(lab: &Lab, node: Node) -> bool {
    let out = lab
        .exec(node, &["nft", "list", "table", "inet", "sluice_guard"])
        .unwrap();
    out.status.success()
}

/// Whether `node` holds the VIP on its interface.
fn holds_vip(lab: &Lab, node: Node) -> bool {
    let out = lab
        .exec(node, &["ip", "-4", "-o", "addr", "show", "dev", "lb0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("10.99.255.1/32")
}

/// A request through the VIP succeeds (whoever serves it).
fn served(lab: &Lab) {
    served_at(lab, vip());
}

fn served_at(lab: &Lab, vip: SocketAddr) {
    let deadline = Instant::now() + SETTLE;
    loop {
        match get(lab, vip, "/") {
            Ok((200, 5120, _)) => return,
            other => assert!(
                Instant::now() < deadline,
                "the VIP does not serve: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Detaches the XDP program from `lb0` of `node` behind the daemon's
/// back: `ip link set xdp off` cannot replace a BPF link, so the link
/// whose program `bpftool net show` names on that interface is detached.
fn detach_xdp(lab: &Lab, node: Node) {
    let out = lab
        .exec(node, &["bpftool", "-j", "net", "show", "dev", "lb0"])
        .unwrap();
    let net: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut progs = Vec::new();
    for e in net[0]["xdp"].as_array().into_iter().flatten() {
        progs.extend(e["id"].as_u64());
        for m in e["multi_attachments"].as_array().into_iter().flatten() {
            progs.extend(m["id"].as_u64());
        }
    }
    assert!(!progs.is_empty(), "no XDP program on lb0: {net}");
    let out = lab.exec(node, &["bpftool", "-j", "link", "show"]).unwrap();
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids: Vec<String> = links
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["prog_id"].as_u64().is_some_and(|p| progs.contains(&p)))
        .map(|l| l["id"].to_string())
        .collect();
    assert!(!ids.is_empty(), "no link for programs {progs:?}: {links}");
    for id in ids {
        let out = lab
            .exec(node, &["bpftool", "link", "detach", "id", &id])
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn a_sluice_pair_elects_fails_over_preempts_and_tracks_its_data_plane() {
    let lab = ha_lab("ha");
    let mut a = start_daemon_on(&lab, Node::Lb, &config(150, ""), &[]);
    let b = start_daemon_on(&lab, Node::PeerLb, &config(100, ""), &[]);
    wait_state(&lab, Node::Lb, "master");
    wait_state(&lab, Node::PeerLb, "backup");
    assert!(holds_vip(&lab, Node::Lb));
    assert!(!holds_vip(&lab, Node::PeerLb));
    served(&lab);
    wait_master(&lab, Node::PeerLb, "10.99.0.1");
    let m = metrics(&lab);
    assert!(
        m.contains("sluice_vrrp_state{instance=\"vi1\",state=\"master\"} 1"),
        "{m}"
    );

    // The master dies (SIGKILL: no priority-0 hand-over): the backup takes
    // over after the master-down interval and serves.
    a.kill();
    drop(a);
    // The dead node's kernel keeps the guard that stops it answering for
    // the VIP's service (docs/HA.md, "The guard").
    assert!(guarded(&lab, Node::Lb), "no guard left on the dead node");
    wait_state(&lab, Node::PeerLb, "master");
    assert!(holds_vip(&lab, Node::PeerLb));
    served(&lab);

    // It comes back with the higher priority and preempts (preempt is on
    // by default); the stale VIP its dead run left is removed at start.
    let a = start_daemon_on(&lab, Node::Lb, &config(150, ""), &[]);
    wait_state(&lab, Node::Lb, "master");
    wait_state(&lab, Node::PeerLb, "backup");
    assert!(!holds_vip(&lab, Node::PeerLb));
    served(&lab);

    // The watchdog: the master's XDP program detached under it puts it in
    // the fault state; the backup takes over.
    detach_xdp(&lab, Node::Lb);
    wait_state(&lab, Node::Lb, "fault");
    wait_state(&lab, Node::PeerLb, "master");
    assert!(!holds_vip(&lab, Node::Lb));
    let v = vrrp(&lab, Node::Lb);
    assert!(v[0]["faults"][0].as_str().unwrap().contains("XDP"), "{v}");
    served(&lab);

    // A clean stop removes the guard.
    drop(a);
    assert!(!guarded(&lab, Node::Lb), "the guard outlived a clean stop");
    drop(b);
}

#[test]
fn without_preemption_a_higher_priority_waits_and_a_graceful_stop_hands_over() {
    let lab = ha_lab("hanp");
    let b = start_daemon_on(&lab, Node::PeerLb, &config(100, ""), &[]);
    wait_state(&lab, Node::PeerLb, "master");
    let a = start_daemon_on(&lab, Node::Lb, &config(150, "preempt = false"), &[]);
    wait_state(&lab, Node::Lb, "backup");
    // Well past the master-down interval: still backup.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(state(&lab, Node::Lb), "backup");
    assert_eq!(state(&lab, Node::PeerLb), "master");
    served(&lab);
    // SIGTERM: lb2 sends priority 0 and gives the VIP up.
    let t = Instant::now();
    drop(b);
    wait_state(&lab, Node::Lb, "master");
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "hand-over took {:?}",
        t.elapsed()
    );
    served(&lab);
    drop(a);
}

#[test]
fn ipv6_multicast_and_ipv4_unicast_instances_fail_over_together() {
    let lab = ha_lab_with("ha6", true);
    let mut a = start_daemon_on(&lab, Node::Lb, &dual_config(150, "10.99.0.3"), &[]);
    let b = start_daemon_on(&lab, Node::PeerLb, &dual_config(100, "10.99.0.1"), &[]);
    wait_states(&lab, Node::Lb, &["master", "master"]);
    wait_states(&lab, Node::PeerLb, &["backup", "backup"]);
    // Once the backup has heard both adverts: the IPv6 instance runs from
    // the link-local address.
    let ll = |x: &serde_json::Value| x.as_str().is_some_and(|a| a.starts_with("fe80::"));
    let deadline = Instant::now() + SETTLE;
    loop {
        let v = vrrp(&lab, Node::PeerLb);
        if v[0]["master"] == "10.99.0.1" && ll(&v[1]["master"]) && ll(&v[1]["own_address"]) {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    served_at(&lab, vip());
    served_at(&lab, vip6());

    // The link goes down under the master (its switch port): it loses
    // carrier, stops being heard, and the backup takes both over; the
    // unsolicited neighbour advertisement moves the client's entry.
    let port = lab.topology().lb.switch_port.clone();
    let sw = |up: &str| {
        let out = lab
            .exec(Node::Switch, &["ip", "link", "set", "dev", &port, up])
            .unwrap();
        assert!(out.status.success());
    };
    sw("down");
    wait_states(&lab, Node::PeerLb, &["master", "master"]);
    served_at(&lab, vip());
    served_at(&lab, vip6());
    // Back up: the higher priority preempts.
    sw("up");
    wait_states(&lab, Node::Lb, &["master", "master"]);
    wait_states(&lab, Node::PeerLb, &["backup", "backup"]);
    served_at(&lab, vip());
    served_at(&lab, vip6());
    a.kill();
    drop(a);
    wait_states(&lab, Node::PeerLb, &["master", "master"]);
    served_at(&lab, vip6());
    drop(b);
}

#[test]
fn a_tracked_interface_down_is_a_fault_and_split_brain_heals() {
    let lab = ha_lab("hasb");
    let track = "track_interfaces = [\"lb0\"]";
    // lb also runs a track script that fails while a file exists.
    let flag_dir = tempfile::tempdir().unwrap();
    let flag = flag_dir.path().join("down");
    let script = format!(
        "{track}\ntrack_script = [\"/bin/sh\", \"-c\", \"test ! -e {}\"]\ntrack_script_interval = \"200ms\"",
        flag.display()
    );
    let a = start_daemon_on(&lab, Node::Lb, &config(150, &script), &[]);
    let b = start_daemon_on(&lab, Node::PeerLb, &config(100, track), &[]);
    wait_state(&lab, Node::Lb, "master");
    wait_state(&lab, Node::PeerLb, "backup");

    // Split brain: the bridge drops VRRP between them; both become master.
    let nft = |args: &[&str]| {
        let out = lab.exec(Node::Switch, &[&["nft"], args].concat()).unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    nft(&["add", "table", "bridge", "cut"]);
    nft(&[
        "add",
        "chain",
        "bridge",
        "cut",
        "f",
        "{ type filter hook forward priority 0 ; }",
    ]);
    nft(&[
        "add", "rule", "bridge", "cut", "f", "ip", "protocol", "112", "drop",
    ]);
    wait_state(&lab, Node::PeerLb, "master");
    assert_eq!(state(&lab, Node::Lb), "master");
    // Healed: one master again within 3 advertisement intervals (300 ms;
    // the poll itself takes some of it).
    nft(&["delete", "table", "bridge", "cut"]);
    let healed = Instant::now();
    loop {
        if state(&lab, Node::PeerLb) == "backup" {
            break;
        }
        assert!(
            healed.elapsed() < Duration::from_secs(2),
            "still two masters after {:?}",
            healed.elapsed()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = healed.elapsed();
    assert!(
        took < Duration::from_millis(300),
        "one master again after {took:?}"
    );
    assert_eq!(state(&lab, Node::Lb), "master");
    served(&lab);

    // The tracked interface down (the LB's own end): fault, and the peer
    // takes over; up again: back to backup, then master by preemption.
    let out = lab
        .exec(Node::Lb, &["ip", "link", "set", "dev", "lb0", "down"])
        .unwrap();
    assert!(out.status.success());
    wait_state(&lab, Node::Lb, "fault");
    wait_state(&lab, Node::PeerLb, "master");
    let v = vrrp(&lab, Node::Lb);
    assert!(
        v[0]["faults"][0].as_str().unwrap().contains("lb0 is down"),
        "{v}"
    );
    let out = lab
        .exec(Node::Lb, &["ip", "link", "set", "dev", "lb0", "up"])
        .unwrap();
    assert!(out.status.success());
    wait_state(&lab, Node::Lb, "master");
    wait_state(&lab, Node::PeerLb, "backup");

    // The track script fails: fault, the peer takes over; it passes
    // again: back, and master by preemption.
    std::fs::write(&flag, "").unwrap();
    wait_state(&lab, Node::Lb, "fault");
    wait_state(&lab, Node::PeerLb, "master");
    let v = vrrp(&lab, Node::Lb);
    assert!(
        v[0]["faults"][0].as_str().unwrap().contains("track_script"),
        "{v}"
    );
    std::fs::remove_file(&flag).unwrap();
    wait_state(&lab, Node::Lb, "master");
    wait_state(&lab, Node::PeerLb, "backup");
    drop(a);
    drop(b);
}

// === established flows across a failover ===

/// Keep-alive connections open through the VIP across a failover: with
/// `rr` and 3 reals, a new master without the sessions would send most
/// of them to another real (all 6 surviving by chance: 1 in 729).
const KEEPALIVES: usize = 6;

/// What the client had open through the VIP when the master went away.
struct Flows {
    /// A long download (curl at `RATE_LIMIT`), in flight.
    download: Child,
    /// Keep-alive connections and the real each was served by.
    keepalives: Vec<(KeepAlive, String)>,
}

fn open_flows(lab: &Lab) -> Flows {
    let keepalives = (0..KEEPALIVES)
        .map(|_| {
            let mut k = KeepAlive::connect(lab, vip()).unwrap();
            let real = k.get("/whoami").unwrap();
            (k, real)
        })
        .collect();
    let download = lab
        .command(
            Node::Client,
            &[
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                "--limit-rate",
                RATE_LIMIT,
                "--max-time",
                "60",
                "-w",
                "%{size_download}",
                "http://10.99.255.1/",
            ],
        )
        .unwrap()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    lab.track(Node::Client, &download, "curl");
    // Well into the transfer before the failover.
    std::thread::sleep(Duration::from_secs(1));
    Flows {
        download,
        keepalives,
    }
}

/// Both flows survived: the keep-alive connection answers from the same
/// real, and the download completes with every byte, no reset.
fn flows_survived(f: Flows, what: &str) {
    for (i, (mut k, real)) in f.keepalives.into_iter().enumerate() {
        let again = k.get("/whoami");
        assert_eq!(
            again.as_deref().ok(),
            Some(real.as_str()),
            "{what}: keep-alive connection {i}: {again:?}"
        );
    }
    let out = f.download.wait_with_output().unwrap();
    let got: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        out.status.success() && got == LONG_OK_BYTES,
        "{what}: download {:?}, {got} bytes: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn established_dr_flows_survive_failovers_with_maglev() {
    // `mh` with the same reals: both LBs pick the same real for a flow
    // without sharing any state (their tables are a pure function of the
    // reals), so even a session the new master never saw continues.
    let lab = ha_lab_sized("haflow", false, LONG_OK_BYTES as usize);
    flows_survive_failovers(&lab, &config(150, ""), &config(100, ""), false);
}

/// Three failovers with a long download and keep-alive connections open
/// through the VIP each time: the master (`lb`, running `cfg_a`) is
/// SIGKILLed and `lb2` (`cfg_b`) carries its flows on; `lb` restarts and
/// preempts `lb2`, carrying on the flows `lb2` made while it was master
/// (with sync: the full resync a starting node asks for, and `lb2`'s
/// stream); then `lb`'s link goes down and `lb2` carries `lb`'s flows on
/// again. `synced`: the configs run `[sync]`.
fn flows_survive_failovers(lab: &Lab, cfg_a: &str, cfg_b: &str, synced: bool) {
    let mut a = start_daemon_on(lab, Node::Lb, cfg_a, &[]);
    let b = start_daemon_on(lab, Node::PeerLb, cfg_b, &[]);
    wait_state(lab, Node::Lb, "master");
    wait_master(lab, Node::PeerLb, "10.99.0.1");
    let flows = open_flows(lab);
    a.kill();
    drop(a);
    wait_state(lab, Node::PeerLb, "master");
    // With sync, the master's heartbeats stopped: the backup took it for
    // one that gave up, before VRRP's three intervals ran out.
    let v = vrrp(lab, Node::PeerLb);
    assert_eq!(v[0]["silent_takeovers"], u64::from(synced), "{v}");
    flows_survived(flows, "SIGKILL");

    let flows = open_flows(lab);
    let a = start_daemon_on(lab, Node::Lb, cfg_a, &[]);
    wait_state(lab, Node::Lb, "master");
    wait_state(lab, Node::PeerLb, "backup");
    flows_survived(flows, "restart and preemption");

    let flows = open_flows(lab);
    let port = lab.topology().lb.switch_port.clone();
    let out = lab
        .exec(Node::Switch, &["ip", "link", "set", "dev", &port, "down"])
        .unwrap();
    assert!(out.status.success());
    wait_state(lab, Node::PeerLb, "master");
    flows_survived(flows, "link down");
    drop(a);
    drop(b);
}

#[test]
fn established_tun_flows_survive_failovers_with_maglev() {
    let mut spec = LabSpec::tun(&LabSpec::unique_label("hatun"));
    spec.reals = 2;
    spec.vip6 = None;
    spec.peer_lb = true;
    spec.body_size = LONG_OK_BYTES as usize;
    spec.backend = RealBackend::Sluice {
        binary: PathBuf::from(SLUICE),
    };
    let lab = lab_up(spec);
    let svc = service("tun", "mh", &["10.98.0.11", "10.98.0.12"], "");
    flows_survive_failovers(
        &lab,
        &config_with(&svc, 150, "", ""),
        &config_with(&svc, 100, "", ""),
        false,
    );
}

// === connection sync: established flows of any scheduler ===

/// `[sync]` of the LB at `me` with its peer at `peer`.
fn sync_section(me: &str, peer: &str) -> String {
    format!("[sync]\nenabled = true\nlisten = \"{me}:7946\"\npeers = [\"{peer}:7946\"]\n")
}

/// The reals of the one-arm lab send to `addr` with full checksums
/// (native XDP on veth loses a partial checksum: platform notes, gotcha
/// 3), and for `nat` route the client via `gateway`.
fn reals_through(lab: &Lab, reals: usize, gateway: Option<&str>) {
    for i in 1..=reals {
        let mut cmds = vec![vec!["ethtool", "-K", "eth0", "tx", "off"]];
        if let Some(g) = gateway {
            cmds.push(vec!["ip", "route", "replace", "10.99.0.2/32", "via", g]);
        }
        for argv in cmds {
            let out = lab.exec(Node::Real(i), &argv).unwrap();
            assert!(
                out.status.success(),
                "{argv:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// `method` with `rr` over 3 reals on an HA pair with sync: the master
/// dies (SIGKILL) with flows open, the backup that was synced carries
/// them on. `nat`'s gateway for the reals and `fullnat`'s local address
/// are virtual addresses of the instance, so they move with the VIP.
fn rr_flows_survive_with_sync(method: &str) {
    let lab = if method == "tun" {
        let mut spec = LabSpec::tun(&LabSpec::unique_label("hsync-tun"));
        spec.reals = 3;
        spec.vip6 = None;
        spec.peer_lb = true;
        spec.body_size = LONG_OK_BYTES as usize;
        spec.backend = RealBackend::Sluice {
            binary: PathBuf::from(SLUICE),
        };
        lab_up(spec)
    } else {
        let mut spec = LabSpec::new(&LabSpec::unique_label(&format!("hsync-{method}")));
        spec.reals = 3;
        spec.vip6 = None;
        spec.peer_lb = true;
        spec.lb_forwarding = LbForwarding::None;
        spec.body_size = LONG_OK_BYTES as usize;
        spec.backend = RealBackend::Sluice {
            binary: PathBuf::from(SLUICE),
        };
        lab_up(spec)
    };
    let (reals, extra, vaddrs): (&[&str], &str, &[&str]) = match method {
        "tun" => (
            &["10.98.0.11", "10.98.0.12", "10.98.0.13"],
            "",
            &["10.99.255.1"],
        ),
        "nat" => (
            &["10.99.0.11", "10.99.0.12", "10.99.0.13"],
            "",
            &["10.99.255.1", "10.99.0.100"],
        ),
        "fullnat" => (
            &["10.99.0.11", "10.99.0.12", "10.99.0.13"],
            "local_addresses = [\"10.99.0.200\"]\nlocal_port_range = [20000, 29999]",
            &["10.99.255.1", "10.99.0.200"],
        ),
        _ => (
            &["10.99.0.11", "10.99.0.12", "10.99.0.13"],
            "",
            &["10.99.255.1"],
        ),
    };
    match method {
        "nat" => reals_through(&lab, 3, Some("10.99.0.100")),
        "fullnat" => reals_through(&lab, 3, None),
        _ => {}
    }
    // B lists the reals in the other order: its own `rr` choices for
    // flows it never saw then differ from A's (with the same order, both
    // could walk the same sequence and agree by coincidence).
    let reversed: Vec<&str> = reals.iter().rev().copied().collect();
    let svc_a = service(method, "rr", reals, extra);
    let svc_b = service(method, "rr", &reversed, extra);
    let a = config_full(
        &svc_a,
        150,
        vaddrs,
        "",
        &sync_section("10.99.0.1", "10.99.0.3"),
    );
    let b = config_full(
        &svc_b,
        100,
        vaddrs,
        "",
        &sync_section("10.99.0.3", "10.99.0.1"),
    );
    flows_survive_failovers(&lab, &a, &b, true);
}

#[test]
fn dr_rr_flows_survive_a_dead_master_with_sync() {
    rr_flows_survive_with_sync("dr");
}

#[test]
fn tun_rr_flows_survive_a_dead_master_with_sync() {
    rr_flows_survive_with_sync("tun");
}

#[test]
fn nat_rr_flows_survive_a_dead_master_with_sync() {
    rr_flows_survive_with_sync("nat");
}

#[test]
fn fullnat_rr_flows_survive_a_dead_master_with_sync() {
    rr_flows_survive_with_sync("fullnat");
}

// === keepalived interop ===

fn wait_vip(lab: &Lab, node: Node, want: bool) {
    let deadline = Instant::now() + SETTLE;
    while holds_vip(lab, node) != want {
        assert!(
            Instant::now() < deadline,
            "{node} {} the VIP",
            if want { "never took" } else { "kept" }
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The client's neighbour entry for the VIP comes to name `mac` (after
/// a connection attempt, so the entry is in use).
fn client_reaches(lab: &Lab, mac: &str) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let _ = get(lab, vip(), "/");
        let out = lab
            .exec(
                Node::Client,
                &["ip", "-j", "neigh", "show", "10.99.255.1", "dev", "c0"],
            )
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v[0]["lladdr"] == mac {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the client's entry for the VIP: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sluice_and_keepalived_elect_fail_over_and_preempt_both_ways() {
    let lab = ha_lab("haka");
    // tshark on the switch side of lb's port captures sluice's adverts.
    let cap_dir = tempfile::tempdir().unwrap();
    let pcap = cap_dir.path().join("vrrp.pcap");
    let sw_port = lab.topology().lb.switch_port.clone();
    let mut tshark = lab
        .command(
            Node::Switch,
            &[
                "tshark",
                "-q",
                "-i",
                &sw_port,
                "-f",
                "ip proto 112 and src host 10.99.0.1",
                "-c",
                "20",
                "-a",
                "duration:30",
                "-w",
                pcap.to_str().unwrap(),
            ],
        )
        .unwrap();
    tshark.stdout(Stdio::null()).stderr(Stdio::null());
    let mut tshark = tshark.spawn().unwrap();
    lab.track(Node::Switch, &tshark, "tshark");
    std::thread::sleep(Duration::from_secs(1));

    // sluice 150 vs keepalived 100: sluice is master.
    let a = start_daemon_on(&lab, Node::Lb, &config(150, ""), &[]);
    let k = Keepalived::start(&lab, Node::PeerLb, 100, "0.1", true);
    wait_state(&lab, Node::Lb, "master");
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        !holds_vip(&lab, Node::PeerLb),
        "keepalived took the VIP too"
    );
    let v = vrrp(&lab, Node::Lb);
    assert!(v[0]["adverts_sent"].as_u64() > Some(5), "{v}");
    served(&lab);

    // sluice dies: keepalived takes over; sluice returns and preempts.
    let mut a = a;
    a.kill();
    drop(a);
    wait_vip(&lab, Node::PeerLb, true);
    // keepalived's node serves nothing: the client reaching its MAC is
    // what shows the take-over.
    client_reaches(&lab, "02:99:00:00:00:03");
    let a = start_daemon_on(&lab, Node::Lb, &config(150, ""), &[]);
    wait_state(&lab, Node::Lb, "master");
    wait_vip(&lab, Node::PeerLb, false);
    drop(k);

    // The other way round: keepalived 200 is master, sluice 150 backup
    // hears it; keepalived stops (priority 0) and sluice takes over;
    // keepalived returns and preempts sluice.
    let k = Keepalived::start(&lab, Node::PeerLb, 200, "0.1", true);
    wait_state(&lab, Node::Lb, "backup");
    wait_vip(&lab, Node::PeerLb, true);
    wait_master(&lab, Node::Lb, "10.99.0.3");
    // keepalived's adverts pass sluice's checks (checksum, TTL, version).
    let v = vrrp(&lab, Node::Lb);
    let invalid = v[0]["adverts_invalid"].as_object().unwrap();
    assert!(invalid.values().all(|n| n == 0), "{v}");
    assert!(!holds_vip(&lab, Node::Lb));
    drop(k);
    wait_state(&lab, Node::Lb, "master");
    served(&lab);
    let k = Keepalived::start(&lab, Node::PeerLb, 200, "0.1", true);
    wait_state(&lab, Node::Lb, "backup");
    wait_vip(&lab, Node::PeerLb, true);
    client_reaches(&lab, "02:99:00:00:00:03");
    drop(k);
    drop(a);

    // The capture: tshark decodes sluice's adverts as valid VRRPv3.
    let deadline = Instant::now() + Duration::from_secs(35);
    while tshark.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tshark did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-o",
            "vrrp.v3_checksum_as_in_v2:FALSE",
            "-T",
            "fields",
            "-e",
            "vrrp.version",
            "-e",
            "vrrp.type",
            "-e",
            "vrrp.virt_rtr_id",
            "-e",
            "vrrp.prio",
            "-e",
            "vrrp.checksum.status",
            "-e",
            "ip.ttl",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.len() >= 10,
        "captured: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        // version 3, advertisement, VRID 51, priority 150 (or 0 when it
        // gave up), checksum good (status 1), TTL 255.
        assert_eq!(f[0], "3", "{l}");
        assert_eq!(f[1], "1", "{l}");
        assert_eq!(f[2], "51", "{l}");
        assert!(f[3] == "150" || f[3] == "0", "{l}");
        assert_eq!(f[4], "1", "checksum status of {l}");
        assert_eq!(f[5], "255", "{l}");
    }
}
