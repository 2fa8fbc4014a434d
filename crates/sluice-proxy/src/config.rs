//! Plain configuration structs for the proxy.
//!
//! These are deliberately independent of `sluice-config` (the TOML model): the
//! binary maps the TOML model onto them. Every value is already parsed (socket
//! addresses, [`Duration`]s), so [`crate::Proxy::start`] only has to check
//! cross references (frontend → backend) and load TLS material.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use sluice_core::sched::l7::L7Algorithm;

/// Default `max_header_size`: the most bytes of request line plus headers
/// hyper buffers before answering 431. Same order as HAProxy's `tune.bufsize`
/// (16 KiB).
pub const DEFAULT_MAX_HEADER_SIZE_BYTES: usize = 16 * 1024;

/// Default connect timeout to a backend server (HAProxy `timeout connect`).
pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(5);

/// Default inactivity timeout on the client side (HAProxy `timeout client`).
pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(50);

/// Default server timeout: the server's inactivity, in HTTP and TCP mode
/// (HAProxy `timeout server`).
pub const DEFAULT_TIMEOUT_SERVER: Duration = Duration::from_secs(50);

/// Default time a client has to send complete request headers (HAProxy
/// `timeout http-request`); defeats slowloris.
pub const DEFAULT_TIMEOUT_HTTP_REQUEST: Duration = Duration::from_secs(10);

/// Default longest idle time of a client connection between a response and
/// the next request's first byte (HAProxy `timeout http-keep-alive`).
pub const DEFAULT_TIMEOUT_HTTP_KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Default longest wait for a free server slot when every server is at its
/// `maxconn` (HAProxy `timeout queue`); past it the request gets a 503.
pub const DEFAULT_TIMEOUT_QUEUE: Duration = Duration::from_secs(5);

/// Default number of idle keep-alive connections kept per server.
pub const DEFAULT_POOL_MAX_IDLE_PER_SERVER: usize = 64;

/// Default time an idle pooled backend connection may be reused.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default cap on requests waiting in one backend's queue; past it a request
/// gets a 503 at once instead of waiting.
pub const DEFAULT_MAX_QUEUE: usize = 1024;

/// Default time [`crate::ProxyHandle::shutdown`] waits for open sessions before
/// cutting them.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole proxy: frontends (listeners) and the backends they route to.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Listeners.
    pub frontends: Vec<FrontendConfig>,
    /// Server pools, referenced by name from [`FrontendConfig::default_backend`].
    pub backends: Vec<BackendConfig>,
    /// How long a graceful shutdown waits for open sessions.
    pub shutdown_grace: Duration,
}

/// Proxy mode of a frontend (HAProxy `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// HTTP/1.1 (and HTTP/2 over TLS with ALPN) reverse proxy.
    #[default]
    Http,
    /// Opaque TCP relay.
    Tcp,
}

/// When a `mode tcp` relay moves bytes with splice(2) (socket → pipe →
/// socket, never through user space) instead of copying them through a
/// buffer (HAProxy `option splice-auto`). Only between two plain TCP
/// sockets: a TLS side is always copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Splice {
    /// Copy first; a direction switches to splice once it looks like a bulk
    /// transfer ([`crate::SPLICE_AUTO_FULL_READS`] reads in a row that fill
    /// the whole copy buffer). Small request/response exchanges, where two
    /// splice calls per chunk cost more than one copy, stay copied.
    #[default]
    Auto,
    /// Splice from the first byte.
    Always,
    /// Always copy.
    Never,
}

/// PROXY protocol header sent to servers (HAProxy `send-proxy`, `send-proxy-v2`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendProxy {
    /// Send nothing.
    #[default]
    None,
    /// The text form (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary form.
    V2,
}

