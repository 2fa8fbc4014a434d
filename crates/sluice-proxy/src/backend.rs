//! Backends and servers at run time: state, slots (maxconn + queue) and the
//! idle connection pool.

use std::cell::Cell;
use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use sluice_core::health::Health;
use sluice_core::sched::hashsched::real_key;
use sluice_core::sched::l7::{Backend, L7Algorithm, L7Balancer, RequestInfo};
use sluice_core::service::{OnRealDown, OperatorState, effective};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;

use crate::body::ProxyBody;
use crate::config::{BackendConfig, ServerConfig};
use crate::io::{ServerStream, connect};
use crate::stats::Counters;
use crate::tls;

/// A server with its live state.
#[derive(Debug)]
pub(crate) struct ServerRt {
    pub(crate) cfg: ServerConfig,
    /// Health from the checks (`true`: up).
    pub(crate) up: AtomicBool,
    pub(crate) weight: AtomicU32,
    /// `maxconn` slots; `None` = unlimited.
    slots: Option<Arc<Semaphore>>,
    pub(crate) stats: Counters,
    /// Idle connections driven by hyper (requests that took the hyper path).
    pub(crate) pool: Pool<SendRequest<ProxyBody>>,
    /// Idle raw connections (requests that took the HTTP/1 fast path,
    /// [`crate::h1fast`]). Kept apart from `pool`: a hyper connection is
    /// owned by its driver task and cannot be read directly.
    pub(crate) raw_pool: Pool<ServerStream>,
}

impl ServerRt {
    /// Close every idle connection to this server.
    pub(crate) fn clear_pools(&self) {
        self.pool.clear();
        self.raw_pool.clear();
    }
}

impl ServerRt {
    /// Whether the server gets new requests: sluice-core's one rule for
    /// every plane, with the proxy's policy (no operator state of its own:
    /// weight 0 drains; a down server keeps its open sessions, as HAProxy
    /// does by default; no fail-open: backup servers play that part).
    pub(crate) fn serving(&self) -> bool {
        let health = if self.up.load(Relaxed) {
            Health::Up
        } else {
            Health::Down
        };
        effective(health, OperatorState::Enabled, OnRealDown::Keep).new_flows()
    }

    /// The server as sluice-core's balancer sees it, read now.
    fn snapshot(&self, key: u64) -> Backend {
        Backend {
            key,
            weight: self.weight.load(Relaxed),
            active: u32::try_from(self.stats.sessions_current.load(Relaxed)).unwrap_or(u32::MAX),
            available: self.serving(),
            backup: self.cfg.backup,
        }
    }
}

/// A server slot: counts as one current session on the server until dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) server: Arc<ServerRt>,
    pub(crate) index: usize,
    backend_stats: Arc<Counters>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        Counters::dec(&self.server.stats.sessions_current);
        Counters::dec(&self.backend_stats.sessions_current);
    }
}

/// Why no server slot could be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcquireError {
    /// No eligible server (all down, or all already tried).
    NoServer,
    /// The backend queue is at `max_queue`.
    QueueFull,
    /// Waited `timeout_queue` without a free slot.
    QueueTimeout,
}

/// A backend with its live state.
#[derive(Debug)]
pub(crate) struct BackendRt {
    pub(crate) cfg: BackendConfig,
    pub(crate) servers: Vec<Arc<ServerRt>>,
    /// `consistent` ring keys of the servers (hash of their address), by index.
    keys: Vec<u64>,
    /// Round-robin positions and the consistent ring; `&mut` per pick, and a
    /// pick is a few hundred nanoseconds, so a plain mutex is enough.
    balancer: Mutex<L7Balancer>,
    pub(crate) stats: Arc<Counters>,
    /// TLS client settings when the backend has `tls`.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl BackendRt {
    pub(crate) fn new(cfg: BackendConfig, tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        let servers = cfg
            .servers
            .iter()
            .map(|s| {
                Arc::new(ServerRt {
                    cfg: s.clone(),
                    up: AtomicBool::new(true),
                    weight: AtomicU32::new(s.weight),
                    slots: (s.maxconn > 0).then(|| Arc::new(Semaphore::new(s.maxconn))),
                    stats: Counters::default(),
                    pool: Pool::new(cfg.pool_max_idle_per_server, cfg.pool_idle_timeout),
                    raw_pool: Pool::new(cfg.pool_max_idle_per_server, cfg.pool_idle_timeout),
                })
            })
            .collect();
        Self {
            keys: cfg
                .servers
                .iter()
                .map(|s| real_key(s.addr.ip(), s.addr.port()))
                .collect(),
            balancer: Mutex::new(L7Balancer::new(cfg.balance)),
            cfg,
            servers,
            stats: Arc::new(Counters::default()),
            tls,
        }
    }

