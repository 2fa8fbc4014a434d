//! The L4 `tun` (IPIP / IP6IP6 L3 DSR) data plane end to end in the lab's
//! `Tun` variant: the reals sit on 10.98.0.0/24 (fd98::/64) behind a router,
//! run `sluice realserver setup --tun-iface eth0` (VIPs on `lo`,
//! `sluice_decap` on `eth0`), and answer the client through the router,
//! never through the LB. Also `sluice realserver setup` on its own, and
//! IPv6 `dr` in the DSR lab. Needs root.
#![allow(missing_docs, unreachable_pub, clippy::unwrap_used)]

mod common;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    process::Stdio,
    time::{Duration, Instant},
};

use common::*;
use sluice_lab::{Lab, Netns, Node, create_veth};

/// New-connection requests in the spread checks.
const SPREAD_REQUESTS: usize = 60;
/// Body size of `/` served by the lab's web servers, in bytes.
const BODY: usize = 5120;
/// Bytes of padding header in the full-size-segment request: several
/// segments of the client's full MSS, i.e. tunnelled frames above 1500 bytes.
const BIG_HEADER_BYTES: usize = 6000;
/// How long `realserver setup` may take to report ready.
const SETUP_READY: Duration = Duration::from_secs(10);

fn config(family6: bool, vary: bool) -> String {
    let (name, vip, src, reals) = if family6 {
        (
            "web6",
            "fd99:ffff::1",
            "fd99::1",
            ["fd98::11", "fd98::12", "fd98::13"],
        )
    } else {
        (
            "web",
            "10.99.255.1",
            "10.99.0.1",
            ["10.98.0.11", "10.98.0.12", "10.98.0.13"],
        )
    };
    let mut c = format!(
        r#"[global]
admin = "{ADMIN}"

[[l4_service]]
name = "{name}"
vip = "{vip}"
port = 80
method = "tun"
tun_source = "{src}"
tun_vary_source = {vary}
scheduler = "mh"
maglev_table_size = 1009
interface = "lb0"
"#
    );
    for r in reals {
        c.push_str(&format!("\n[[l4_service.real]]\naddress = \"{r}\"\n"));
    }
    c
}

/// `SPREAD_REQUESTS` curls on new connections: each must return `BODY`
/// bytes; returns the requests per real.
fn spread(lab: &Lab, extra: &[&str], url: &str) -> BTreeMap<String, usize> {
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..SPREAD_REQUESTS {
        let (status, len, real) = curl(lab, extra, url).unwrap_or_else(|e| panic!("#{i}: {e}"));
        assert_eq!((status, len), (200, BODY), "#{i} from {real}");
        *by_real.entry(real).or_default() += 1;
    }
    by_real
}

/// The reals' kernels never saw an IPIP/IP6IP6 packet: this kernel has no
/// tunnel drivers, so an outer packet reaching the IP layer would count as
/// an unknown protocol. Zero proves `sluice_decap` stripped every outer
/// header before the stack (routing, rp_filter, local delivery) ran.
fn assert_decap_ran_first(lab: &Lab, reals: usize) {
    for i in 1..=reals {
        assert_eq!(nstat(lab, Node::Real(i), "IpInUnknownProtos"), 0, "rs{i}");
        assert_eq!(nstat(lab, Node::Real(i), "Ip6InUnknownProtos"), 0, "rs{i}");
    }
}