/// A listener.
#[derive(Debug, Clone)]
pub struct FrontendConfig {
    /// Name used in stats and logs.
    pub name: String,
    /// Addresses to listen on (at least one). All share this frontend's
    /// limits and counters. Port 0 picks a free port; see
    /// [`crate::ProxyHandle::local_addrs`].
    pub bind: Vec<SocketAddr>,
    /// HTTP or TCP.
    pub mode: Mode,
    /// Name of the backend every session goes to.
    pub default_backend: String,
    /// Most concurrent sessions; past it the frontend stops accepting, so new
    /// connections wait in the kernel's accept backlog. `0` = unlimited.
    pub maxconn: usize,
    /// Most new sessions accepted per second (token bucket, burst of one
    /// second's worth). `0` = unlimited.
    pub rate_limit_sessions: u32,
    /// Expect a PROXY protocol v1 or v2 header on every accepted connection.
    pub accept_proxy: bool,
    /// Add `X-Forwarded-For` and `X-Forwarded-Proto` (HAProxy `option forwardfor`).
    pub forwardfor: bool,
    /// Add a `Via` header to requests and responses.
    pub via: bool,
    /// Most bytes of request line plus headers (HTTP mode); more gets a 431.
    pub max_header_size: usize,
    /// Client inactivity timeout (TCP mode; also bounds the PROXY header read).
    pub timeout_client: Duration,
    /// Time to receive complete request headers (HTTP mode): from accept for
    /// the first request, from the first byte of the head for later ones.
    /// Incomplete heads are cut (slowloris).
    pub timeout_http_request: Duration,
    /// Idle time allowed after a response before the next request's first
    /// byte (HTTP mode; HTTP/2 connections get a GOAWAY).
    pub timeout_http_keep_alive: Duration,
    /// Terminate TLS on this bind.
    pub tls: Option<TlsConfig>,
    /// splice(2) use of the `mode tcp` relay.
    pub splice: Splice,
    /// Serve plain HTTP/1 exchanges on the fast path (`h1fast`, no hyper);
    /// `false` sends every HTTP/1 request through hyper's path. Both apply
    /// the same header policy (`policy`); this is an escape hatch and
    /// the switch the differential tests use to drive each engine.
    pub h1_fast_path: bool,
}

/// TLS termination settings for a frontend.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// Certificates; the first one is served when the client sends no SNI or
    /// an unknown name.
    pub certs: Vec<TlsCertConfig>,
}

/// One certificate chain and its key, and the SNI names it answers for.
#[derive(Debug, Clone)]
pub struct TlsCertConfig {
    /// PEM file with the certificate chain, leaf first.
    pub cert_pem: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
    /// Server names (exact, case-insensitive) that select this certificate.
    pub sni_names: Vec<String>,
}

/// A pool of servers.
#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// Name referenced by frontends.
    pub name: String,
    /// Selection algorithm (HAProxy `balance`), sluice-core's. Backup
    /// servers are used only when no primary server is up with weight > 0;
    /// a retry with `redispatch` walks the algorithm's candidate order,
    /// skipping servers already tried.
    pub balance: L7Algorithm,
    /// Servers, in configuration order.
    pub servers: Vec<ServerConfig>,
    /// Extra connect attempts after a failed connect (HAProxy `retries`).
    pub retries: u32,
    /// Retry on a different server rather than the same one (HAProxy `option redispatch`).
    pub redispatch: bool,
    /// Timeout for establishing a TCP connection to a server.
    pub timeout_connect: Duration,
    /// Server inactivity (HAProxy `timeout server`): the longest time the
    /// server may stay silent while a request waits for it or a response
    /// body is relayed (HTTP; a request body that keeps moving counts as
    /// activity), or while a TCP session is idle on its side.
    pub timeout_server: Duration,
    /// Idle timeout of a tunnel (WebSocket or another `Upgrade`), both
    /// ways (HAProxy `timeout tunnel`); `None`: `timeout_client` on the
    /// client side and `timeout_server` on the server side, as for
    /// `mode tcp`.
    pub timeout_tunnel: Option<Duration>,
    /// Longest wait for a free server slot.
    pub timeout_queue: Duration,
    /// Most requests waiting for a server slot in this backend.
    pub max_queue: usize,
    /// PROXY protocol header sent on each new server connection. HTTP
    /// connections carrying a PROXY header are never shared between clients.
    pub send_proxy: SendProxy,
    /// Idle keep-alive connections kept per server (HTTP mode).
    pub pool_max_idle_per_server: usize,
    /// How long an idle pooled connection stays reusable.
    pub pool_idle_timeout: Duration,
    /// Speak TLS to the servers (after any PROXY header, which goes in clear).
    /// The handshake counts towards `timeout_connect`; a failed one is a
    /// connect error (retried, then 503).
    pub tls: bool,
    /// Verify the servers' certificates (when `tls`) against `tls_ca`, or the
    /// system bundle (see [`crate::SYSTEM_CA_BUNDLES`]) when `tls_ca` is
    /// `None`, and the name from [`ServerConfig::sni`].
    pub tls_verify: bool,
    /// PEM file of CA certificates to verify the servers with.
    pub tls_ca: Option<PathBuf>,
}