    /// Open a connection to `server` (TCP, PROXY `preamble`, TLS if
    /// configured) within `timeout_connect`.
    pub(crate) async fn connect(
        &self,
        server: &ServerRt,
        preamble: Option<&[u8]>,
    ) -> std::io::Result<ServerStream> {
        let tls = self
            .tls
            .as_ref()
            .map(|c| (TlsConnector::from(c.clone()), tls::server_name(&server.cfg)));
        connect(server.cfg.addr, self.cfg.timeout_connect, preamble, tls).await
    }

    fn slot(&self, i: usize, permit: Option<OwnedSemaphorePermit>) -> Slot {
        let server = self.servers[i].clone();
        server.stats.session_start();
        self.stats.session_start();
        Slot {
            server,
            index: i,
            backend_stats: self.stats.clone(),
            _permit: permit,
        }
    }

    /// Take a slot on a server not in `tried`, walking sluice-core's
    /// candidate order once: the first candidate with a free slot wins; when
    /// every candidate is full, wait in the queue of the first one (the
    /// algorithm's choice), at most `timeout_queue`.
    ///
    /// `path` is the request target (`uri` balancing; `None` in TCP mode).
    pub(crate) async fn acquire(
        &self,
        client: IpAddr,
        path: Option<&str>,
        tried: &[usize],
    ) -> Result<Slot, AcquireError> {
        let mut candidates = {
            let snapshot: Vec<Backend> = self
                .servers
                .iter()
                .zip(&self.keys)
                .map(|(s, &key)| s.snapshot(key))
                .collect();
            let info = RequestInfo {
                client_ip: Some(client),
                path,
                hash_key: None,
                random: if self.cfg.balance == L7Algorithm::Random {
                    [next_random(), next_random()]
                } else {
                    [0; 2]
                },
            };
            // Poisoning only means another thread panicked mid-pick; the
            // state is positions and a ring, still usable.
            let mut balancer = self.balancer.lock().unwrap_or_else(|e| e.into_inner());
            balancer.candidates(&snapshot, &info, tried)
        };
        for i in candidates.clone() {
            match &self.servers[i].slots {
                None => return Ok(self.slot(i, None)),
                Some(sem) => {
                    if let Ok(p) = sem.clone().try_acquire_owned() {
                        return Ok(self.slot(i, Some(p)));
                    }
                }
            }
        }
        let i = candidates.next().ok_or(AcquireError::NoServer)?;
        let server = &self.servers[i];
        let Some(sem) = &server.slots else {
            return Ok(self.slot(i, None));
        };
        let queued = self.stats.queued_current.fetch_add(1, Relaxed);
        let _unqueue = DecOnDrop(&self.stats);
        if usize::try_from(queued).unwrap_or(usize::MAX) >= self.cfg.max_queue {
            Counters::inc(&self.stats.err_queue);
            return Err(AcquireError::QueueFull);
        }
        match tokio::time::timeout(self.cfg.timeout_queue, sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(self.slot(i, Some(p))),
            // The semaphore is never closed; treat it like a timeout anyway.
            Ok(Err(_)) | Err(_) => {
                Counters::inc(&self.stats.err_queue);
                Err(AcquireError::QueueTimeout)
            }
        }
    }

    pub(crate) fn server_index(&self, name: &str) -> Option<usize> {
        self.servers.iter().position(|s| s.cfg.name == name)
    }
}

thread_local! {
    /// xorshift64* state of this thread, seeded from std's per-thread random
    /// hasher keys (never 0, which xorshift cannot leave).
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(Instant::now()) | 1);
}

/// A cheap per-thread pseudo-random value for `balance random` (power of
/// two choices needs spread, not unpredictability).
fn next_random() -> u64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

struct DecOnDrop<'a>(&'a Counters);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        Counters::dec(&self.0.queued_current);
    }
}

/// A connection that can wait in a [`Pool`].
pub(crate) trait Pooled {
    /// Whether the connection can carry another request now (checked at
    /// checkout).
    fn usable(&mut self) -> bool;
    /// Whether the connection is known to be closed (swept when the pool is full).
    fn is_closed(&self) -> bool;
}

impl Pooled for SendRequest<ProxyBody> {
    fn usable(&mut self) -> bool {
        self.is_ready()
    }
    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }
}

