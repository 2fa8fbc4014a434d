//! The probes: one attempt each, bounded by a timeout, reporting a latency or
//! a classified failure with a human-readable reason.
//!
//! A [`Probe`] is prepared once from a [`ProbeSpec`] (regexes compiled, TLS
//! configuration built) and then run any number of times against any
//! address.

mod checksum;
mod half_open;
mod http;
mod icmp;
mod raw;
mod script;
mod tcp;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use sluice_core::health::FailureReason;
use tokio::time::Instant;

use crate::SpecError;
use crate::spec::ProbeSpec;

pub use script::{ENV_ADDR, ENV_PORT};

/// A failed probe: the class the state machine counts, and the reason an
/// operator reads (`"connection refused"`, `"timeout after 1s"`,
/// `"status 500 not in 200-399"`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeFailure {
    /// Classification, fed to `HealthState::observe`.
    pub reason: FailureReason,
    /// What happened, for logs, events and `sluice ctl`.
    pub detail: String,
}

impl ProbeFailure {
    pub(crate) fn new(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }

    pub(crate) fn timeout(after: Duration) -> Self {
        Self::new(
            FailureReason::Timeout,
            format!("timeout after {}", fmt_duration(after)),
        )
    }

    pub(crate) fn other(detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Self::new(FailureReason::Other(detail.clone()), detail)
    }

    /// Maps a socket error of `what` ("connect", "send", ...) onto a class.
    pub(crate) fn io(what: &str, err: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused => Self::new(FailureReason::Refused, "connection refused"),
            K::ConnectionReset | K::ConnectionAborted => {
                Self::new(FailureReason::Reset, format!("{what}: connection reset"))
            }
            K::HostUnreachable | K::NetworkUnreachable => {
                Self::new(FailureReason::Unreachable, format!("{what}: {err}"))
            }
            K::PermissionDenied => Self::other(format!(
                "{what}: {err} (raw-socket probes need CAP_NET_RAW)"
            )),
            _ => Self::other(format!("{what}: {err}")),
        }
    }
}

impl fmt::Display for ProbeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ProbeFailure {}

/// `1s`, `1.5s`, `250ms`, `800µs`: short, for reasons.
pub(crate) fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        if d.subsec_millis() == 0 {
            format!("{}s", d.as_secs())
        } else {
            let secs = format!("{:.3}", d.as_secs_f64());
            format!("{}s", secs.trim_end_matches('0'))
        }
    } else if d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// A prepared probe, with the state it keeps between runs (the idle
/// socket of a `tcp` check).
#[derive(Debug)]
pub struct Probe {
    kind: Kind,
    /// `SO_MARK` for connecting probes (see [`crate::CheckSpec::fwmark`]).
    mark: Option<u32>,
}

#[derive(Debug)]
enum Kind {
    Icmp,
    Tcp(tcp::TcpProber),
    HalfOpen,
    Http(Arc<http::HttpProbe>),
    Script(Arc<[String]>),
}

// === impl Probe ===

impl Probe {
    /// Prepares `spec`: compiles regexes, parses the path and the CA bundle,
    /// builds the TLS client configuration.
    ///
    /// # Errors
    ///
    /// A [`SpecError`] naming the invalid parameter.
    pub fn new(spec: &ProbeSpec) -> Result<Self, SpecError> {
        let kind = match spec {
            ProbeSpec::Icmp => Kind::Icmp,
            ProbeSpec::Tcp => Kind::Tcp(tcp::TcpProber::default()),
            ProbeSpec::TcpHalfOpen => Kind::HalfOpen,
            ProbeSpec::Http(h) => Kind::Http(Arc::new(http::HttpProbe::new(h, None)?)),
            ProbeSpec::HttpContent(h, c) => Kind::Http(Arc::new(http::HttpProbe::new(h, Some(c))?)),
            ProbeSpec::Script { command } => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(SpecError::EmptyCommand);
                }
                Kind::Script(command.clone().into())
            }
        };
        Ok(Self { kind, mark: None })
    }

    /// Sets the routing mark of the sockets of `tcp` and `http` probes.
    ///
    /// # Errors
    ///
    /// [`SpecError::MarkUnsupported`] for probe types that do not connect.
    pub fn with_mark(mut self, mark: Option<u32>) -> Result<Self, SpecError> {
        if mark.is_some() && !matches!(self.kind, Kind::Tcp(_) | Kind::Http(_)) {
            return Err(SpecError::MarkUnsupported);
        }
        self.mark = mark;
        Ok(self)
    }

    /// Runs the probe once against `addr:port` (the port is ignored by
    /// `icmp` and `script`), failing with a timeout after `timeout`.
    ///
    /// Returns the latency: the round trip of the echo or SYN for `icmp`
    /// and `tcp-half-open`, connect time for `tcp`, the whole exchange for
    /// `http`/`http-content`, the run time for `script`.
    ///
    /// # Errors
    ///
    /// The failure, classified, with a reason.
    pub async fn run(
        &mut self,
        addr: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<Duration, ProbeFailure> {
        let target = SocketAddr::new(addr, port);
        match &mut self.kind {
            // The script probe enforces its own timeout: it must kill and
            // reap the process group, which a dropped future cannot await.
            Kind::Script(argv) => script::probe(argv, target, timeout).await,
            Kind::Icmp => with_timeout(timeout, icmp::probe(addr)).await,
            Kind::Tcp(p) => with_timeout(timeout, p.probe(target, self.mark)).await,
            Kind::HalfOpen => with_timeout(timeout, half_open::probe(target)).await,
            Kind::Http(h) => with_timeout(timeout, h.probe(target, self.mark)).await,
        }
    }
}

async fn with_timeout(
    timeout: Duration,
    fut: impl Future<Output = Result<Duration, ProbeFailure>>,
) -> Result<Duration, ProbeFailure> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(ProbeFailure::timeout(timeout)))
}

/// Elapsed time since `start`, the probes' latency.
pub(crate) fn since(start: Instant) -> Duration {
    start.elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_secs(1)), "1s");
        assert_eq!(fmt_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(fmt_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(fmt_duration(Duration::from_micros(800)), "800µs");
    }

    #[test]
    fn io_errors_are_classified() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let f = ProbeFailure::io("connect", &e);
        assert_eq!(f.reason, FailureReason::Refused);
        assert_eq!(f.to_string(), "connection refused");
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(ProbeFailure::io("read", &e).reason, FailureReason::Reset);
    }
}
