//! Network-namespace lab tests: build real labs with the `sluice` binary's
//! web server (and nginx), send traffic from the client namespace, tear down.
//!
//! These need root (CAP_NET_ADMIN and CAP_SYS_ADMIN). Without it they fail
//! with a message naming the missing privilege; they never pass silently.
//! Every lab has a unique label, so the tests run concurrently.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use sluice_lab::netns::{if_index, list_netns, netns_exists, netns_pids};
use sluice_lab::{
    Lab, LabError, LabSpec, LabState, LbForwarding, Netns, Node, ProcessRecord, RealBackend,
    create_veth, http_get,
};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// Requests sent through the VIP, each on a new connection.
const VIP_REQUESTS: usize = 60;

/// Per-request timeout for curl, in seconds.
const CURL_TIMEOUT_S: &str = "3";

fn up(spec: LabSpec) -> Lab {
    match Lab::up(spec) {
        Ok(lab) => lab,
        Err(e @ LabError::NotPrivileged { .. }) => {
            panic!("lab tests need root: {e}")
        }
        Err(e) => panic!("lab up failed: {e}"),
    }
}

fn sluice_spec(reals: usize) -> LabSpec {
    let mut spec = LabSpec::new(&LabSpec::unique_label("t"));
    spec.reals = reals;
    spec.backend = RealBackend::Sluice {
        binary: PathBuf::from(SLUICE),
    };
    spec
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `curl` from the client: returns (status, bytes, X-Served-By).
fn curl(lab: &Lab, url: &str) -> (u16, usize, String) {
    let out = lab
        .exec(
            Node::Client,
            &[
                "curl",
                "-sS",
                "-g",
                "--max-time",
                CURL_TIMEOUT_S,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code} %{size_download} %header{x-served-by}",
                url,
            ],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "curl {url} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout(&out);
    let mut f = text.split_whitespace();
    let status = f.next().unwrap().parse().unwrap();
    let size = f.next().unwrap().parse().unwrap();
    let by = f.next().unwrap_or("").to_owned();
    (status, size, by)
}

fn read_counter(lab: &Lab, node: Node, iface: &str, counter: &str) -> u64 {
    // `ip netns exec` remounts /sys for the namespace, so this reads the
    // node's own interface.
    let path = format!("/sys/class/net/{iface}/statistics/{counter}");
    stdout(&lab.exec(node, &["cat", &path]).unwrap())
        .parse()
        .unwrap()
}

fn assert_gone(namespaces: &[String], processes: &[ProcessRecord]) {
    let left: Vec<String> = list_netns()
        .unwrap()
        .into_iter()
        .filter(|n| namespaces.contains(n))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    for p in processes {
        assert!(!p.is_running(), "{} (pid {}) still running", p.what, p.pid);
    }
}

#[test]
fn dsr_lab_spreads_vip_traffic_over_reals_and_tears_down() {
    let lab = up(sluice_spec(3));
    let t = lab.topology().clone();
    let vip_url = format!("http://{}/", t.vip4);

    let lb_tx_before = read_counter(&lab, Node::Lb, &t.lb.iface, "tx_bytes");
    let client_rx_before = read_counter(&lab, Node::Client, &t.client.iface, "rx_bytes");
    let mut seen = BTreeSet::new();
    for _ in 0..VIP_REQUESTS {
        let (status, size, by) = curl(&lab, &vip_url);
        assert_eq!((status, size), (200, 5120), "served by {by:?}");
        assert!(
            ["rs1", "rs2", "rs3"].contains(&by.as_str()),
            "unexpected X-Served-By {by:?}"
        );
        seen.insert(by);
    }
    assert!(
        seen.len() > 1,
        "ECMP sent all {VIP_REQUESTS} connections to {seen:?}"
    );

    // Direct server return: the 5 KiB replies reached the client without
    // passing through the LB (which forwarded only the small requests).
    let body_bytes = (VIP_REQUESTS * 5120) as u64;
    let lb_tx = read_counter(&lab, Node::Lb, &t.lb.iface, "tx_bytes") - lb_tx_before;
    let client_rx =
        read_counter(&lab, Node::Client, &t.client.iface, "rx_bytes") - client_rx_before;
    assert!(client_rx >= body_bytes, "client received {client_rx} bytes");
    assert!(
        lb_tx < body_bytes / 4,
        "LB sent {lb_tx} bytes: replies went through it"
    );

    // The real sees the client's own address and answers from the VIP.
    let vip = t.vip4_addr();
    let who = lab
        .in_netns(Node::Client, || {
            http_get(vip, "/whoami", Duration::from_secs(3))
        })
        .unwrap()
        .unwrap();
    let v = String::from_utf8(who.body).unwrap();
    assert!(v.contains(&format!("\"peer\":\"{}:", t.client.ipv4)), "{v}");
    assert!(v.contains(&format!("\"local\":\"{vip}\"")), "{v}");

    // IPv6 through the same LB.
    let (status, size, by) = curl(&lab, &format!("http://[{}]/", t.vip6.unwrap()));
    assert_eq!((status, size), (200, 5120), "IPv6 VIP, served by {by:?}");

    // Reals hold the VIP on lo and never answer ARP for it.
    for i in 1..=3 {
        let node = Node::Real(i);
        let addrs = stdout(
            &lab.exec(node, &["ip", "-o", "addr", "show", "dev", "lo"])
                .unwrap(),
        );
        assert!(
            addrs.contains(&format!("{}/32", t.vip4)),
            "rs{i} lo: {addrs}"
        );
        let sysctl = |k: &str| stdout(&lab.exec(node, &["sysctl", "-n", k]).unwrap());
        assert_eq!(sysctl("net.ipv4.conf.all.arp_ignore"), "1");
        assert_eq!(sysctl("net.ipv4.conf.eth0.arp_ignore"), "1");
        assert_eq!(sysctl("net.ipv4.conf.all.arp_announce"), "2");
        assert_eq!(sysctl("net.ipv4.conf.eth0.rp_filter"), "0");
    }
    let offload = stdout(&lab.exec(Node::Client, &["ethtool", "-k", "c0"]).unwrap());
    assert!(offload.contains("tx-checksumming: off"), "{offload}");

    let namespaces = t.namespaces();
    let processes = lab.real_processes().to_vec();
    assert_eq!(processes.len(), 3);
    assert!(processes.iter().all(ProcessRecord::is_running));
    let report = lab.down();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.stopped.len(), 3, "{report:?}");
    assert_eq!(report.namespaces_deleted.len(), namespaces.len());
    assert_gone(&namespaces, &processes);
    // We were the parent, so the servers were reaped, not left as zombies.
    for p in &processes {
        assert!(!Path::new(&format!("/proc/{}", p.pid)).exists() || !p.is_running());
    }
}

