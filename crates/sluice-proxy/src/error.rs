//! Errors of [`crate::Proxy::start`] and the admin calls.

use std::net::SocketAddr;

/// Why the proxy could not start, or an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is inconsistent (checked before binding anything).
    #[error("invalid proxy configuration: {0}")]
    Config(String),
    /// A listener could not be bound.
    #[error("frontend {frontend}: cannot bind {addr}: {source}")]
    Bind {
        /// Frontend name.
        frontend: String,
        /// Address it tried.
        addr: SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("frontend {frontend}: TLS: {what}")]
    Tls {
        /// Frontend name.
        frontend: String,
        /// What went wrong.
        what: String,
    },
    /// The TLS client settings of a backend could not be loaded.
    #[error("backend {backend}: TLS: {what}")]
    BackendTls {
        /// Backend name.
        backend: String,
        /// What went wrong.
        what: String,
    },
    /// No backend with this name.
    #[error("no backend named {0:?}")]
    NoSuchBackend(String),
    /// No server with this name in the backend.
    #[error("backend {backend:?} has no server named {server:?}")]
    NoSuchServer {
        /// Backend name.
        backend: String,
        /// Server name.
        server: String,
    },
}
