//! Counters kept with relaxed atomics, and their serialisable snapshot.
//!
//! Relaxed ordering is enough: each counter is independent and read only for
//! reporting, so a snapshot may be a few increments apart between fields.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

/// Live counters of one frontend, backend or server.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sessions_total: AtomicU64,
    pub(crate) sessions_current: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) bytes_spliced: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) redispatches: AtomicU64,
    pub(crate) queued_current: AtomicU64,
    pub(crate) err_connect: AtomicU64,
    pub(crate) err_response: AtomicU64,
    pub(crate) err_timeout: AtomicU64,
    pub(crate) err_request: AtomicU64,
    pub(crate) err_queue: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) status: [AtomicU64; 5],
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Relaxed);
    }

    /// Decrement a gauge, saturating at zero.
    pub(crate) fn dec(c: &AtomicU64) {
        let _ = c.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }

    /// Count a session start (total and current).
    pub(crate) fn session_start(&self) {
        Self::inc(&self.sessions_total);
        Self::inc(&self.sessions_current);
    }

    /// Count a response status by class (1xx..5xx); other codes are ignored.
    pub(crate) fn status(&self, code: u16) {
        if let Some(c) = usize::from(code / 100)
            .checked_sub(1)
            .and_then(|i| self.status.get(i))
        {
            Self::inc(c);
        }
    }

    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Relaxed);
        CountersSnapshot {
            sessions_total: g(&self.sessions_total),
            sessions_current: g(&self.sessions_current),
            requests: g(&self.requests),
            bytes_in: g(&self.bytes_in),
            bytes_out: g(&self.bytes_out),
            bytes_spliced: g(&self.bytes_spliced),
            retries: g(&self.retries),
            redispatches: g(&self.redispatches),
            queued_current: g(&self.queued_current),
            errors: ErrorsSnapshot {
                connect: g(&self.err_connect),
                response: g(&self.err_response),
                timeout: g(&self.err_timeout),
                request: g(&self.err_request),
                queue: g(&self.err_queue),
            },
            denied: g(&self.denied),
            responses: StatusSnapshot {
                http_1xx: g(&self.status[0]),
                http_2xx: g(&self.status[1]),
                http_3xx: g(&self.status[2]),
                http_4xx: g(&self.status[3]),
                http_5xx: g(&self.status[4]),
            },
        }
    }
}

/// Point-in-time copy of one object's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CountersSnapshot {
    /// Sessions (connections in TCP mode and on frontends, requests forwarded to a server in HTTP mode on backends and servers) since start.
    pub sessions_total: u64,
    /// Sessions open now.
    pub sessions_current: u64,
    /// HTTP requests seen.
    pub requests: u64,
    /// Bytes received from clients (HTTP: request body bytes; TCP: payload).
    pub bytes_in: u64,
    /// Bytes sent to clients (HTTP: response body bytes; TCP: payload).
    pub bytes_out: u64,
    /// Of `bytes_in` + `bytes_out`, the bytes a `mode tcp` relay moved with
    /// splice(2) instead of copying them.
    pub bytes_spliced: u64,
    /// Connect attempts repeated after a failure.
    pub retries: u64,
    /// Retries sent to a different server than the failed one.
    pub redispatches: u64,
    /// Requests waiting for a server slot now.
    pub queued_current: u64,
    /// Errors by kind.
    pub errors: ErrorsSnapshot,
    /// Connections refused or closed early by a limit or a bad PROXY header.
    pub denied: u64,
    /// HTTP responses sent, by status class.
    pub responses: StatusSnapshot,
}

/// Error counters by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorsSnapshot {
    /// Failed connects to a server.
    pub connect: u64,
    /// Bad or missing response from a server (502).
    pub response: u64,
    /// Server timeouts (504, or TCP idle timeouts).
    pub timeout: u64,
    /// Bad client requests (400, smuggling attempts, bad PROXY headers).
    pub request: u64,
    /// Queue timeouts or a full queue (503).
    pub queue: u64,
}

/// Response counts by status class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StatusSnapshot {
    /// 1xx responses.
    pub http_1xx: u64,
    /// 2xx responses.
    pub http_2xx: u64,
    /// 3xx responses.
    pub http_3xx: u64,
    /// 4xx responses.
    pub http_4xx: u64,
    /// 5xx responses.
    pub http_5xx: u64,
}

/// Counters of every frontend, backend and server.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StatsSnapshot {
    /// One entry per frontend, in configuration order.
    pub frontends: Vec<NamedCounters>,
    /// One entry per backend, in configuration order.
    pub backends: Vec<BackendSnapshot>,
}

/// Counters with the object's name.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NamedCounters {
    /// Frontend or server name.
    pub name: String,
    /// Its counters.
    #[serde(flatten)]
    pub counters: CountersSnapshot,
}

/// A backend's counters and its servers'.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackendSnapshot {
    /// Backend name.
    pub name: String,
    /// Backend totals.
    #[serde(flatten)]
    pub counters: CountersSnapshot,
    /// Per-server counters and state, in configuration order.
    pub servers: Vec<ServerSnapshot>,
}

/// A server's counters and state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerSnapshot {
    /// Server name.
    pub name: String,
    /// Up (eligible for new traffic).
    pub up: bool,
    /// Current weight.
    pub weight: u32,
    /// Its counters.
    #[serde(flatten)]
    pub counters: CountersSnapshot,
}

impl StatsSnapshot {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendSnapshot> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The frontend named `name`.
    pub fn frontend(&self, name: &str) -> Option<&CountersSnapshot> {
        self.frontends
            .iter()
            .find(|f| f.name == name)
            .map(|f| &f.counters)
    }
}

impl BackendSnapshot {
    /// The server named `name`.
    pub fn server(&self, name: &str) -> Option<&ServerSnapshot> {
        self.servers.iter().find(|s| s.name == name)
    }
}