#[test]
fn nginx_backend_serves_the_same_content() {
    let mut spec = LabSpec::new(&LabSpec::unique_label("t"));
    spec.reals = 2;
    spec.backend = RealBackend::Nginx;
    let lab = up(spec);
    let t = lab.topology().clone();
    let mut seen = BTreeSet::new();
    for _ in 0..20 {
        let (status, size, by) = curl(&lab, &format!("http://{}/", t.vip4));
        assert_eq!((status, size), (200, 5120));
        seen.insert(by);
    }
    assert_eq!(
        seen,
        BTreeSet::from(["rs1".to_owned(), "rs2".to_owned()]),
        "20 connections over 2 nginx reals"
    );
    let rs2 = SocketAddr::new(t.reals[1].ipv4.into(), t.port);
    let health = lab
        .in_netns(Node::Client, || {
            http_get(rs2, "/health", Duration::from_secs(3))
        })
        .unwrap()
        .unwrap();
    assert_eq!(health.status, 200);
    assert_eq!(health.body, b"ok");
    assert_eq!(health.header("x-served-by"), Some("rs2"));

    let state = lab.state();
    let temp_dir = state.temp_dirs[0].display().to_string();
    // Masters and their workers: every process in the reals' namespaces.
    let mut pids = Vec::new();
    for r in &t.reals {
        pids.extend(netns_pids(&r.netns).unwrap());
    }
    assert!(
        pids.len() >= 4,
        "expected 2 masters + 2 workers, got {pids:?}"
    );
    let report = lab.down();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_gone(&state.namespaces, &state.processes);
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for a parent that is not us.
        assert!(
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z'),
            "nginx pid {pid} survived teardown: {stat}"
        );
    }
    assert!(!Path::new(&temp_dir).exists());
}

