//! What a lab looks like: the specification a caller writes ([`LabSpec`]) and
//! the resulting names and addresses ([`Topology`]), fixed before anything is
//! created so a failed set-up knows exactly what to remove.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::{Deserialize, Serialize};

use crate::LabError;
use crate::netns::MacAddr;

/// Largest number of real servers (addresses 10.99.0.11 to 10.99.0.35).
pub const MAX_REALS: usize = 25;

/// Real servers when none is given.
pub const DEFAULT_REALS: usize = 3;

/// The IPv4 VIP when none is given.
pub const DEFAULT_VIP4: Ipv4Addr = Ipv4Addr::new(10, 99, 255, 1);

/// The IPv6 VIP when none is given.
pub const DEFAULT_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0xffff, 0, 0, 0, 0, 0, 1);

/// The lab's IPv4 subnet (the bridge's L2 segment), /[`SUBNET4_PREFIX_LEN`].
pub const SUBNET4: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 0);

/// Prefix length of [`SUBNET4`], in bits.
pub const SUBNET4_PREFIX_LEN: u8 = 24;

/// The lab's IPv6 subnet, /[`SUBNET6_PREFIX_LEN`].
pub const SUBNET6: Ipv6Addr = Ipv6Addr::new(0xfd99, 0, 0, 0, 0, 0, 0, 0);

/// Prefix length of [`SUBNET6`], in bits.
pub const SUBNET6_PREFIX_LEN: u8 = 64;

/// TCP port the real servers listen on when none is given.
pub const DEFAULT_PORT: u16 = 80;

/// Every lab namespace name starts with this, then the label and a dash.
pub const NETNS_PREFIX: &str = "sl-";

/// Longest label accepted, in bytes.
pub const MAX_LABEL_LEN: usize = 24;

/// The label the CLI uses when none is given.
pub const DEFAULT_LABEL: &str = "lab";

/// Name of the bridge in the switch namespace.
pub const BRIDGE: &str = "br0";

/// The client's interface name.
pub const CLIENT_IF: &str = "c0";

/// The LB's interface name.
pub const LB_IF: &str = "lb0";

/// Each real server's interface name.
pub const REAL_IF: &str = "eth0";

/// [`Variant::Tun`]: the reals' routed IPv4 subnet (behind the router),
/// /[`SUBNET4_PREFIX_LEN`].
pub const REAL_SUBNET4: Ipv4Addr = Ipv4Addr::new(10, 98, 0, 0);

/// [`Variant::Tun`]: the reals' routed IPv6 subnet, /[`SUBNET6_PREFIX_LEN`].
pub const REAL_SUBNET6: Ipv6Addr = Ipv6Addr::new(0xfd98, 0, 0, 0, 0, 0, 0, 0);

/// [`Variant::Tun`]: the bridge of the reals' subnet (in the switch namespace).
pub const REAL_BRIDGE: &str = "br1";

/// [`Variant::Tun`]: the router's interface on [`BRIDGE`] (client/LB side).
pub const ROUTER_FRONT_IF: &str = "r0";

/// [`Variant::Tun`]: the router's interface on [`REAL_BRIDGE`] (reals' side).
pub const ROUTER_BACK_IF: &str = "r1";

/// [`Variant::Tun`]: MTU, in bytes, of every interface an encapsulated
/// frame crosses (LB, router, reals and their switch ports). IPIP adds 20
/// bytes and IP6IP6 40 to a client packet of up to 1500 bytes (the client
/// stays at 1500), so full-size segments fit without fragmentation.
pub const TUN_PATH_MTU: u32 = 1600;

/// Last octet of the LB's address in [`SUBNET4`] (and last group in [`SUBNET6`]).
const LB_HOST: u8 = 1;
/// Last octet of the peer LB's address ([`LabSpec::peer_lb`]).
const PEER_LB_HOST: u8 = 3;
/// Last octet of the client's address.
const CLIENT_HOST: u8 = 2;
/// Real server `i` (1-based) gets host number `REAL_HOST_BASE + i`.
const REAL_HOST_BASE: u8 = 10;
/// Last octet of the router's IPv4 addresses on both of its subnets.
const ROUTER_HOST: u8 = 254;
/// Last group of the router's IPv6 addresses (`fd99::fe`, `fd98::fe`).
const ROUTER_HOST6: u16 = 0xfe;

