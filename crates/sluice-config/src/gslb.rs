//! `[gslb]`: the authoritative DNS zone that sluice serves for global
//! server load balancing (its model and its validation). The server is
//! sluice-gslb; docs/GSLB.md explains the policies and docs/CONFIG.md
//! every key.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::model::Keyword;
use crate::value::{
    Ctx, Tbl, Val, as_table, duration, int_in, ip, keyword, list, non_empty, non_empty_list,
    socket, string, tables, unknown_message,
};

// === Limits and defaults ===

/// Default `ttl` of the answers (seconds on the wire).
pub const DEFAULT_GSLB_TTL: Duration = Duration::from_secs(30);
/// Default `negative_ttl`: the SOA minimum, how long resolvers cache
/// NXDOMAIN and NODATA.
pub const DEFAULT_GSLB_NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Longest `ttl` or `negative_ttl` accepted (one day: a GSLB answer that
/// lives longer defeats failover).
pub const MAX_GSLB_TTL: Duration = Duration::from_secs(86_400);
/// Default `rate_limit`: responses per second to one source prefix (an
/// IPv4 /24 or an IPv6 /56); 0 turns response rate limiting off.
pub const DEFAULT_GSLB_RATE_LIMIT: u32 = 100;
/// Most `rate_limit` accepted, in responses per second.
pub const MAX_GSLB_RATE_LIMIT: u32 = 10_000_000;
/// Default `max_addresses`: addresses in one answer.
pub const DEFAULT_GSLB_MAX_ADDRESSES: u8 = 1;
/// Most `max_addresses` accepted (an answer past 512 bytes, about 17
/// AAAA records, reaches a client without EDNS truncated: it retries over TCP).
pub const MAX_GSLB_MAX_ADDRESSES: u8 = 32;
/// Default site `port`: what a site's `health_check` probes when the
/// check sets no port.
pub const DEFAULT_GSLB_CHECK_PORT: u16 = 80;
/// Default site `weight` of a `weighted` name.
pub const DEFAULT_GSLB_WEIGHT: u32 = 1;
/// Most a site `weight` accepts.
pub const MAX_GSLB_WEIGHT: u32 = 1_000;
/// Longest DNS name, in characters of its text form without the final dot
/// (RFC 1035: 255 octets on the wire).
pub const MAX_DNS_NAME_LEN: usize = 253;
/// Longest DNS label, in octets (RFC 1035).
pub const MAX_DNS_LABEL_LEN: usize = 63;

const GSLB_KEYS: &[&str] = &[
    "listen",
    "zone",
    "nameservers",
    "hostmaster",
    "serial",
    "ttl",
    "negative_ttl",
    "rate_limit",
    "site",
    "name",
];
const SITE_KEYS: &[&str] = &[
    "name",
    "addresses",
    "health_check",
    "l4_service",
    "backend",
    "port",
    "weight",
];
const NAME_KEYS: &[&str] = &[
    "name",
    "policy",
    "sites",
    "cname",
    "ttl",
    "max_addresses",
    "weights",
    "topology",
];
const TOPOLOGY_KEYS: &[&str] = &["prefixes", "sites"];

// === Model ===

/// `[gslb]`: one authoritative zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gslb {
    /// Addresses served, each over UDP and TCP.
    pub listen: Vec<SocketAddr>,
    /// The zone's apex, lower case, without the final dot.
    pub zone: String,
    /// The zone's name servers (its NS records), absolute, lower case.
    pub nameservers: Vec<String>,
    /// The SOA's RNAME, as a DNS name (`hostmaster.example.com`).
    pub hostmaster: String,
    /// The SOA's serial.
    pub serial: u32,
    /// Default TTL of answers.
    pub ttl: Duration,
    /// SOA minimum: the TTL of negative answers.
    pub negative_ttl: Duration,
    /// UDP responses per second to one source prefix; 0 is unlimited.
    pub rate_limit: u32,
    /// `[[gslb.site]]`, in file order.
    pub sites: Vec<GslbSite>,
    /// `[[gslb.name]]`, in file order.
    pub names: Vec<GslbName>,
}