/// Deletes a CLI-made lab even if the test fails midway.
struct CliLabGuard {
    label: String,
}

impl Drop for CliLabGuard {
    fn drop(&mut self) {
        let _ = Command::new(SLUICE)
            .args(["lab", "down", "--label", &self.label])
            .output();
        let _ = sluice_lab::teardown_label(&self.label);
    }
}

fn sluice(args: &[&str]) -> Output {
    Command::new(SLUICE).args(args).output().unwrap()
}

#[test]
fn cli_up_status_down() {
    sluice_lab::check_privileges().unwrap_or_else(|e| panic!("lab tests need root: {e}"));
    let label = LabSpec::unique_label("t");
    let guard = CliLabGuard {
        label: label.clone(),
    };

    let out = sluice(&["lab", "up", "--label", &label, "--reals", "2"]);
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("10.99.255.1"), "{}", stdout(&out));
    let state = LabState::load(Path::new(sluice_lab::DEFAULT_STATE_DIR), &label)
        .unwrap()
        .expect("lab up writes a state file");
    assert_eq!(state.processes.len(), 2);
    // The servers outlived `lab up`.
    assert!(state.processes.iter().all(ProcessRecord::is_running));
    assert!(state.namespaces.iter().all(|n| netns_exists(n)));

    // A second `up` with the same label refuses.
    let again = sluice(&["lab", "up", "--label", &label, "--reals", "2"]);
    assert!(!again.status.success());

    let status = sluice(&["lab", "status", "--label", &label]);
    let text = stdout(&status);
    assert!(status.status.success(), "lab status:\n{text}");
    assert!(
        text.contains("rs1   http://10.99.0.11:80/health ok (X-Served-By rs1)"),
        "{text}"
    );
    assert!(
        text.contains("rs2   http://10.99.0.12:80/health ok (X-Served-By rs2)"),
        "{text}"
    );
    assert!(text.contains("5120 bytes"), "{text}");

    let down = sluice(&["lab", "down", "--label", &label]);
    assert!(
        down.status.success(),
        "lab down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_gone(&state.namespaces, &state.processes);
    assert!(state.temp_dirs.iter().all(|d| !d.exists()));
    assert!(
        LabState::load(Path::new(sluice_lab::DEFAULT_STATE_DIR), &label)
            .unwrap()
            .is_none()
    );

    // Down is idempotent; status of a lab that is gone fails.
    assert!(sluice(&["lab", "down", "--label", &label]).status.success());
    assert!(
        !sluice(&["lab", "status", "--label", &label])
            .status
            .success()
    );
    drop(guard);
}

#[test]
fn cli_down_without_state_file_deletes_by_name() {
    sluice_lab::check_privileges().unwrap_or_else(|e| panic!("lab tests need root: {e}"));
    let label = LabSpec::unique_label("t");
    let _guard = CliLabGuard {
        label: label.clone(),
    };
    // A lab detached without a state file, as a crashed `lab up` would leave it.
    let mut spec = LabSpec::new(&label);
    spec.reals = 1;
    let state = up(spec).detach();
    assert!(state.namespaces.iter().all(|n| netns_exists(n)));
    let down = sluice(&["lab", "down", "--label", &label]);
    assert!(down.status.success());
    assert_gone(&state.namespaces, &[]);
    // Clean up the temp dir the detached lab left (no state file knew it).
    state.teardown();
}

