//! Two sync daemons over loopback UDP, with the data plane faked: the
//! active one's new sessions reach the other within the lag budget, a
//! starting node's resync request is answered with a full walk, a
//! standby sends nothing, and datagrams from a stranger are refused.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_ha::sync::{
    Installed, NewSessions, SessionSink, SessionTable, SyncConfig, SyncHandle, start,
};
use sluice_wire::maps::{FlowKey, Method, addr_v4, family, state};
use sluice_wire::sync::SyncEntry;

/// The lag target of issue 17 (new session on the active LB → installed
/// on its peer).
const LAG_BUDGET: Duration = Duration::from_millis(100);

type Shared = Arc<Mutex<Vec<SyncEntry>>>;

struct Queue(Shared);
impl NewSessions for Queue {
    fn drain(&mut self, max: usize, out: &mut dyn FnMut(SyncEntry)) -> usize {
        let mut q = self.0.lock().unwrap();
        let n = q.len().min(max);
        for e in q.drain(..n) {
            out(e);
        }
        n
    }
}

/// A table whose full walk yields `all`; incremental walks yield nothing.
struct Table(Vec<SyncEntry>);
impl SessionTable for Table {
    fn walk(&mut self, full: bool, out: &mut dyn FnMut(SyncEntry)) -> usize {
        if full {
            for e in &self.0 {
                out(*e);
            }
        }
        self.0.len()
    }
}

struct Sink(Shared);
impl SessionSink for Sink {
    fn install(&mut self, e: &SyncEntry) -> Result<Installed, String> {
        self.0.lock().unwrap().push(*e);
        Ok(Installed::Yes)
    }
}

fn entry(cport: u16) -> SyncEntry {
    SyncEntry {
        key: FlowKey {
            src: addr_v4([10, 0, 0, 9]),
            dst: addr_v4([10, 0, 0, 100]),
            sport: cport,
            dport: 80,
            proto: 6,
            family: family::V4,
            _pad: 0,
        },
        service_port: 80,
        method: Method::Nat,
        state: state::TCP_SYN,
        real: addr_v4([10, 0, 1, 2]),
        real_port: 8080,
        client_mac: [2, 0, 0, 0, 0, 9],
        local: None,
        toa_sent: false,
    }
}

fn free_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

struct Node {
    _h: SyncHandle,
    new: Shared,
    installed: Shared,
    active: tokio::sync::watch::Sender<bool>,
    handle_counters: Arc<sluice_ha::sync::SyncCounters>,
}

fn node(listen: SocketAddr, peer: SocketAddr, active: bool, table: Vec<SyncEntry>) -> Node {
    let new = Shared::default();
    let installed = Shared::default();
    let (tx, rx) = tokio::sync::watch::channel(active);
    let h = start(
        SyncConfig {
            listen,
            peers: vec![peer],
            interval: Duration::from_millis(200),
        },
        Box::new(Queue(new.clone())),
        Box::new(Table(table)),
        Box::new(Sink(installed.clone())),
        rx,
    )
    .unwrap();
    Node {
        handle_counters: h.counters().clone(),
        _h: h,
        new,
        installed,
        active: tx,
    }
}

fn wait_for(what: &Shared, n: usize, limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if what.lock().unwrap().len() >= n {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

fn count(n: &Node, name: &str) -> u64 {
    n.handle_counters
        .snapshot()
        .into_iter()
        .find(|(k, _)| *k == name)
        .unwrap()
        .1
}

#[test]
fn new_sessions_reach_the_peer_within_the_lag_budget_and_a_starting_node_gets_a_full_dump() {
    let (a_addr, b_addr) = (free_port(), free_port());
    let existing: Vec<SyncEntry> = (0..100).map(|i| entry(20_000 + i)).collect();
    let a = node(a_addr, b_addr, true, existing.clone());
    // B starts later and asks A for everything.
    std::thread::sleep(Duration::from_millis(50));
    let b = node(b_addr, a_addr, false, Vec::new());
    assert!(
        wait_for(&b.installed, existing.len(), Duration::from_secs(3)).is_some(),
        "B's resync was not answered: {} entries",
        b.installed.lock().unwrap().len()
    );
    assert!(count(&a, "resyncs_served") >= 1);
    let mut got = b.installed.lock().unwrap().clone();
    got.sort_by_key(|e| e.key.sport);
    got.dedup();
    assert_eq!(got, existing);
    b.installed.lock().unwrap().clear();

    // New sessions on A: on B within the budget.
    let fresh: Vec<SyncEntry> = (0..500).map(entry).collect();
    a.new.lock().unwrap().extend(fresh.iter().copied());
    let lag = wait_for(&b.installed, fresh.len(), Duration::from_secs(2))
        .expect("A's new sessions never reached B");
    eprintln!("500 new sessions installed on the peer after {lag:?}");
    assert!(lag < LAG_BUDGET, "sync lag {lag:?}");

    // B is standby: its new sessions go nowhere; made active, they do.
    b.new.lock().unwrap().push(entry(7));
    std::thread::sleep(Duration::from_millis(100));
    assert!(!a.installed.lock().unwrap().iter().any(|e| e.key.sport == 7));
    b.active.send(true).unwrap();
    b.new.lock().unwrap().push(entry(8));
    assert!(wait_for(&a.installed, 1, Duration::from_secs(1)).is_some());
    assert!(a.installed.lock().unwrap().iter().all(|e| e.key.sport == 8));
    assert_eq!(count(&b, "lost_datagrams"), 0);
    assert_eq!(count(&b, "malformed"), 0);

    // A stranger's datagram is refused before it is parsed.
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger.send_to(b"SLSY garbage", b_addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(count(&b, "not_from_peer"), 1);
    assert_eq!(count(&b, "malformed"), 0);
}
