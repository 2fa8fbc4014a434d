//! Health-check probe runners (ICMP, TCP, half-open, HTTP, script) feeding
//! sluice-core's state machine.
//!
//! - [`spec`]: what a check does ([`CheckSpec`], [`ProbeSpec`]); the binary
//!   maps `[health_check.NAME]` onto it.
//! - [`Probe`]: one prepared probe, run once with a timeout; it answers a
//!   latency or a [`ProbeFailure`] (a class plus a reason such as
//!   `"connection refused"`, `"timeout after 1s"`,
//!   `"status 500 not in 200-399"`).
//! - [`Checker`]: one tokio task per [`Target`], probing on a jittered timer,
//!   feeding [`sluice_core::health::HealthState`], publishing
//!   [`HealthEvent`]s and logging them under the `sluice::health` target;
//!   [`CheckerHandle::snapshot`] serves `sluice ctl`.
//!
//! Privileges: `icmp` opens a raw socket when it may (else an unprivileged
//! ping socket); `tcp-half-open` needs `CAP_NET_RAW`.
//!
//! Not implemented: probing "through the data path" (to the VIP with the
//! real's MAC, for `dr` services).
#![forbid(unsafe_code)]

mod checker;
mod probe;
mod rng;
pub mod spec;

pub use checker::{
    Checker, CheckerError, CheckerHandle, EVENT_CHANNEL_CAPACITY, HealthEvent, LOG_TARGET,
    LastCheck, Target, TargetStatus,
};
pub use probe::{ENV_ADDR, ENV_PORT, Probe, ProbeFailure};
pub use spec::{
    CheckSpec, ContentSpec, HttpMethod, HttpSpec, ProbeSpec, StatusRange, TlsSpec, TlsVerify,
};

use sluice_core::health::HealthConfigError;

/// An invalid check specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// Rise, fall or intervals out of range.
    #[error(transparent)]
    Health(#[from] HealthConfigError),
    /// A zero timeout would fail every probe.
    #[error("check timeout must be greater than zero")]
    ZeroTimeout,
    /// `script` without a program.
    #[error("script check needs a command")]
    EmptyCommand,
    /// A routing mark on a probe that does not connect a TCP socket.
    #[error("a routing mark (via_vip) needs a tcp, http or http-content check")]
    MarkUnsupported,
    /// HTTP path not of the form `/path?query`.
    #[error("invalid HTTP path {0:?} (must start with '/')")]
    Path(String),
    /// `Host` value not valid in a header.
    #[error("invalid Host header {0:?}")]
    Host(String),
    /// A status range with min > max or past 999.
    #[error("invalid status range {0}-{1}")]
    StatusRange(u16, u16),
    /// `http-content` with neither a string nor a regex.
    #[error("http-content check needs body_contains or body_regex")]
    NoContentMatch,
    /// The body regex does not compile.
    #[error("invalid body regex: {0}")]
    Regex(String),
    /// TLS configuration (CA bundle, protocol versions).
    #[error("TLS: {0}")]
    Tls(String),
    /// SNI / verification name not a DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
}
