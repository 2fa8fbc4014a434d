//! L7 HTTP and TCP proxy (tokio + hyper): sluice's HAProxy.
//!
//! [`Proxy::start`] validates a [`ProxyConfig`], binds every frontend (so bind
//! errors surface before any traffic is served), and spawns the accept loops
//! on the current tokio runtime. The returned [`ProxyHandle`] reports bound
//! addresses and statistics, lets health checks and the admin CLI change
//! server state and weight, and shuts down gracefully.
//!
//! Contracts:
//! - nothing received from the network panics the proxy: bad requests get a
//!   4xx, bad PROXY headers close the connection, server failures become
//!   502/503/504;
//! - every limit is a field of the config or a named constant.
//!
//! ```no_run
//! # async fn run() -> Result<(), sluice_proxy::ProxyError> {
//! use sluice_proxy::{BackendConfig, FrontendConfig, Proxy, ProxyConfig, ServerConfig};
//! let backend = BackendConfig::new("app", vec![ServerConfig::new("s1", "127.0.0.1:8081".parse().unwrap())]);
//! let frontend = FrontendConfig::new("web", "127.0.0.1:8080".parse().unwrap(), "app");
//! let handle = Proxy::start(ProxyConfig::new(vec![frontend], vec![backend])).await?;
//! println!("{:?}", handle.local_addrs());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

mod accept;
mod backend;
mod body;
pub mod config;
mod conn;
mod error;
mod frontend;
#[doc(hidden)]
pub mod fuzzing;
mod h1fast;
mod h1scan;
mod http;
mod io;
mod lifecycle;
mod limits;
mod policy;
pub mod proxy_protocol;
mod relay;
mod session;
mod splice;
pub mod stats;
mod tcp;
mod termination;
mod tls;
mod wake;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

pub use crate::accept::LISTEN_BACKLOG;
pub use crate::config::{
    BackendConfig, FrontendConfig, L7Algorithm, Mode, ProxyConfig, SendProxy, ServerConfig, Splice,
    TlsCertConfig, TlsConfig,
};
pub use crate::error::ProxyError;
pub use crate::session::ACCESS_LOG_TARGET;
pub use crate::splice::{COPY_BUF_BYTES, PIPE_BYTES, SPLICE_AUTO_FULL_READS};
pub use crate::stats::StatsSnapshot;
pub use crate::tls::{SYSTEM_CA_BUNDLES, check_backend_tls, check_certificate};

use crate::backend::BackendRt;
use crate::frontend::FrontendRt;
use crate::lifecycle::Phase;
use crate::stats::{BackendSnapshot, NamedCounters, ServerSnapshot};

/// How long [`ProxyHandle::shutdown`] waits for sessions to notice a hard
/// stop after the grace period ran out.
const HARD_STOP_WAIT: Duration = Duration::from_secs(1);

/// Entry point; see [`Proxy::start`].
#[derive(Debug)]
pub struct Proxy;

/// A running proxy.
#[derive(Debug)]
pub struct ProxyHandle {
    addrs: Vec<(String, SocketAddr)>,
    frontends: Vec<Arc<FrontendRt>>,
    backends: Vec<Arc<BackendRt>>,
    phase: watch::Sender<Phase>,
    /// Taken by the first [`ProxyHandle::shutdown`].
    stopping: tokio::sync::Mutex<Option<Stopping>>,
    grace: Duration,
}

