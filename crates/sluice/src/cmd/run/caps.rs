//! Least privilege: the Linux capabilities `sluice run` needs for a
//! configuration, checked against the process's effective set before
//! anything starts, so that a missing one ends start-up with a message
//! naming it (and what needs it) rather than an `EPERM` from deep inside
//! a BPF load or a socket call.
//!
//! What needs which capability (docs/OPERATIONS.md has the table):
//! - `CAP_BPF`: loading the XDP programs and creating their maps
//!   (`[[l4_service]]`); `CAP_SYS_ADMIN` stands in for it, as in the kernel.
//! - `CAP_PERFMON`: the verifier refuses `sluice_xdp` without it
//!   (`pointer -= pointer prohibited`: pointer subtraction is allowed only
//!   where pointer leaks are) (`[[l4_service]]`); `CAP_SYS_ADMIN` stands
//!   in for it too.
//! - `CAP_NET_ADMIN`: attaching XDP to an interface, the `via_vip` checks'
//!   marks and policy routes, VRRP's virtual addresses (netlink) and the
//!   HA guard's nftables table.
//! - `CAP_NET_RAW`: VRRP's raw sockets, `tcp-half-open` checks, and `icmp`
//!   checks unless the process's group may open ping sockets
//!   (`net.ipv4.ping_group_range`).
//! - `CAP_NET_BIND_SERVICE`: a frontend, the admin endpoint or the sync
//!   listener on a port below `net.ipv4.ip_unprivileged_port_start`.

use std::fmt;
use std::net::SocketAddr;

use sluice_config::{CheckType, Config};

/// A Linux capability: its name and bit number (linux/capability.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap {
    /// The name, as capsh(1) and capabilities(7) spell it.
    pub(crate) name: &'static str,
    /// The bit in the capability sets.
    pub(crate) bit: u8,
}

/// Binding ports below `ip_unprivileged_port_start`.
pub(crate) const CAP_NET_BIND_SERVICE: Cap = Cap {
    name: "CAP_NET_BIND_SERVICE",
    bit: 10,
};
/// Network configuration: XDP attach, addresses, routes, marks, nftables.
pub(crate) const CAP_NET_ADMIN: Cap = Cap {
    name: "CAP_NET_ADMIN",
    bit: 12,
};
/// Raw sockets.
pub(crate) const CAP_NET_RAW: Cap = Cap {
    name: "CAP_NET_RAW",
    bit: 13,
};
/// The catch-all, which the kernel accepts in place of `CAP_BPF` and
/// `CAP_PERFMON`; never needed by itself.
pub(crate) const CAP_SYS_ADMIN: Cap = Cap {
    name: "CAP_SYS_ADMIN",
    bit: 21,
};
/// The verifier's trust in pointer arithmetic (and other tracing rights).
pub(crate) const CAP_PERFMON: Cap = Cap {
    name: "CAP_PERFMON",
    bit: 38,
};
/// Loading BPF programs and creating maps.
pub(crate) const CAP_BPF: Cap = Cap {
    name: "CAP_BPF",
    bit: 39,
};

/// The kernel's default of `net.ipv4.ip_unprivileged_port_start`, used
/// when the sysctl cannot be read.
const DEFAULT_UNPRIVILEGED_PORT_START: u16 = 1024;
const UNPRIVILEGED_PORT_START: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
const PING_GROUP_RANGE: &str = "/proc/sys/net/ipv4/ping_group_range";
const PROC_STATUS: &str = "/proc/self/status";

/// One capability the configuration needs, and for what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Need {
    /// The capability.
    pub(crate) cap: Cap,
    /// A capability the kernel accepts instead (`CAP_SYS_ADMIN` for
    /// `CAP_BPF` and `CAP_PERFMON`).
    pub(crate) or: Option<Cap>,
    /// What needs it, e.g. `l4_service "web" (the XDP program)`.
    pub(crate) why: String,
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.or {
            Some(or) => write!(f, "{} (or {}) for {}", self.cap.name, or.name, self.why),
            None => write!(f, "{} for {}", self.cap.name, self.why),
        }
    }
}

