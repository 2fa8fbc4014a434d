//! Connection sync and the session table: a peer's sessions, installed
//! as `sluice run`'s installer does, all stay in a table sized for them
//! (the installer spreads them over the CPUs' LRU lists), and a walk
//! reads them all; the install and walk rates are printed (the lag is
//! measured by `benches/sync_lag.rs`).
//!
//! Needs root (CAP_BPF).
#![allow(missing_docs, clippy::unwrap_used)]

#[path = "common/sync_plane.rs"]
mod sync_plane;

use std::time::Instant;

use sluice_l4::sync::Outcome;
use sluice_l4::{Dataplane, DataplaneParams};
use sluice_testkit::frames::{LB_MAC, tcp, v4};
use sync_plane::{RING, VIP, client, plane};

#[test]
fn walking_the_session_table() {
    // Sessions written as a peer's would be (the installer), then walked
    // as this LB's own: how many a second a full resync can read.
    const SESSIONS: u32 = 100_000;
    // The table holds 1.25 × SESSIONS, split over the CPUs' LRU lists:
    // they all fit only if the installer spreads them over the CPUs this
    // thread may use (`INSTALLS_PER_CPU`); from one CPU, a list's share
    // would hold 1.25 × SESSIONS / CPUs.
    let possible = nix::sched::CpuSet::count().min(
        Dataplane::load(
            DataplaneParams {
                ring_size: RING,
                ..Default::default()
            },
            LB_MAC,
        )
        .unwrap()
        .possible_cpus(),
    );
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let allowed = (0..nix::sched::CpuSet::count())
        .filter(|c| set.is_set(*c).unwrap_or(false))
        .count();
    let capacity = (u64::from(SESSIONS) * 5 / 4 * possible as u64 / allowed as u64) as u32;
    let a = plane(capacity.clamp(65_536, sluice_l4::MAX_SESSION_CAPACITY));
    let mut feed_src = plane(65_536);
    feed_src.dataplane_mut().set_sync(true).unwrap();
    let mut feed = feed_src.dataplane().sync_feed().unwrap();
    // One session made by the program, as a template entry.
    let (c, port) = client(0);
    feed_src
        .dataplane()
        .test_run(&v4(c, VIP, 6, &tcp(port, 80, 0x02)), 1)
        .unwrap();
    let mut template = None;
    feed.drain(1, &mut |e| template = Some(e));
    let template = template.unwrap();
    let mut installer = a.dataplane().sync_installer(a.sync_directory()).unwrap();
    let t = Instant::now();
    for i in 0..SESSIONS {
        let (c, port) = client(i);
        let mut e = template;
        e.key.src = sluice_wire::maps::addr_v4(c);
        e.key.sport = port;
        assert_eq!(installer.install(&e).unwrap(), Outcome::Installed);
    }
    let install = t.elapsed();
    // Installed sessions are a peer's, never sent back: the walk's count
    // of the entries it read is what is measured.
    let mut walker = a.dataplane().sync_walker().unwrap();
    let t = Instant::now();
    let seen = walker.walk(true, &mut |_| {});
    let walk = t.elapsed();
    eprintln!(
        "{SESSIONS} sessions: installed in {install:?} ({:.0}/s), walked in {walk:?} ({:.0}/s)",
        f64::from(SESSIONS) / install.as_secs_f64(),
        seen as f64 / walk.as_secs_f64()
    );
    assert_eq!(
        seen, SESSIONS as usize,
        "sessions evicted ({allowed} of {possible} CPUs usable)"
    );
}
