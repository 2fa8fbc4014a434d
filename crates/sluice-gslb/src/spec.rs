//! The zone sluice-gslb serves: sites (addresses) and names (how each is
//! answered). Plain data; the binary builds it from `[gslb]`, already
//! validated (names well formed, site indices in range).

use std::net::IpAddr;

/// One authoritative zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneSpec {
    /// The apex, e.g. `gslb.example.com` (no final dot).
    pub apex: String,
    /// The apex's NS records, absolute (no final dot).
    pub nameservers: Vec<String>,
    /// The SOA RNAME as a DNS name (`hostmaster.example.com`).
    pub hostmaster: String,
    /// The SOA serial.
    pub serial: u32,
    /// TTL of the SOA and NS records, in seconds.
    pub zone_ttl: u32,
    /// SOA minimum: TTL of negative answers, in seconds.
    pub negative_ttl: u32,
    /// Sites; names refer to them by index.
    pub sites: Vec<SiteSpec>,
    /// Names of the zone.
    pub names: Vec<NameSpec>,
}

/// A site: a place that serves names, by its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    /// Its name (for `ctl`, logs and metrics).
    pub name: String,
    /// Its addresses (IPv4 answer A queries, IPv6 AAAA).
    pub addresses: Vec<IpAddr>,
}

/// One name of the zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameSpec {
    /// Relative to the apex (`www`, `api.eu`); empty for the apex itself.
    pub name: String,
    /// TTL of its records, in seconds.
    pub ttl: u32,
    /// What it answers.
    pub answer: AnswerSpec,
}

/// What a name answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerSpec {
    /// A CNAME to this absolute name.
    Cname(String),
    /// Site addresses chosen by a policy.
    Sites(SitePolicy),
}

/// How a name's sites are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// The first site in order with a healthy address.
    Failover,
    /// Healthy sites drawn by weight.
    Weighted,
    /// The client's prefix picks a rule's sites (failover within them);
    /// the name's own sites (failover) are the fallback.
    Topology,
}

/// A name's policy and its sites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePolicy {
    /// The policy.
    pub kind: PolicyKind,
    /// Indices into [`ZoneSpec::sites`], in order.
    pub sites: Vec<usize>,
    /// Weights, one per entry of `sites` (used by `weighted`).
    pub weights: Vec<u32>,
    /// Most addresses in one answer (at least 1).
    pub max_addresses: usize,
    /// Rules of a `topology` policy.
    pub topology: Vec<TopologyRule>,
}

/// Clients within `prefixes` prefer `sites` (in failover order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyRule {
    /// (address, prefix length), host bits clear.
    pub prefixes: Vec<(IpAddr, u8)>,
    /// Indices into [`ZoneSpec::sites`], in order.
    pub sites: Vec<usize>,
}