/// What the host allows without privilege, read from the process's
/// network namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Host {
    /// `net.ipv4.ip_unprivileged_port_start`.
    pub(crate) unprivileged_port_start: u16,
    /// Whether the process's group is in `net.ipv4.ping_group_range`.
    pub(crate) ping_sockets: bool,
}

impl Host {
    /// Reads the sysctls (their defaults when unreadable: ports below
    /// 1024 privileged, no ping sockets).
    pub(crate) fn read() -> Self {
        let unprivileged_port_start = std::fs::read_to_string(UNPRIVILEGED_PORT_START)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(DEFAULT_UNPRIVILEGED_PORT_START);
        let gid = nix::unistd::getegid().as_raw();
        let ping_sockets = std::fs::read_to_string(PING_GROUP_RANGE)
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(str::parse::<u32>);
                Some((it.next()?.ok()?, it.next()?.ok()?))
            })
            .is_some_and(|(lo, hi)| (lo..=hi).contains(&gid));
        Self {
            unprivileged_port_start,
            ping_sockets,
        }
    }
}

/// Every capability `cfg` needs on `host`, in a fixed order, each with
/// the first thing in the file that needs it.
pub(crate) fn needs(cfg: &Config, host: Host) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    let mut need = |cap: Cap, or: Option<Cap>, why: String| {
        if !out.iter().any(|n| n.cap == cap) {
            out.push(Need { cap, or, why });
        }
    };
    if let Some(s) = cfg.l4_services.first() {
        let why = format!("l4_service {:?} (the XDP program)", s.name);
        need(CAP_BPF, Some(CAP_SYS_ADMIN), why.clone());
        need(CAP_PERFMON, Some(CAP_SYS_ADMIN), why.clone());
        need(CAP_NET_ADMIN, None, why);
    }
    if let Some(v) = cfg.vrrp_instances.first() {
        need(
            CAP_NET_ADMIN,
            None,
            format!("vrrp_instance {:?} (its virtual addresses)", v.name),
        );
        need(
            CAP_NET_RAW,
            None,
            format!("vrrp_instance {:?} (its raw sockets)", v.name),
        );
    }
    for c in &cfg.health_checks {
        let raw = match c.probe.check_type() {
            CheckType::TcpHalfOpen => true,
            CheckType::Icmp => !host.ping_sockets,
            _ => false,
        };
        // Only checks something uses are run.
        let used = cfg
            .l4_services
            .iter()
            .any(|s| s.health_check.as_deref() == Some(&c.name))
            || cfg
                .backends
                .iter()
                .any(|b| b.health_check.as_deref() == Some(&c.name));
        if raw && used {
            need(
                CAP_NET_RAW,
                None,
                format!("health_check {:?} (a raw socket)", c.name),
            );
        }
    }
    let privileged = |a: &SocketAddr| a.port() != 0 && a.port() < host.unprivileged_port_start;
    let mut binds: Vec<(String, SocketAddr)> = Vec::new();
    for f in &cfg.frontends {
        binds.extend(
            f.bind
                .iter()
                .map(|a| (format!("frontend {:?}", f.name), *a)),
        );
    }
    binds.push(("the admin endpoint".to_owned(), cfg.global.admin));
    if cfg.sync.enabled
        && let Some(l) = cfg.sync.listen
    {
        binds.push(("the sync listener".to_owned(), l));
    }
    if let Some((what, a)) = binds.iter().find(|(_, a)| privileged(a)) {
        need(
            CAP_NET_BIND_SERVICE,
            None,
            format!("{what} (port {})", a.port()),
        );
    }
    out
}