impl Pooled for ServerStream {
    /// An idle HTTP/1 connection has nothing to read: readable means the
    /// server closed it (or sent junk). Asking tokio's cached readiness
    /// costs no system call; a close it has not seen yet is caught by the
    /// fast path's retry on a fresh connection.
    fn usable(&mut self) -> bool {
        match self {
            Self::Plain(s) => {
                let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
                s.poll_read_ready(&mut cx).is_pending()
            }
            Self::Tls(_) => true,
        }
    }
    fn is_closed(&self) -> bool {
        false
    }
}

/// Idle keep-alive HTTP/1 connections to one server, most recent first out.
/// Entries are pushed at the back, so they are ordered by the time they
/// went idle: the oldest, the first to expire, are at the front.
#[derive(Debug)]
pub(crate) struct Pool<C> {
    idle: Mutex<VecDeque<(C, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl<C: Pooled> Pool<C> {
    fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// An idle connection that is still open and ready, if any.
    pub(crate) fn checkout(&self) -> Option<C> {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((mut conn, since)) = idle.pop_back() {
            if now.saturating_duration_since(since) < self.idle_timeout && conn.usable() {
                return Some(conn);
            }
        }
        None
    }

    /// Return a ready connection; dropped (closing it) if the pool is full.
    ///
    /// Runs once per proxied request, so it reads the clock once and only
    /// looks at the expired end of the queue (amortised O(1)); connections
    /// the server closed are swept only when the pool is full (a closed one
    /// holds no socket, and checkout skips it).
    pub(crate) fn checkin(&self, conn: C) {
        let now = Instant::now();
        let timeout = self.idle_timeout;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Expired entries would only be skipped at checkout; drop them now so
        // they do not hold backend sockets.
        while idle
            .front()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= timeout)
        {
            idle.pop_front();
        }
        if idle.len() >= self.max_idle {
            idle.retain(|(c, _)| !c.is_closed());
        }
        if idle.len() < self.max_idle {
            idle.push_back((conn, now));
        }
    }

    /// Close every idle connection.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn backend(balance: L7Algorithm, weights: &[u32]) -> BackendRt {
        let servers = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let port = 10_000 + u16::try_from(i).unwrap();
                let mut s =
                    ServerConfig::new(format!("s{i}"), SocketAddr::from(([192, 0, 2, 1], port)));
                s.weight = w;
                s
            })
            .collect();
        let mut cfg = BackendConfig::new("be", servers);
        cfg.balance = balance;
        BackendRt::new(cfg, None)
    }

    async fn pick(be: &BackendRt, client: IpAddr, path: Option<&str>, tried: &[usize]) -> usize {
        be.acquire(client, path, tried).await.unwrap().index
    }

    #[tokio::test]
    async fn roundrobin_and_static_rr_follow_core_sequences() {
        let be = backend(L7Algorithm::RoundRobin, &[5, 1, 1]);
        let mut picks = Vec::new();
        for _ in 0..7 {
            picks.push(pick(&be, CLIENT, None, &[]).await);
        }
        // nginx's documented smooth sequence for weights 5,1,1.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let be = backend(L7Algorithm::StaticRr, &[4, 3, 2]);
        let mut picks = Vec::new();
        for _ in 0..9 {
            picks.push(pick(&be, CLIENT, None, &[]).await);
        }
        // IPVS WRR order.
        assert_eq!(picks, [0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[tokio::test]
    async fn leastconn_counts_held_slots() {
        let be = backend(L7Algorithm::LeastConn, &[1, 1, 1]);
        let a = be.acquire(CLIENT, None, &[]).await.unwrap();
        let b = be.acquire(CLIENT, None, &[]).await.unwrap();
        assert_ne!(a.index, b.index);
        let c = be.acquire(CLIENT, None, &[]).await.unwrap();
        let mut held = [a.index, b.index, c.index];
        held.sort_unstable();
        assert_eq!(held, [0, 1, 2], "each idle server gets one session first");
        drop(b);
        let free = held
            .iter()
            .copied()
            .find(|&i| i != a.index && i != c.index)
            .unwrap();
        assert_eq!(pick(&be, CLIENT, None, &[]).await, free);
    }

    #[tokio::test]
    async fn uri_hashes_the_path_without_query_and_spreads() {
        let be = backend(L7Algorithm::Uri, &[1, 1, 1]);
        let first = pick(&be, CLIENT, Some("/img/a.png?v=1"), &[]).await;
        for q in 0..10 {
            let path = format!("/img/a.png?v={q}");
            assert_eq!(pick(&be, CLIENT, Some(&path), &[]).await, first);
        }
        let mut seen = [false; 3];
        for p in 0..100 {
            seen[pick(&be, CLIENT, Some(&format!("/p{p}")), &[]).await] = true;
        }
        assert_eq!(seen, [true; 3]);
    }

    #[tokio::test]
    async fn random_prefers_the_less_loaded_server() {
        let be = backend(L7Algorithm::Random, &[1, 1]);
        // Load server 0 with sessions; server 1 stays idle.
        let mut held = Vec::new();
        for _ in 0..20 {
            let s = be.acquire(CLIENT, None, &[1]).await.unwrap();
            assert_eq!(s.index, 0);
            held.push(s);
        }
        let mut to_idle = 0;
        for _ in 0..400 {
            if pick(&be, CLIENT, None, &[]).await == 1 {
                to_idle += 1;
            }
        }
        // Server 0 wins only when both draws land on it (1 in 4).
        assert!((240..=360).contains(&to_idle), "{to_idle}");
        drop(held);
        let mut counts = [0u32; 2];
        for _ in 0..400 {
            counts[pick(&be, CLIENT, None, &[]).await] += 1;
        }
        assert!(counts.iter().all(|&c| c > 100), "{counts:?}");
    }

    #[tokio::test]
    async fn consistent_moves_only_the_down_servers_clients() {
        let be = backend(L7Algorithm::Consistent, &[1, 1, 1, 1]);
        let clients: Vec<IpAddr> = (0..400u32)
            .map(|c| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + c)))
            .collect();
        let mut before = Vec::new();
        for &c in &clients {
            before.push(pick(&be, c, None, &[]).await);
        }
        be.servers[2].up.store(false, Relaxed);
        for (&c, &was) in clients.iter().zip(&before) {
            let now = pick(&be, c, None, &[]).await;
            if was == 2 {
                assert_ne!(now, 2);
            } else {
                assert_eq!(now, was, "client {c} moved although its server is up");
            }
        }
    }

    #[tokio::test]
    async fn retries_skip_tried_servers_but_never_spill_onto_backups() {
        for balance in L7Algorithm::ALL {
            let mut cfg = backend(balance, &[1, 1, 1]).cfg;
            cfg.servers[2].backup = true;
            let be = BackendRt::new(cfg, None);
            let first = pick(&be, CLIENT, Some("/x"), &[]).await;
            assert!(first < 2, "{balance:?}");
            let second = pick(&be, CLIENT, Some("/x"), &[first]).await;
            assert_eq!(second, 1 - first, "{balance:?}");
            assert_eq!(
                be.acquire(CLIENT, Some("/x"), &[0, 1]).await.unwrap_err(),
                AcquireError::NoServer,
                "{balance:?}: primaries only tried, not down"
            );
            be.servers[0].up.store(false, Relaxed);
            be.servers[1].weight.store(0, Relaxed);
            assert_eq!(pick(&be, CLIENT, Some("/x"), &[]).await, 2, "{balance:?}");
        }
    }

    #[tokio::test]
    async fn a_full_first_choice_passes_to_the_next_candidate_then_queues() {
        let mut cfg = backend(L7Algorithm::Source, &[1, 1]).cfg;
        cfg.servers[0].maxconn = 1;
        cfg.servers[1].maxconn = 1;
        cfg.timeout_queue = Duration::from_millis(50);
        let be = BackendRt::new(cfg, None);
        let a = be.acquire(CLIENT, None, &[]).await.unwrap();
        // Same client, same hash choice, but it is full: the other server.
        let b = be.acquire(CLIENT, None, &[]).await.unwrap();
        assert_ne!(a.index, b.index);
        // Both full: queue on the choice, then time out.
        assert_eq!(
            be.acquire(CLIENT, None, &[]).await.unwrap_err(),
            AcquireError::QueueTimeout
        );
        // A slot freed while queued is handed to the waiter.
        let first = a.index;
        let release = async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(a);
        };
        let (got, ()) = tokio::join!(be.acquire(CLIENT, None, &[]), release);
        assert_eq!(got.unwrap().index, first);
        assert_eq!(be.stats.queued_current.load(Relaxed), 0);
    }

    #[test]
    fn random_values_vary() {
        let v: Vec<u64> = (0..64).map(|_| next_random()).collect();
        let distinct: std::collections::HashSet<_> = v.iter().collect();
        assert_eq!(distinct.len(), v.len());
        // Both halves of the range appear (the top bit is not stuck).
        assert!(v.iter().any(|x| x >> 63 == 1) && v.iter().any(|x| x >> 63 == 0));
    }
}
