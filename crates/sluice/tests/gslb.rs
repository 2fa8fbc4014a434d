//! GSLB end to end: `sluice run` serves a `[gslb]` zone on the LB's
//! address, real clients (`dig`, `kdig`) ask from the client namespace;
//! the three reals are the sites, checked by TCP. Each policy, a site
//! going down and back (answers change within interval × fall + TTL),
//! ECS, TCP fallback, malformed queries, `ctl gslb`, metrics, and the
//! response rate limit. Needs root.
#![allow(missing_docs, clippy::unwrap_used, unreachable_pub)]

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use sluice_lab::{Lab, Node};

/// The DNS server's address (the LB).
const DNS: &str = "10.99.0.1";
/// Check interval × fall + TTL, in this config: 200 ms × 2 + 1 s, plus
/// a second of slack for a loaded machine.
const CONVERGE: Duration = Duration::from_millis(2400);

fn config(rate_limit: u32) -> String {
    let many = (1..=20)
        .map(|i| format!("\"fd00:99::{i:x}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"[global]
admin = "{ADMIN}"

[health_check.web]
type = "tcp"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
jitter = 0
initial_state = "up"

[gslb]
listen = ["{DNS}:53"]
zone = "gslb.test"
nameservers = ["ns1.gslb.test"]
ttl = "1s"
rate_limit = {rate_limit}

[[gslb.site]]
name = "eu"
addresses = ["10.99.0.11"]
health_check = "web"

[[gslb.site]]
name = "us"
addresses = ["10.99.0.12"]
health_check = "web"

[[gslb.site]]
name = "ap"
addresses = ["10.99.0.13"]
health_check = "web"

[[gslb.site]]
name = "v6"
addresses = [{many}]

[[gslb.name]]
name = "www"
policy = "failover"
sites = ["eu", "us"]

[[gslb.name]]
name = "lb"
policy = "weighted"
sites = ["eu", "us"]
weights = [3, 1]
max_addresses = 2

[[gslb.name]]
name = "geo"
policy = "topology"
sites = ["ap"]
[[gslb.name.topology]]
prefixes = ["10.1.0.0/16"]
sites = ["eu", "us"]

[[gslb.name]]
name = "big"
policy = "failover"
sites = ["v6"]
max_addresses = 20

[[gslb.name]]
name = "alias"
cname = "www.gslb.test"
"#
    )
}

fn run(lab: &Lab, argv: &[&str]) -> String {
    let out = lab.exec(Node::Client, argv).unwrap();
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `dig +short` answers (one per line).
fn short(lab: &Lab, args: &[&str]) -> Vec<String> {
    let at = format!("@{DNS}");
    let argv = [&["dig", "+short", "+tries=1", "+time=1", at.as_str()], args].concat();
    run(lab, &argv)
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.is_empty())
        .collect()
}

fn dig(lab: &Lab, args: &[&str]) -> String {
    let at = format!("@{DNS}");
    run(
        lab,
        &[&["dig", "+tries=1", "+time=1", at.as_str()], args].concat(),
    )
}

fn kdig(lab: &Lab, args: &[&str]) -> String {
    let at = format!("@{DNS}");
    run(
        lab,
        &[&["kdig", "+retry=0", "+time=1", at.as_str()], args].concat(),
    )
}

/// Drops (or accepts again) TCP port 80 on a real: its site's check fails.
fn block_web(lab: &Lab, real: usize, block: bool) {
    let cmds: &[&str] = if block {
        &[
            "add table inet slgslb",
            "add chain inet slgslb in { type filter hook input priority 0 ; }",
            "add rule inet slgslb in tcp dport 80 drop",
        ]
    } else {
        &["delete table inet slgslb"]
    };
    for cmd in cmds {
        let argv: Vec<&str> = std::iter::once("nft").chain(cmd.split(' ')).collect();
        assert!(lab.exec(Node::Real(real), &argv).unwrap().status.success());
    }
}

/// Asks until the answer is `want`; returns how long it took.
fn until(lab: &Lab, args: &[&str], want: &[&str], limit: Duration) -> Duration {
    let t = Instant::now();
    loop {
        let got = short(lab, args);
        if got == want {
            return t.elapsed();
        }
        assert!(
            t.elapsed() < limit,
            "{args:?}: still {got:?} after {limit:?}, expected {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn policies_follow_site_health_with_real_clients() {
    let lab = l4_lab("gslb", 3);
    let _d = start_daemon(&lab, &config(0));

    // Failover: the first site; SOA/NS/NXDOMAIN/NODATA/REFUSED as an
    // authoritative server answers them.
    assert_eq!(short(&lab, &["www.gslb.test", "A"]), ["10.99.0.11"]);
    let full = dig(&lab, &["www.gslb.test", "A"]);
    assert!(full.contains("flags: qr aa rd;"), "{full}");
    assert!(full.contains("status: NOERROR"), "{full}");
    let nx = dig(&lab, &["nope.gslb.test", "A"]);
    assert!(nx.contains("status: NXDOMAIN"), "{nx}");
    assert!(nx.contains("IN\tSOA\tns1.gslb.test."), "{nx}");
    let nodata = dig(&lab, &["www.gslb.test", "MX"]);
    assert!(
        nodata.contains("status: NOERROR") && nodata.contains("ANSWER: 0"),
        "{nodata}"
    );
    assert!(nodata.contains("IN\tSOA"), "{nodata}");
    assert_eq!(short(&lab, &["gslb.test", "NS"]), ["ns1.gslb.test."]);
    let refused = dig(&lab, &["example.com", "A"]);
    assert!(refused.contains("status: REFUSED"), "{refused}");
    assert!(
        !refused.contains(" ra"),
        "recursion is never available: {refused}"
    );
    assert_eq!(
        short(&lab, &["alias.gslb.test", "A"]),
        ["www.gslb.test.", "10.99.0.11"]
    );

    // Weighted 3:1, two addresses per answer: eu first about 3 times in 4.
    let names: Vec<&str> = std::iter::repeat_n("lb.gslb.test", 200).collect();
    let at = format!("@{DNS}");
    let mut argv = vec!["dig", "+short", "+tries=1", "+time=1", at.as_str()];
    argv.extend(names);
    let out = run(&lab, &argv);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 400, "two addresses per answer: {out}");
    let eu_first = lines.chunks(2).filter(|c| c[0] == "10.99.0.11").count();
    assert!(
        (125..=175).contains(&eu_first),
        "eu first in {eu_first} of 200"
    );

    // Topology from EDNS Client Subnet, scope echoed; fallback outside.
    let k = kdig(&lab, &["+subnet=10.1.2.0/24", "geo.gslb.test", "A"]);
    assert!(k.contains("CLIENT-SUBNET: 10.1.2.0/24/16"), "{k}");
    assert!(k.contains("10.99.0.11"), "{k}");
    let k = kdig(&lab, &["+subnet=192.168.0.0/24", "geo.gslb.test", "A"]);
    assert!(
        k.contains("10.99.0.13") && k.contains("CLIENT-SUBNET: 192.168.0.0/24/24"),
        "{k}"
    );
    // Without ECS the resolver's own address counts (the client, 10.99.0.2).
    assert_eq!(short(&lab, &["geo.gslb.test", "A"]), ["10.99.0.13"]);

    // eu goes down: failover to us, within interval × fall + TTL...
    block_web(&lab, 1, true);
    let took = until(&lab, &["www.gslb.test", "A"], &["10.99.0.12"], CONVERGE);
    eprintln!("eu down: answers moved in {took:?}");
    // ...the topology rule fails over within its sites, the weighted
    // name answers us alone, and ctl shows it.
    let k = kdig(&lab, &["+subnet=10.1.2.0/24", "geo.gslb.test", "A"]);
    assert!(k.contains("10.99.0.12"), "{k}");
    assert_eq!(short(&lab, &["lb.gslb.test", "A"]), ["10.99.0.12"]);
    let ctl = sluice_in_lb(&lab, &["ctl", "gslb", "--client", "10.1.9.9"]);
    let text = String::from_utf8_lossy(&ctl.stdout);
    assert!(text.contains("10.99.0.11 DOWN"), "{text}");
    assert!(text.contains("geo.gslb.test."), "{text}");
    let v: serde_json::Value = serde_json::from_slice(
        &sluice_in_lb(&lab, &["ctl", "gslb", "--client", "10.1.9.9", "--json"]).stdout,
    )
    .unwrap();
    let geo = v["names"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "geo.gslb.test.")
        .unwrap();
    assert_eq!(geo["a"][0]["site"], "us", "{v}");
    // Back up: eu answers again.
    block_web(&lab, 1, false);
    let took = until(&lab, &["www.gslb.test", "A"], &["10.99.0.11"], CONVERGE);
    eprintln!("eu up: answers moved back in {took:?}");

    // TCP fallback: 20 AAAA records do not fit 512 bytes. Without EDNS
    // and with +ignore the truncated answer shows; dig alone retries
    // over TCP and gets all 20.
    let tc = dig(&lab, &["+noedns", "+ignore", "big.gslb.test", "AAAA"]);
    assert!(tc.contains(" tc"), "{tc}");
    assert_eq!(short(&lab, &["+noedns", "big.gslb.test", "AAAA"]).len(), 20);
    assert_eq!(short(&lab, &["+tcp", "big.gslb.test", "AAAA"]).len(), 20);
    let k = kdig(&lab, &["+tcp", "www.gslb.test", "A"]);
    assert!(k.contains("10.99.0.11"), "{k}");

    // Malformed datagrams: FORMERR (the query's id) or nothing, and the
    // server keeps answering.
    let replies = lab
        .in_netns(Node::Client, || {
            let s = UdpSocket::bind("0.0.0.0:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut query = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
            query.extend_from_slice(b"\x03www\x04gslb"); // cut mid-name
            let mut huge_count = vec![0x12, 0x34, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0];
            huge_count.extend_from_slice(&[0u8; 20]);
            let mut out = Vec::new();
            for p in [vec![], vec![0u8; 5], query, huge_count, vec![0xffu8; 300]] {
                s.send_to(&p, (DNS, 53)).unwrap();
                let mut buf = [0u8; 1500];
                out.push(s.recv(&mut buf).ok().map(|n| buf[..n].to_vec()));
            }
            out
        })
        .unwrap();
    assert_eq!(replies[0], None, "an empty datagram is dropped");
    assert_eq!(
        replies[1], None,
        "a datagram shorter than a header is dropped"
    );
    let formerr = replies[2].as_ref().expect("FORMERR for a cut name");
    assert_eq!((&formerr[..2], formerr[3] & 0x0f), (&[0xab, 0xcd][..], 1));
    let formerr = replies[3].as_ref().expect("FORMERR for lying counts");
    assert_eq!(formerr[3] & 0x0f, 1);
    assert_eq!(replies[4], None, "QR set: not a query, dropped");
    assert_eq!(short(&lab, &["www.gslb.test", "A"]), ["10.99.0.11"]);

    // The counters.
    let m = metrics(&lab);
    assert!(
        metric(&m, r#"sluice_gslb_queries_total{transport="udp"}"#).unwrap() > 200,
        "{m}"
    );
    assert!(
        metric(&m, r#"sluice_gslb_queries_total{transport="tcp"}"#).unwrap() >= 3,
        "{m}"
    );
    assert!(
        metric(&m, r#"sluice_gslb_responses_total{rcode="formerr"}"#).unwrap() >= 2,
        "{m}"
    );
    assert!(
        metric(&m, r#"sluice_gslb_responses_total{rcode="nxdomain"}"#).unwrap() >= 1,
        "{m}"
    );
    assert!(
        metric(&m, r#"sluice_gslb_site_answers_total{site="eu"}"#).unwrap() > 100,
        "{m}"
    );
    assert!(
        metric(&m, r#"sluice_gslb_site_answers_total{site="us"}"#).unwrap() > 100,
        "{m}"
    );
    assert!(
        metric(&m, "sluice_gslb_truncated_total").unwrap() >= 2,
        "{m}"
    );
}

#[test]
fn the_rate_limit_drops_and_slips_a_flood() {
    let lab = l4_lab("gslbrrl", 1);
    let _d = start_daemon(&lab, &config(20));
    // 60 queries as fast as dig sends them: the first 20 (the burst) are
    // answered, then over the limit one is dropped (dig waits a second,
    // the bucket refills), the next 20 pass, then one slips (TC: dig
    // retries over TCP, which is not limited), and so on.
    let names: Vec<&str> = std::iter::repeat_n("www.gslb.test", 60).collect();
    let at = format!("@{DNS}");
    let mut argv = vec!["dig", "+short", "+tries=1", "+time=1", at.as_str()];
    argv.extend(names);
    let out = lab.exec(Node::Client, &argv).unwrap();
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| *l == "10.99.0.11")
        .count();
    assert!(answers < 60, "every query answered despite the limit");
    let m = metrics(&lab);
    let dropped = metric(&m, r#"sluice_gslb_rate_limited_total{action="dropped"}"#).unwrap();
    let slipped = metric(&m, r#"sluice_gslb_rate_limited_total{action="slipped"}"#).unwrap();
    assert!(dropped > 0 && slipped > 0, "{m}");
    assert!(
        metric(&m, r#"sluice_gslb_queries_total{transport="tcp"}"#).unwrap() > 0,
        "slipped clients retry over TCP: {m}"
    );
}

/// A site that is this node: its health is a local service's (up while
/// one of its reals / servers is serving), so when the service's only real
/// fails its check the name fails over to the other site, and back.
fn local_site_follows(tag: &str, service: &str, source: &str, site_addr: &str) {
    let lab = l4_lab(tag, 1);
    let cfg = format!(
        r#"[global]
admin = "{ADMIN}"

[health_check.web]
type = "tcp"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 2
jitter = 0
initial_state = "up"

{service}
[gslb]
listen = ["{DNS}:53"]
zone = "gslb.test"
nameservers = ["ns1.gslb.test"]
ttl = "1s"

[[gslb.site]]
name = "here"
addresses = ["{site_addr}"]
{source}

[[gslb.site]]
name = "elsewhere"
addresses = ["192.0.2.50"]

[[gslb.name]]
name = "www"
policy = "failover"
sites = ["here", "elsewhere"]
"#
    );
    let _d = start_daemon(&lab, &cfg);
    assert_eq!(short(&lab, &["www.gslb.test", "A"]), [site_addr]);
    block_web(&lab, 1, true);
    // interval × fall, plus the local poll (500 ms), plus slack.
    let took = until(&lab, &["www.gslb.test", "A"], &["192.0.2.50"], CONVERGE);
    eprintln!("{source}: down, answers moved in {took:?}");
    let text = String::from_utf8_lossy(&sluice_in_lb(&lab, &["ctl", "gslb"]).stdout).into_owned();
    let from = source.replace(" = ", " ").replace('"', "");
    assert!(
        text.contains(&from) && text.contains(&format!("{site_addr} DOWN")),
        "{text}"
    );
    block_web(&lab, 1, false);
    until(&lab, &["www.gslb.test", "A"], &[site_addr], CONVERGE);
}

#[test]
fn a_local_backend_is_the_health_of_its_site() {
    let backend = format!(
        r#"[[frontend]]
name = "www"
bind = ["{DNS}:8080"]
mode = "tcp"
default_backend = "web"

[[backend]]
name = "web"
mode = "tcp"
health_check = "web"
[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
"#
    );
    local_site_follows("gslbbe", &backend, "backend = \"web\"", DNS);
}

#[test]
fn a_local_l4_service_is_the_health_of_its_site() {
    let l4 = r#"[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
interface = "lb0"
health_check = "web"
[[l4_service.real]]
address = "10.99.0.11"
"#;
    local_site_follows("gslbl4", l4, "l4_service = \"web\"", "10.99.255.1");
}
