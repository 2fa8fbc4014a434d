//! The L4 `fullnat` data plane end to end in the lab, one-arm: `sluice
//! run` attaches `sluice_xdp` natively to the LB's veth, with a local
//! address of its own on the lab's segment. The reals keep their usual
//! routes (they need none to the client): they see the LB's local
//! address as the peer and answer it, and the LB sends their replies
//! back to the client from the VIP. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use sluice_lab::{Lab, Node};

/// New-connection requests through the VIP.
const REQUESTS: usize = 30;
/// The LB's local address (on the lab's segment, otherwise unused).
const LOCAL: &str = "10.99.0.200";
/// The local ports handed out.
const PORTS: (u16, u16) = (20000, 29999);
/// Where the pinned web server listens on real 1 (the lab's own listens
/// on 80).
const PINNED_PORT: u16 = 8080;

/// A daemon config with one `fullnat` service `name` on VIP:`port` to
/// `reals` (address, own port).
fn fullnat_config(name: &str, port: u16, reals: &[(&str, u16)]) -> String {
    let mut cfg = format!(
        "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[l4_service]]\nname = \"{name}\"\n\
         vip = \"10.99.255.1\"\nport = {port}\nmethod = \"fullnat\"\ninterface = \"lb0\"\n\
         local_addresses = [\"{LOCAL}\"]\nlocal_port_range = [{}, {}]\n\
         maglev_table_size = 1009\n",
        PORTS.0, PORTS.1
    );
    for (address, p) in reals {
        cfg.push_str(&format!(
            "\n[[l4_service.real]]\naddress = \"{address}\"\nport = {p}\n"
        ));
    }
    cfg
}

