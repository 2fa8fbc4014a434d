//! The typed configuration model that [`crate::parse`] produces.
//!
//! Every value here is already validated and has its default applied
//! (including inheritance from `[defaults]`), so consumers never re-check.
//! The meaning of each key, its default and its range are in docs/CONFIG.md.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

// === Limits and defaults ===
// Each is public so other crates (and the docs) agree with the validator.

/// Default address of the admin/metrics HTTP endpoint.
pub const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9900);
/// Most L7 worker threads `global.threads` accepts.
pub const MAX_THREADS: u16 = 1024;
/// Highest CPU id `global.cpu_map` accepts (Linux `CPU_SETSIZE` is 1024).
pub const MAX_CPU_ID: u16 = 1023;

/// Default `timeout_connect`: time to establish a connection to a server.
pub const DEFAULT_TIMEOUT_CONNECT: Duration = Duration::from_secs(5);
/// Default `timeout_client`: client inactivity timeout.
pub const DEFAULT_TIMEOUT_CLIENT: Duration = Duration::from_secs(30);
/// Default `timeout_server`: server inactivity timeout.
pub const DEFAULT_TIMEOUT_SERVER: Duration = Duration::from_secs(30);
/// Default `timeout_http_request`: time to receive a complete request head.
pub const DEFAULT_TIMEOUT_HTTP_REQUEST: Duration = Duration::from_secs(10);
/// Default `timeout_http_keep_alive`: idle time between two requests on a connection.
pub const DEFAULT_TIMEOUT_HTTP_KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Default `timeout_queue`: time a request may wait for a free server slot.
pub const DEFAULT_TIMEOUT_QUEUE: Duration = Duration::from_secs(5);
/// Default `hard_stop_after`: how long a graceful shutdown lets open
/// connections (tunnels included) finish before cutting them.
pub const DEFAULT_HARD_STOP_AFTER: Duration = Duration::from_secs(10);
/// Default `retries`: connection attempts to servers after the first fails.
pub const DEFAULT_RETRIES: u32 = 3;
/// Most `retries` accepted.
pub const MAX_RETRIES: u32 = 100;
/// Default `maxconn`: concurrent client connections per frontend.
pub const DEFAULT_MAXCONN: u32 = 10_000;
/// Most `maxconn` accepted (frontends and servers).
pub const MAX_MAXCONN: u32 = 10_000_000;

/// Default lowest `local_port_range` port (`fullnat`): above the
/// well-known ports.
pub const DEFAULT_LOCAL_PORT_MIN: u16 = 1024;
/// Default highest `local_port_range` port (`fullnat`): below Linux's
/// default ephemeral range (32768–60999), so the LB's own connections
/// from a local address never take a port the data plane hands out.
pub const DEFAULT_LOCAL_PORT_MAX: u16 = 32767;

/// Default `session_capacity`: LRU session entries per CPU.
pub const DEFAULT_SESSION_CAPACITY: u32 = 65_536;
/// Fewest `session_capacity` entries per CPU.
pub const MIN_SESSION_CAPACITY: u32 = 1024;
/// Most `session_capacity` entries per CPU (2^24).
pub const MAX_SESSION_CAPACITY: u32 = 16_777_216;
/// Default Maglev lookup table size (a prime, as Katran uses).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u32 = 65_537;
/// Largest Maglev table size accepted (2^24; the largest prime below it is 16777213).
pub const MAX_MAGLEV_TABLE_SIZE: u32 = 16_777_216;
/// The Maglev table must have at least this many slots per real, so that
/// weights are honoured to within about 1% (Maglev paper, section 3.4).
pub const MAGLEV_SLOTS_PER_REAL: u32 = 100;
/// Longest interface name Linux accepts (`IFNAMSIZ` minus the NUL).
pub const MAX_INTERFACE_NAME_LEN: usize = 15;
/// Most an L4 real's `weight` accepts.
pub const MAX_L4_WEIGHT: u16 = 65_535;