/// What a shutdown needs: the accept loops to wait for, and the drain
/// channel whose receiver ends once every connection is gone.
#[derive(Debug)]
struct Stopping {
    drain_tx: mpsc::Sender<()>,
    drain_rx: mpsc::Receiver<()>,
    accept_tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Validate `config`, bind every frontend, then start serving on the
    /// current tokio runtime.
    ///
    /// # Errors
    ///
    /// [`ProxyError::Config`] for inconsistent configuration (unknown backend,
    /// duplicate names, no servers, zero header limit), [`ProxyError::Tls`] for
    /// unreadable or mismatched certificates, [`ProxyError::BackendTls`] for
    /// unreadable CA files (or none at all with `tls_verify`), [`ProxyError::Bind`] if an
    /// address cannot be bound. Nothing is served when an error is returned.
    pub async fn start(config: ProxyConfig) -> Result<ProxyHandle, ProxyError> {
        validate(&config)?;
        let mut backends: Vec<Arc<BackendRt>> = Vec::new();
        for b in &config.backends {
            let tls = if b.tls {
                Some(tls::client_config(b)?)
            } else {
                None
            };
            backends.push(Arc::new(BackendRt::new(b.clone(), tls)));
        }
        let mut frontends = Vec::new();
        for f in &config.frontends {
            let backend = backends
                .iter()
                .find(|b| b.cfg.name == f.default_backend)
                .cloned()
                .ok_or_else(|| {
                    ProxyError::Config(format!(
                        "frontend {:?}: unknown backend {:?}",
                        f.name, f.default_backend
                    ))
                })?;
            let tls = f
                .tls
                .as_ref()
                .map(|t| tls::acceptor(&f.name, t, f.mode))
                .transpose()?;
            frontends.push(Arc::new(FrontendRt::new(f.clone(), backend, tls)));
        }
        // Every address is bound before anything is served; listeners bound
        // so far close when an error returns early.
        let mut listeners = Vec::new();
        let mut addrs = Vec::new();
        for fe in &frontends {
            let mut fe_listeners = Vec::new();
            for &addr in &fe.cfg.bind {
                let bind_err = |source| ProxyError::Bind {
                    frontend: fe.cfg.name.clone(),
                    addr,
                    source,
                };
                let l = accept::bind(addr).map_err(bind_err)?;
                addrs.push((fe.cfg.name.clone(), l.local_addr().map_err(bind_err)?));
                fe_listeners.push(l);
            }
            listeners.push((fe.clone(), fe_listeners));
        }
        let (phase, phase_rx) = watch::channel(Phase::Running);
        let (drain_tx, drain_rx) = mpsc::channel(1);
        // One accept loop per frontend, over all its bind addresses.
        let accept_tasks = listeners
            .into_iter()
            .map(|(fe, l)| {
                tokio::spawn(accept::accept_loop(
                    fe,
                    l,
                    phase_rx.clone(),
                    drain_tx.clone(),
                ))
            })
            .collect();
        Ok(ProxyHandle {
            addrs,
            frontends,
            backends,
            phase,
            stopping: tokio::sync::Mutex::new(Some(Stopping {
                drain_tx,
                drain_rx,
                accept_tasks,
            })),
            grace: config.shutdown_grace,
        })
    }
}

fn validate(config: &ProxyConfig) -> Result<(), ProxyError> {
    let bad = |m: String| Err(ProxyError::Config(m));
    let mut names = HashSet::new();
    for b in &config.backends {
        if !names.insert(&b.name) {
            return bad(format!("duplicate backend {:?}", b.name));
        }
        if b.servers.is_empty() {
            return bad(format!("backend {:?} has no servers", b.name));
        }
        let mut snames = HashSet::new();
        for s in &b.servers {
            tls::check_sni(&b.name, s)?;
            if !snames.insert(&s.name) {
                return bad(format!(
                    "backend {:?}: duplicate server {:?}",
                    b.name, s.name
                ));
            }
        }
    }
    let mut names = HashSet::new();
    for f in &config.frontends {
        if !names.insert(&f.name) {
            return bad(format!("duplicate frontend {:?}", f.name));
        }
        if f.bind.is_empty() {
            return bad(format!("frontend {:?} has no bind address", f.name));
        }
        if f.max_header_size == 0 {
            return bad(format!(
                "frontend {:?}: max_header_size must be > 0",
                f.name
            ));
        }
        if f.mode == Mode::Tcp
            && config
                .backends
                .iter()
                .any(|b| b.name == f.default_backend && b.balance == L7Algorithm::Uri)
        {
            return bad(format!(
                "frontend {:?}: balance uri needs HTTP requests, but the frontend is in TCP mode",
                f.name
            ));
        }
        if f.tls.as_ref().is_some_and(|t| t.certs.is_empty()) {
            return bad(format!(
                "frontend {:?}: tls needs at least one certificate",
                f.name
            ));
        }
    }
    Ok(())
}