#[test]
fn lab_is_torn_down_when_a_test_panics() {
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        let mut spec = LabSpec::new(&LabSpec::unique_label("t"));
        spec.reals = 1;
        spec.lb_forwarding = LbForwarding::None;
        let lab = up(spec);
        tx.send(lab.topology().namespaces()).unwrap();
        panic!("deliberate panic with a lab up");
    })
    .join();
    assert!(result.is_err());
    let namespaces = rx.recv().unwrap();
    assert_eq!(namespaces.len(), 4);
    assert_gone(&namespaces, &[]);
}

#[test]
fn bare_netns_pair_with_veth_and_setns() {
    sluice_lab::check_privileges().unwrap_or_else(|e| panic!("lab tests need root: {e}"));
    let base = format!("sl-{}", LabSpec::unique_label("bare"));
    let a = Netns::create(&format!("{base}-a")).unwrap();
    let b = Netns::create(&format!("{base}-b")).unwrap();
    assert!(matches!(
        Netns::create(a.name()),
        Err(LabError::AlreadyExists(_))
    ));
    let pair = create_veth(&a, "xa0", &b, "xb0").unwrap();
    assert_eq!((pair.a_if.as_str(), pair.b_if.as_str()), ("xa0", "xb0"));
    a.ip(&["addr", "add", "10.250.0.1/30", "dev", "xa0"])
        .unwrap();
    b.ip(&["addr", "add", "10.250.0.2/30", "dev", "xb0"])
        .unwrap();

    // Interface indices resolve in the namespace the thread entered.
    let index = a
        .in_netns(|| if_index("xa0"))
        .unwrap()
        .expect("xa0 exists inside a");
    assert!(index > 1);
    assert!(
        if_index("xa0").is_none(),
        "xa0 leaked into the root namespace"
    );

    // A socket made inside b stays in b; a connects to it over the veth.
    let listener = b
        .in_netns(|| std::net::TcpListener::bind("10.250.0.2:0"))
        .unwrap()
        .unwrap();
    let target = listener.local_addr().unwrap();
    let peer = a
        .in_netns(|| {
            let s = std::net::TcpStream::connect_timeout(&target, Duration::from_secs(3))?;
            s.local_addr()
        })
        .unwrap()
        .unwrap();
    let (_conn, seen) = listener.accept().unwrap();
    assert_eq!(seen, peer);
    assert_eq!(peer.ip().to_string(), "10.250.0.1");

    // Sysctls go to the namespace, not the root namespace.
    let root_forward = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let flipped = if root_forward.trim() == "1" { "0" } else { "1" };
    a.set_sysctl("net.ipv4.ip_forward", flipped).unwrap();
    assert_eq!(a.sysctl("net.ipv4.ip_forward").unwrap(), flipped);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        root_forward
    );

    // Deleting a removes the veth, peer end included. The kernel dismantles
    // a deleted namespace asynchronously, so give it a moment.
    let a_name = a.name().to_owned();
    a.delete().unwrap();
    assert!(!netns_exists(&a_name));
    let peer_gone = || {
        !b.exec(&["ip", "link", "show", "xb0"])
            .unwrap()
            .status
            .success()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !peer_gone() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        peer_gone(),
        "xb0 outlived the deletion of its peer's namespace"
    );
    let b_name = b.name().to_owned();
    drop(b);
    assert!(!netns_exists(&b_name));
}

#[test]
fn without_root_the_cli_names_the_missing_privilege() {
    // Dropping privileges itself needs root.
    sluice_lab::check_privileges().unwrap_or_else(|e| panic!("lab tests need root: {e}"));
    // Drop to nobody with no capabilities; the lab must refuse loudly.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            SLUICE,
            "lab",
            "up",
            "--label",
            &LabSpec::unique_label("t"),
            "--state-dir",
            "/nonexistent-sluice-state",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
}
