#![allow(missing_docs, clippy::unwrap_used)]
use sluice_l4::{Dataplane, DataplaneParams, verdict, wire_maps::nat_prog};

#[test]
fn loads_and_passes_non_vip() {
    let dp = Dataplane::load(
        DataplaneParams {
            ring_size: 4099,
            ..Default::default()
        },
        [2, 0, 0, 0, 0, 1],
    )
    .unwrap();
    let b = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(1000, 80, 1, 1000);
    let mut f = Vec::new();
    b.write(&mut f, &[]).unwrap();
    let out = dp.test_run(&f, 1).unwrap();
    assert_eq!(out.verdict, verdict::PASS);
}

/// Reports how much of the verifier's budget (1,000,000 processed
/// instructions) `sluice_xdp` uses; loading fails past it, this shows how
/// close it is (`cargo test -p sluice-l4 --test smoke -- --nocapture`).
#[test]
fn reports_the_verifier_instruction_count() {
    const VERIFIER_BUDGET_INSNS: u32 = 1_000_000;
    let dp = Dataplane::load(DataplaneParams::default(), [2, 0, 0, 0, 0, 1]).unwrap();
    if let Some(n) = dp.verified_instructions().unwrap() {
        println!("sluice_xdp: {n} verified instructions of {VERIFIER_BUDGET_INSNS}");
        assert!(n <= VERIFIER_BUDGET_INSNS);
    }
    // The `nat` and `fullnat` programs sluice_xdp tail-calls have budgets
    // of their own.
    for (_, name) in nat_prog::ALL {
        if let Some(n) = dp.verified_instructions_of(name).unwrap() {
            println!("{name}: {n} verified instructions of {VERIFIER_BUDGET_INSNS}");
            assert!(n <= VERIFIER_BUDGET_INSNS);
        }
    }
}