/// Default `max_header_size` of a frontend, in bytes.
pub const DEFAULT_MAX_HEADER_SIZE: u32 = 16_384;
/// Smallest `max_header_size`, in bytes.
pub const MIN_MAX_HEADER_SIZE: u32 = 1024;
/// Largest `max_header_size`, in bytes (1 MiB).
pub const MAX_MAX_HEADER_SIZE: u32 = 1_048_576;
/// Longest ALPN protocol id, in bytes (RFC 7301: a one-byte length).
pub const MAX_ALPN_LEN: usize = 255;
/// Default `pool_idle`: idle pooled connections kept per server.
pub const DEFAULT_POOL_IDLE: u32 = 64;
/// Most `pool_idle` accepted.
pub const MAX_POOL_IDLE: u32 = 100_000;
/// Default server `weight` (HAProxy's default).
pub const DEFAULT_SERVER_WEIGHT: u16 = 1;
/// Most a server's `weight` accepts (HAProxy's limit).
pub const MAX_SERVER_WEIGHT: u16 = 256;

/// Default health check `interval`.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(2);
/// Default health check `timeout`.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `rise`: consecutive successes to mark a target up.
pub const DEFAULT_RISE: u32 = 2;
/// Default `fall`: consecutive failures to mark a target down.
pub const DEFAULT_FALL: u32 = 3;
/// Most `rise` or `fall` accepted.
pub const MAX_RISE_FALL: u32 = 100;
/// Default `jitter`, in percent of the interval.
pub const DEFAULT_JITTER_PERCENT: u8 = 10;
/// Most `jitter` accepted, in percent of the interval.
pub const MAX_JITTER_PERCENT: u8 = 50;
/// Default `max_body` read by an http-content check, in bytes.
pub const DEFAULT_MAX_BODY: u32 = 65_536;
/// Largest `max_body`, in bytes (1 MiB).
pub const MAX_MAX_BODY: u32 = 1_048_576;

/// Default VRRP `advert_interval`.
pub const DEFAULT_ADVERT_INTERVAL: Duration = Duration::from_secs(1);
/// Most `virtual_addresses` of one instance (VRRPv3's count is a byte).
pub const MAX_VRRP_ADDRESSES: usize = 255;
/// Default `garp_repeat`: announcements sent on becoming master
/// (keepalived's `garp_master_repeat`).
pub const DEFAULT_GARP_REPEAT: u8 = 5;
/// Most `garp_repeat` accepted.
pub const MAX_GARP_REPEAT: u8 = 100;
/// Default `garp_interval`: time between those announcements.
pub const DEFAULT_GARP_INTERVAL: Duration = Duration::from_millis(100);
/// Default `track_script_interval`.
pub const DEFAULT_TRACK_SCRIPT_INTERVAL: Duration = Duration::from_secs(2);
/// VRRPv3 carries the advert interval in centiseconds (RFC 5798 section 5.2.7),
/// so it must be a multiple of this.
pub const ADVERT_INTERVAL_UNIT: Duration = Duration::from_millis(10);
/// Largest VRRPv3 advert interval: 4095 centiseconds (a 12-bit field).
pub const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(40_950);

/// Default connection-state sync `interval`.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(1);

// === Keyword enums ===

/// A string-valued enum keyword: how it is spelled in the file.
pub trait Keyword: Sized + Copy + 'static {
    /// Every accepted spelling with its value, in documentation order.
    const ALL: &'static [(&'static str, Self)];
    /// The spelling of this value in the file.
    fn as_str(self) -> &'static str;
}

/// Defines a keyword enum, its [`Keyword`] impl and `Display`.
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl Keyword for $name {
            const ALL: &'static [(&'static str, Self)] = &[ $( ($text, Self::$variant), )+ ];
            fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text, )+ }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum! {
    /// `global.log_level`.
    pub enum LogLevel {
        /// Errors only.
        Error = "error",
        /// Warnings and errors.
        Warn = "warn",
        /// Normal operational messages (the default).
        Info = "info",
        /// Debugging detail.
        Debug = "debug",
        /// Everything.
        Trace = "trace",
    }
}

