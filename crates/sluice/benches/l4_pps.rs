//! Packet rate of the L4 data plane on a veth pair, all cases in one run
//! with the same generator (trafgen, one CPU, fixed counts):
//!
//! - (a) a bare MAC-swap `XDP_TX` reflector (the floor of any XDP forwarder),
//! - (b) `sluice_xdp` `dr` with session hits (one flow),
//! - (c) `sluice_xdp` `dr` with new flows (random client addresses: session
//!   miss, Maglev lookup, session insert),
//! - (d) `sluice_xdp` `tun` with session hits (IPIP encapsulation).
//!
//! Frames go generator veth → LB veth (program under test, native mode) →
//! XDP_TX back → generator veth, where `sluice_sink` counts and drops them.
//! pps = frames counted back / wall time of the trafgen run. Median of
//! `RUNS`. Needs root. `cargo bench -p sluice --bench l4_pps`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::{io::Write as _, time::Instant};

use sluice_l4::{AttachMode, Dataplane, DataplaneParams, Helper, HelperProgram};
use sluice_lab::{LabSpec, Netns, create_veth};
use sluice_wire::maps::{
    Addr, RealDef, VipKey, VipMeta, addr_v4, family, method, real_flags, sched,
};

/// Frames per run.
const FRAMES: u64 = 2_000_000;
/// Runs per case.
const RUNS: usize = 3;
/// Maglev ring size.
const RING: u32 = 65537;

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

fn a4(a: [u8; 4]) -> Addr {
    addr_v4(a)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// One timed trafgen run; returns pps counted back at the sink.
fn run(txns: &Netns, sink: &HelperProgram, cfg: &std::path::Path) -> f64 {
    let before = sink.packets().unwrap();
    let t = Instant::now();
    let out = txns
        .exec(&[
            "trafgen",
            "-c",
            cfg.to_str().unwrap(),
            "-o",
            "g0",
            "-n",
            &FRAMES.to_string(),
            "-P",
            "1",
            // Through the qdisc: when the veth ring is full the qdisc drops
            // instead of trafgen aborting on EAGAIN (platform gotcha 9), so
            // the sink counts what the data path really forwarded.
            "-q",
        ])
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "trafgen: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Frames still in flight land within a few ms.
    std::thread::sleep(std::time::Duration::from_millis(50));
    (sink.packets().unwrap() - before) as f64 / secs
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
    let sink = txns
        .in_netns(|| HelperProgram::attach(Helper::Sink, "g0", AttachMode::Native))
        .unwrap()
        .unwrap();
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

    let mut results: Vec<(&str, f64)> = Vec::new();
    {
        let _refl = lb
            .in_netns(|| HelperProgram::attach(Helper::Reflect, "l0", AttachMode::Native))
            .unwrap()
            .unwrap();
        results.push((
            "(a) bare XDP_TX reflector",
            median((0..RUNS).map(|_| run(&txns, &sink, &hit_dr)).collect()),
        ));
    }
    let mut dp = lb
        .in_netns(|| {
            let mut dp = Dataplane::load(
                DataplaneParams {
                    ring_size: RING,
                    session_capacity: 1 << 20,
                    ..Default::default()
                },
                [2, 0, 0, 0, 0, 1],
            )?;
            dp.attach("l0", AttachMode::Native)?;
            Ok::<_, sluice_l4::Error>(dp)
        })
        .unwrap()
        .unwrap();
    for i in 0..3u32 {
        // The "reals" are the generator itself, so every forwarded frame
        // comes back to the sink.
        dp.set_real(
            i,
            RealDef {
                addr: a4([10, 99, 0, 11 + i as u8]),
                mac: [2, 0, 0, 0, 0, 2],
                family: family::V4,
                flags: real_flags::PRESENT | real_flags::HAS_MAC,
                weight: 1,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let ring: Vec<u32> = (0..RING).map(|i| i % 3).collect();
    for (idx, vip, m) in [
        (0u32, [10, 99, 255, 1], method::DR),
        (1, [10, 99, 255, 2], method::TUN),
    ] {
        dp.set_ring(idx, &ring).unwrap();
        dp.set_service(
            VipKey {
                addr: a4(vip),
                port: 80,
                proto: 6,
                family: family::V4,
            },
            VipMeta {
                vip_index: idx,
                method: m,
                sched: sched::HASH_FLOW,
                family: family::V4,
                ring_len: RING,
                tun_src: a4([10, 99, 0, 1]),
                ..Default::default()
            },
        )
        .unwrap();
    }
    results.push((
        "(b) dr, session hits",
        median((0..RUNS).map(|_| run(&txns, &sink, &hit_dr)).collect()),
    ));
    results.push((
        "(c) dr, new flows (Maglev)",
        median((0..RUNS).map(|_| run(&txns, &sink, &new_dr)).collect()),
    ));
    results.push((
        "(d) tun, session hits",
        median((0..RUNS).map(|_| run(&txns, &sink, &hit_tun)).collect()),
    ));
    drop(dp);

    let base = results[0].1;
    println!("veth pair, native XDP, trafgen 1 CPU, {FRAMES} frames/run, median of {RUNS}");
    for (name, pps) in &results {
        println!(
            "{name:<30} {:>6.3} Mpps  {:>5.2} x (a)",
            pps / 1e6,
            pps / base
        );
    }
}