/// How the lab's load balancer is wired to the real servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Variant {
    /// One-armed L2 direct server return: client, LB and reals on one bridge;
    /// reals hold the VIP on `lo` and answer the client directly.
    Dsr,
    /// L3 direct server return through IPIP/IP6IP6 tunnels: the reals sit on
    /// a second, routed subnet ([`REAL_SUBNET4`]) behind a router node; each
    /// runs `sluice realserver setup --tun-iface eth0` (VIP on `lo`,
    /// `sluice_decap` on `eth0`) and answers the client directly through the
    /// router, never through the LB. Needs [`LbForwarding::None`].
    Tun,
}

/// What the LB namespace itself does with traffic to the VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LbForwarding {
    /// A kernel ECMP route over the reals (L4 hash), standing in for the XDP
    /// data plane.
    Ecmp,
    /// No VIP route: whatever the caller attaches (sluice's XDP program) forwards.
    None,
}

/// What runs on each real server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RealBackend {
    /// Nothing: the caller starts its own servers.
    None,
    /// `BINARY realserver web ...`, the sluice binary's built-in web server.
    Sluice {
        /// Path of the `sluice` binary.
        binary: PathBuf,
    },
    /// nginx with a generated configuration.
    Nginx,
}

/// The backend kind, as recorded in a [`Topology`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// No server.
    None,
    /// `sluice realserver web`.
    Sluice,
    /// nginx.
    Nginx,
}

impl From<&RealBackend> for BackendKind {
    fn from(b: &RealBackend) -> Self {
        match b {
            RealBackend::None => BackendKind::None,
            RealBackend::Sluice { .. } => BackendKind::Sluice,
            RealBackend::Nginx => BackendKind::Nginx,
        }
    }
}

/// A node of the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The client.
    Client,
    /// The one-armed load balancer.
    Lb,
    /// The second load balancer of an HA pair ([`LabSpec::peer_lb`]).
    PeerLb,
    /// The switch namespace holding the bridge.
    Switch,
    /// Real server `n`, **1-based** to match its name (`Real(1)` is `rs1`).
    Real(usize),
    /// The router between the LB's and the reals' subnets ([`Variant::Tun`]).
    Router,
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Client => f.write_str("client"),
            Node::Lb => f.write_str("lb"),
            Node::PeerLb => f.write_str("lb2"),
            Node::Switch => f.write_str("sw"),
            Node::Real(i) => write!(f, "rs{i}"),
            Node::Router => f.write_str("rtr"),
        }
    }
}

/// What to build. Construct with [`LabSpec::new`] and adjust the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LabSpec {
    /// Namespace names are `sl-<label>-<node>`; see [`LabSpec::unique_label`].
    pub label: String,
    /// The topology variant.
    pub variant: Variant,
    /// Number of real servers, 1 to [`MAX_REALS`].
    pub reals: usize,
    /// The IPv4 VIP (put on the reals' `lo`).
    pub vip4: Ipv4Addr,
    /// The IPv6 VIP; `None` builds an IPv4-only lab.
    pub vip6: Option<Ipv6Addr>,
    /// TCP port of the real servers.
    pub port: u16,
    /// What the LB namespace does with VIP traffic.
    pub lb_forwarding: LbForwarding,
    /// What runs on the reals.
    pub backend: RealBackend,
    /// Size of the `/` body, in bytes.
    pub body_size: usize,
    /// The `sluice` binary run on the reals as `realserver setup` in
    /// [`Variant::Tun`]; `None` uses the binary of [`RealBackend::Sluice`].
    pub sluice_binary: Option<PathBuf>,
    /// A second LB ([`Node::PeerLb`], 10.99.0.3, fd99::3) on the same
    /// segment, for VRRP pairs. The client then reaches the VIPs on-link
    /// (by ARP / neighbour discovery), so whichever LB holds a VIP gets
    /// its traffic, instead of through a route via the first LB.
    pub peer_lb: bool,
}

impl LabSpec {
    /// A DSR lab with [`DEFAULT_REALS`] reals, the default VIPs (IPv4 and
    /// IPv6), port 80, ECMP forwarding on the LB and no servers.
    #[must_use]
    pub fn new(label: &str) -> Self {
        LabSpec {
            label: label.to_owned(),
            variant: Variant::Dsr,
            reals: DEFAULT_REALS,
            vip4: DEFAULT_VIP4,
            vip6: Some(DEFAULT_VIP6),
            port: DEFAULT_PORT,
            lb_forwarding: LbForwarding::Ecmp,
            backend: RealBackend::None,
            body_size: crate::webserver::DEFAULT_BODY_SIZE,
            sluice_binary: None,
            peer_lb: false,
        }
    }