/// Runs `argv` on `node`, asserting success.
fn must(lab: &Lab, node: Node, argv: &[&str]) {
    let out = lab.exec(node, argv).unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab made fit for `fullnat`: the local address on the LB's
/// interface, and full checksums from the reals (native XDP on a veth
/// loses a partial checksum: ../shared/reference/platform.md).
fn fullnat_lab(tag: &str, reals: usize) -> Lab {
    let lab = l4_lab(tag, reals);
    must(
        &lab,
        Node::Lb,
        &["ip", "addr", "add", &format!("{LOCAL}/32"), "dev", "lb0"],
    );
    for i in 1..=reals {
        must(&lab, Node::Real(i), &["ethtool", "-K", "eth0", "tx", "off"]);
    }
    lab
}

#[test]
fn fullnat_serves_from_the_local_address_and_replies_cross_cpus() {
    let lab = fullnat_lab("fnat", 2);
    // A web server on real 1 pinned to CPU 1; the client's curl below
    // runs on CPU 0. On a veth, XDP runs on the CPU that sent the frame,
    // so the client's packets and the real's replies meet the program on
    // different CPUs: the reply must find a session made elsewhere.
    let listen = format!("10.99.0.11:{PINNED_PORT}");
    let mut pinned = spawn_web(
        &lab,
        Node::Real(1),
        &listen,
        "rs1-pinned",
        LONG_OK_BYTES,
        Some("1"),
    );

    let mut config = fullnat_config("web", 80, &[("10.99.0.11", 80), ("10.99.0.12", 80)]);
    config.push_str(
        &fullnat_config("pinned", 81, &[("10.99.0.11", PINNED_PORT)])
            .split_once("\n\n")
            .map(|(_, svc)| format!("\n{svc}"))
            .unwrap(),
    );
    let _d = start_daemon(&lab, &config);

    // New connections: both reals serve, and each saw the LB's local
    // address as its peer, not the client.
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let (status, len, real) = curl(&lab, &[], "http://10.99.255.1/").unwrap();
        assert_eq!((status, len), (200, 5120));
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(by_real.len(), 2, "both reals serve: {by_real:?}");
    let out = lab
        .exec(
            Node::Client,
            &[
                "curl",
                "-sS",
                "--max-time",
                "5",
                "http://10.99.255.1/whoami",
            ],
        )
        .unwrap();
    let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let peer = who["peer"].as_str().unwrap_or_default().to_owned();
    assert!(
        peer.starts_with(&format!("{LOCAL}:")),
        "the real saw {peer}, not the LB's local address"
    );
    let port: u16 = peer.rsplit(':').next().unwrap().parse().unwrap();
    assert!((PORTS.0..=PORTS.1).contains(&port), "local port {port}");
    assert!(counter(&lab, "tx_fullnat_reply") >= (REQUESTS * 4) as u64);

    // Client on CPU 0, real on CPU 1.
    for _ in 0..10 {
        let out = lab
            .exec(
                Node::Client,
                &[
                    "taskset",
                    "-c",
                    "0",
                    "curl",
                    "-sS",
                    "--max-time",
                    "5",
                    "http://10.99.255.1:81/whoami",
                ],
            )
            .unwrap();
        let who: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        assert_eq!(who["name"], "rs1-pinned", "{who}");
    }

    // A long-lived transfer completes, every byte back through the LB.
    assert_eq!(long_transfer(&lab, "http://10.99.255.1:81/"), LONG_OK_BYTES);

    // wrk with keep-alive through the VIP, then the pool usage.
    let report = wrk(&lab, "http://10.99.255.1/", 20, 3);
    assert!(wrk_requests(&report) > 1000, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    let list = ctl_list(&lab);
    let web = list
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "web")
        .unwrap();
    assert_eq!(web["method"], "fullnat", "{list}");
    let pool = &web["local_addresses"][0];
    assert_eq!(pool["address"], LOCAL, "{list}");
    assert_eq!(pool["per_real"], u64::from(PORTS.1 - PORTS.0) + 1, "{list}");
    // The sessions of the last connections are closing, not gone: their
    // ports are still held.
    assert!(pool["in_use"].as_u64().unwrap() >= 20, "{list}");
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(text.contains(LOCAL), "{text}");
    let m = metrics(&lab);
    assert!(
        metric(&m, "sluice_l4_tx_fullnat_reply_total").unwrap() > 0,
        "{m}"
    );
    assert!(
        m.contains(&format!(
            "sluice_l4_local_ports_per_real{{service=\"web\",local=\"{LOCAL}\"}} {}",
            PORTS.1 - PORTS.0 + 1
        )),
        "{m}"
    );
    assert_eq!(counter(&lab, "drop_fullnat_no_port"), 0);
    let _ = pinned.kill();
    let _ = pinned.wait();
}

/// A real that dies in the middle of a long transfer ends the client's
/// transfer promptly (its kernel's RST to the LB's local port is
/// translated back), never a hang.
#[test]
fn fullnat_a_dying_real_ends_the_transfer() {
    let lab = fullnat_lab("fnatkill", 1);
    let listen = format!("10.99.0.11:{PINNED_PORT}");
    let web = spawn_web(
        &lab,
        Node::Real(1),
        &listen,
        "rs1-long",
        LONG_BODY_BYTES,
        None,
    );
    let _d = start_daemon(
        &lab,
        &fullnat_config("web", 80, &[("10.99.0.11", PINNED_PORT)]),
    );
    let served = (0..50).any(|_| {
        let ok = curl(&lab, &[], "http://10.99.255.1/whoami")
            .is_ok_and(|(_, _, real)| real == "rs1-long");
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(served, "VIP:80 never reached the real's port {PINNED_PORT}");
    transfer_ends_when_the_real_dies(&lab, web, "http://10.99.255.1/", LONG_BODY_BYTES);
}

/// `sluice run` refuses a local address that is not the LB's own.
#[test]
fn fullnat_refuses_a_local_address_not_on_the_interface() {
    let lab = l4_lab("fnatref", 1);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, fullnat_config("web", 80, &[("10.99.0.11", 80)])).unwrap();
    let out = lab
        .exec(Node::Lb, &[SLUICE, "run", "-c", cfg.to_str().unwrap()])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "local address {LOCAL} is not assigned to interface \"lb0\""
        )),
        "{stderr}"
    );
}

/// Where nginx listens on real 1 for the TOA test.
const NGINX_PORT: u16 = 8080;
/// The client's own port in the TOA test (curl `--local-port`), so that
/// the TOA lookup's answer can be checked exactly.
const CLIENT_PORT: u16 = 45678;
/// How long the TOA reader may take to attach and pin its map.
const READER_START: Duration = Duration::from_secs(20);