keyword_enum! {
    /// `global.log_format`.
    pub enum LogFormat {
        /// Human-readable lines (the default).
        Text = "text",
        /// One JSON object per line.
        Json = "json",
    }
}

keyword_enum! {
    /// `l4_service.protocol`.
    pub enum Protocol {
        /// TCP.
        Tcp = "tcp",
        /// UDP.
        Udp = "udp",
    }
}

keyword_enum! {
    /// `l4_service.method`: how packets reach the reals.
    pub enum ForwardingMethod {
        /// Direct routing: rewrite the destination MAC; reals own the VIP on a loopback.
        Dr = "dr",
        /// IP-in-IP (or IPv6-in-IPv6) tunnelling to the real.
        Tun = "tun",
        /// Destination NAT; replies must route back through the LB.
        Nat = "nat",
        /// Source and destination NAT from `local_addresses`.
        FullNat = "fullnat",
    }
}

keyword_enum! {
    /// `l4_service.scheduler`, with the names IPVS uses.
    pub enum Scheduler {
        /// Round robin.
        Rr = "rr",
        /// Weighted round robin.
        Wrr = "wrr",
        /// Least connections.
        Lc = "lc",
        /// Weighted least connections.
        Wlc = "wlc",
        /// Shortest expected delay.
        Sed = "sed",
        /// Never queue.
        Nq = "nq",
        /// Source hashing.
        Sh = "sh",
        /// Destination hashing.
        Dh = "dh",
        /// Maglev consistent hashing (the default).
        Mh = "mh",
    }
}

keyword_enum! {
    /// `l4_service.xdp_mode`.
    pub enum XdpMode {
        /// The driver's native XDP hook (the default).
        Native = "native",
        /// Generic (SKB) XDP: works on any interface, slower.
        Generic = "generic",
    }
}

keyword_enum! {
    /// `l4_service.on_real_down`: what happens to sessions pinned to a real that goes down.
    pub enum OnRealDown {
        /// Keep existing sessions on the real (the default).
        Keep = "keep",
        /// Expire them, so their next packet is scheduled anew.
        Expire = "expire",
    }
}

keyword_enum! {
    /// `splice` of a `mode = "tcp"` frontend: when its relay moves bytes
    /// with splice(2) instead of copying them.
    pub enum Splice {
        /// Copy, and switch a direction to splice once it carries bulk (the default).
        Auto = "auto",
        /// Splice from the first byte.
        Always = "always",
        /// Always copy.
        Never = "never",
    }
}

keyword_enum! {
    /// `mode` of a frontend or backend.
    pub enum Mode {
        /// HTTP/1.1 and HTTP/2 proxying.
        Http = "http",
        /// Plain TCP stream proxying.
        Tcp = "tcp",
    }
}

keyword_enum! {
    /// `backend.balance`, with HAProxy's names.
    pub enum Balance {
        /// Weighted round robin, weights changeable at run time (the default).
        RoundRobin = "roundrobin",
        /// Weighted round robin with static weights.
        StaticRr = "static-rr",
        /// Fewest active connections.
        LeastConn = "leastconn",
        /// Hash of the client address.
        Source = "source",
        /// Hash of the request URI (http mode only).
        Uri = "uri",
        /// Power of two random choices.
        Random = "random",
        /// Consistent hashing of the client address (stable when servers change).
        Consistent = "consistent",
    }
}

keyword_enum! {
    /// `backend.send_proxy`: PROXY protocol header sent to servers.
    pub enum SendProxy {
        /// Send none (the default).
        None = "none",
        /// PROXY protocol version 1 (text).
        V1 = "v1",
        /// PROXY protocol version 2 (binary).
        V2 = "v2",
    }
}