    /// A [`Variant::Tun`] lab (reals behind a router, no forwarding on the
    /// LB: sluice's XDP program encapsulates), otherwise as [`LabSpec::new`].
    /// Set `backend` or `sluice_binary` so the reals can run `sluice
    /// realserver setup`.
    #[must_use]
    pub fn tun(label: &str) -> Self {
        LabSpec {
            variant: Variant::Tun,
            lb_forwarding: LbForwarding::None,
            ..LabSpec::new(label)
        }
    }

    /// The `sluice` binary for `realserver setup`: [`LabSpec::sluice_binary`],
    /// else the binary of [`RealBackend::Sluice`].
    #[must_use]
    pub fn setup_binary(&self) -> Option<&std::path::Path> {
        match (&self.sluice_binary, &self.backend) {
            (Some(b), _) | (None, RealBackend::Sluice { binary: b }) => Some(b),
            (None, _) => None,
        }
    }

    /// A label unique within this machine for the life of this process:
    /// `prefix`, the PID, `x`, a counter. For test fixtures, so concurrent
    /// tests and concurrent test binaries never share namespaces.
    #[must_use]
    pub fn unique_label(prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}{}x{n}", std::process::id())
    }

    /// Checks the specification.
    ///
    /// # Errors
    /// [`LabError::InvalidSpec`] naming the bad field.
    pub fn validate(&self) -> Result<(), LabError> {
        validate_label(&self.label)?;
        if self.reals == 0 || self.reals > MAX_REALS {
            return Err(LabError::InvalidSpec(format!(
                "reals must be 1 to {MAX_REALS}, got {}",
                self.reals
            )));
        }
        if in_subnet4(self.vip4) {
            return Err(LabError::InvalidSpec(format!(
                "VIP {} is inside the lab subnet {SUBNET4}/{SUBNET4_PREFIX_LEN}",
                self.vip4
            )));
        }
        if self
            .vip6
            .is_some_and(|v| v.segments()[..4] == SUBNET6.segments()[..4])
        {
            return Err(LabError::InvalidSpec(format!(
                "IPv6 VIP is inside the lab subnet {SUBNET6}/{SUBNET6_PREFIX_LEN}"
            )));
        }
        if self.variant == Variant::Tun {
            self.validate_tun()?;
        }
        if self.port == 0 {
            return Err(LabError::InvalidSpec("port must not be 0".to_owned()));
        }
        if self.body_size > crate::webserver::MAX_BODY_SIZE {
            return Err(LabError::InvalidSpec(format!(
                "body size must be at most {} bytes",
                crate::webserver::MAX_BODY_SIZE
            )));
        }
        Ok(())
    }

    fn validate_tun(&self) -> Result<(), LabError> {
        if self.lb_forwarding == LbForwarding::Ecmp {
            return Err(LabError::InvalidSpec(
                "the tun variant has no kernel ECMP forwarding on the LB (the LB would have \
                 to encapsulate); use lb_forwarding None and sluice's XDP data plane"
                    .to_owned(),
            ));
        }
        if self.setup_binary().is_none() {
            return Err(LabError::InvalidSpec(
                "the tun variant runs `sluice realserver setup` on every real: set \
                 sluice_binary or use the Sluice backend"
                    .to_owned(),
            ));
        }
        if in_prefix4(self.vip4, REAL_SUBNET4) {
            return Err(LabError::InvalidSpec(format!(
                "VIP {} is inside the reals' subnet {REAL_SUBNET4}/{SUBNET4_PREFIX_LEN}",
                self.vip4
            )));
        }
        if self
            .vip6
            .is_some_and(|v| v.segments()[..4] == REAL_SUBNET6.segments()[..4])
        {
            return Err(LabError::InvalidSpec(format!(
                "IPv6 VIP is inside the reals' subnet {REAL_SUBNET6}/{SUBNET6_PREFIX_LEN}"
            )));
        }
        Ok(())
    }

    /// Names and addresses of the lab this spec builds.
    ///
    /// # Errors
    /// As [`LabSpec::validate`].
    pub fn topology(&self) -> Result<Topology, LabError> {
        self.validate()?;
        let label = &self.label;
        let v6 = self.vip6.is_some();
        let node = |n: Node, iface: &str, host: u8| NodeInfo {
            name: n.to_string(),
            netns: netns_name(label, n),
            iface: iface.to_owned(),
            switch_port: format!("p-{n}"),
            mac: [0x02, 0x99, 0, 0, 0, host],
            ipv4: host4(SUBNET4, host),
            ipv6: v6.then(|| host6(SUBNET6, host)),
        };
        let tun = self.variant == Variant::Tun;
        // A node on the reals' subnet: same host numbers, 10.98/fd98.
        let routed = |n: Node, iface: &str, switch_port: String, host: u8| NodeInfo {
            name: n.to_string(),
            netns: netns_name(label, n),
            iface: iface.to_owned(),
            switch_port,
            mac: [0x02, 0x98, 0, 0, 0, host],
            ipv4: host4(REAL_SUBNET4, host),
            ipv6: v6.then(|| host6(REAL_SUBNET6, host)),
        };
        let router = tun.then(|| {
            let set6 = |mut n: NodeInfo, subnet: Ipv6Addr| {
                n.ipv6 = n.ipv6.map(|_| {
                    let mut seg = subnet.segments();
                    seg[7] = ROUTER_HOST6;
                    Ipv6Addr::from(seg)
                });
                n
            };
            let mut front = node(Node::Router, ROUTER_FRONT_IF, ROUTER_HOST);
            front.switch_port = format!("p-{}", ROUTER_FRONT_IF);
            let back = routed(
                Node::Router,
                ROUTER_BACK_IF,
                format!("p-{}", ROUTER_BACK_IF),
                ROUTER_HOST,
            );
            RouterInfo {
                front: set6(front, SUBNET6),
                back: set6(back, REAL_SUBNET6),
                real_bridge: REAL_BRIDGE.to_owned(),
            }
        });
        Ok(Topology {
            label: label.clone(),
            variant: self.variant,
            lb_forwarding: self.lb_forwarding,
            backend: BackendKind::from(&self.backend),
            vip4: self.vip4,
            vip6: self.vip6,
            port: self.port,
            prefix_len4: SUBNET4_PREFIX_LEN,
            prefix_len6: SUBNET6_PREFIX_LEN,
            switch_netns: netns_name(label, Node::Switch),
            bridge: BRIDGE.to_owned(),
            client: node(Node::Client, CLIENT_IF, CLIENT_HOST),
            lb: node(Node::Lb, LB_IF, LB_HOST),
            peer_lb: self
                .peer_lb
                .then(|| node(Node::PeerLb, LB_IF, PEER_LB_HOST)),
            reals: (1..=self.reals)
                .map(|i| {
                    // Bounded by MAX_REALS (checked above), so it fits in a u8.
                    let host = REAL_HOST_BASE + u8::try_from(i).unwrap_or(u8::MAX - REAL_HOST_BASE);
                    if tun {
                        routed(Node::Real(i), REAL_IF, format!("p-{}", Node::Real(i)), host)
                    } else {
                        node(Node::Real(i), REAL_IF, host)
                    }
                })
                .collect(),
            router,
        })
    }
}