/// `CapEff` of a `/proc/PID/status` text.
pub(crate) fn parse_effective(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The needs that the effective set `eff` does not satisfy.
pub(crate) fn missing(needs: &[Need], eff: u64) -> Vec<&Need> {
    let has = |c: Cap| eff & (1u64 << c.bit) != 0;
    needs
        .iter()
        .filter(|n| !has(n.cap) && !n.or.is_some_and(has))
        .collect()
}

/// Refuses to start when the process lacks a capability `cfg` needs:
/// one line per missing capability, naming it and what needs it.
pub(super) fn check(cfg: &Config) -> anyhow::Result<()> {
    let status = std::fs::read_to_string(PROC_STATUS)
        .map_err(|e| anyhow::anyhow!("reading {PROC_STATUS}: {e}"))?;
    let eff = parse_effective(&status)
        .ok_or_else(|| anyhow::anyhow!("no CapEff line in {PROC_STATUS}"))?;
    let needs = needs(cfg, Host::read());
    let missing = missing(&needs, eff);
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing.iter().map(|n| format!("  {n}")).collect();
    anyhow::bail!(
        "missing capabilities (effective set {eff:#x}); this configuration needs:\n{}\n\
         run as root, or grant them (systemd: AmbientCapabilities=; see docs/OPERATIONS.md)",
        lines.join("\n")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Unprivileged ports from 1024, no ping sockets: the kernel's defaults.
    const HOST: Host = Host {
        unprivileged_port_start: 1024,
        ping_sockets: false,
    };

    fn cfg(text: &str) -> Config {
        sluice_config::parse("t.toml", text).unwrap()
    }

    fn bits(caps: &[Cap]) -> u64 {
        caps.iter().fold(0, |a, c| a | (1u64 << c.bit))
    }

    fn names(needs: &[Need]) -> Vec<&str> {
        needs.iter().map(|n| n.cap.name).collect()
    }

    const L4: &str = r#"
[global]
admin = "127.0.0.1:9900"
[health_check.half]
type = "tcp-half-open"
[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
interface = "lb0"
health_check = "half"
[[l4_service.real]]
address = "10.99.0.11"
"#;

    const PROXY: &str = r#"
[global]
admin = "127.0.0.1:9900"
[[frontend]]
name = "www"
bind = ["0.0.0.0:80"]
mode = "http"
default_backend = "app"
[[backend]]
name = "app"
mode = "http"
[[backend.server]]
name = "s1"
address = "10.0.0.1:8080"
"#;

    #[test]
    fn l4_with_a_half_open_check_needs_bpf_perfmon_net_admin_and_raw() {
        let n = needs(&cfg(L4), HOST);
        assert_eq!(
            names(&n),
            ["CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        assert_eq!(
            n[0].to_string(),
            "CAP_BPF (or CAP_SYS_ADMIN) for l4_service \"web\" (the XDP program)"
        );
        assert_eq!(
            n[3].to_string(),
            "CAP_NET_RAW for health_check \"half\" (a raw socket)"
        );
    }

    #[test]
    fn a_proxy_on_port_80_needs_only_net_bind_service() {
        let c = cfg(PROXY);
        let n = needs(&c, HOST);
        assert_eq!(names(&n), ["CAP_NET_BIND_SERVICE"]);
        assert!(n[0].why.contains("frontend \"www\" (port 80)"), "{}", n[0]);
        // Where port 80 is unprivileged, nothing.
        let low = Host {
            unprivileged_port_start: 80,
            ..HOST
        };
        assert!(needs(&c, low).is_empty());
    }

    #[test]
    fn missing_names_each_absent_capability_and_accepts_sys_admin() {
        let n = needs(&cfg(L4), HOST);
        let all = bits(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW]);
        assert!(missing(&n, all).is_empty());
        let no_bpf = all & !bits(&[CAP_BPF]);
        assert_eq!(
            missing(&n, no_bpf)
                .iter()
                .map(|n| n.cap.name)
                .collect::<Vec<_>>(),
            ["CAP_BPF"]
        );
        // CAP_SYS_ADMIN stands in for CAP_BPF and CAP_PERFMON, never for
        // CAP_NET_ADMIN.
        let admin = bits(&[CAP_SYS_ADMIN, CAP_NET_RAW]);
        assert_eq!(
            missing(&n, admin)
                .iter()
                .map(|n| n.cap.name)
                .collect::<Vec<_>>(),
            ["CAP_NET_ADMIN"]
        );
    }

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tsluice\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n\
                      CapEff:\t000000c000003000\nCapBnd:\t000001ffffffffff\n";
        assert_eq!(
            parse_effective(status),
            Some(bits(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW]))
        );
        assert_eq!(parse_effective("Name:\tx\n"), None);
        assert_eq!(parse_effective("CapEff:\tzz\n"), None);
    }
}
