//! High availability between sluice peers: VRRPv3 (RFC 5798) run on the
//! caller's tokio runtime, and the watchdog that takes a node out of the
//! election when its own data plane is unhealthy.
//!
//! - [`vrrp`]: one virtual router per [`VrrpSpec`]; the state machine is
//!   `sluice_core::vrrp` (sans-IO), the advertisement's format
//!   `sluice_wire::vrrp`; here are the sockets ([`socket`]), the virtual
//!   addresses over rtnetlink ([`link`]) and the announcements of a new
//!   master ([`announce`]).
//! - [`track`]: the watchdog (tracked interfaces, the XDP program still
//!   attached, the proxy's frontends still accepting, a tracked script).
#![forbid(unsafe_code)]

pub mod announce;
pub mod link;
pub mod socket;
pub mod sync;
pub mod track;
pub mod vrrp;

pub use track::TrackSpec;
pub use vrrp::{Instance, InstanceStatus, VrrpSpec};

/// What can go wrong starting or running HA.
#[derive(Debug, thiserror::Error)]
pub enum HaError {
    /// A netlink request failed.
    #[error("{what}: {reason}")]
    Netlink {
        /// What was being done.
        what: String,
        /// The kernel's or the library's reason.
        reason: String,
    },
    /// A socket could not be set up.
    #[error("interface {iface:?}: {what}: {reason}")]
    Socket {
        /// The interface.
        iface: String,
        /// What was being done.
        what: String,
        /// The reason.
        reason: String,
    },
    /// The instance cannot run as configured.
    #[error("vrrp_instance {name:?}: {reason}")]
    Config {
        /// The instance.
        name: String,
        /// Why.
        reason: String,
    },
}