/// One node's namespace, interface and addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `client`, `lb`, `rs1`, ...
    pub name: String,
    /// The node's namespace.
    pub netns: String,
    /// The node's interface on the bridge (inside `netns`).
    pub iface: String,
    /// The peer end of `iface`: a bridge port inside the switch namespace.
    pub switch_port: String,
    /// MAC address of `iface` (`02:99:00:00:00:<host>`).
    pub mac: MacAddr,
    /// IPv4 address of `iface` (prefix length [`SUBNET4_PREFIX_LEN`]).
    pub ipv4: Ipv4Addr,
    /// IPv6 address of `iface` (prefix length [`SUBNET6_PREFIX_LEN`]), if IPv6 is on.
    pub ipv6: Option<Ipv6Addr>,
}

/// [`Variant::Tun`]'s router: one namespace with a leg on each subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInfo {
    /// The leg on [`BRIDGE`] (10.99.0.254, fd99::fe); `name` and `netns`
    /// are the router's.
    pub front: NodeInfo,
    /// The leg on `real_bridge` (10.98.0.254, fd98::fe).
    pub back: NodeInfo,
    /// The bridge of the reals' subnet, in the switch namespace.
    pub real_bridge: String,
}

/// Names and addresses of a lab. Serializable: the CLI's state file holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Topology {
    /// The lab's label.
    pub label: String,
    /// The variant.
    pub variant: Variant,
    /// What the LB namespace does with VIP traffic.
    pub lb_forwarding: LbForwarding,
    /// What runs on the reals.
    pub backend: BackendKind,
    /// IPv4 VIP.
    pub vip4: Ipv4Addr,
    /// IPv6 VIP, if IPv6 is on.
    pub vip6: Option<Ipv6Addr>,
    /// Real servers' TCP port.
    pub port: u16,
    /// IPv4 prefix length of the node addresses.
    pub prefix_len4: u8,
    /// IPv6 prefix length of the node addresses.
    pub prefix_len6: u8,
    /// The switch namespace.
    pub switch_netns: String,
    /// The bridge inside the switch namespace.
    pub bridge: String,
    /// The client.
    pub client: NodeInfo,
    /// The load balancer.
    pub lb: NodeInfo,
    /// The second LB of an HA pair ([`LabSpec::peer_lb`]).
    #[serde(default)]
    pub peer_lb: Option<NodeInfo>,
    /// Real servers, `reals[0]` is `rs1`.
    pub reals: Vec<NodeInfo>,
    /// The router between the subnets ([`Variant::Tun`] only).
    #[serde(default)]
    pub router: Option<RouterInfo>,
}

