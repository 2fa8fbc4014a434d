//! Packet rate of the L4 data plane on a veth pair, every case in one run
//! with the same generator:
//!
//! - (a) a bare MAC-swap `XDP_TX` reflector (the floor of any XDP forwarder),
//! - (b) `sluice_xdp` `dr` with session hits (one flow),
//! - (c) `sluice_xdp` `dr` with new flows (every frame a new client address:
//!   session miss, Maglev lookup, session insert),
//! - (d) `sluice_xdp` `tun` with session hits (IPIP encapsulation),
//! - (e) `sluice_xdp` `nat` with session hits (destination rewritten to the
//!   real, checksums updated), generator-driven only: a NAT'd frame is no
//!   longer for the VIP, so it cannot bounce back through the program,
//! - (f) the kernel's NAT for the same frames, its peer: an nftables DNAT
//!   rule in the LB namespace, forwarding out the same veth to the
//!   generator (static neighbours for the reals), no XDP on the LB end,
//! - (g) `sluice_xdp` `fullnat` with session hits (source rewritten to a
//!   local address and port, destination to the real, checksums updated),
//!   generator-driven only, like (e),
//! - (h) the kernel's full NAT, the peer of (g): (f)'s DNAT plus SNAT to
//!   the same local address, for (g)'s frames (a VIP of their own, so a
//!   new conntrack entry: NAT is decided on a connection's first packet).
//!   The rules of (f) and (h) are `sluice lab bmt`'s
//!   (`sluice_bmt::nft_rules`).
//! - New connections, the LB's cost per connection set up: every frame a
//!   SYN from a new client address, generator-driven, `NEW_FLOW_FRAMES`
//!   per run against the reflector at the same count (a′): (i) `nat` (a
//!   session and a reverse entry), (j) `fullnat` (a session, a local port
//!   claimed from two local addresses, a reverse entry), (k) the kernel's
//!   DNAT and (l) its DNAT+SNAT (a conntrack entry, NAT set up, for (l) a
//!   source port searched), the rules of (f) and (h).
//!
//! Ping-pong method: `INFLIGHT` frames are injected once (trafgen, a short
//! paced burst, so no ring ever fills); from then on they bounce between the
//! program under test on the LB veth and `sluice_bounce` on the generator
//! veth (MAC swap; strips IPIP for `tun`; `sluice_bounce_vary` adds one to
//! the source address for (c)), both in native mode with `XDP_TX`. The
//! bouncer's counter over `WINDOW` is the forwarding rate. The generator
//! side is identical in every case, so the ratios to (a) compare the
//! programs. Median of `RUNS` windows.
//!
//! Generator-driven method (the issue's "same veth pair, same packet
//! generator"): trafgen on one CPU sends a fixed count of frames, the
//! program under test sends them back to `sluice_sink` (XDP_DROP, counting)
//! on the generator's veth; the rate of frames back over trafgen's run time
//! is the result, and every frame sent must come back. Without threaded
//! NAPI the whole round trip runs in trafgen's softirq context, so this
//! measures what the program costs a CPU that also generates (or, on a
//! real host, receives) the traffic. (a) and (b) run in `GEN_PAIRS`
//! back-to-back pairs; the median of the pairs' ratios is reported. Needs
//! root; about 2 minutes.
//! `cargo bench -p sluice --bench l4_pps`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{io::Write as _, time::Instant};

use sluice_bmt::{KernelNat, NFT_TABLE, nft_rules};
use sluice_l4::{AttachMode, Dataplane, DataplaneParams, Helper, HelperProgram};
use sluice_lab::{LabSpec, Netns, create_veth};
use sluice_testkit::median;
use sluice_testkit::services::{RING, SESSION_CAPACITY, a4, service, three_reals};
use sluice_wire::fullnat::LocalAddr;
use sluice_wire::maps::{family, method};

