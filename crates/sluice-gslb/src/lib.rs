//! DNS global server load balancing: an authoritative DNS server for one
//! zone whose address answers follow the health of the sites behind them.
//!
//! - [`spec`]: what the zone holds ([`ZoneSpec`]: sites, names, their
//!   policies); the binary converts `[gslb]` into it.
//! - [`policy`] (no I/O): which sites and addresses answer a name for a
//!   client, given the sites' health: `failover`, `weighted`, `topology`
//!   (then failover within), with a random value passed in.
//! - [`answer`] (no I/O): one query's bytes in, the response's bytes out
//!   (or nothing): SOA/NS/A/AAAA/CNAME, NXDOMAIN vs NODATA, EDNS(0) and
//!   Client Subnet, truncation, REFUSED outside the zone, FORMERR.
//! - [`rrl`] (no I/O): per-source-prefix response rate limiting, time
//!   passed in.
//! - [`health`]: the sites' health as atomics the server reads and the
//!   binary's health wiring writes.
//! - [`server`]: the UDP and TCP listeners on the caller's tokio runtime,
//!   and the counters behind `/metrics`.
//!
//! See docs/GSLB.md.
#![forbid(unsafe_code)]

pub mod answer;
pub mod health;
pub mod policy;
pub mod rrl;
pub mod server;
pub mod spec;

pub use answer::{Outcome, Transport, Zone, ZoneError};
pub use health::SiteHealth;
pub use policy::{Family, HealthView};
pub use server::{GslbError, Server, ServerConfig, Stats};
pub use spec::{AnswerSpec, NameSpec, PolicyKind, SitePolicy, SiteSpec, TopologyRule, ZoneSpec};