/// One server of a backend.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Name used in stats, logs and admin calls.
    pub name: String,
    /// Address to connect to.
    pub addr: SocketAddr,
    /// Relative weight (0 = receives no new traffic).
    pub weight: u32,
    /// Most concurrent sessions on this server; `0` = unlimited.
    pub maxconn: usize,
    /// Only used when every non-backup server is down.
    pub backup: bool,
    /// TLS server name (sent as SNI and verified) when the backend has
    /// `tls`; `None` checks the certificate against [`Self::addr`]'s IP and
    /// sends no SNI.
    pub sni: Option<String>,
}

// === impl FrontendConfig ===

impl FrontendConfig {
    /// A frontend listening on `bind` (push more addresses onto
    /// [`Self::bind`]), with HAProxy-like defaults.
    pub fn new(
        name: impl Into<String>,
        bind: SocketAddr,
        default_backend: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            bind: vec![bind],
            mode: Mode::Http,
            default_backend: default_backend.into(),
            maxconn: 0,
            rate_limit_sessions: 0,
            accept_proxy: false,
            forwardfor: false,
            via: false,
            max_header_size: DEFAULT_MAX_HEADER_SIZE_BYTES,
            timeout_client: DEFAULT_TIMEOUT_CLIENT,
            timeout_http_request: DEFAULT_TIMEOUT_HTTP_REQUEST,
            timeout_http_keep_alive: DEFAULT_TIMEOUT_HTTP_KEEP_ALIVE,
            tls: None,
            splice: Splice::Auto,
            h1_fast_path: true,
        }
    }
}

// === impl BackendConfig ===

impl BackendConfig {
    /// A backend with HAProxy-like defaults (roundrobin, 3 retries, redispatch).
    pub fn new(name: impl Into<String>, servers: Vec<ServerConfig>) -> Self {
        Self {
            name: name.into(),
            balance: L7Algorithm::RoundRobin,
            servers,
            retries: 3,
            redispatch: true,
            timeout_connect: DEFAULT_TIMEOUT_CONNECT,
            timeout_server: DEFAULT_TIMEOUT_SERVER,
            timeout_tunnel: None,
            timeout_queue: DEFAULT_TIMEOUT_QUEUE,
            max_queue: DEFAULT_MAX_QUEUE,
            send_proxy: SendProxy::None,
            pool_max_idle_per_server: DEFAULT_POOL_MAX_IDLE_PER_SERVER,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            tls: false,
            tls_verify: true,
            tls_ca: None,
        }
    }
}

// === impl ServerConfig ===

impl ServerConfig {
    /// A server with weight 1, no maxconn, not a backup, no SNI.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            weight: 1,
            maxconn: 0,
            backup: false,
            sni: None,
        }
    }
}

// === impl ProxyConfig ===

impl ProxyConfig {
    /// A config with the given frontends and backends and default globals.
    pub fn new(frontends: Vec<FrontendConfig>, backends: Vec<BackendConfig>) -> Self {
        Self {
            frontends,
            backends,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}
