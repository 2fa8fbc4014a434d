//! Connection sync's lag, measured: two loads of the XDP program (LB A
//! active, LB B standby) joined by the sync daemons over loopback UDP,
//! exactly as `sluice run` wires them (`run/sync.rs`). New connections
//! are made on A at 10,000 a second with `BPF_PROG_TEST_RUN` (no
//! interface, no traffic leaves the process); the lag of each is the
//! time from its first packet on A to its session installed on B. The
//! target (issue 17): under 100 ms. (The walk and install rates are
//! printed by `tests/sync_table.rs`.)
//!
//! Needs root (CAP_BPF). `cargo bench -p sluice --bench sync_lag`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

#[path = "../tests/common/sync_plane.rs"]
mod sync_plane;

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_ha::sync::{Installed, NewSessions, SessionSink, SessionTable, SyncConfig, start};
use sluice_l4::sync::{Outcome, SessionFeed, SessionInstaller, SessionWalker};
use sluice_l4::verdict;
use sluice_testkit::frames::{tcp, v4};
use sluice_wire::sync::SyncEntry;
use sync_plane::{VIP, client, plane};

/// New connections per second on A (issue 17's figure).
const RATE: u32 = 10_000;
/// Seconds of load.
const SECONDS: u32 = 2;
/// The lag target.
const LAG_TARGET: Duration = Duration::from_millis(100);

struct Feed(SessionFeed);
impl NewSessions for Feed {
    fn drain(&mut self, max: usize, out: &mut dyn FnMut(SyncEntry)) -> usize {
        self.0.drain(max, out)
    }
}

struct Walker(SessionWalker);
impl SessionTable for Walker {
    fn walk(&mut self, full: bool, out: &mut dyn FnMut(SyncEntry)) -> usize {
        self.0.walk(full, out)
    }
}

/// Flow (client address, port) → when it was installed.
type Seen = Arc<Mutex<HashMap<([u32; 4], u16), Instant>>>;

struct Sink(SessionInstaller, Seen);
impl SessionSink for Sink {
    fn install(&mut self, e: &SyncEntry) -> Result<Installed, String> {
        let o = self.0.install(e).map_err(|e| e.to_string())?;
        self.1
            .lock()
            .unwrap()
            .entry((e.key.src, e.key.sport))
            .or_insert_with(Instant::now);
        Ok(if o == Outcome::Installed {
            Installed::Yes
        } else {
            Installed::Unknown
        })
    }
}

/// Nothing to install (A's side).
struct Nowhere;
impl SessionSink for Nowhere {
    fn install(&mut self, _: &SyncEntry) -> Result<Installed, String> {
        Ok(Installed::Unknown)
    }
}

fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

fn sync_lag_at_ten_thousand_new_connections_a_second() {
    let total = RATE * SECONDS;
    let mut a = plane(65_536);
    let b = plane(65_536);
    a.dataplane_mut().set_sync(true).unwrap();
    let (a_addr, b_addr) = (free_port(), free_port());
    let interval = Duration::from_secs(1);
    let (_a_tx, a_active) = tokio::sync::watch::channel(true);
    let (_b_tx, b_active) = tokio::sync::watch::channel(false);
    let _ha = start(
        SyncConfig {
            listen: a_addr,
            peers: vec![b_addr],
            interval,
        },
        Box::new(Feed(a.dataplane().sync_feed().unwrap())),
        Box::new(Walker(a.dataplane().sync_walker().unwrap())),
        Box::new(Nowhere),
        a_active,
    )
    .unwrap();
    let seen = Seen::default();
    let hb = start(
        SyncConfig {
            listen: b_addr,
            peers: vec![a_addr],
            interval,
        },
        Box::new(Feed(b.dataplane().sync_feed().unwrap())),
        Box::new(Walker(b.dataplane().sync_walker().unwrap())),
        Box::new(Sink(
            b.dataplane().sync_installer(b.sync_directory()).unwrap(),
            seen.clone(),
        )),
        b_active,
    )
    .unwrap();

    // The load: connection i's SYN at t0 + i / RATE.
    let mut made = Vec::with_capacity(total as usize);
    let t0 = Instant::now();
    for i in 0..total {
        let due = t0 + Duration::from_secs_f64(f64::from(i) / f64::from(RATE));
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        let (c, port) = client(i);
        let out = a
            .dataplane()
            .test_run(&v4(c, VIP, 6, &tcp(port, 80, 0x02)), 1)
            .unwrap();
        assert_eq!(out.verdict, verdict::TX);
        made.push((sluice_wire::maps::addr_v4(c), port, Instant::now()));
    }
    let load = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(3);
    while seen.lock().unwrap().len() < total as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let seen = seen.lock().unwrap();
    let mut lags: Vec<Duration> = made
        .iter()
        .filter_map(|(c, p, at)| {
            seen.get(&(*c, *p))
                .map(|t| t.saturating_duration_since(*at))
        })
        .collect();
    lags.sort();
    let counts: HashMap<_, _> = hb.counters().snapshot().into_iter().collect();
    eprintln!(
        "{total} new connections in {load:?}: {} installed on B; lag p50 {:?}, p99 {:?}, max {:?}; \
         B counted {counts:?}",
        lags.len(),
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        lags.last().unwrap()
    );
    assert_eq!(lags.len(), total as usize, "every session reached B");
    println!(
        "sync lag at {RATE} new connections/s: p50 {:?}, p99 {:?}, max {:?} (target: p99 under {LAG_TARGET:?}: {})",
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        lags.last().unwrap(),
        if pct(&lags, 0.99) < LAG_TARGET {
            "met"
        } else {
            "missed"
        }
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("sync_lag: benchmark");
        return;
    }
    sync_lag_at_ten_thousand_new_connections_a_second();
}
