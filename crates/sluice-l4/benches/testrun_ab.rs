//! Two builds of the eBPF object side by side: the `dr` session-hit case
//! (and the non-VIP pass case) timed with `BPF_PROG_TEST_RUN` on build A,
//! then on build B, `ROUNDS` times in alternation; prints each build's
//! median ns/packet and the median of the paired ratios B/A. The `tun`
//! session hit and `dr` new flows, which cannot be repeated in one run,
//! are timed one run at a time, paired the same way. Pairing
//! cancels most of this VM's drift (±20 ns between minutes), so changes of
//! a few ns show. Needs root.
//!
//! ```text
//! cp target/release/build/sluice-l4-*/out/sluice-xdp /tmp/a.o   # before a change
//! cargo bench -p sluice-l4 --bench testrun_ab -- /tmp/a.o [/tmp/b.o]
//! ```
//!
//! Without a second path, B is the object this build embeds.
#![allow(missing_docs, clippy::unwrap_used)]

use sluice_l4::{Dataplane, DataplaneParams, object_bytes, verdict};
use sluice_testkit::frames::{self, tcp, v4};
use sluice_testkit::median;
use sluice_testkit::services::{RING, SESSION_CAPACITY, service, three_reals};
use sluice_wire::maps::method;

/// Repetitions per timed run.
const REPEAT: u32 = 200_000;
/// A/B pairs per case.
const ROUNDS: usize = 21;
/// Runs timed one at a time per build and round (each run's time carries a
/// fixed overhead, the same for A and B).
const SINGLE_RUNS: u16 = 2000;
fn setup(object: &[u8]) -> Dataplane {
    let mut dp = Dataplane::load_object(
        object,
        DataplaneParams {
            ring_size: RING,
            session_capacity: SESSION_CAPACITY,
            ..Default::default()
        },
        frames::LB_MAC,
    )
    .unwrap_or_else(|e| panic!("needs root and a valid object: {e}"));
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
    dp
}

/// Times `frame(round, build, i)` one run at a time, `SINGLE_RUNS` runs per
/// build and round, A then B in each of `ROUNDS` rounds; prints the medians
/// and the median of the paired ratios B/A.
fn paired_single_runs(
    name: &str,
    a: &Dataplane,
    b: &Dataplane,
    frame: impl Fn(usize, u8, u16) -> Vec<u8>,
) {
    let mut na = Vec::new();
    let mut nb = Vec::new();
    for round in 0..ROUNDS {
        let time = |dp: &Dataplane, build: u8| -> f64 {
            let mut total = 0u128;
            for i in 0..SINGLE_RUNS {
                total += dp
                    .test_run(&frame(round, build, i), 1)
                    .unwrap()
                    .duration
                    .as_nanos();
            }
            total as f64 / f64::from(SINGLE_RUNS)
        };
        na.push(time(a, 97));
        nb.push(time(b, 98));
    }
    let ratios: Vec<f64> = nb.iter().zip(&na).map(|(b, a)| b / a).collect();
    println!(
        "{name:<20} A {:>6.1} ns  B {:>6.1} ns  B/A {:.3} (median of pairs; single runs, overhead included)",
        median(na),
        median(nb),
        median(ratios),
    );
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn main() {
    // `cargo bench` passes `--bench`; the paths are the other arguments.
    let paths: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let Some(a_path) = paths.first() else {
        eprintln!("usage: cargo bench -p sluice-l4 --bench testrun_ab -- A.o [B.o]");
        return;
    };
    let a_obj = std::fs::read(a_path).unwrap();
    let b_obj = match paths.get(1) {
        Some(p) => std::fs::read(p).unwrap(),
        None => object_bytes().to_vec(),
    };
    let a = setup(&a_obj);
    let b = setup(&b_obj);
    let client = [10, 99, 0, 2];
    let cases = [
        (
            "dr, session hit",
            v4(client, [10, 99, 255, 1], 6, &tcp(40000, 80, 0x10)),
        ),
        (
            "non-VIP pass",
            v4(client, [10, 99, 0, 50], 6, &tcp(40000, 80, 0x10)),
        ),
    ];
    println!(
        "BPF_PROG_TEST_RUN, {ROUNDS} A/B pairs x {REPEAT} repetitions; A = {a_path}, B = {}",
        paths.get(1).map_or("this build", String::as_str)
    );
    for (name, frame) in &cases {
        // Warm: the first run creates the session in each.
        a.test_run(frame, 1).unwrap();
        b.test_run(frame, 1).unwrap();
        let mut na = Vec::new();
        let mut nb = Vec::new();
        for _ in 0..ROUNDS {
            na.push(a.test_run(frame, REPEAT).unwrap().duration.as_nanos() as f64);
            nb.push(b.test_run(frame, REPEAT).unwrap().duration.as_nanos() as f64);
        }
        let ratios: Vec<f64> = nb.iter().zip(&na).map(|(b, a)| b / a).collect();
        // The kernel reports whole ns per packet, so medians move in 1-ns
        // steps; the means show the fraction.
        let (mean_a, mean_b) = (mean(&na), mean(&nb));
        println!(
            "{name:<20} A {:>6.1} ns  B {:>6.1} ns  B/A {:.3} (median of pairs; range {:.3}-{:.3}; means {mean_a:.2} / {mean_b:.2} ns)",
            median(na),
            median(nb),
            median(ratios.clone()),
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
    }
    // tun hits: the frame grows, so one run at a time; one established flow.
    let tun = v4(client, [10, 99, 255, 2], 6, &tcp(40000, 80, 0x10));
    assert_eq!(a.test_run(&tun, 1).unwrap().verdict, verdict::TX);
    assert_eq!(b.test_run(&tun, 1).unwrap().verdict, verdict::TX);
    paired_single_runs("tun, session hit", &a, &b, |_, _, _| tun.clone());
    // New flows: every run a new 4-tuple (session miss, Maglev, insert).
    paired_single_runs("dr, new flow", &a, &b, |round, build, i| {
        v4(
            [10, build, round as u8, 2],
            [10, 99, 255, 1],
            6,
            &tcp(1024 + i, 80, 0x02),
        )
    });
}
