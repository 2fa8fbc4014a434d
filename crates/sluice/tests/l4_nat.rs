//! The L4 `nat` data plane end to end in the lab, one-arm: `sluice run`
//! attaches `sluice_xdp` natively to the LB's veth; the reals route the
//! client via the LB (the lab's client shares their segment, so a host
//! route stands in for "default route via the LB"); the client's requests
//! to VIP:80 reach the reals at their own address, and their replies come
//! back through the LB, rewritten to come from the VIP. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::*;
use sluice_lab::{Lab, Node};

/// New-connection requests through the VIP.
const REQUESTS: usize = 30;
/// Reals in the lab: two configured, the third added at run time.
const REALS: usize = 3;

/// A daemon config with one `nat` service `name` on `lb0` (admin on
/// 127.0.0.1:9900, Maglev of 1,009): VIP `vip`:`port`, `extra` lines
/// added to the service (e.g. `protocol = "udp"`), and `reals` as
/// (address, its own port; `None`: the packet's).
fn nat_config(
    name: &str,
    vip: &str,
    port: u16,
    extra: &str,
    reals: &[(&str, Option<u16>)],
) -> String {
    let mut cfg = format!(
        "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[l4_service]]\nname = \"{name}\"\n\
         vip = \"{vip}\"\nport = {port}\nmethod = \"nat\"\ninterface = \"lb0\"\n\
         maglev_table_size = 1009\n{extra}"
    );
    for (address, real_port) in reals {
        cfg.push_str(&format!("\n[[l4_service.real]]\naddress = \"{address}\"\n"));
        if let Some(p) = real_port {
            cfg.push_str(&format!("port = {p}\n"));
        }
    }
    cfg
}

