//! Backends and servers at run time: state, slots (maxconn + queue) and the
//! idle connection pool.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::balance::{Balancer, ServerInfo};
use crate::config::{BackendConfig, ServerConfig};
use crate::http::ProxyBody;
use crate::stats::Counters;

/// A server with its live state.
#[derive(Debug)]
pub(crate) struct ServerRt {
    pub(crate) cfg: ServerConfig,
    pub(crate) up: AtomicBool,
    pub(crate) weight: AtomicU32,
    /// `maxconn` slots; `None` = unlimited.
    slots: Option<Arc<Semaphore>>,
    pub(crate) stats: Counters,
    pub(crate) pool: Pool,
}

impl ServerInfo for Arc<ServerRt> {
    fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }
    fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
    fn active(&self) -> u64 {
        self.stats.sessions_current.load(Relaxed)
    }
    fn is_backup(&self) -> bool {
        self.cfg.backup
    }
}

impl ServerRt {
    fn has_free_slot(&self) -> bool {
        self.slots
            .as_ref()
            .is_none_or(|s| s.available_permits() > 0)
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
    balancer: Balancer,
    pub(crate) stats: Arc<Counters>,
}

impl BackendRt {
    pub(crate) fn new(cfg: BackendConfig) -> Self {
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
                })
            })
            .collect();
        Self {
            balancer: Balancer::new(cfg.balance, cfg.servers.len()),
            cfg,
            servers,
            stats: Arc::new(Counters::default()),
        }
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

    /// Take a slot on a server not in `tried`: first any server with a free
    /// slot; when every eligible server is full, wait in the queue of the one
    /// the balancer picks, at most `timeout_queue`.
    pub(crate) async fn acquire(
        &self,
        client: IpAddr,
        tried: &[usize],
    ) -> Result<Slot, AcquireError> {
        // A permit seen free can be taken by another task before we get it;
        // a few rounds are enough to settle, then fall back to queueing.
        const FREE_PICK_ROUNDS: usize = 3;
        for _ in 0..FREE_PICK_ROUNDS {
            let skip = |i: usize| tried.contains(&i) || !self.servers[i].has_free_slot();
            let Some(i) = self.balancer.pick(&self.servers, client, &skip) else {
                break;
            };
            let server = &self.servers[i];
            match &server.slots {
                None => return Ok(self.slot(i, None)),
                Some(sem) => {
                    if let Ok(p) = sem.clone().try_acquire_owned() {
                        return Ok(self.slot(i, Some(p)));
                    }
                }
            }
        }
        let i = self
            .balancer
            .pick(&self.servers, client, &|i| tried.contains(&i))
            .ok_or(AcquireError::NoServer)?;
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

struct DecOnDrop<'a>(&'a Counters);

impl Drop for DecOnDrop<'_> {
    fn drop(&mut self) {
        Counters::dec(&self.0.queued_current);
    }
}

/// Idle keep-alive HTTP/1 connections to one server, most recent first out.
#[derive(Debug)]
pub(crate) struct Pool {
    idle: Mutex<Vec<(SendRequest<ProxyBody>, Instant)>>,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            max_idle,
            idle_timeout,
        }
    }

    /// An idle connection that is still open and ready, if any.
    pub(crate) fn checkout(&self) -> Option<SendRequest<ProxyBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((sender, since)) = idle.pop() {
            if sender.is_ready() && since.elapsed() < self.idle_timeout {
                return Some(sender);
            }
        }
        None
    }

    /// Return a ready connection; dropped (closing it) if the pool is full.
    pub(crate) fn checkin(&self, sender: SendRequest<ProxyBody>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        // Expired entries would only be skipped at checkout; drop them now so
        // they do not hold backend sockets.
        let timeout = self.idle_timeout;
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < timeout);
        if idle.len() < self.max_idle {
            idle.push((sender, Instant::now()));
        }
    }

    /// Close every idle connection.
    pub(crate) fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