keyword_enum! {
    /// `health_check.NAME.type`.
    pub enum CheckType {
        /// ICMP echo.
        Icmp = "icmp",
        /// TCP connect.
        Tcp = "tcp",
        /// SYN, expect SYN-ACK, then RST.
        TcpHalfOpen = "tcp-half-open",
        /// HTTP request, check the status.
        Http = "http",
        /// HTTP request, check the status and the body.
        HttpContent = "http-content",
        /// Run a command; exit status 0 means up.
        Script = "script",
    }
}

keyword_enum! {
    /// `health_check.NAME.method` of an HTTP check.
    pub enum HttpMethod {
        /// GET (the default).
        Get = "GET",
        /// HEAD.
        Head = "HEAD",
    }
}

keyword_enum! {
    /// `health_check.NAME.initial_state`.
    pub enum InitialState {
        /// Start up: traffic flows before the first check passes.
        Up = "up",
        /// Start down until `rise` checks pass (the default).
        Down = "down",
    }
}

// === The model ===

/// A whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[global]`.
    pub global: Global,
    /// `[defaults]`, as given (already applied to frontends and backends).
    pub defaults: Defaults,
    /// `[[l4_service]]`, in file order.
    pub l4_services: Vec<L4Service>,
    /// `[[frontend]]`, in file order.
    pub frontends: Vec<Frontend>,
    /// `[[backend]]`, in file order.
    pub backends: Vec<Backend>,
    /// `[health_check.NAME]`, sorted by name.
    pub health_checks: Vec<HealthCheck>,
    /// `[[vrrp_instance]]`, in file order.
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `[sync]`.
    pub sync: StateSync,
    /// `[gslb]`: the authoritative DNS zone (see docs/GSLB.md).
    pub gslb: Option<crate::gslb::Gslb>,
}

/// `[global]`: process-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Global {
    /// Socket address of the admin/metrics HTTP endpoint.
    pub admin: SocketAddr,
    /// Log verbosity.
    pub log_level: LogLevel,
    /// Log line format.
    pub log_format: LogFormat,
    /// L7 worker threads; `None` means one per CPU (resolved by the binary).
    pub threads: Option<u16>,
    /// CPU ids to pin worker threads to, in order; empty means no pinning.
    pub cpu_map: Vec<u16>,
    /// How long a graceful shutdown lets open connections finish.
    pub hard_stop_after: Duration,
}

/// `[defaults]`: values inherited by frontends and backends that don't set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// Time to establish a connection to a server.
    pub timeout_connect: Duration,
    /// Client inactivity timeout.
    pub timeout_client: Duration,
    /// Server inactivity timeout.
    pub timeout_server: Duration,
    /// Time to receive a complete HTTP request head.
    pub timeout_http_request: Duration,
    /// Idle time allowed between two requests on one connection.
    pub timeout_http_keep_alive: Duration,
    /// Time a request may wait in the queue for a free server slot.
    pub timeout_queue: Duration,
    /// Idle timeout of WebSocket/Upgrade tunnels, both ways; `None`: the
    /// client and server timeouts.
    pub timeout_tunnel: Option<Duration>,
    /// Connection attempts to servers after the first fails.
    pub retries: u32,
    /// Concurrent client connections per frontend.
    pub maxconn: u32,
}

