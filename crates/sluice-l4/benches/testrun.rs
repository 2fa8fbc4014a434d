//! ns/packet of `sluice_xdp` paths measured in the kernel with
//! `BPF_PROG_TEST_RUN` (the way Katran publishes 101–119 ns/packet), plus a
//! bare MAC-swap `XDP_TX` reflector as the floor. Needs root.
//!
//! `cargo bench -p sluice-l4 --bench testrun` — prints one line per case:
//! the median of `RUNS` runs of `REPEAT` repetitions each.
#![allow(missing_docs, clippy::unwrap_used)]

use sluice_l4::{AttachMode, Dataplane, DataplaneParams, Helper, HelperProgram, verdict};
use sluice_testkit::frames::{self, tcp, v4};
use sluice_testkit::median;
use sluice_testkit::netns::{Netns, unique_label};
use sluice_testkit::services::{RING, SESSION_CAPACITY, service, three_reals};
use sluice_wire::maps::method;

/// Repetitions per run for the cached paths.
const REPEAT: u32 = 1_000_000;
/// Runs per case (median reported).
const RUNS: usize = 5;
/// Distinct new flows timed one by one for the miss path.
const NEW_FLOWS: u16 = 20_000;
fn main() {
    let mut dp = Dataplane::load(
        DataplaneParams {
            ring_size: RING,
            session_capacity: SESSION_CAPACITY,
            ..Default::default()
        },
        frames::LB_MAC,
    )
    .unwrap_or_else(|e| panic!("needs root: {e}"));
    for (slot, real) in three_reals(|i| [2, 0xaa, 0, 0, 0, i as u8]) {
        dp.set_real(slot, real).unwrap();
    }
    for s in [
        service(0, [10, 99, 255, 1], method::DR),
        service(1, [10, 99, 255, 2], method::TUN),
    ] {
        dp.set_ring(s.index, &s.ring).unwrap();
        dp.set_service(s.key, s.meta).unwrap();
    }

    let client = [10, 99, 0, 2];
    // Repeated runs reuse the frame as the program left it (the kernel does
    // not reset it between repetitions), so only cases whose output is again
    // the same input are timed this way; `tun` grows the frame, so it is
    // timed one run at a time below.
    let cases: [(&str, Vec<u8>); 2] = [
        (
            "dr, session hit",
            v4(client, [10, 99, 255, 1], 6, &tcp(40000, 80, 0x10)),
        ),
        (
            "non-VIP pass",
            v4(client, [10, 99, 0, 50], 6, &tcp(40000, 80, 0x10)),
        ),
    ];
    println!("BPF_PROG_TEST_RUN, median of {RUNS} runs x {REPEAT} repetitions");
    for (name, frame) in &cases {
        // Warm: the first run creates the session.
        let v = dp.test_run(frame, 1).unwrap().verdict;
        assert!(
            matches!(v, verdict::TX | verdict::PASS),
            "{name}: verdict {v}"
        );
        let hits = dp.counter(sluice_wire::maps::Counter::SessionHit).unwrap();
        let v2 = dp.test_run(frame, 1).unwrap().verdict;
        let hit = dp.counter(sluice_wire::maps::Counter::SessionHit).unwrap() > hits;
        println!("  ({name}: verdict {v2}, session hit: {hit})");
        let ns = median(
            (0..RUNS)
                .map(|_| dp.test_run(frame, REPEAT).unwrap().duration.as_nanos() as f64)
                .collect(),
        );
        println!("{name:<28} {ns:>7.1} ns/packet");
    }
    // tun hits: the same established flow, one run at a time.
    let tun = v4(client, [10, 99, 255, 2], 6, &tcp(40000, 80, 0x10));
    assert_eq!(dp.test_run(&tun, 1).unwrap().verdict, verdict::TX);
    let per_run: Vec<f64> = (0..RUNS)
        .map(|_| {
            let total: u128 = (0..NEW_FLOWS)
                .map(|_| dp.test_run(&tun, 1).unwrap().duration.as_nanos())
                .sum();
            total as f64 / f64::from(NEW_FLOWS)
        })
        .collect();
    println!(
        "{:<28} {:>7.1} ns/packet (single runs)",
        "tun, session hit",
        median(per_run)
    );
    // The same single-run method on the dr hit, to compare the methods.
    let dr = &cases[0].1;
    let per_run: Vec<f64> = (0..RUNS)
        .map(|_| {
            let total: u128 = (0..NEW_FLOWS)
                .map(|_| dp.test_run(dr, 1).unwrap().duration.as_nanos())
                .sum();
            total as f64 / f64::from(NEW_FLOWS)
        })
        .collect();
    println!(
        "{:<28} {:>7.1} ns/packet (single runs)",
        "dr, session hit",
        median(per_run)
    );
    // New flows: each distinct 4-tuple once (session miss + Maglev lookup +
    // session insert); the kernel's per-run duration is program time only.
    let mut per_run = Vec::new();
    for run in 0..RUNS {
        let mut total = 0u128;
        for p in 0..NEW_FLOWS {
            let f = v4(
                [10, 98, run as u8, 2],
                [10, 99, 255, 1],
                6,
                &tcp(1024 + p, 80, 0x02),
            );
            total += dp.test_run(&f, 1).unwrap().duration.as_nanos();
        }
        per_run.push(total as f64 / f64::from(NEW_FLOWS));
    }
    println!(
        "{:<28} {:>7.1} ns/packet ({NEW_FLOWS} flows per run)",
        "dr, new flow (Maglev)",
        median(per_run)
    );
    // Baseline: a bare reflector, loaded the same way.
    let ns = Netns::create(&format!("sl-{}", unique_label("tr"))).unwrap();
    let refl = ns
        .in_netns(|| HelperProgram::attach(Helper::Reflect, "lo", AttachMode::Generic))
        .unwrap()
        .unwrap();
    let frame = &cases[0].1;
    let r = median(
        (0..RUNS)
            .map(|_| {
                refl.test_run_repeat(frame, REPEAT)
                    .unwrap()
                    .duration
                    .as_nanos() as f64
            })
            .collect(),
    );
    println!("{:<28} {r:>7.1} ns/packet", "bare XDP_TX reflector");
}