/// `[[gslb.site]]`: a place that serves a name, by its addresses (VIPs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbSite {
    /// Unique site name.
    pub name: String,
    /// The addresses answered for this site (A and AAAA).
    pub addresses: Vec<IpAddr>,
    /// Where the site's health comes from.
    pub health: SiteHealthSource,
    /// Port a `health_check` probes when the check sets none.
    pub port: u16,
}

/// Where a site's health comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiteHealthSource {
    /// Always up.
    Static,
    /// `health_check = NAME`: each address is probed by that check; only
    /// healthy addresses are answered.
    Check(String),
    /// `l4_service = NAME`: this node's L4 service; the site is up while
    /// one of its reals is.
    L4Service(String),
    /// `backend = NAME`: this node's proxy backend; the site is up while
    /// one of its servers is.
    Backend(String),
}

/// `gslb.name.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GslbPolicy {
    /// The first site (in `sites` order) with a healthy address.
    Failover,
    /// Healthy sites drawn by weight, up to `max_addresses` addresses.
    Weighted,
    /// The client's prefix picks an ordered site list (then failover
    /// within it); `sites` is the fallback.
    Topology,
}

impl Keyword for GslbPolicy {
    const ALL: &'static [(&'static str, Self)] = &[
        ("failover", Self::Failover),
        ("weighted", Self::Weighted),
        ("topology", Self::Topology),
    ];
    fn as_str(self) -> &'static str {
        match self {
            Self::Failover => "failover",
            Self::Weighted => "weighted",
            Self::Topology => "topology",
        }
    }
}