/// `[[l4_service]]`: an L4 virtual service handled by the XDP fast path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L4Service {
    /// Unique name.
    pub name: String,
    /// Virtual IP address.
    pub vip: IpAddr,
    /// Virtual port; 0 means every port.
    pub port: u16,
    /// Transport protocol.
    pub protocol: Protocol,
    /// Forwarding method.
    pub method: ForwardingMethod,
    /// Scheduler picking a real for a new flow.
    pub scheduler: Scheduler,
    /// Client-IP affinity: the same client goes to the same real within this time.
    pub persistence: Option<Duration>,
    /// Interface the XDP program attaches to.
    pub interface: String,
    /// `nat` two-arm: the interface toward the reals (the program attaches
    /// to it too, and packets are redirected between the two); `None`:
    /// one-arm, the reals behind `interface`.
    pub real_interface: Option<String>,
    /// XDP attach mode.
    pub xdp_mode: XdpMode,
    /// LRU session entries per CPU.
    pub session_capacity: u32,
    /// Maglev lookup table size (prime).
    pub maglev_table_size: u32,
    /// Outer source address for `tun` (default: the interface's address).
    pub tun_source: Option<IpAddr>,
    /// Vary the outer source per flow for `tun`, so reals' NICs spread flows (RSS).
    pub tun_vary_source: bool,
    /// Source addresses for `fullnat` connections to reals.
    pub local_addresses: Vec<IpAddr>,
    /// `fullnat`: the lowest and highest local port handed out.
    pub local_port_range: (u16, u16),
    /// `fullnat` TCP: insert the client's address and port as a TOA
    /// option (kind 254) into each connection's first ACK.
    pub toa: bool,
    /// Name of the `[health_check.NAME]` probing the reals.
    pub health_check: Option<String>,
    /// What happens to sessions of a real that goes down.
    pub on_real_down: OnRealDown,
    /// When every real is down, keep sending to all of them instead of dropping.
    pub fail_open: bool,
    /// The real servers, in file order.
    pub reals: Vec<Real>,
}

/// `[[l4_service.real]]`: one real server of an L4 service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Real {
    /// Address of the real (same family as the VIP).
    pub address: IpAddr,
    /// Destination port at the real; `None` keeps the packet's port.
    pub port: Option<u16>,
    /// Relative weight; 0 drains (no new flows).
    pub weight: u16,
}

/// `[[frontend]]`: an L7 listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontend {
    /// Unique name.
    pub name: String,
    /// Addresses to listen on.
    pub bind: Vec<SocketAddr>,
    /// Proxy mode.
    pub mode: Mode,
    /// Backend receiving the traffic (same mode).
    pub default_backend: String,
    /// Concurrent client connections.
    pub maxconn: u32,
    /// New sessions accepted per second, if limited.
    pub rate_limit_sessions: Option<u32>,
    /// Client inactivity timeout.
    pub timeout_client: Duration,
    /// Time to receive a complete request head.
    pub timeout_http_request: Duration,
    /// Idle time between two requests on a connection.
    pub timeout_http_keep_alive: Duration,
    /// Largest request head accepted, in bytes.
    pub max_header_size: u32,
    /// Expect a PROXY protocol v1/v2 header on every accepted connection.
    pub accept_proxy: bool,
    /// Add `X-Forwarded-For` and `X-Forwarded-Proto` (http mode).
    pub forwardfor: bool,
    /// TLS certificates; empty means plain text.
    pub tls: Vec<TlsCert>,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
    /// splice(2) use of the `mode = "tcp"` relay.
    pub splice: Splice,
    /// Relay plain HTTP/1 exchanges on the fast path (else hyper's path).
    pub h1_fast_path: bool,
}

/// `[[frontend.tls]]`: one certificate and the names it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCert {
    /// Path of the PEM certificate chain (not opened by this crate).
    pub cert: String,
    /// Path of the PEM private key (not opened by this crate).
    pub key: String,
    /// SNI names this certificate is chosen for; empty means the default certificate.
    pub sni: Vec<String>,
}