impl Topology {
    /// The node's details; `Switch` has no interface of its own and is an
    /// error. For the router, its leg on [`BRIDGE`] (see [`Topology::router`]).
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`] for `Switch`, a real out of range, or the
    /// router of a lab without one.
    pub fn node(&self, node: Node) -> Result<&NodeInfo, LabError> {
        match node {
            Node::Client => Ok(&self.client),
            Node::Lb => Ok(&self.lb),
            Node::PeerLb => self
                .peer_lb
                .as_ref()
                .ok_or_else(|| LabError::NoSuchNode(node.to_string())),
            Node::Router => self
                .router
                .as_ref()
                .map(|r| &r.front)
                .ok_or_else(|| LabError::NoSuchNode(node.to_string())),
            Node::Real(i) if i >= 1 => self
                .reals
                .get(i - 1)
                .ok_or_else(|| LabError::NoSuchNode(node.to_string())),
            Node::Real(_) | Node::Switch => Err(LabError::NoSuchNode(node.to_string())),
        }
    }

    /// The node's namespace name.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`] for a real out of range.
    pub fn netns(&self, node: Node) -> Result<&str, LabError> {
        match node {
            Node::Switch => Ok(&self.switch_netns),
            other => self.node(other).map(|n| n.netns.as_str()),
        }
    }

    /// Every namespace, in creation order (switch, client, LB, router if
    /// any, reals).
    #[must_use]
    pub fn namespaces(&self) -> Vec<String> {
        let mut v = vec![
            self.switch_netns.clone(),
            self.client.netns.clone(),
            self.lb.netns.clone(),
        ];
        v.extend(self.peer_lb.iter().map(|n| n.netns.clone()));
        v.extend(self.router.iter().map(|r| r.front.netns.clone()));
        v.extend(self.reals.iter().map(|r| r.netns.clone()));
        v
    }

    /// The bridge the reals' ports are on: [`BRIDGE`], or the router's back
    /// bridge in [`Variant::Tun`].
    #[must_use]
    pub fn real_bridge(&self) -> &str {
        self.router
            .as_ref()
            .map_or(self.bridge.as_str(), |r| r.real_bridge.as_str())
    }

    /// `VIP4:port`.
    #[must_use]
    pub fn vip4_addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(self.vip4), self.port)
    }

    /// `[VIP6]:port`, if IPv6 is on.
    #[must_use]
    pub fn vip6_addr(&self) -> Option<SocketAddr> {
        self.vip6.map(|v| SocketAddr::new(IpAddr::V6(v), self.port))
    }
}

/// The namespace name of `node` in the lab `label`: `sl-<label>-<node>`.
#[must_use]
pub fn netns_name(label: &str, node: Node) -> String {
    format!("{NETNS_PREFIX}{label}-{node}")
}