impl std::fmt::Display for GslbPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[gslb.name]]`: one name of the zone and how it is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GslbName {
    /// Relative to the zone, lower case; empty for the apex (`"@"`).
    pub name: String,
    /// TTL of its answers.
    pub ttl: Duration,
    /// What it answers.
    pub target: GslbTarget,
}

/// What a name answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GslbTarget {
    /// A CNAME to this absolute name (lower case, no final dot).
    Cname(String),
    /// Addresses of sites chosen by a policy.
    Sites {
        /// How the sites are chosen.
        policy: GslbPolicy,
        /// Site names, in order: the failover order, the weighted set, or
        /// the topology fallback.
        sites: Vec<String>,
        /// Per-site weights of a `weighted` name (same order as `sites`).
        weights: Vec<u32>,
        /// Most addresses in one answer.
        max_addresses: u8,
        /// Topology rules of a `topology` name.
        topology: Vec<TopologyRule>,
    },
}

/// `[[gslb.name.topology]]`: clients within `prefixes` prefer `sites`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyRule {
    /// Client prefixes (address, length), the address masked.
    pub prefixes: Vec<(IpAddr, u8)>,
    /// Sites, in failover order.
    pub sites: Vec<String>,
}

// === Parsing ===

/// A reference from `[gslb]` to a health check, for the shared
/// cross-section check: (name, offset, key path).
pub(crate) type CheckRef = (String, usize, String);

/// Reads `[gslb]`, if present. `l4_names` and `backend_names` are the
/// services a site may take its health from; health check references are
/// returned for the caller's cross check.
pub(crate) fn gslb(
    cx: &mut Ctx<'_>,
    root: &Tbl<'_, '_>,
    l4_names: &[&str],
    backend_names: &[&str],
    check_refs: &mut Vec<CheckRef>,
) -> Option<Gslb> {
    let v = root.get("gslb")?;
    let t = as_table(cx, v, "gslb", "a table ([gslb])")?;
    cx.check_keys(&t, GSLB_KEYS);
    let zone = cx
        .req(
            &t,
            "zone",
            "the zone's apex, e.g. \"gslb.example.com\"",
            dns_name,
        )
        .unwrap_or_default();
    let listen = cx
        .req(
            &t,
            "listen",
            "addresses to serve DNS on, e.g. [\"0.0.0.0:53\"]",
            non_empty_list(socket, "ip:port"),
        )
        .unwrap_or_default();
    let nameservers = cx
        .req(
            &t,
            "nameservers",
            "the zone's name servers, e.g. [\"ns1.example.com\"]",
            non_empty_list(dns_name, "name server"),
        )
        .unwrap_or_default();
    let hostmaster = cx
        .opt(&t, "hostmaster", dns_name)
        .unwrap_or_else(|| format!("hostmaster.{zone}"));
    let ttl = cx.opt(&t, "ttl", ttl).unwrap_or(DEFAULT_GSLB_TTL);

    let sites: Vec<GslbSite> = tables(cx, &t, "site")
        .iter()
        .map(|s| site(cx, s, l4_names, backend_names, check_refs))
        .collect();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, s) in tables(cx, &t, "site").iter().enumerate() {
        let name = sites[i].name.as_str();
        if name.is_empty() {
            continue;
        }
        let at = s.offset_of("name");
        if let Some(f) = first.get(name) {
            let line = cx.line_of(*f);
            cx.error(at, &s.key_path("name"), format!("duplicate site name \"{name}\" (first defined at line {line}), expected unique site names"));
        } else {
            first.insert(name, at);
        }
    }
    let site_names: Vec<&str> = sites.iter().map(|s| s.name.as_str()).collect();
    let name_tables = tables(cx, &t, "name");
    if name_tables.is_empty() {
        cx.error(
            t.at,
            "gslb.name",
            "the zone has no names, expected at least one [[gslb.name]]",
        );
    }
    let names: Vec<GslbName> = name_tables
        .iter()
        .map(|n| name(cx, n, ttl, &site_names))
        .collect();
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, n) in name_tables.iter().enumerate() {
        let at = n.offset_of("name");
        let name = names[i].name.as_str();
        if n.get("name").is_none() {
            continue;
        }
        if let Some(f) = first.get(name) {
            let line = cx.line_of(*f);
            cx.error(
                at,
                &n.key_path("name"),
                format!(
                    "duplicate name \"{}\" (first defined at line {line}), expected each name once",
                    if name.is_empty() { "@" } else { name }
                ),
            );
        } else {
            first.insert(name, at);
        }
    }

    Some(Gslb {
        listen,
        nameservers,
        hostmaster,
        serial: cx.opt(&t, "serial", int_in(0, u32::MAX)).unwrap_or(1),
        ttl,
        negative_ttl: cx
            .opt(&t, "negative_ttl", self::ttl)
            .unwrap_or(DEFAULT_GSLB_NEGATIVE_TTL),
        rate_limit: cx
            .opt(&t, "rate_limit", int_in(0, MAX_GSLB_RATE_LIMIT))
            .unwrap_or(DEFAULT_GSLB_RATE_LIMIT),
        sites,
        names,
        zone,
    })
}

fn site(
    cx: &mut Ctx<'_>,
    t: &Tbl<'_, '_>,
    l4_names: &[&str],
    backend_names: &[&str],
    check_refs: &mut Vec<CheckRef>,
) -> GslbSite {
    cx.check_keys(t, SITE_KEYS);
    if t.get("weight").is_some() {
        cx.error(
            t.offset_of("weight"),
            &t.key_path("weight"),
            "a site has no weight of its own, expected weights = [...] on the [[gslb.name]] with policy \"weighted\"",
        );
    }
    let name = cx
        .req(t, "name", "a unique site name", non_empty)
        .unwrap_or_default();
    let addresses = cx
        .req(
            t,
            "addresses",
            "the site's addresses (its VIPs), e.g. [\"192.0.2.10\"]",
            non_empty_list(ip, "IP address"),
        )
        .unwrap_or_default();
    let sources: Vec<&str> = ["health_check", "l4_service", "backend"]
        .into_iter()
        .filter(|k| t.get(k).is_some())
        .collect();
    if sources.len() > 1 {
        cx.error(
            t.offset_of(sources[1]),
            &t.key_path(sources[1]),
            format!(
                "a site takes its health from one source, found {}, expected one of health_check, l4_service or backend",
                sources.join(" and ")
            ),
        );
    }
    let health = if let Some(c) = cx.opt(t, "health_check", non_empty) {
        check_refs.push((
            c.clone(),
            t.offset_of("health_check"),
            t.key_path("health_check"),
        ));
        SiteHealthSource::Check(c)
    } else if let Some(s) = cx.opt(t, "l4_service", non_empty) {
        if !l4_names.contains(&s.as_str()) {
            cx.error(
                t.offset_of("l4_service"),
                &t.key_path("l4_service"),
                reference("l4_service", "[[l4_service]]", &s, l4_names),
            );
        }
        SiteHealthSource::L4Service(s)
    } else if let Some(b) = cx.opt(t, "backend", non_empty) {
        if !backend_names.contains(&b.as_str()) {
            cx.error(
                t.offset_of("backend"),
                &t.key_path("backend"),
                reference("backend", "[[backend]]", &b, backend_names),
            );
        }
        SiteHealthSource::Backend(b)
    } else {
        SiteHealthSource::Static
    };
    if t.get("port").is_some() && !matches!(health, SiteHealthSource::Check(_)) {
        cx.error(
            t.offset_of("port"),
            &t.key_path("port"),
            "port is the port a health_check probes, expected a health_check or no port",
        );
    }
    GslbSite {
        name,
        addresses,
        health,
        port: cx
            .opt(t, "port", int_in(1, u16::MAX))
            .unwrap_or(DEFAULT_GSLB_CHECK_PORT),
    }
}

fn name(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, default_ttl: Duration, site_names: &[&str]) -> GslbName {
    cx.check_keys(t, NAME_KEYS);
    let name = cx
        .req(
            t,
            "name",
            "a name relative to the zone, or \"@\" for the apex",
            relative_name,
        )
        .unwrap_or_default();
    let ttl = cx.opt(t, "ttl", ttl).unwrap_or(default_ttl);
    let cname = cx.opt(t, "cname", dns_name);
    let has_sites = t.get("sites").is_some();
    if let Some(target) = cname {
        for key in ["policy", "sites", "weights", "max_addresses", "topology"] {
            if t.get(key).is_some() {
                cx.error(
                    t.offset_of(key),
                    &t.key_path(key),
                    format!("a CNAME name answers no addresses, expected either cname or {key}, not both"),
                );
            }
        }
        if name.is_empty() && t.get("name").is_some() {
            cx.error(
                t.offset_of("cname"),
                &t.key_path("cname"),
                "the zone apex cannot be a CNAME (it holds the SOA and NS records), expected a name below the apex",
            );
        }
        return GslbName {
            name,
            ttl,
            target: GslbTarget::Cname(target),
        };
    }
    let policy = cx
        .req(
            t,
            "policy",
            "\"failover\", \"weighted\" or \"topology\" (or a cname)",
            keyword::<GslbPolicy>("policy"),
        )
        .unwrap_or(GslbPolicy::Failover);
    let sites = if has_sites {
        cx.opt(
            t,
            "sites",
            non_empty_list(site_ref(site_names), "site name"),
        )
        .unwrap_or_default()
    } else {
        cx.error(
            t.at,
            &t.key_path("sites"),
            "missing required key \"sites\", expected the site names this name answers with",
        );
        Vec::new()
    };
    // Sites as written (an unknown one is reported above, but still counts here).
    let listed = match t.get("sites").map(|v| v.get_ref()) {
        Some(toml::de::DeValue::Array(a)) => a.len(),
        _ => sites.len(),
    };
    let weights = match cx.opt(t, "weights", list(int_in(1, MAX_GSLB_WEIGHT))) {
        Some(w) => {
            if policy != GslbPolicy::Weighted {
                cx.error(
                    t.offset_of("weights"),
                    &t.key_path("weights"),
                    format!("weights apply to policy \"weighted\", not \"{policy}\", expected no weights"),
                );
            } else if has_sites && w.len() != listed {
                cx.error(
                    t.offset_of("weights"),
                    &t.key_path("weights"),
                    format!(
                        "{} weight(s) for {listed} site(s), expected one weight per site, in the order of sites",
                        w.len(),
                    ),
                );
            }
            w
        }
        None => vec![DEFAULT_GSLB_WEIGHT; sites.len()],
    };
    let topology_tables = tables(cx, t, "topology");
    let mut topology = Vec::with_capacity(topology_tables.len());
    for r in &topology_tables {
        cx.check_keys(r, TOPOLOGY_KEYS);
        let prefixes = cx
            .req(
                r,
                "prefixes",
                "client prefixes, e.g. [\"10.0.0.0/8\"]",
                non_empty_list(prefix, "prefix"),
            )
            .unwrap_or_default();
        let sites = cx
            .req(
                r,
                "sites",
                "the site names these clients prefer, in order",
                non_empty_list(site_ref(site_names), "site name"),
            )
            .unwrap_or_default();
        topology.push(TopologyRule { prefixes, sites });
    }
    if policy == GslbPolicy::Topology && topology_tables.is_empty() {
        cx.error(
            t.offset_of("policy"),
            &t.key_path("policy"),
            "policy \"topology\" without rules, expected at least one [[gslb.name.topology]]",
        );
    }
    if policy != GslbPolicy::Topology && !topology_tables.is_empty() {
        cx.error(
            topology_tables[0].at,
            &t.key_path("topology"),
            format!("topology rules apply to policy \"topology\", not \"{policy}\", expected policy = \"topology\""),
        );
    }
    let max_addresses = cx
        .opt(t, "max_addresses", int_in(1, MAX_GSLB_MAX_ADDRESSES))
        .unwrap_or(DEFAULT_GSLB_MAX_ADDRESSES);
    GslbName {
        name,
        ttl,
        target: GslbTarget::Sites {
            policy,
            sites,
            weights,
            max_addresses,
            topology,
        },
    }
}

/// A TTL: a duration of whole seconds, at most [`MAX_GSLB_TTL`].
fn ttl(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<Duration> {
    let d = duration(cx, v, path)?;
    if d.subsec_nanos() != 0 || d > MAX_GSLB_TTL {
        cx.error(
            v.span().start,
            path,
            format!(
                "{} is not a TTL, expected whole seconds from 1s to {}s",
                crate::format_duration(d),
                MAX_GSLB_TTL.as_secs()
            ),
        );
        return None;
    }
    Some(d)
}

/// A site name that `[[gslb.site]]` defines.
fn site_ref<'n>(
    site_names: &'n [&'n str],
) -> impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<String> + 'n {
    move |cx, v, path| {
        let s = non_empty(cx, v, path)?;
        if !site_names.contains(&s.as_str()) {
            cx.error(
                v.span().start,
                path,
                reference("site", "[[gslb.site]]", &s, site_names),
            );
            return None;
        }
        Some(s)
    }
}

fn reference(what: &str, header: &str, found: &str, names: &[&str]) -> String {
    if names.is_empty() {
        format!(
            "unknown {what} \"{found}\", expected the name of a {header} section and none is defined"
        )
    } else {
        unknown_message(what, found, names.iter().copied())
    }
}

/// True if `s` (no final dot) is a valid DNS name of host-name labels
/// (letters, digits, `-`, `_`).
fn valid_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DNS_NAME_LEN
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= MAX_DNS_LABEL_LEN
                && l.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// An absolute DNS name; a final dot is accepted and removed.
fn dns_name(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    let bare = s.strip_suffix('.').unwrap_or(&s);
    if !valid_dns_name(bare) {
        cx.error(
            v.span().start,
            path,
            format!("\"{s}\" is not a DNS name, expected labels of letters, digits and '-' joined by dots, e.g. \"gslb.example.com\""),
        );
        return None;
    }
    Some(bare.to_ascii_lowercase())
}

/// A name relative to the zone (`"www"`, `"api.eu"`) or `"@"` (the apex,
/// returned empty).
fn relative_name(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    if s == "@" {
        return Some(String::new());
    }
    if s.ends_with('.') || !valid_dns_name(&s) {
        cx.error(
            v.span().start,
            path,
            format!("\"{s}\" is not a relative DNS name, expected e.g. \"www\" or \"api.eu\" (relative to the zone), or \"@\" for the apex"),
        );
        return None;
    }
    Some(s.to_ascii_lowercase())
}

/// A prefix `ADDR/LEN`; the address must have no bits past the length.
fn prefix(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<(IpAddr, u8)> {
    let s = string(cx, v, path)?;
    let parsed = s.split_once('/').and_then(|(a, l)| {
        let a: IpAddr = a.parse().ok()?;
        let l: u8 = l.parse().ok()?;
        let max = if a.is_ipv4() { 32 } else { 128 };
        (l <= max).then_some((a, l))
    });
    let Some((addr, len)) = parsed else {
        cx.error(
            v.span().start,
            path,
            format!("\"{s}\" is not a prefix, expected ADDRESS/LENGTH, e.g. \"10.0.0.0/8\" or \"2001:db8::/32\""),
        );
        return None;
    };
    if mask(addr, len) != addr {
        cx.error(
            v.span().start,
            path,
            format!(
                "\"{s}\" has host bits set, expected \"{}/{len}\"",
                mask(addr, len)
            ),
        );
        return None;
    }
    Some((addr, len))
}

/// `addr` with the bits past `len` cleared.
pub fn mask(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::parse;

    /// A valid zone: two sites, a failover, a weighted and a topology name.
    const ZONE: &str = r#"[gslb]
listen = ["127.0.0.1:5300"]
zone = "gslb.example.com."
nameservers = ["ns1.example.com"]
ttl = "20s"

[[gslb.site]]
name = "eu"
addresses = ["192.0.2.1", "2001:db8::1"]

[[gslb.site]]
name = "us"
addresses = ["198.51.100.1"]

[[gslb.name]]
name = "www"
policy = "failover"
sites = ["eu", "us"]

[[gslb.name]]
name = "@"
policy = "weighted"
sites = ["eu", "us"]
weights = [3, 1]
max_addresses = 2
ttl = "5s"

[[gslb.name]]
name = "api.eu"
policy = "topology"
sites = ["us"]
[[gslb.name.topology]]
prefixes = ["10.0.0.0/8", "2001:db8:aa::/48"]
sites = ["eu", "us"]

[[gslb.name]]
name = "alias"
cname = "www.gslb.example.com"
"#;

    fn diags(s: &str) -> Vec<String> {
        match parse("t.toml", s) {
            Ok(_) => panic!("expected diagnostics"),
            Err(d) => d.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_zone_parses_with_its_defaults() {
        let c = parse("t.toml", ZONE).unwrap();
        let g = c.gslb.unwrap();
        assert_eq!(g.zone, "gslb.example.com");
        assert_eq!(g.hostmaster, "hostmaster.gslb.example.com");
        assert_eq!(g.rate_limit, DEFAULT_GSLB_RATE_LIMIT);
        assert_eq!(g.negative_ttl, DEFAULT_GSLB_NEGATIVE_TTL);
        assert_eq!(g.serial, 1);
        assert_eq!(g.names[0].ttl, Duration::from_secs(20));
        assert_eq!(g.names[1].name, "");
        assert_eq!(g.names[1].ttl, Duration::from_secs(5));
        let GslbTarget::Sites {
            policy,
            weights,
            max_addresses,
            ..
        } = &g.names[1].target
        else {
            panic!("sites");
        };
        assert_eq!(
            (*policy, &weights[..], *max_addresses),
            (GslbPolicy::Weighted, &[3, 1][..], 2)
        );
        let GslbTarget::Sites { topology, .. } = &g.names[2].target else {
            panic!("sites");
        };
        assert_eq!(topology[0].prefixes[0], ("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(
            g.names[3].target,
            GslbTarget::Cname("www.gslb.example.com".into())
        );
        assert_eq!(g.sites[0].health, SiteHealthSource::Static);
    }

    #[test]
    fn bad_zone_data_is_positioned() {
        let bad = ZONE
            .replace(
                "sites = [\"eu\", \"us\"]\n\n[[gslb.name]]\nname = \"@\"",
                "sites = [\"eu\", \"uss\"]\n\n[[gslb.name]]\nname = \"@\"",
            )
            .replace("weights = [3, 1]", "weights = [3]")
            .replace("\"10.0.0.0/8\"", "\"10.0.0.1/8\"")
            .replace("name = \"alias\"", "name = \"www\"");
        assert_eq!(
            diags(&bad),
            vec![
                "t.toml:18:16: gslb.name[0].sites[1]: unknown site \"uss\", did you mean \"us\"?",
                "t.toml:24:11: gslb.name[1].weights: 1 weight(s) for 2 site(s), expected one weight per site, in the order of sites",
                "t.toml:33:13: gslb.name[2].topology[0].prefixes[0]: \"10.0.0.1/8\" has host bits set, expected \"10.0.0.0/8\"",
                "t.toml:37:8: gslb.name[3].name: duplicate name \"www\" (first defined at line 16), expected each name once",
            ]
        );
    }

    #[test]
    fn policy_keys_must_fit_the_policy() {
        let bad = ZONE
            .replace(
                "policy = \"failover\"",
                "policy = \"failover\"\nweights = [1, 2]",
            )
            .replace(
                "cname = \"www.gslb.example.com\"",
                "cname = \"www.gslb.example.com\"\npolicy = \"failover\"",
            )
            .replace(
                "zone = \"gslb.example.com.\"",
                "zone = \"gslb..example.com\"",
            );
        assert_eq!(
            diags(&bad),
            vec![
                "t.toml:3:8: gslb.zone: \"gslb..example.com\" is not a DNS name, expected labels of letters, digits and '-' joined by dots, e.g. \"gslb.example.com\"",
                "t.toml:18:11: gslb.name[0].weights: weights apply to policy \"weighted\", not \"failover\", expected no weights",
                "t.toml:40:10: gslb.name[3].policy: a CNAME name answers no addresses, expected either cname or policy, not both",
            ]
        );
    }

    #[test]
    fn site_health_sources_are_checked() {
        let bad = ZONE.replace(
            "addresses = [\"198.51.100.1\"]",
            "addresses = [\"198.51.100.1\"]\nhealth_check = \"web\"\nl4_service = \"web\"",
        );
        assert_eq!(
            diags(&bad),
            vec![
                "t.toml:14:16: gslb.site[1].health_check: unknown health check \"web\", expected the name of a [health_check.NAME] section and none is defined",
                "t.toml:15:14: gslb.site[1].l4_service: a site takes its health from one source, found health_check and l4_service, expected one of health_check, l4_service or backend",
            ]
        );
        let bad = ZONE.replace(
            "addresses = [\"198.51.100.1\"]",
            "addresses = [\"198.51.100.1\"]\nbackend = \"api\"",
        );
        assert_eq!(
            diags(&bad),
            vec![
                "t.toml:14:11: gslb.site[1].backend: unknown backend \"api\", expected the name of a [[backend]] section and none is defined"
            ]
        );
    }

    #[test]
    fn ttls_are_whole_seconds_within_a_day() {
        let bad = ZONE.replace("ttl = \"20s\"", "ttl = \"1500ms\"");
        assert_eq!(
            diags(&bad),
            vec![
                "t.toml:5:7: gslb.ttl: 1500ms is not a TTL, expected whole seconds from 1s to 86400s"
            ]
        );
        let bad = ZONE.replace("ttl = \"5s\"", "ttl = \"2d\"");
        assert_eq!(diags(&bad).len(), 1);
    }

    #[test]
    fn masks() {
        assert_eq!(
            mask("10.1.2.3".parse().unwrap(), 8),
            "10.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("10.1.2.3".parse().unwrap(), 0),
            "0.0.0.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            mask("2001:db8::1".parse().unwrap(), 32),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
    }
}