impl ProxyHandle {
    /// Every bound address with its frontend's name: frontends in
    /// configuration order, each frontend's binds in its `bind` order
    /// (useful with port 0).
    pub fn local_addrs(&self) -> &[(String, SocketAddr)] {
        &self.addrs
    }

    /// First bound address of the frontend named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.addrs.iter().find(|(n, _)| n == name).map(|(_, a)| *a)
    }

    /// Every bound address of the frontend named `name`, in `bind` order.
    pub fn local_addrs_of(&self, name: &str) -> Vec<SocketAddr> {
        self.addrs
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .collect()
    }

    /// Current counters of every frontend, backend and server.
    pub fn stats(&self) -> StatsSnapshot {
        StatsSnapshot {
            frontends: self
                .frontends
                .iter()
                .map(|f| NamedCounters {
                    name: f.cfg.name.clone(),
                    counters: f.stats.snapshot(),
                })
                .collect(),
            backends: self
                .backends
                .iter()
                .map(|b| BackendSnapshot {
                    name: b.cfg.name.clone(),
                    counters: b.stats.snapshot(),
                    servers: b
                        .servers
                        .iter()
                        .map(|s| ServerSnapshot {
                            name: s.cfg.name.clone(),
                            up: s.up.load(Relaxed),
                            weight: s.weight.load(Relaxed),
                            counters: s.stats.snapshot(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn server(&self, backend: &str, server: &str) -> Result<&Arc<backend::ServerRt>, ProxyError> {
        let b = self
            .backends
            .iter()
            .find(|b| b.cfg.name == backend)
            .ok_or_else(|| ProxyError::NoSuchBackend(backend.to_owned()))?;
        let i = b
            .server_index(server)
            .ok_or_else(|| ProxyError::NoSuchServer {
                backend: backend.to_owned(),
                server: server.to_owned(),
            })?;
        Ok(&b.servers[i])
    }

    /// Mark a server up or down (health checks, `sluice ctl`). A down server
    /// gets no new sessions; open ones continue. Its idle pooled connections
    /// are closed.
    ///
    /// # Errors
    ///
    /// [`ProxyError::NoSuchBackend`] / [`ProxyError::NoSuchServer`].
    pub fn set_server_state(
        &self,
        backend: &str,
        server: &str,
        up: bool,
    ) -> Result<(), ProxyError> {
        let s = self.server(backend, server)?;
        s.up.store(up, Relaxed);
        if !up {
            s.clear_pools();
        }
        Ok(())
    }

    /// Change a server's weight (0 drains it of new sessions).
    ///
    /// # Errors
    ///
    /// [`ProxyError::NoSuchBackend`] / [`ProxyError::NoSuchServer`].
    pub fn set_weight(&self, backend: &str, server: &str, weight: u32) -> Result<(), ProxyError> {
        self.server(backend, server)?.weight.store(weight, Relaxed);
        Ok(())
    }

    /// Stop accepting, let open sessions finish for up to the configured
    /// `shutdown_grace` (`hard_stop_after`), then cut what remains. Idle
    /// backend connections are closed. Takes `&self` so that a handle
    /// shared with the admin endpoint and the health checks can be shut
    /// down; a second call returns at once.
    pub async fn shutdown(&self) {
        let Some(Stopping {
            drain_tx,
            mut drain_rx,
            accept_tasks,
        }) = self.stopping.lock().await.take()
        else {
            return;
        };
        let (phase, grace, backends) = (&self.phase, self.grace, &self.backends);
        let _ = phase.send(Phase::Draining);
        for t in accept_tasks {
            // The loops return on Draining; a panic there is already logged by tokio.
            let _ = t.await;
        }
        drop(drain_tx);
        for b in backends {
            for s in &b.servers {
                s.clear_pools();
            }
        }
        // recv() returns None once every connection task dropped its sender.
        if tokio::time::timeout(grace, drain_rx.recv()).await.is_err() {
            let _ = phase.send(Phase::Stopped);
            let _ = tokio::time::timeout(HARD_STOP_WAIT, drain_rx.recv()).await;
        }
    }
}