/// Whether `netns` is one of the namespaces a lab labelled `label` creates.
///
/// Suffixes contain no dash, so the lab `a` never claims the namespaces of
/// the lab `a-rs1` (`sl-a-rs1-client`).
#[must_use]
pub fn netns_belongs_to(label: &str, netns: &str) -> bool {
    let Some(suffix) = netns
        .strip_prefix(NETNS_PREFIX)
        .and_then(|s| s.strip_prefix(label))
        .and_then(|s| s.strip_prefix('-'))
    else {
        return false;
    };
    match suffix {
        "client" | "lb" | "sw" | "rtr" => true,
        s => s
            .strip_prefix("rs")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())),
    }
}

/// Checks a label: 1 to [`MAX_LABEL_LEN`] bytes of `[A-Za-z0-9_-]`, not
/// starting with `-`.
///
/// # Errors
/// [`LabError::InvalidSpec`].
pub fn validate_label(label: &str) -> Result<(), LabError> {
    let ok = !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && !label.starts_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidSpec(format!(
            "bad label {label:?} (1-{MAX_LABEL_LEN} of [A-Za-z0-9_-], not starting with '-')"
        )))
    }
}

fn host4(subnet: Ipv4Addr, host: u8) -> Ipv4Addr {
    let [a, b, c, _] = subnet.octets();
    Ipv4Addr::new(a, b, c, host)
}

/// The host number written so the address reads like the IPv4 one
/// (host 11 is `fd99::11`, not `fd99::b`).
fn host6(subnet: Ipv6Addr, host: u8) -> Ipv6Addr {
    let group = u16::from_str_radix(&host.to_string(), 16).unwrap_or(u16::from(host));
    let mut seg = subnet.segments();
    seg[7] = group;
    Ipv6Addr::from(seg)
}

fn in_subnet4(ip: Ipv4Addr) -> bool {
    in_prefix4(ip, SUBNET4)
}

