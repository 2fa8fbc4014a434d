//! Proof of the eBPF chain end to end: a namespace pair joined by a veth,
//! `sluice_xdp` attached in native (driver) mode from inside one namespace,
//! traffic sent from the other, and the per-CPU counters read back from the
//! program's map. Everything is removed on drop, also when an assertion
//! fails. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

use sluice_l4::{AttachMode, Dataplane, DataplaneParams};
use sluice_testkit::netns::{Netns, create_veth, unique_label};
use sluice_wire::maps::Counter;

/// Pings sent; the counter must see at least this many frames.
const PINGS: u32 = 5;

fn pair(tag: &str) -> (Netns, Netns) {
    let label = unique_label(tag);
    let a = Netns::create(&format!("sl-{label}-a"))
        .unwrap_or_else(|e| panic!("creating a namespace failed (this test needs root): {e}"));
    let b = Netns::create(&format!("sl-{label}-b")).unwrap();
    create_veth(&a, "va", &b, "vb").unwrap();
    a.ip(&["addr", "add", "10.200.0.1/24", "dev", "va"])
        .unwrap();
    b.ip(&["addr", "add", "10.200.0.2/24", "dev", "vb"])
        .unwrap();
    (a, b)
}

fn attach_and_count(mode: AttachMode, tag: &str) {
    let (a, b) = pair(tag);
    // Load and attach from inside `b`, so "vb" resolves to b's interface.
    let dp = b
        .in_netns(move || {
            let mut dp = Dataplane::load(
                DataplaneParams {
                    ring_size: 251,
                    ..Default::default()
                },
                [0; 6],
            )?;
            dp.attach("vb", mode)?;
            Ok::<_, sluice_l4::Error>(dp)
        })
        .unwrap()
        .unwrap();
    assert_eq!(dp.attached_iface(), Some("vb"));
    let before = dp.counter(Counter::RxPackets).unwrap();
    let out = a
        .exec(&[
            "ping",
            "-c",
            &PINGS.to_string(),
            "-i",
            "0.2",
            "-W",
            "2",
            "10.200.0.2",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "ping through the XDP program failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let rx = dp.counter(Counter::RxPackets).unwrap() - before;
    let pass = dp.counter(Counter::PassNonVip).unwrap();
    assert!(
        rx >= u64::from(PINGS),
        "program saw {rx} frames, sent {PINGS} pings"
    );
    assert!(pass >= u64::from(PINGS), "non-VIP pass counter is {pass}");
    // An echo request frame is 98 bytes (14 + 20 + 8 + 56).
    assert!(dp.counter(Counter::RxBytes).unwrap() >= u64::from(PINGS) * 98);
    drop(dp);
    // Detached: the interface has no XDP program any more.
    let link = b.ip(&["-d", "link", "show", "vb"]).unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "XDP program still attached after drop"
    );
}

#[test]
fn xdp_native_attach_counts_traffic() {
    attach_and_count(AttachMode::Native, "xdpn");
}

#[test]
fn xdp_generic_attach_counts_traffic() {
    attach_and_count(AttachMode::Generic, "xdpg");
}

#[test]
fn attaching_to_a_missing_interface_names_it() {
    let (_a, b) = pair("xdpm");
    let err = b
        .in_netns(|| {
            let mut dp = Dataplane::load(
                DataplaneParams {
                    ring_size: 251,
                    ..Default::default()
                },
                [0; 6],
            )
            .unwrap();
            dp.attach("nosuch0", AttachMode::Native)
                .unwrap_err()
                .to_string()
        })
        .unwrap();
    assert!(err.contains("\"nosuch0\""), "{err}");
}