/// Makes reals `1..=reals` of the one-arm lab route the client via the
/// LB: replies to the client go through the LB, and leave with full
/// checksums (native XDP on veth loses a partial checksum: docs/platform
/// notes, gotcha 3).
fn route_reals_via_lb(lab: &Lab, reals: usize) {
    for i in 1..=reals {
        let node = Node::Real(i);
        for argv in [
            &["ip", "route", "replace", "10.99.0.2/32", "via", "10.99.0.1"][..],
            &["ethtool", "-K", "eth0", "tx", "off"][..],
        ] {
            let out = lab.exec(node, argv).unwrap();
            assert!(
                out.status.success(),
                "{argv:?} in real {i}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn nat_serves_through_xdp_and_rewrites_the_replies() {
    let lab = l4_lab("nat", REALS);
    route_reals_via_lb(&lab, REALS);
    let config = nat_config(
        "web",
        "10.99.255.1",
        80,
        "",
        &[("10.99.0.11", Some(80)), ("10.99.0.12", None)],
    );
    let _d = start_daemon(&lab, &config);
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let (status, len, real) = curl(&lab, &[], "http://10.99.255.1/").unwrap();
        assert_eq!((status, len), (200, 5120));
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(by_real.len(), 2, "both configured reals serve: {by_real:?}");
    // The replies crossed the LB (unlike dr's: l4_dr.rs) and were
    // rewritten there.
    let reply_bytes = (REQUESTS * 5120) as u64;
    let rx_bytes = counter(&lab, "rx_bytes");
    assert!(
        rx_bytes > reply_bytes,
        "LB received {rx_bytes} bytes for {reply_bytes} bytes of replies"
    );
    let replies = counter(&lab, "tx_nat_reply");
    assert!(
        replies >= (REQUESTS * 4) as u64,
        "rewritten replies {replies}"
    );
    assert!(counter(&lab, "session_miss") >= REQUESTS as u64);
    let list = ctl_list(&lab);
    assert_eq!(list[0]["method"], "nat", "{list}");
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(text.contains("-> 10.99.0.11:80 "), "{text}");
    // wrk with keep-alive through the VIP.
    let report = wrk(&lab, "http://10.99.255.1/", 20, 3);
    assert!(wrk_requests(&report) > 1000, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    // A real added at run time with its port (ctl add-real --port).
    let out = sluice_in_lb(
        &lab,
        &["ctl", "add-real", "web", "10.99.0.13", "--port", "80"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(text.contains("-> 10.99.0.13:80 "), "{text}");
    for _ in 0..REQUESTS {
        let (status, _, real) = curl(&lab, &[], "http://10.99.255.1/").unwrap();
        assert_eq!(status, 200);
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(
        by_real.len(),
        REALS,
        "the added real serves too: {by_real:?}"
    );
    let m = metrics(&lab);
    assert!(
        metric(&m, "sluice_l4_tx_nat_reply_total").unwrap() >= replies,
        "{m}"
    );
}

/// Two-arm `nat`: the LB has an interface on each subnet (lb0 toward the
/// client, lb1 toward the reals), `sluice_xdp` on both, and `nat` packets
/// redirected between them. Built on the `tun` lab (reals on 10.98.0.0/24
/// behind a router): the test gives the LB a leg on the reals' bridge and
/// makes it the reals' default route, so the router carries nothing.
#[test]
fn nat_two_arm_serves_through_redirects_between_the_interfaces() {
    use sluice_l4::{AttachMode, Helper, HelperProgram};
    use sluice_lab::TUN_PATH_MTU;

    let lab = tun_lab("nat2", 2);
    let t = lab.topology();
    let sw_ns = t.switch_netns.clone();
    let mtu = TUN_PATH_MTU.to_string();
    let run = |node: Node, argv: &[&str]| {
        let out = lab.exec(node, argv).unwrap();
        assert!(
            out.status.success(),
            "{argv:?} in {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // lb1 in the LB namespace, its peer a port of the reals' bridge; both
    // ends made inside the lab's namespaces, gone with them.
    run(
        Node::Lb,
        &[
            "ip", "link", "add", "lb1", "type", "veth", "peer", "name", "p-lb1", "netns", &sw_ns,
        ],
    );
    run(
        Node::Switch,
        &[
            "ip", "link", "set", "p-lb1", "mtu", &mtu, "master", "br1", "up",
        ],
    );
    // The reals' subnet is now on-link for the LB, not via the router.
    run(Node::Lb, &["ip", "route", "del", "10.98.0.0/24"]);
    run(
        Node::Lb,
        &["ip", "addr", "add", "10.98.0.1/24", "dev", "lb1"],
    );
    run(Node::Lb, &["ip", "link", "set", "lb1", "mtu", &mtu, "up"]);
    for i in 1..=2 {
        run(
            Node::Real(i),
            &["ip", "route", "replace", "default", "via", "10.98.0.1"],
        );
        run(Node::Real(i), &["ethtool", "-K", "eth0", "tx", "off"]);
    }
    // Native redirects into lb1 need a program on its peer.
    let _pass = lab
        .in_netns(Node::Switch, || {
            HelperProgram::attach(Helper::Pass, "p-lb1", AttachMode::Native)
        })
        .unwrap()
        .unwrap();
    // A long-lived transfer: a server of its own on real 1, port 8080,
    // behind VIP:81.
    let long_listen = format!("10.98.0.11:{TRANSLATED_PORT}");
    let size = LONG_OK_BYTES.to_string();
    let mut long = lab
        .spawn(
            Node::Real(1),
            &[
                SLUICE,
                "realserver",
                "web",
                "--listen",
                &long_listen,
                "--name",
                "rs1-long",
                "--size",
                &size,
            ],
        )
        .unwrap();
    let mut config = nat_config(
        "web",
        "10.99.255.1",
        80,
        "real_interface = \"lb1\"\n",
        &[("10.98.0.11", Some(t.port)), ("10.98.0.12", None)],
    );
    config.push_str(
        &nat_config(
            "long",
            "10.99.255.1",
            81,
            "real_interface = \"lb1\"\n",
            &[("10.98.0.11", Some(TRANSLATED_PORT))],
        )
        .split_once("\n\n")
        .map(|(_, svc)| format!("\n{svc}"))
        .unwrap(),
    );
    let d = start_daemon(&lab, &config);
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let (status, len, real) = curl(&lab, &[], "http://10.99.255.1/")
            .unwrap_or_else(|e| panic!("{e}\n{}", read_all(&d.log)));
        assert_eq!((status, len), (200, 5120));
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(by_real.len(), 2, "both reals serve: {by_real:?}");
    assert!(counter(&lab, "tx_nat_reply") >= (REQUESTS * 4) as u64);
    assert!(counter(&lab, "tx_forwarded") >= (REQUESTS * 4) as u64);
    // wrk with keep-alive through the VIP, both arms.
    let report = wrk(&lab, "http://10.99.255.1/", 20, 3);
    assert!(wrk_requests(&report) > 1000, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
    // A long-lived transfer completes, every byte through both arms.
    assert_eq!(
        long_transfer(&lab, "http://10.99.255.1:81/"),
        LONG_OK_BYTES,
        "{}",
        read_all(&d.log)
    );
    let _ = long.kill();
    let _ = long.wait();
}

/// The real's own port for the port-translation test: VIP:80 -> RIP:8080.
const TRANSLATED_PORT: u16 = 8080;

/// `nat` translates the port (VIP:80 to a real listening only on 8080),
/// and a real that dies in the middle of a long transfer ends the
/// client's transfer promptly (a FIN or RST through the LB), never a hang.
#[test]
fn nat_translates_the_port_and_a_dying_real_ends_the_transfer() {
    let lab = l4_lab("natport", 1);
    route_reals_via_lb(&lab, 1);
    let listen = format!("10.99.0.11:{TRANSLATED_PORT}");
    // The server on 8080 answers directly before the VIP is tried.
    let web = spawn_web(
        &lab,
        Node::Real(1),
        &listen,
        "rs1-8080",
        LONG_BODY_BYTES,
        None,
    );
    let config = nat_config(
        "web",
        "10.99.255.1",
        80,
        "",
        &[("10.99.0.11", Some(TRANSLATED_PORT))],
    );
    let _d = start_daemon(&lab, &config);
    // Served by the server on 8080 (the lab's own server listens on 80).
    let mut last = Err(String::new());
    let served = (0..50)
        .find_map(|_| {
            last = curl(&lab, &[], "http://10.99.255.1/whoami");
            match &last {
                Ok((_, len, real)) if real == "rs1-8080" => Some(*len),
                _ => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                    None
                }
            }
        })
        .unwrap_or_else(|| panic!("VIP:80 never reached the real's port 8080: {last:?}"));
    assert!(served > 0);
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "list"]).stdout).into_owned();
    assert!(text.contains("-> 10.99.0.11:8080 "), "{text}");

    // A long transfer, then the server is killed while it is in flight.
    transfer_ends_when_the_real_dies(&lab, web, "http://10.99.255.1/", LONG_BODY_BYTES);
}

/// `nat` over IPv6 end to end, one-arm: the reals route the client's IPv6
/// address via the LB's, and every reply is rewritten back to the VIP.
#[test]
fn nat6_serves_through_xdp_and_rewrites_the_replies() {
    let lab = l4_lab("nat6", 2);
    route_reals_via_lb(&lab, 2);
    for i in 1..=2 {
        let argv = [
            "ip",
            "-6",
            "route",
            "replace",
            "fd99::2/128",
            "via",
            "fd99::1",
        ];
        let out = lab.exec(Node::Real(i), &argv).unwrap();
        assert!(
            out.status.success(),
            "{argv:?} in real {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let config = nat_config(
        "web6",
        "fd99:ffff::1",
        80,
        "",
        &[("fd99::11", Some(80)), ("fd99::12", Some(80))],
    );
    let _d = start_daemon(&lab, &config);
    let mut by_real: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..REQUESTS {
        let (status, len, real) = curl(&lab, &["-6"], "http://[fd99:ffff::1]/").unwrap();
        assert_eq!((status, len), (200, 5120));
        *by_real.entry(real).or_default() += 1;
    }
    assert_eq!(by_real.len(), 2, "both reals serve: {by_real:?}");
    let replies = counter(&lab, "tx_nat_reply");
    assert!(
        replies >= (REQUESTS * 4) as u64,
        "rewritten replies {replies}"
    );
    let report = wrk(&lab, "http://[fd99:ffff::1]/", 10, 2);
    assert!(wrk_requests(&report) > 500, "{report}");
    assert_eq!(wrk_errors(&report), 0, "{report}");
}

/// UDP port on the VIP and on the real where nothing listens.
const UDP_PORT: u16 = 5353;
/// The real's own port for it (translated: VIP:5353 -> RIP:5354).
const UDP_REAL_PORT: u16 = 5354;

/// UDP through `nat`, and an ICMP error back through it: a datagram to
/// VIP:5353 reaches the real at :5354, where nothing listens; the real's
/// ICMP port unreachable is translated on the LB (outer source VIP, the
/// quoted datagram's destination VIP:5353, checksums) so that the client's
/// kernel matches it to the connected socket, which reports the refusal.
/// Untranslated, the error would quote RIP:5354 and the socket would wait.
#[test]
fn nat_udp_and_the_reals_port_unreachable_reach_the_client() {
    let lab = l4_lab("natudp", 1);
    route_reals_via_lb(&lab, 1);
    let cfg = nat_config(
        "dns",
        "10.99.255.1",
        UDP_PORT,
        "protocol = \"udp\"\n",
        &[("10.99.0.11", Some(UDP_REAL_PORT))],
    );
    let _d = start_daemon(&lab, &cfg);
    let refused = lab
        .in_netns(Node::Client, || {
            let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.connect(("10.99.255.1", UDP_PORT)).unwrap();
            sock.set_read_timeout(Some(std::time::Duration::from_millis(500)))
                .unwrap();
            let mut buf = [0u8; 64];
            // A few tries: the first datagram may race the daemon's
            // neighbour resolution of the real.
            (0..10).find_map(|_| {
                sock.send(b"query").ok()?;
                match sock.recv(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Some(e),
                    _ => None,
                }
            })
        })
        .unwrap();
    assert!(
        refused.is_some(),
        "no port unreachable reached the client's socket"
    );
    assert!(counter(&lab, "tx_nat_icmp_reply") >= 1);
    // The datagram went to the real's own port: its kernel counted a
    // datagram to a closed port.
    assert!(nstat(&lab, Node::Real(1), "UdpNoPorts") >= 1);
}
