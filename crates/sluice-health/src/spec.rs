//! What a check does: the plain description the lead maps configuration onto.
//!
//! Deliberately independent of sluice-config: the binary translates
//! `[health_check.NAME]` into a [`CheckSpec`], so this crate can be used (and
//! tested) without the configuration model.

use std::time::Duration;

use sluice_core::health::HealthConfig;

/// Default probe timeout (HAProxy's `timeout check` falls back to `inter`;
/// keepalived's `connect_timeout` defaults to 5 s; 1 s keeps a dead real
/// from stalling a 2 s interval).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default jitter, in percent of the interval.
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
/// Default `max_body` for `http-content`, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything about one health check except the target it runs against.
#[derive(Debug, Clone)]
pub struct CheckSpec {
    /// The probe and its type-specific parameters.
    pub probe: ProbeSpec,
    /// Port to probe instead of the target's own (`None`: the target's).
    pub port: Option<u16>,
    /// Time one probe may take; past it the probe fails with a timeout.
    pub timeout: Duration,
    /// Rise, fall, interval, down interval and initial state, as the
    /// sans-IO state machine takes them.
    pub health: HealthConfig,
    /// Random spread of every interval, in percent (0..=100).
    pub jitter_percent: u8,
    /// Routing mark (`SO_MARK`) for the probe's socket, `tcp` and `http`
    /// probes only. With a policy route per mark, a check to the VIP goes
    /// through one chosen real: the data-path (`via_vip`) check of `dr`.
    pub fwmark: Option<u32>,
}

impl CheckSpec {
    /// A spec with the defaults of sluice-core ([`HealthConfig::default`]),
    /// [`DEFAULT_TIMEOUT`] and [`DEFAULT_JITTER_PERCENT`].
    pub fn new(probe: ProbeSpec) -> Self {
        Self {
            probe,
            port: None,
            timeout: DEFAULT_TIMEOUT,
            health: HealthConfig::default(),
            jitter_percent: DEFAULT_JITTER_PERCENT,
            fwmark: None,
        }
    }
}

/// The type of a probe with its parameters.
#[derive(Debug, Clone)]
pub enum ProbeSpec {
    /// ICMP (v4) or ICMPv6 echo request / reply.
    Icmp,
    /// TCP connect, then close.
    Tcp,
    /// SYN, expect SYN-ACK, answer RST: the real's application never
    /// `accept()`s. Needs `CAP_NET_RAW`.
    TcpHalfOpen,
    /// HTTP request; the status decides.
    Http(HttpSpec),
    /// HTTP request; the status and the body decide.
    HttpContent(HttpSpec, ContentSpec),
    /// Run an executable (keepalived `MISC_CHECK`); exit status 0 = up.
    Script {
        /// argv: the program, then its arguments. Not run through a shell.
        command: Vec<String>,
    },
}

impl ProbeSpec {
    /// The configuration keyword of this probe type (`"tcp-half-open"`, ...).
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Icmp => "icmp",
            Self::Tcp => "tcp",
            Self::TcpHalfOpen => "tcp-half-open",
            Self::Http(_) => "http",
            Self::HttpContent(..) => "http-content",
            Self::Script { .. } => "script",
        }
    }
}

/// HTTP request method of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpMethod {
    /// `GET`.
    #[default]
    Get,
    /// `HEAD` (no body; cannot be combined with content checks usefully).
    Head,
}

/// An inclusive range of accepted HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub min: u16,
    /// Highest accepted status.
    pub max: u16,
}

impl StatusRange {
    /// A single status.
    pub const fn single(status: u16) -> Self {
        Self {
            min: status,
            max: status,
        }
    }

    /// True if `status` is within the range.
    pub const fn contains(&self, status: u16) -> bool {
        self.min <= status && status <= self.max
    }
}

/// Parameters of `http` and `http-content` checks.
#[derive(Debug, Clone)]
pub struct HttpSpec {
    /// Request method.
    pub method: HttpMethod,
    /// Request path (with query), starting with `/`.
    pub path: String,
    /// `Host` header (`None`: the target address, `ip:port`).
    pub host: Option<String>,
    /// Accepted statuses; a response passes if any range contains it.
    /// Empty means the default, 200-399.
    pub expect_status: Vec<StatusRange>,
    /// Speak HTTPS (`None`: plain HTTP).
    pub tls: Option<TlsSpec>,
}

impl Default for HttpSpec {
    fn default() -> Self {
        Self {
            method: HttpMethod::Get,
            path: "/".to_owned(),
            host: None,
            expect_status: Vec::new(),
            tls: None,
        }
    }
}

/// The status range used when [`HttpSpec::expect_status`] is empty.
pub const DEFAULT_EXPECT_STATUS: StatusRange = StatusRange { min: 200, max: 399 };

/// TLS settings of an HTTPS check.
///
/// The default does **not** verify the real's certificate, like HAProxy's
/// `check-ssl verify none`: a real usually carries the certificate of the
/// service name, not of its own address, and a health check asks "does it
/// answer", not "is it who it claims to be". Set `verify` with a CA bundle
/// to check the chain and the name anyway.
#[derive(Debug, Clone, Default)]
pub struct TlsSpec {
    /// Verify the certificate against these CAs.
    pub verify: Option<TlsVerify>,
    /// SNI and verification name (`None`: the `Host` header if set, else
    /// the target IP address).
    pub server_name: Option<String>,
}

/// Certificate verification of an HTTPS check.
#[derive(Debug, Clone)]
pub struct TlsVerify {
    /// PEM text with one or more CA certificates to trust.
    pub ca_pem: String,
}

/// Body checks of an `http-content` check. When both are set, both must
/// match.
#[derive(Debug, Clone)]
pub struct ContentSpec {
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_regex: Option<String>,
    /// Bytes of body read at most; a longer body fails the check.
    pub max_body_bytes: usize,
}

impl Default for ContentSpec {
    fn default() -> Self {
        Self {
            body_contains: None,
            body_regex: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}