/// Frames kept bouncing (enough to keep both veth rings busy).
const INFLIGHT: u32 = 200;
/// Measurement window.
const WINDOW: std::time::Duration = std::time::Duration::from_secs(2);
/// Windows per case.
const RUNS: usize = 3;
/// Generator-driven method: frames trafgen sends per run (bounded count).
const GEN_FRAMES: u64 = 1_500_000;
/// Generator-driven method: the rate asked of trafgen, unit: packets per
/// second. It makes trafgen send with one sendto(2) per frame instead of
/// its TX ring, whose flush aborts the run when the veth ring is full
/// (platform.md gotcha 9); one CPU then reaches ~0.35 Mpps here, so the
/// asked rate is never the limit.
const GEN_RATE_PPS: u64 = 1_000_000;
/// New-connection cases: frames per run. Every frame makes a conntrack
/// entry for (k) and (l), which stay (unreplied SYNs live 120 s) and
/// count against the LB namespace's `nf_conntrack_max` (262,144 here,
/// not settable inside a namespace): 2 cases × `RUNS` × this must stay
/// under it.
const NEW_FLOW_FRAMES: u64 = 40_000;

/// Generator-driven method: (a)/(b) pairs run back to back (the ratio of
/// each pair cancels the machine's drift; the median ratio is reported).
const GEN_PAIRS: usize = 5;

fn trafgen_cfg(dst_ip: [u8; 4], random_src: bool, syn: bool) -> String {
    let src = if random_src {
        "drnd(), drnd(), drnd(), drnd()".to_owned()
    } else {
        "10, 99, 0, 2".to_owned()
    };
    let flags = if syn { "0x02" } else { "0x10" };
    format!(
        "{{\n  0x02,0x00,0x00,0x00,0x00,0x01,  0x02,0x00,0x00,0x00,0x00,0x02,  0x08,0x00,\n  \
         0x45,0x00, const16(46), 0x12,0x34, 0x40,0x00, 64, 6, csumip(14, 33),\n  \
         {src},\n  {}, {}, {}, {},\n  \
         const16(40000), const16(80), const32(1), const32(0), 0x50, {flags}, const16(64240), const16(0), const16(0),\n  \
         0,0,0,0,0,0\n}}\n",
        dst_ip[0], dst_ip[1], dst_ip[2], dst_ip[3]
    )
}