/// Whether `ip` is in `subnet`/[`SUBNET4_PREFIX_LEN`].
fn in_prefix4(ip: Ipv4Addr, subnet: Ipv4Addr) -> bool {
    let mask = u32::MAX << (32 - u32::from(SUBNET4_PREFIX_LEN));
    u32::from(ip) & mask == u32::from(subnet) & mask
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn topology_assigns_the_seed_addresses() {
        let mut spec = LabSpec::new("lab");
        spec.reals = 25;
        let t = spec.topology().unwrap();
        assert_eq!(t.client.ipv4, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(t.lb.ipv4, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(t.reals[0].ipv4, Ipv4Addr::new(10, 99, 0, 11));
        assert_eq!(t.reals[24].ipv4, Ipv4Addr::new(10, 99, 0, 35));
        assert_eq!(t.reals[0].ipv6, Some("fd99::11".parse().unwrap()));
        assert_eq!(t.reals[0].mac, [2, 0x99, 0, 0, 0, 11]);
        assert_eq!(t.reals[2].netns, "sl-lab-rs3");
        assert_eq!(t.reals[2].switch_port, "p-rs3");
        assert_eq!(t.client.iface, "c0");
        assert_eq!(t.switch_netns, "sl-lab-sw");
        assert_eq!(t.namespaces().len(), 28);
        assert_eq!(t.netns(Node::Real(25)).unwrap(), "sl-lab-rs25");
        assert!(t.node(Node::Real(26)).is_err());
        assert!(t.node(Node::Real(0)).is_err());
        assert!(t.node(Node::Switch).is_err());
        assert_eq!(t.vip4_addr().to_string(), "10.99.255.1:80");
        assert_eq!(t.vip6_addr().unwrap().to_string(), "[fd99:ffff::1]:80");
        // Interface names fit IFNAMSIZ.
        assert!(
            t.reals
                .iter()
                .all(|r| r.switch_port.len() <= crate::netns::MAX_IFNAME_LEN)
        );
    }

    #[test]
    fn specs_are_validated() {
        let mut s = LabSpec::new("x");
        s.reals = 0;
        assert!(s.validate().is_err());
        s.reals = MAX_REALS + 1;
        assert!(s.validate().is_err());
        let mut s = LabSpec::new("x");
        s.vip4 = Ipv4Addr::new(10, 99, 0, 7);
        assert!(s.validate().is_err());
        let mut s = LabSpec::new("x");
        s.vip6 = Some("fd99::7".parse().unwrap());
        assert!(s.validate().is_err());
        for bad in ["", "-x", "a/b", "a b", &"x".repeat(MAX_LABEL_LEN + 1)] {
            assert!(LabSpec::new(bad).validate().is_err(), "{bad:?}");
        }
        assert!(LabSpec::new("t123x4").validate().is_ok());
    }

    #[test]
    fn unique_labels_differ_and_are_valid() {
        let a = LabSpec::unique_label("t");
        let b = LabSpec::unique_label("t");
        assert_ne!(a, b);
        assert!(validate_label(&a).is_ok());
    }

    #[test]
    fn tun_topology_puts_reals_behind_the_router() {
        let mut spec = LabSpec::tun("lab");
        assert!(spec.validate().is_err(), "no binary for realserver setup");
        spec.sluice_binary = Some(PathBuf::from("/bin/sluice"));
        let t = spec.topology().unwrap();
        assert_eq!(t.variant, Variant::Tun);
        assert_eq!(t.lb_forwarding, LbForwarding::None);
        let r = t.router.as_ref().unwrap();
        assert_eq!(r.front.ipv4, Ipv4Addr::new(10, 99, 0, 254));
        assert_eq!(r.front.ipv6, Some("fd99::fe".parse().unwrap()));
        assert_eq!(r.back.ipv4, Ipv4Addr::new(10, 98, 0, 254));
        assert_eq!(r.back.ipv6, Some("fd98::fe".parse().unwrap()));
        assert_eq!(
            (r.front.iface.as_str(), r.back.iface.as_str()),
            ("r0", "r1")
        );
        assert_eq!(r.front.netns, "sl-lab-rtr");
        assert_eq!(r.back.netns, "sl-lab-rtr");
        assert_ne!(r.front.switch_port, r.back.switch_port);
        assert_ne!(r.front.mac, r.back.mac);
        assert_eq!(t.real_bridge(), "br1");
        assert_eq!(t.reals[0].ipv4, Ipv4Addr::new(10, 98, 0, 11));
        assert_eq!(t.reals[2].ipv6, Some("fd98::13".parse().unwrap()));
        assert_eq!(t.client.ipv4, Ipv4Addr::new(10, 99, 0, 2));
        assert_eq!(t.lb.ipv4, Ipv4Addr::new(10, 99, 0, 1));
        assert_eq!(t.node(Node::Router).unwrap().ipv4, r.front.ipv4);
        assert_eq!(
            t.namespaces(),
            ["sw", "client", "lb", "rtr", "rs1", "rs2", "rs3"].map(|n| format!("sl-lab-{n}"))
        );
        // The DSR lab has no router.
        let d = LabSpec::new("lab").topology().unwrap();
        assert!(d.router.is_none() && d.node(Node::Router).is_err());
        assert_eq!(d.real_bridge(), "br0");
        // A state file written before the router existed still loads.
        let mut json = serde_json::to_value(&d).unwrap();
        json.as_object_mut().unwrap().remove("router");
        assert_eq!(serde_json::from_value::<Topology>(json).unwrap(), d);
    }

    #[test]
    fn tun_specs_are_validated() {
        let mut s = LabSpec::tun("x");
        s.backend = RealBackend::Sluice {
            binary: PathBuf::from("/bin/sluice"),
        };
        assert!(s.validate().is_ok());
        let mut e = s.clone();
        e.lb_forwarding = LbForwarding::Ecmp;
        assert!(e.validate().unwrap_err().to_string().contains("ECMP"));
        let mut e = s.clone();
        e.vip4 = Ipv4Addr::new(10, 98, 0, 77);
        assert!(e.validate().is_err());
        let mut e = s.clone();
        e.vip6 = Some("fd98::77".parse().unwrap());
        assert!(e.validate().is_err());
    }

    #[test]
    fn namespace_ownership_is_exact() {
        assert!(netns_belongs_to("a", "sl-a-rtr"));
        assert!(netns_belongs_to("a", "sl-a-client"));
        assert!(netns_belongs_to("a", "sl-a-rs12"));
        assert!(netns_belongs_to("a", "sl-a-sw"));
        assert!(!netns_belongs_to("a", "sl-a-rs"));
        assert!(!netns_belongs_to("a", "sl-a-rs1-client"));
        assert!(!netns_belongs_to("a", "sl-ab-client"));
        assert!(!netns_belongs_to("a", "sl-a-rs1x"));
        assert!(!netns_belongs_to("a", "other"));
    }
}
