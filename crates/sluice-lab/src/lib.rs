//! Network-namespace testbeds for sluice: a client, a one-armed load balancer
//! and N real servers on one Linux bridge ([`Variant::Dsr`]) or on a second,
//! routed subnet behind a router ([`Variant::Tun`]), all in their own
//! namespaces.
//!
//! # What it builds (variant [`Variant::Dsr`])
//!
//! ```text
//!   sl-L-client (c0 10.99.0.2)  --+
//!   sl-L-lb     (lb0 10.99.0.1) --+-- br0 in sl-L-sw
//!   sl-L-rsI    (eth0 10.99.0.1I, VIP 10.99.255.1/32 on lo) --+ (I = 1..N)
//! ```
//!
//! The client routes the VIP via the LB; the LB forwards it (a kernel ECMP
//! route, [`LbForwarding::Ecmp`], until sluice's XDP data plane takes over with
//! [`LbForwarding::None`]); reals answer the client directly over the bridge.
//! IPv6 (fd99::/64, VIP fd99:ffff::1) is set up alongside unless disabled.
//!
//! # Variant [`Variant::Tun`] (build it with [`LabSpec::tun`])
//!
//! ```text
//!   sl-L-client (c0 10.99.0.2)   --+
//!   sl-L-lb     (lb0 10.99.0.1)  --+-- br0 --+
//!   sl-L-rtr    (r0 10.99.0.254) --+         |  (both bridges in sl-L-sw)
//!               (r1 10.98.0.254) --+-- br1 --+
//!   sl-L-rsI    (eth0 10.98.0.1I) -+   (VIP on lo, sluice_decap on eth0)
//! ```
//!
//! Reals sit on a second subnet (10.98.0.0/24, fd98::/64) behind a router
//! (`ip_forward=1`, IPv6 forwarding, `rp_filter=0`). The client routes the
//! VIP via the LB and 10.98.0.0/24 via the router; the LB routes 10.98.0.0/24
//! via the router; the reals' default route is the router. sluice's XDP
//! program on the LB encapsulates (IPIP / IP6IP6) towards a real, the router
//! forwards the tunnel, the real's `sluice realserver setup --vip ...
//! --tun-iface eth0` (started and stopped by the lab like the web servers;
//! it puts the VIPs on `lo` and attaches `sluice_decap`) strips the outer
//! header, and the reply goes back through the router, never the LB. Every
//! interface on the tunnel path has MTU [`TUN_PATH_MTU`] so full-size
//! client segments still fit once encapsulated. Only [`LbForwarding::None`]
//! exists here (the kernel cannot encapsulate for the LB on this machine).
//!
//! # Contracts
//!
//! - Nothing is ever created in, routed through or changed in the root
//!   namespace: veths are created directly inside their namespaces, sysctls
//!   are written from threads that entered the lab namespace.
//! - [`Lab`] is a drop guard: dropping it (also during a panic) stops the
//!   processes it started (by PID and start time), deletes its namespaces
//!   (which removes veths and the bridge) and its temporary directories.
//!   Teardown is idempotent and never stops at "already gone".
//! - [`Lab::up`] is all-or-nothing: a failed step tears down what exists and
//!   returns the failing command and its stderr.
//! - Without root, everything that needs it fails with
//!   [`LabError::NotPrivileged`] naming `CAP_NET_ADMIN`/`CAP_SYS_ADMIN`.
//!
//! # Example
//!
//! ```no_run
//! use sluice_lab::{Lab, LabSpec, Node, RealBackend};
//!
//! let mut spec = LabSpec::new(&LabSpec::unique_label("doc"));
//! spec.backend = RealBackend::Nginx;
//! let lab = Lab::up(spec)?;
//! let vip = lab.topology().vip4_addr();
//! let resp = lab.in_netns(Node::Client, || {
//!     sluice_lab::http_get(vip, "/", std::time::Duration::from_secs(2))
//! })??;
//! assert_eq!(resp.body.len(), 5120);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod cpucap;
mod error;
mod exec;
mod lab;
pub mod netns;
mod nginx;
pub mod probe;
mod process;
mod topology;
pub mod webserver;

pub use cpucap::{CPU_CAP_PERIOD_US, CpuCap, MAX_CPU_CAP_PCT, MIN_CPU_CAP_PCT, sweep_stale_caps};
pub use error::LabError;
pub use exec::check_privileges;
pub use lab::{
    DEFAULT_STATE_DIR, Lab, LabState, PROBE_TIMEOUT_MS, READY_TIMEOUT_MS, RealProbe,
    TeardownReport, VipProbe, probe_lab, teardown_label, text_tail,
};
pub use netns::{Netns, VethPair, create_veth, run_in_netns};
pub use probe::{HttpResponse, ProbeError, http_get};
pub use process::{ProcessRecord, TERM_GRACE_MS};
pub use topology::{
    BRIDGE, BackendKind, CLIENT_IF, DEFAULT_LABEL, DEFAULT_PORT, DEFAULT_REALS, DEFAULT_VIP4,
    DEFAULT_VIP6, LB_IF, LabSpec, LbForwarding, MAX_LABEL_LEN, MAX_REALS, NETNS_PREFIX, Node,
    NodeInfo, REAL_BRIDGE, REAL_IF, REAL_SUBNET4, REAL_SUBNET6, ROUTER_BACK_IF, ROUTER_FRONT_IF,
    RealBackend, RouterInfo, SUBNET4, SUBNET4_PREFIX_LEN, SUBNET6, SUBNET6_PREFIX_LEN,
    TUN_PATH_MTU, Topology, Variant, netns_belongs_to, netns_name, validate_label,
};
pub use webserver::SERVED_BY_HEADER;