/// nginx answering every request with the peer it sees
/// (`$remote_addr:$remote_port`), all its files under `dir`.
fn nginx_peer_conf(dir: &std::path::Path) -> std::path::PathBuf {
    let d = dir.display();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\n\
             pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/cb;\n proxy_temp_path {d}/p;\n\
             fastcgi_temp_path {d}/f;\n uwsgi_temp_path {d}/u;\n scgi_temp_path {d}/s;\n\
             server {{\n  listen 10.99.0.11:{NGINX_PORT};\n  location / {{\n   default_type text/plain;\n\
             return 200 \"$remote_addr:$remote_port\";\n  }}\n }}\n}}\n"
        ),
    )
    .unwrap();
    conf
}

/// TOA end to end: nginx on the real sees the LB's local address as the
/// peer (`$remote_addr`), while `sluice realserver toa` on the real's
/// interface learns from each connection's first ACK who the client
/// really is, and `--lookup` of nginx's peer answers with the client's
/// address and port.
#[test]
fn fullnat_toa_tells_the_real_who_the_client_is() {
    let label = sluice_lab::LabSpec::unique_label("fnattoa");
    // Declared before the lab, so it is unmounted after the reader stops.
    let fs = sluice_testkit::bpffs::Bpffs::mount(&label).unwrap();
    let pin_dir = fs.path().join("sluice");
    let pin_dir_s = pin_dir.to_str().unwrap().to_owned();
    let lab = fullnat_lab("fnattoa", 1);
    let dir = tempfile::tempdir().unwrap();
    let conf = nginx_peer_conf(dir.path());
    let mut nginx = lab
        .spawn(
            Node::Real(1),
            &[
                "nginx",
                "-c",
                conf.to_str().unwrap(),
                "-p",
                dir.path().to_str().unwrap(),
            ],
        )
        .unwrap();
    let mut reader = lab
        .spawn(
            Node::Real(1),
            &[
                SLUICE,
                "realserver",
                "toa",
                "--iface",
                "eth0",
                "--pin-dir",
                &pin_dir_s,
            ],
        )
        .unwrap();
    let deadline = Instant::now() + READER_START;
    while !pin_dir.join("toa-eth0").exists() {
        assert!(
            Instant::now() < deadline,
            "the TOA reader never pinned its map"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let direct: std::net::SocketAddr = format!("10.99.0.11:{NGINX_PORT}").parse().unwrap();
    let up = (0..50).any(|_| {
        let ok = get(&lab, direct, "/").is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(up, "nginx did not come up");
    let _d = start_daemon(
        &lab,
        &fullnat_config("web", 80, &[("10.99.0.11", NGINX_PORT)]),
    );

    let port = CLIENT_PORT.to_string();
    let mut last = String::new();
    let peer = (0..50)
        .find_map(|_| {
            let out = lab
                .exec(
                    Node::Client,
                    &[
                        "curl",
                        "-sS",
                        "--max-time",
                        "3",
                        "--local-port",
                        &port,
                        "http://10.99.255.1/",
                    ],
                )
                .unwrap();
            last = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if out.status.success() {
                Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
            } else {
                std::thread::sleep(Duration::from_millis(200));
                None
            }
        })
        .unwrap_or_else(|| panic!("no answer through the VIP: {last}"));
    // nginx's $remote_addr is the LB's local address.
    assert!(
        peer.starts_with(&format!("{LOCAL}:")),
        "nginx saw {peer}, not the LB's local address"
    );
    // The TOA tells who it really was.
    let out = lab
        .exec(
            Node::Real(1),
            &[
                SLUICE,
                "realserver",
                "toa",
                "--lookup",
                &peer,
                "--pin-dir",
                &pin_dir_s,
            ],
        )
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && answer.contains(&format!("10.99.0.2:{CLIENT_PORT}")),
        "lookup of {peer}: {answer} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(counter(&lab, "tx_toa") >= 1);
    assert_eq!(counter(&lab, "toa_no_room"), 0);
    // The reader unpins and detaches on SIGTERM (the lab's teardown kills
    // whatever is left, also after a failed assertion).
    let pid = nix::unistd::Pid::from_raw(reader.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = reader.wait();
    let _ = nginx.kill();
    let _ = nginx.wait();
}