#[test]
fn tun_serves_through_ipip_and_replies_bypass_the_lb() {
    let lab = tun_lab("tun", 3);
    let d = start_daemon(&lab, &config(false, false));

    let by_real = spread(&lab, &[], "http://10.99.255.1/");
    assert_eq!(by_real.len(), 3, "every real serves: {by_real:?}");
    assert!(by_real.keys().all(|r| r.starts_with("rs")), "{by_real:?}");

    // Every byte entering the LB passes its XDP program, so rx_bytes bounds
    // what reached the LB: the 60 × 5 KiB of replies went via the router.
    let rx_bytes = counter(&lab, "rx_bytes");
    let reply_bytes = (SPREAD_REQUESTS * BODY) as u64;
    assert!(
        rx_bytes < reply_bytes / 4,
        "LB received {rx_bytes} bytes for {reply_bytes} bytes of replies"
    );
    let fwd = counter(&lab, "tx_forwarded");
    assert!(fwd >= (SPREAD_REQUESTS * 4) as u64, "forwarded {fwd}");
    assert_eq!(counter(&lab, "drop_encap_failed"), 0);
    // The router forwarded the tunnels (LB -> reals) and the replies.
    assert!(nstat(&lab, Node::Router, "IpForwDatagrams") >= (SPREAD_REQUESTS * 8) as u64);

    // Full-size client segments: tunnelled frames bigger than 1500 bytes
    // cross the LB, the router and the reals (the lab's TUN_PATH_MTU).
    let pad = format!("X-Pad: {}", "p".repeat(BIG_HEADER_BYTES));
    for _ in 0..5 {
        let (status, len, _) = curl(&lab, &["-H", &pad], "http://10.99.255.1/").unwrap();
        assert_eq!((status, len), (200, BODY));
    }

    // wrk with keep-alive through the VIP.
    let report = wrk(&lab, "http://10.99.255.1/", 20, 3);
    assert!(wrk_requests(&report) > 1000, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    assert_decap_ran_first(&lab, 3);

    // Teardown stops the setup processes and deletes the router too.
    drop(d);
    let namespaces = lab.state().namespaces;
    assert!(
        namespaces.iter().any(|n| n.ends_with("-rtr")),
        "{namespaces:?}"
    );
    let report = lab.down();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(
        report.stopped.iter().any(|p| p == "setup rs3"),
        "{report:?}"
    );
    for ns in namespaces {
        assert!(!sluice_lab::netns::netns_exists(&ns), "{ns} left behind");
    }
}

#[test]
fn tun6_serves_through_ip6ip6() {
    let lab = tun_lab("tun6", 3);
    let _d = start_daemon(&lab, &config(true, false));
    let by_real = spread(&lab, &["-6"], "http://[fd99:ffff::1]/");
    assert_eq!(by_real.len(), 3, "every real serves: {by_real:?}");
    let rx_bytes = counter(&lab, "rx_bytes");
    let reply_bytes = (SPREAD_REQUESTS * BODY) as u64;
    assert!(
        rx_bytes < reply_bytes / 4,
        "LB received {rx_bytes} bytes for {reply_bytes} bytes of replies"
    );
    let pad = format!("X-Pad: {}", "p".repeat(BIG_HEADER_BYTES));
    let (status, len, _) = curl(&lab, &["-6", "-H", &pad], "http://[fd99:ffff::1]/").unwrap();
    assert_eq!((status, len), (200, BODY));
    let report = wrk(&lab, "http://[fd99:ffff::1]/", 10, 2);
    assert!(wrk_requests(&report) > 500, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    assert_decap_ran_first(&lab, 3);
}

/// Outer source addresses seen on the router's reals-side leg, captured
/// with tcpdump while `traffic` runs.
fn outer_sources(lab: &Lab, filter: &str, traffic: impl FnOnce()) -> Vec<String> {
    let mut cmd = lab
        .command(
            Node::Router,
            &["tcpdump", "-l", "-n", "-p", "-c", "40", "-i", "r1", filter],
        )
        .unwrap();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    lab.track(Node::Router, &child, "tcpdump");
    // tcpdump prints "listening on ..." to stderr once capturing.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = err.read_line(&mut line).unwrap();
        seen.push_str(&line);
        if line.contains("listening") {
            break;
        }
        assert!(n > 0, "tcpdump did not start: {seen}");
    }
    traffic();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        // "12:00:00.000 IP 10.99.12.34 > 10.98.0.11: IP 10.99.0.2.5555 > ..."
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect()
}

#[test]
fn tun_vary_source_is_accepted_by_the_reals() {
    let lab = tun_lab("tunv", 3);
    let _d = start_daemon(&lab, &config(false, true));
    let sources = outer_sources(&lab, "ip proto 4", || {
        let by_real = spread(&lab, &[], "http://10.99.255.1/");
        assert_eq!(by_real.len(), 3, "{by_real:?}");
    });
    assert!(sources.len() >= 20, "captured {sources:?}");
    let distinct: std::collections::BTreeSet<&String> = sources.iter().collect();
    // tun_source 10.99.0.1 with the low 16 bits replaced by a flow hash.
    assert!(
        distinct.len() > 5 && sources.iter().all(|s| s.starts_with("10.99.")),
        "outer sources {distinct:?}"
    );
    // The reals own none of those addresses and still served: the outer
    // header is gone before routing sees the packet.
    assert_decap_ran_first(&lab, 3);
    let report = wrk(&lab, "http://10.99.255.1/", 20, 2);
    assert_eq!(wrk_errors(&report), 0, "{report}");
}

#[test]
fn tun6_vary_source_is_accepted_by_the_reals() {
    let lab = tun_lab("tunv6", 3);
    let _d = start_daemon(&lab, &config(true, true));
    let sources = outer_sources(&lab, "ip6 and ip6[6] == 41", || {
        let by_real = spread(&lab, &["-6"], "http://[fd99:ffff::1]/");
        assert_eq!(by_real.len(), 3, "{by_real:?}");
    });
    assert!(sources.len() >= 20, "captured {sources:?}");
    let distinct: std::collections::BTreeSet<&String> = sources.iter().collect();
    assert!(
        distinct.len() > 5 && sources.iter().all(|s| s.starts_with("fd99::")),
        "outer sources {distinct:?}"
    );
    assert_decap_ran_first(&lab, 3);
}

// --- IPv6 `dr` in the DSR lab ---

#[test]
fn dr6_serves_through_xdp() {
    let lab = l4_lab("dr6", 3);
    let cfg = format!(
        r#"[global]
admin = "{ADMIN}"

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
[[l4_service.real]]
address = "fd99::13"
"#
    );
    let _d = start_daemon(&lab, &cfg);
    let by_real = spread(&lab, &["-6"], "http://[fd99:ffff::1]/");
    assert_eq!(by_real.len(), 3, "every real serves: {by_real:?}");
    let rx_bytes = counter(&lab, "rx_bytes");
    let reply_bytes = (SPREAD_REQUESTS * BODY) as u64;
    assert!(
        rx_bytes < reply_bytes / 4,
        "LB received {rx_bytes} bytes for {reply_bytes} bytes of replies"
    );
    let report = wrk(&lab, "http://[fd99:ffff::1]/", 10, 2);
    assert!(wrk_requests(&report) > 500, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
}

// --- `sluice realserver setup` on its own ---

/// Addresses on `lo` in `ns`.
fn lo_addrs(ns: &Netns) -> String {
    let out = ns.ip(&["-o", "addr", "show", "dev", "lo"]).unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ip -j link show dev eth0`'s XDP attachment mode (1 native, 2 generic).
fn xdp_mode(ns: &Netns) -> Option<u64> {
    xdp_mode_of(ns, "eth0")
}

#[test]
fn realserver_setup_adds_undoes_and_leaves_foreign_vips() {
    let label = sluice_lab::LabSpec::unique_label("rss");
    // Netns deletes itself (killing what runs inside) when dropped.
    let ns = Netns::create(&format!("sl-{label}")).unwrap();
    let peer = Netns::create(&format!("sl-{label}-p")).unwrap();
    let n = &ns;
    create_veth(n, "eth0", &peer, "peer0").unwrap();
    // A VIP the host already had: setup must leave it, also on exit.
    n.ip(&["addr", "add", "10.99.255.9/32", "dev", "lo"])
        .unwrap();

    let mut cmd = n
        .command(&[
            SLUICE,
            "realserver",
            "setup",
            "--vip",
            "10.99.255.1",
            "--vip",
            "fd99:ffff::1",
            "--vip",
            "10.99.255.9",
            "--tun-iface",
            "eth0",
            "--xdp-mode",
            "generic",
        ])
        .unwrap();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    struct Kill(Option<std::process::Child>);
    impl Drop for Kill {
        fn drop(&mut self) {
            if let Some(mut c) = self.0.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
    let stdout = child.stdout.take().unwrap();
    let mut guard = Kill(Some(child));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut printed = Vec::new();
    let deadline = Instant::now() + SETUP_READY;
    while !printed.iter().any(|l: &String| l.starts_with("ready")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => printed.push(l),
            Err(_) => panic!("setup not ready: {printed:?}"),
        }
    }
    let text = printed.join("\n");
    assert!(text.contains("added VIP 10.99.255.1/32 on lo"), "{text}");
    assert!(text.contains("added VIP fd99:ffff::1/128 on lo"), "{text}");
    assert!(text.contains("VIP 10.99.255.9 is already on lo"), "{text}");
    assert!(
        text.contains("attached sluice_decap to eth0 (generic XDP)"),
        "{text}"
    );

    let lo = lo_addrs(n);
    for a in ["10.99.255.1/32", "fd99:ffff::1/128", "10.99.255.9/32"] {
        assert!(lo.contains(a), "{a} missing on lo: {lo}");
    }
    for (key, want) in [
        ("net.ipv4.conf.all.arp_ignore", "1"),
        ("net.ipv4.conf.eth0.arp_ignore", "1"),
        ("net.ipv4.conf.all.arp_announce", "2"),
        ("net.ipv4.conf.eth0.arp_announce", "2"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.eth0.rp_filter", "0"),
    ] {
        assert_eq!(n.sysctl(key).unwrap(), want, "{key}");
    }
    assert_eq!(xdp_mode(n), Some(2), "sluice_decap in generic mode");

    let child = guard.0.as_mut().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    guard.0 = None;
    assert!(status.success(), "exit {status}");
    let rest: Vec<String> = rx.iter().collect();
    let text = rest.join("\n");
    assert!(text.contains("detached sluice_decap from eth0"), "{text}");
    assert!(
        text.contains("removed VIP 10.99.255.1/32 from lo"),
        "{text}"
    );
    assert!(!text.contains("10.99.255.9"), "{text}");
    let lo = lo_addrs(n);
    assert!(
        !lo.contains("10.99.255.1/32") && !lo.contains("fd99:ffff::1"),
        "{lo}"
    );
    assert!(
        lo.contains("10.99.255.9/32"),
        "the foreign VIP was removed: {lo}"
    );
    assert_eq!(xdp_mode(n), None, "sluice_decap still attached");
}

#[test]
fn realserver_setup_prints_the_kernel_equivalent_documented() {
    let out = std::process::Command::new(SLUICE)
        .args([
            "realserver",
            "setup",
            "--print-kernel-equivalent",
            "--vip",
            "10.99.255.1",
            "--vip",
            "fd99:ffff::1",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ip link add tunl0 type ipip"), "{text}");
    assert!(text.contains("net.ipv4.conf.tunl0.rp_filter=0"), "{text}");
    // docs/REALSERVER.md quotes exactly this output.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/REALSERVER.md"
    ))
    .unwrap();
    assert!(
        doc.contains(text.as_ref()),
        "docs/REALSERVER.md does not quote the current output:\n{text}"
    );
    // Bad input is refused with a reason, not a panic.
    let out = std::process::Command::new(SLUICE)
        .args(["realserver", "setup", "--vip", "127.0.0.1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a unicast service address"));
}

/// `tun` checks the egress MTU only for packets larger than IPv6's minimum
/// link MTU, so `sluice run` refuses a `tun` service on an interface with a
/// smaller MTU, saying why, and attaches nothing.
#[test]
fn run_refuses_tun_on_an_interface_below_the_minimum_mtu() {
    let label = sluice_lab::LabSpec::unique_label("tunmtu");
    let ns = Netns::create(&format!("sl-{label}")).unwrap();
    let peer = Netns::create(&format!("sl-{label}-p")).unwrap();
    create_veth(&ns, "lb0", &peer, "peer0").unwrap();
    ns.ip(&["link", "set", "lb0", "mtu", "1000"]).unwrap();
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "lb0"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        r#"[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "tun"
interface = "lb0"

[[l4_service.real]]
address = "10.99.0.11"
"#,
    )
    .unwrap();
    let out = ns
        .exec(&[SLUICE, "run", "-c", cfg.to_str().unwrap()])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("MTU of 1000 bytes") && stderr.contains("at least 1280"),
        "{stderr}"
    );
    assert_eq!(xdp_mode_of(&ns, "lb0"), None, "nothing may stay attached");
}

/// `ip -j link show dev IFACE`'s XDP attachment mode (1 native, 2
/// generic), if any.
fn xdp_mode_of(ns: &Netns, iface: &str) -> Option<u64> {
    let out = ns.ip(&["-j", "link", "show", "dev", iface]).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v[0]["xdp"]["mode"].as_u64()
}