/// Sends `count` frames of `cfg` from the generator's veth with trafgen on
/// one CPU (`pace`: its pacing options); panics if trafgen fails.
fn trafgen(txns: &Netns, cfg: &std::path::Path, count: u64, pace: &[&str]) {
    let count = count.to_string();
    let mut argv = vec![
        "trafgen",
        "-c",
        cfg.to_str().unwrap(),
        "-o",
        "g0",
        "-n",
        &count,
    ];
    argv.extend_from_slice(pace);
    argv.extend_from_slice(&["-P", "1"]);
    let out = txns.exec(&argv).unwrap();
    assert!(
        out.status.success(),
        "trafgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Injects the frames of `cfg` and measures the bounce rate.
fn run(txns: &Netns, bouncer: &HelperProgram, cfg: &std::path::Path) -> f64 {
    trafgen(txns, cfg, u64::from(INFLIGHT), &["-t", "200us"]);
    // Let the loop settle, then take the median of the windows.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut rates = Vec::new();
    for _ in 0..RUNS {
        let before = bouncer.packets().unwrap();
        let t = Instant::now();
        std::thread::sleep(WINDOW);
        let n = bouncer.packets().unwrap() - before;
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    median(rates)
}

/// Generator-driven method: trafgen (one CPU, see [`GEN_RATE_PPS`]) sends
/// `GEN_FRAMES`; the program under test sends them back to `sink`
/// (XDP_DROP, counting). Without threaded NAPI both veth ends' XDP runs in
/// trafgen's softirq context, so the generator's CPU carries the whole
/// round trip, as a host's CPU carries its NIC's receive path.
/// Returns (frames back per second of trafgen's run, fraction of the sent
/// frames that came back).
fn run_gen(txns: &Netns, sink: &HelperProgram, cfg: &std::path::Path) -> (f64, f64) {
    run_gen_n(txns, sink, cfg, GEN_FRAMES)
}

/// [`run_gen`] with `frames` frames.
fn run_gen_n(txns: &Netns, sink: &HelperProgram, cfg: &std::path::Path, frames: u64) -> (f64, f64) {
    let before = sink.packets().unwrap();
    let t = Instant::now();
    let rate = format!("{GEN_RATE_PPS}pps");
    trafgen(txns, cfg, frames, &["-b", &rate, "-C"]);
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let back = sink.packets().unwrap() - before;
    (back as f64 / secs, back as f64 / frames as f64)
}

/// The VIP of the `nat` cases (e) and (f).
const NAT_VIP: [u8; 4] = [10, 99, 255, 3];

/// The VIP of the `fullnat` cases (g) and (h): its own, so that (h)'s
/// flow is a new conntrack entry (NAT is decided on a connection's first
/// packet, and (f) left an entry without SNAT for `NAT_VIP`'s flow).
const FULLNAT_VIP: [u8; 4] = [10, 99, 255, 4];

/// The LB's local address of the `fullnat` cases (host .200 of its
/// subnet, as in `sluice lab bmt`).
const LOCAL_ADDR: [u8; 4] = [10, 99, 0, 200];

/// Local ports (g) hands out, lowest and highest (one flow takes one).
const LOCAL_PORTS: (u16, u16) = (20000, 29999);

/// The VIP of (j), `fullnat`'s new connections: a service of its own
/// with two local addresses (`NEW_LOCAL_ADDRS`) and every port above the
/// well-known ones, so that `RUNS` × `NEW_FLOW_FRAMES` connections (each
/// port quarantined for 60 s) fit in one CPU's share.
const FULLNAT_NEW_VIP: [u8; 4] = [10, 99, 255, 5];
/// (j)'s local addresses.
const NEW_LOCAL_ADDRS: [[u8; 4]; 2] = [[10, 99, 0, 201], [10, 99, 0, 202]];
/// (j)'s local ports.
const NEW_LOCAL_PORTS: (u16, u16) = (1024, 65535);

/// The reals of `three_reals`, as the kernel's NAT sends to them.
const KERNEL_REALS: [std::net::Ipv4Addr; 3] = [
    std::net::Ipv4Addr::new(10, 99, 0, 11),
    std::net::Ipv4Addr::new(10, 99, 0, 12),
    std::net::Ipv4Addr::new(10, 99, 0, 13),
];

/// Runs each of `steps` (space-separated argv) in `ns`; panics on a failure.
fn exec_steps(ns: &Netns, steps: &[String]) {
    for step in steps {
        let argv: Vec<&str> = step.split_whitespace().collect();
        let out = ns.exec(&argv).unwrap();
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The kernel cases' LB: an address on `l0` and the local address,
/// forwarding on (and no ICMP redirects: the frames leave through the
/// interface they came in on), conntrack's checksum check off (XDP's path
/// does not check it either), the reals of `three_reals` as permanent
/// neighbours at the generator's MAC.
fn kernel_lb(lb: &Netns) {
    let [a, b, c, d] = LOCAL_ADDR;
    let mut steps: Vec<String> = vec![
        "ip addr add 10.99.0.1/24 dev l0".into(),
        format!("ip addr add {a}.{b}.{c}.{d}/32 dev l0"),
        "sysctl -qw net.ipv4.ip_forward=1".into(),
        "sysctl -qw net.ipv4.conf.all.send_redirects=0".into(),
        "sysctl -qw net.ipv4.conf.l0.send_redirects=0".into(),
        // trafgen's frames carry no TCP checksum: conntrack would call
        // them invalid and leave them un-NATed (XDP does not check it).
        "sysctl -qw net.netfilter.nf_conntrack_checksum=0".into(),
    ];
    for real in KERNEL_REALS {
        steps.push(format!(
            "ip neigh replace {real} lladdr 02:00:00:00:00:02 dev l0 nud permanent"
        ));
    }
    exec_steps(lb, &steps);
}

/// Loads `sluice lab bmt`'s nftables NAT for `vip`:80 over the reals into
/// `lb`, replacing the table of a previous case.
fn kernel_nat(lb: &Netns, dir: &std::path::Path, vip: [u8; 4], nat: KernelNat) {
    let rules = nft_rules(vip.into(), 80, &KERNEL_REALS, nat);
    let path = dir.join("pps.nft");
    std::fs::write(&path, rules).unwrap();
    // The previous case's table, if any, goes first (its absence is fine).
    let _ = lb.exec(&["nft", "delete", "table", "ip", NFT_TABLE]);
    exec_steps(lb, &[format!("nft -f {}", path.display())]);
}

fn main() {
    let label = LabSpec::unique_label("pps");
    let txns =
        Netns::create(&format!("sl-{label}-txns")).unwrap_or_else(|e| panic!("needs root: {e}"));
    let lb = Netns::create(&format!("sl-{label}-lb")).unwrap();
    create_veth(&txns, "g0", &lb, "l0").unwrap();
    lb.ip(&["link", "set", "l0", "address", "02:00:00:00:00:01"])
        .unwrap();
    txns.ip(&["link", "set", "g0", "address", "02:00:00:00:00:02"])
        .unwrap();
    // A fresh bouncer per case: detaching it ends the previous case's loop
    // (frames then fall into the generator's kernel stack and die).
    let bouncer = |h: Helper| {
        txns.in_netns(move || HelperProgram::attach(h, "g0", AttachMode::Native))
            .unwrap()
            .unwrap()
    };
    let settle = || std::thread::sleep(std::time::Duration::from_millis(200));
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::File::create(&p)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        p
    };
    let hit_dr = write("hit-dr.cfg", trafgen_cfg([10, 99, 255, 1], false, false));
    let new_dr = write("new-dr.cfg", trafgen_cfg([10, 99, 255, 1], true, true));
    let hit_tun = write("hit-tun.cfg", trafgen_cfg([10, 99, 255, 2], false, false));
    let hit_nat = write("hit-nat.cfg", trafgen_cfg(NAT_VIP, false, false));
    let hit_fullnat = write("hit-fullnat.cfg", trafgen_cfg(FULLNAT_VIP, false, false));
    let new_nat = write("new-nat.cfg", trafgen_cfg(NAT_VIP, true, true));
    let new_fullnat = write("new-fullnat.cfg", trafgen_cfg(FULLNAT_NEW_VIP, true, true));
    let new_fullnat_kernel = write("new-fullnat-k.cfg", trafgen_cfg(FULLNAT_VIP, true, true));

    let mut results: Vec<(&str, f64)> = Vec::new();
    let mut gen_results: Vec<(&str, (f64, f64))> = Vec::new();
    let mut new_results: Vec<(&str, (f64, f64))> = Vec::new();
    let new_flows = |sink: &HelperProgram, cfg: &std::path::Path| {
        let runs: Vec<(f64, f64)> = (0..RUNS)
            .map(|_| run_gen_n(&txns, sink, cfg, NEW_FLOW_FRAMES))
            .collect();
        (
            median(runs.iter().map(|r| r.0).collect()),
            median(runs.iter().map(|r| r.1).collect()),
        )
    };
    let generated = |sink: &HelperProgram, cfg: &std::path::Path| {
        let runs: Vec<(f64, f64)> = (0..RUNS).map(|_| run_gen(&txns, sink, cfg)).collect();
        let pps = median(runs.iter().map(|r| r.0).collect());
        let back = median(runs.iter().map(|r| r.1).collect());
        (pps, back)
    };
    {
        let _refl = lb
            .in_netns(|| HelperProgram::attach(Helper::Reflect, "l0", AttachMode::Native))
            .unwrap()
            .unwrap();
        let b = bouncer(Helper::Bounce);
        results.push(("(a) bare XDP_TX reflector", run(&txns, &b, &hit_dr)));
        drop(b);
        settle();
        let sink = bouncer(Helper::Sink);
        new_results.push((
            "(a') reflector, new-flow frames",
            new_flows(&sink, &new_nat),
        ));
    }
    settle();
    let mut dp = lb
        .in_netns(|| {
            let mut dp = Dataplane::load(
                DataplaneParams {
                    ring_size: RING,
                    session_capacity: SESSION_CAPACITY,
                    ..Default::default()
                },
                [2, 0, 0, 0, 0, 1],
            )?;
            dp.attach("l0", AttachMode::Native)?;
            Ok::<_, sluice_l4::Error>(dp)
        })
        .unwrap()
        .unwrap();
    // The "reals" are the generator itself, so every forwarded frame comes
    // back to the bouncer.
    for (slot, real) in three_reals(|_| [2, 0, 0, 0, 0, 2]) {
        dp.set_real(slot, real).unwrap();
    }
    // (g)'s local address, named by its service before the service exists.
    dp.set_local_addr(
        0,
        LocalAddr {
            addr: a4(LOCAL_ADDR),
            family: family::V4,
            port_min: LOCAL_PORTS.0,
            port_max: LOCAL_PORTS.1,
            ..Default::default()
        },
    )
    .unwrap();
    dp.set_vip_locals(3, &[0]).unwrap();
    for (i, a) in (1u32..).zip(NEW_LOCAL_ADDRS) {
        dp.set_local_addr(
            i,
            LocalAddr {
                addr: a4(a),
                family: family::V4,
                port_min: NEW_LOCAL_PORTS.0,
                port_max: NEW_LOCAL_PORTS.1,
                ..Default::default()
            },
        )
        .unwrap();
    }
    dp.set_vip_locals(4, &[1, 2]).unwrap();
    for s in [
        service(0, [10, 99, 255, 1], method::DR),
        service(1, [10, 99, 255, 2], method::TUN),
        service(2, NAT_VIP, method::NAT),
        // TOA off (the testkit's flags are 0): one flow's first ACK
        // would carry it, session hits never do.
        service(3, FULLNAT_VIP, method::FULLNAT),
        service(4, FULLNAT_NEW_VIP, method::FULLNAT),
    ] {
        dp.set_ring(s.index, &s.ring).unwrap();
        dp.set_service(s.key, s.meta).unwrap();
    }
    for (name, helper, cfg) in [
        ("(b) dr, session hits", Helper::Bounce, &hit_dr),
        ("(c) dr, new flows (Maglev)", Helper::BounceVary, &new_dr),
        ("(d) tun, session hits", Helper::Bounce, &hit_tun),
    ] {
        let b = bouncer(helper);
        results.push((name, run(&txns, &b, cfg)));
        drop(b);
        settle();
        // (b) is measured in pairs with (a) below.
        if !name.starts_with("(b)") {
            let sink = bouncer(Helper::Sink);
            gen_results.push((name, generated(&sink, cfg)));
            drop(sink);
            settle();
        }
    }
    for (name, cfg) in [
        ("(e) nat, session hits", &hit_nat),
        ("(g) fullnat, session hits", &hit_fullnat),
    ] {
        let sink = bouncer(Helper::Sink);
        gen_results.push((name, generated(&sink, cfg)));
        drop(sink);
        settle();
    }
    for (name, cfg) in [
        ("(i) nat, new connections", &new_nat),
        ("(j) fullnat, new connections", &new_fullnat),
    ] {
        let sink = bouncer(Helper::Sink);
        new_results.push((name, new_flows(&sink, cfg)));
        drop(sink);
        settle();
    }
    let no_port = dp
        .counter(sluice_wire::maps::Counter::DropFullnatNoPort)
        .unwrap();
    // Generator-driven: (a) and (b) alternate on the LB veth, pair by pair.
    let sink = bouncer(Helper::Sink);
    let mut pairs = Vec::new();
    for _ in 0..GEN_PAIRS {
        lb.in_netns(|| dp.detach()).unwrap().unwrap();
        let refl = lb
            .in_netns(|| HelperProgram::attach(Helper::Reflect, "l0", AttachMode::Native))
            .unwrap()
            .unwrap();
        let a = run_gen(&txns, &sink, &hit_dr);
        drop(refl);
        lb.in_netns(|| dp.attach("l0", AttachMode::Native))
            .unwrap()
            .unwrap();
        let b = run_gen(&txns, &sink, &hit_dr);
        pairs.push((a, b));
    }
    drop(sink);
    let misses = dp.counter(sluice_wire::maps::Counter::SessionMiss).unwrap();
    let hits = dp.counter(sluice_wire::maps::Counter::SessionHit).unwrap();
    drop(dp);
    settle();
    // (f) The kernel's NAT on the same veth, for the same frames; (h) its
    // full NAT for the frames of the fullnat cases.
    kernel_lb(&lb);
    for (name, vip, nat, cfg) in [
        (
            "(f) nftables DNAT (kernel)",
            NAT_VIP,
            KernelNat::Dnat,
            &hit_nat,
        ),
        (
            "(h) nftables DNAT+SNAT (kernel)",
            FULLNAT_VIP,
            KernelNat::FullNat(LOCAL_ADDR.into()),
            &hit_fullnat,
        ),
    ] {
        kernel_nat(&lb, dir.path(), vip, nat);
        let sink = bouncer(Helper::Sink);
        gen_results.push((name, generated(&sink, cfg)));
        drop(sink);
        settle();
    }
    for (name, vip, nat, cfg) in [
        (
            "(k) nftables DNAT, new connections",
            NAT_VIP,
            KernelNat::Dnat,
            &new_nat,
        ),
        (
            "(l) nftables DNAT+SNAT, new connections",
            FULLNAT_VIP,
            KernelNat::FullNat(LOCAL_ADDR.into()),
            &new_fullnat_kernel,
        ),
    ] {
        kernel_nat(&lb, dir.path(), vip, nat);
        let sink = bouncer(Helper::Sink);
        new_results.push((name, new_flows(&sink, cfg)));
        drop(sink);
        settle();
    }

    let base = results[0].1;
    println!(
        "veth pair, native XDP, ping-pong with {INFLIGHT} frames in flight, median of {RUNS} x {WINDOW:?} windows"
    );
    println!("(sluice_xdp saw {hits} session hits and {misses} misses)");
    for (name, pps) in &results {
        println!(
            "{name:<30} {:>6.3} Mpps  {:>5.2} x (a)",
            pps / 1e6,
            pps / base
        );
    }
    println!(
        "generator-driven: trafgen (1 CPU) sends {GEN_FRAMES} frames per run, rate of frames back at the sink"
    );
    for (i, (a, b)) in pairs.iter().enumerate() {
        println!(
            "  pair {}: (a) {:.3} Mpps ({:.2} % back), (b) {:.3} Mpps ({:.2} % back), (b)/(a) {:.3}",
            i + 1,
            a.0 / 1e6,
            a.1 * 100.0,
            b.0 / 1e6,
            b.1 * 100.0,
            b.0 / a.0
        );
    }
    let ratio = median(pairs.iter().map(|(a, b)| b.0 / a.0).collect());
    let gbase = median(pairs.iter().map(|(a, _)| a.0).collect());
    println!(
        "{:<30} {:>6.3} Mpps (median of {GEN_PAIRS})",
        "(a) bare XDP_TX reflector",
        gbase / 1e6
    );
    println!(
        "{:<30} {:>6.3} Mpps (median of {GEN_PAIRS}); (b)/(a) median of paired ratios {ratio:.3}",
        "(b) dr, session hits",
        median(pairs.iter().map(|(_, b)| b.0).collect()) / 1e6
    );
    for (name, (pps, back)) in &gen_results {
        println!(
            "{name:<30} {:>6.3} Mpps (median of {RUNS}) {:>5.2} x (a)  {:>6.2} % of sent frames back",
            pps / 1e6,
            pps / gbase,
            back * 100.0
        );
    }
    println!(
        "new connections: every frame a SYN from a new client address, {NEW_FLOW_FRAMES} per run; \
         µs per connection above the reflector (a') = 1/rate - 1/rate(a')"
    );
    let nbase = new_results[0].1.0;
    for (name, (pps, back)) in &new_results {
        println!(
            "{name:<40} {:>6.3} Mpps (median of {RUNS})  {:>5.2} µs/conn above (a')  {:>6.2} % back",
            pps / 1e6,
            1e6 / pps - 1e6 / nbase,
            back * 100.0
        );
    }
    println!("(fullnat found no local port {no_port} times)");
}