/// `[[backend]]`: a pool of L7 servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    /// Unique name.
    pub name: String,
    /// Proxy mode.
    pub mode: Mode,
    /// Load-balancing algorithm.
    pub balance: Balance,
    /// Time to establish a connection to a server.
    pub timeout_connect: Duration,
    /// Server inactivity timeout.
    pub timeout_server: Duration,
    /// Time a request may wait for a free server slot.
    pub timeout_queue: Duration,
    /// Idle timeout of WebSocket/Upgrade tunnels, both ways; `None`: the
    /// client and server timeouts.
    pub timeout_tunnel: Option<Duration>,
    /// Connection attempts after the first fails.
    pub retries: u32,
    /// Allow a retry to go to another server.
    pub redispatch: bool,
    /// Name of the `[health_check.NAME]` probing the servers.
    pub health_check: Option<String>,
    /// Idle pooled connections kept per server.
    pub pool_idle: u32,
    /// Speak TLS to the servers.
    pub tls: bool,
    /// Verify the servers' certificates (when `tls`).
    pub tls_verify: bool,
    /// PEM file of the CA that signs the servers' certificates (`None`: the
    /// system's bundle). Only the path is checked here.
    pub tls_ca: Option<String>,
    /// PROXY protocol header sent to servers.
    pub send_proxy: SendProxy,
    /// The servers, in file order (at least one).
    pub servers: Vec<Server>,
}

/// `[[backend.server]]`: one L7 server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Name, unique within the backend.
    pub name: String,
    /// Address and port.
    pub address: SocketAddr,
    /// Relative weight; 0 drains.
    pub weight: u16,
    /// Concurrent connections to this server, if limited (more wait in the queue).
    pub maxconn: Option<u32>,
    /// Used only when every non-backup server is down.
    pub backup: bool,
    /// Administratively disabled.
    pub disabled: bool,
    /// TLS server name to send and verify (with the backend's `tls`);
    /// `None`: the address is verified and no SNI is sent.
    pub sni: Option<String>,
}

/// `[health_check.NAME]`: a named health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// The NAME in `[health_check.NAME]`.
    pub name: String,
    /// What is probed, with the type-specific parameters.
    pub probe: Probe,
    /// Port to probe instead of the target's own.
    pub port: Option<u16>,
    /// Time between probes while the target is up.
    pub interval: Duration,
    /// Time a probe may take (less than `interval` and `down_interval`).
    pub timeout: Duration,
    /// Consecutive successes that mark a target up.
    pub rise: u32,
    /// Consecutive failures that mark a target down.
    pub fall: u32,
    /// Time between probes while the target is down (defaults to `interval`).
    pub down_interval: Duration,
    /// State before the first verdict.
    pub initial_state: InitialState,
    /// Random spread of each interval, in percent.
    pub jitter: u8,
    /// Probe through the data path (to the VIP via the real), for L4 `dr` services.
    pub via_vip: bool,
}

/// The type of a health check with its type-specific parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// ICMP echo.
    Icmp,
    /// TCP connect.
    Tcp,
    /// SYN, SYN-ACK, RST.
    TcpHalfOpen,
    /// HTTP request, status checked.
    Http(HttpProbe),
    /// HTTP request, status and body checked.
    HttpContent(HttpProbe, ContentMatch),
    /// Run `command` (argv); exit status 0 means up.
    Script {
        /// The argv, at least the program.
        command: Vec<String>,
    },
}

impl Probe {
    /// The `type` keyword of this probe.
    pub fn check_type(&self) -> CheckType {
        match self {
            Self::Icmp => CheckType::Icmp,
            Self::Tcp => CheckType::Tcp,
            Self::TcpHalfOpen => CheckType::TcpHalfOpen,
            Self::Http(_) => CheckType::Http,
            Self::HttpContent(..) => CheckType::HttpContent,
            Self::Script { .. } => CheckType::Script,
        }
    }
}

/// Parameters of `http` and `http-content` checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpProbe {
    /// Request path.
    pub path: String,
    /// Request method.
    pub method: HttpMethod,
    /// `Host` header, if set (otherwise the target address).
    pub host: Option<String>,
    /// Accepted status codes: a response passes if any range contains its status.
    pub expect_status: Vec<StatusRange>,
    /// Use HTTPS.
    pub tls: bool,
}

/// An inclusive range of HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest accepted status.
    pub min: u16,
    /// Highest accepted status.
    pub max: u16,
}

impl StatusRange {
    /// True if `status` is within the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

/// Body checks of an `http-content` check (at least one of the two is set;
/// when both are, both must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentMatch {
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must match this regular expression (validated to compile).
    pub body_regex: Option<String>,
    /// Bytes of body read at most.
    pub max_body: u32,
}

/// `[[vrrp_instance]]`: one VRRPv3 instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VrrpInstance {
    /// Unique name.
    pub name: String,
    /// Interface adverts are sent on.
    pub interface: String,
    /// Virtual router id, unique per interface.
    pub virtual_router_id: u8,
    /// Priority (higher wins).
    pub priority: u8,
    /// Time between adverts (a multiple of 10 ms).
    pub advert_interval: Duration,
    /// Addresses owned by the master (one family).
    pub virtual_addresses: Vec<IpAddr>,
    /// A higher-priority backup takes over from a lower-priority master.
    pub preempt: bool,
    /// Unicast peers instead of multicast; empty means multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// How long after start a higher-priority backup waits before it
    /// preempts a live master (0: at once).
    pub preempt_delay: Duration,
    /// Gratuitous ARPs / unsolicited neighbour advertisements per virtual
    /// address on becoming master.
    pub garp_repeat: u8,
    /// Time between those announcements.
    pub garp_interval: Duration,
    /// Interfaces whose link-down makes this instance give up mastership.
    pub track_interfaces: Vec<String>,
    /// A command (argv, no shell) whose failure (non-zero exit, or no exit
    /// within the interval) puts the instance in the fault state; empty:
    /// none.
    pub track_script: Vec<String>,
    /// Time between runs of `track_script`, and each run's time limit.
    pub track_script_interval: Duration,
    /// Whether the node's own data plane is watched: the XDP program
    /// still attached, the proxy's frontends still accepting.
    pub track_data_plane: bool,
}

/// `[sync]`: connection-state sync between load balancers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSync {
    /// Whether sync runs.
    pub enabled: bool,
    /// Address to receive sync messages on (required when enabled).
    pub listen: Option<SocketAddr>,
    /// Peers to send sync messages to.
    pub peers: Vec<SocketAddr>,
    /// Time between sync batches.
    pub interval: Duration,
}

// === impl Config ===

impl Config {
    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// The health check named `name`.
    pub fn health_check(&self, name: &str) -> Option<&HealthCheck> {
        self.health_checks.iter().find(|c| c.name == name)
    }

    /// One line describing what the configuration holds, e.g.
    /// `ok: 2 L4 services (5 reals), 1 frontend, 1 backend (3 servers), 2 health checks, 1 VRRP instance`.
    pub fn summary(&self) -> String {
        let reals: usize = self.l4_services.iter().map(|s| s.reals.len()).sum();
        let servers: usize = self.backends.iter().map(|b| b.servers.len()).sum();
        let mut line = format!(
            "ok: {} ({}), {}, {} ({}), {}, {}",
            plural(self.l4_services.len(), "L4 service", "L4 services"),
            plural(reals, "real", "reals"),
            plural(self.frontends.len(), "frontend", "frontends"),
            plural(self.backends.len(), "backend", "backends"),
            plural(servers, "server", "servers"),
            plural(self.health_checks.len(), "health check", "health checks"),
            plural(self.vrrp_instances.len(), "VRRP instance", "VRRP instances"),
        );
        if let Some(g) = &self.gslb {
            line.push_str(&format!(
                ", GSLB zone {} ({}, {})",
                g.zone,
                plural(g.names.len(), "name", "names"),
                plural(g.sites.len(), "site", "sites")
            ));
        }
        if self.sync.enabled {
            line.push_str(&format!(
                ", state sync to {}",
                plural(self.sync.peers.len(), "peer", "peers")
            ));
        }
        line
    }
}

/// `"1 frontend"` / `"2 frontends"`.
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}
