//! `sluice doctor`: reads the kernel settings the seed studies tune by hand
//! (backlogs, port range, TIME_WAIT reuse, conntrack and file limits, ARP
//! and reverse-path filtering on DSR reals, NIC rings and IRQ affinity) for
//! a role (LB or real server) and a forwarding method, and says what is
//! fine, what to change and the exact command.
//!
//! # Contracts
//!
//! - Read-only unless `--apply`. `--apply` writes only the sysctls it
//!   reported as "change", and only where that is safe: sysctls of this
//!   network namespace always; global sysctls (`fs.*`,
//!   `net.core.netdev_max_backlog`, read-only ones) only when run in the
//!   root network namespace. Each write is read back and reported.
//! - NIC settings (ring sizes, IRQ affinity) are only ever read; they are
//!   reported as "advice" with the command, and never applied.
//! - Unreadable settings are reported as such, never guessed.
//!
//! Exit status: 0 when nothing is left to change, 1 when something is.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use sluice_wire::maps::Method as L4Method;

/// Where sysctls live.
const SYSCTL_ROOT: &str = "/proc/sys";

/// A sysctl registered only in the root network namespace: its presence
/// tells whether we run there.
const ROOT_ONLY_SYSCTL: &str = "net/core/netdev_max_backlog";

/// Sysctls that are global (not per network namespace) even where visible.
const GLOBAL_SYSCTLS: &[&str] = &["fs.file-max", "net.core.netdev_max_backlog"];

/// Listen backlog cap to recommend (the seed used 250000 to 500000; 65535
/// is ample for one host and the classic upper bound before 5.4).
const WANT_SOMAXCONN: u64 = 65_535;
/// SYN queue length to recommend.
const WANT_SYN_BACKLOG: u64 = 65_535;
/// Per-CPU input queue length to recommend (packets).
const WANT_NETDEV_BACKLOG: u64 = 16_384;
/// Connection-tracking table size to recommend on a proxying LB (entries).
const WANT_CONNTRACK_MAX: u64 = 1_048_576;
/// System-wide open-file limit to recommend.
const WANT_FILE_MAX: u64 = 1_048_576;
/// Ephemeral port range to recommend where the host opens many connections.
const WANT_PORT_RANGE: (u64, u64) = (1024, 65_535);

/// Arguments of `sluice doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The machine's role.
    #[arg(long, value_enum, default_value_t = Role::Lb)]
    role: Role,
    /// The forwarding method in use: dr, tun, nat, fullnat or proxy.
    #[arg(long, default_value_t = Method::DR)]
    method: Method,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Change what is reported as "change" (namespace-local sysctls; global
    /// ones only in the root network namespace). NIC settings are never changed.
    #[arg(long)]
    apply: bool,
}

/// The machine's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    /// The load balancer.
    Lb,
    /// A real (backend) server.
    Real,
}

/// How traffic reaches the reals: an L4 method (sluice-wire's one type,
/// by its configuration keyword) or the L7/TCP proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    /// `dr`, `tun`, `nat` or `fullnat`.
    L4(L4Method),
    /// The L7/TCP proxy.
    Proxy,
}

impl Method {
    const DR: Self = Self::L4(L4Method::Dr);

    fn as_str(self) -> &'static str {
        match self {
            Self::L4(m) => m.as_str(),
            Self::Proxy => "proxy",
        }
    }

    fn is(self, m: L4Method) -> bool {
        self == Self::L4(m)
    }
}

impl std::str::FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "proxy" {
            return Ok(Self::Proxy);
        }
        s.parse()
            .map(Self::L4)
            .map_err(|_| format!("unknown method {s:?}, expected dr, tun, nat, fullnat or proxy"))
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Method {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Verdict on one setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    /// Fine as is.
    Ok,
    /// Should be changed; `--apply` may change it.
    Change,
    /// A NIC setting worth changing by hand; never applied.
    Advice,
    /// For information (e.g. IRQ affinity).
    Info,
    /// Could not be read here.
    Unreadable,
}

/// Where a setting applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Scope {
    /// This network namespace only.
    Namespace,
    /// The whole machine.
    Global,
    /// A network interface.
    Nic,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
struct Finding {
    /// Sysctl key or `IFACE rings` / `IFACE irq N`.
    item: String,
    scope: Scope,
    status: Status,
    current: Option<String>,
    recommended: Option<String>,
    why: String,
    /// The exact command that makes the change (status change or advice).
    command: Option<String>,
    /// After `--apply`: whether it was changed (and read back).
    applied: Option<bool>,
    /// After `--apply`: why it was not changed.
    apply_error: Option<String>,
}

/// What a sysctl should be.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// A number at least this large.
    AtLeast(u64),
    /// One of these values; the first is recommended.
    OneOf(&'static [&'static str]),
    /// A port range at least as wide as this.
    PortRange(u64, u64),
}

/// The whole report.
#[derive(Debug, Serialize)]
struct Report {
    role: Role,
    method: Method,
    root_namespace: bool,
    findings: Vec<Finding>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let root = Path::new(SYSCTL_ROOT);
    let root_ns = root.join(ROOT_ONLY_SYSCTL).exists();
    let mut findings = check_sysctls(root, args.role, args.method, root_ns);
    findings.extend(check_nics(Path::new("/sys/class/net")));
    if args.apply {
        apply(root, root_ns, &mut findings);
    }
    let report = Report {
        role: args.role,
        method: args.method,
        root_namespace: root_ns,
        findings,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    let outstanding = report
        .findings
        .iter()
        .any(|f| f.status == Status::Change && f.applied != Some(true));
    Ok(if outstanding {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// The rules for a role and method: (key, want, why).
fn rules(role: Role, method: Method) -> Vec<(String, Want, String)> {
    let mut r: Vec<(String, Want, String)> = vec![
        (
            "net.core.somaxconn".into(),
            Want::AtLeast(WANT_SOMAXCONN),
            "caps every listen backlog; bursts of new connections overflow a short accept queue \
             (the seed saw ListenOverflows)"
                .into(),
        ),
        (
            "net.ipv4.tcp_max_syn_backlog".into(),
            Want::AtLeast(WANT_SYN_BACKLOG),
            "half-open connections waiting for the final ACK; a short queue drops SYNs under load"
                .into(),
        ),
        (
            "net.core.netdev_max_backlog".into(),
            Want::AtLeast(WANT_NETDEV_BACKLOG),
            "packets queued per CPU before the stack processes them; drops show in \
             /proc/net/softnet_stat"
                .into(),
        ),
    ];
    let opens_connections =
        role == Role::Lb && matches!(method, Method::Proxy | Method::L4(L4Method::Fullnat));
    if opens_connections {
        r.push((
            "net.ipv4.ip_local_port_range".into(),
            Want::PortRange(WANT_PORT_RANGE.0, WANT_PORT_RANGE.1),
            "every proxied connection needs a local port towards its real; a wide range avoids \
             EADDRNOTAVAIL"
                .into(),
        ));
        r.push((
            "net.ipv4.tcp_tw_reuse".into(),
            Want::OneOf(&["1"]),
            "reuse TIME_WAIT ports for new outgoing connections (2, the default, does so only on \
             loopback)"
                .into(),
        ));
    }
    if role == Role::Lb
        && matches!(
            method,
            Method::Proxy | Method::L4(L4Method::Nat | L4Method::Fullnat)
        )
    {
        r.push((
            "net.netfilter.nf_conntrack_max".into(),
            Want::AtLeast(WANT_CONNTRACK_MAX),
            "with netfilter conntrack active, a full table drops new connections \
             (\"nf_conntrack: table full\")"
                .into(),
        ));
    }
    if role == Role::Real || method == Method::Proxy {
        r.push((
            "fs.file-max".into(),
            Want::AtLeast(WANT_FILE_MAX),
            "every connection is a file descriptor".into(),
        ));
    }
    if role == Role::Real && matches!(method, Method::L4(L4Method::Dr | L4Method::Tun)) {
        r.push((
            "net.ipv4.conf.all.arp_ignore".into(),
            Want::OneOf(&["1", "2"]),
            "the VIP sits on lo: answer ARP only for addresses on the asking interface, or the \
             real steals the VIP from the LB"
                .into(),
        ));
        r.push((
            "net.ipv4.conf.all.arp_announce".into(),
            Want::OneOf(&["2"]),
            "never use the VIP as the source of ARP requests (neighbours would learn the VIP at \
             this real)"
                .into(),
        ));
        let why_rp = if method.is(L4Method::Tun) {
            "decapsulated packets arrive on the tunnel with the client's source; strict \
             reverse-path filtering (1) drops them"
        } else {
            "replies leave by the default route while requests arrive with the VIP as \
             destination; strict reverse-path filtering (1) can drop them (the seed sets 0)"
        };
        for scope in ["all", "default"] {
            r.push((
                format!("net.ipv4.conf.{scope}.rp_filter"),
                Want::OneOf(&["0", "2"]),
                why_rp.into(),
            ));
        }
    }
    r
}

fn key_path(root: &Path, key: &str) -> PathBuf {
    root.join(key.replace('.', "/"))
}

fn check_sysctls(root: &Path, role: Role, method: Method, root_ns: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    for (key, want, why) in rules(role, method) {
        let path = key_path(root, &key);
        let writable = std::fs::metadata(&path)
            .map(|m| {
                use std::os::unix::fs::PermissionsExt as _;
                m.permissions().mode() & 0o200 != 0
            })
            .unwrap_or(false);
        let global = GLOBAL_SYSCTLS.contains(&key.as_str()) || (path.exists() && !writable);
        let scope = if global {
            Scope::Global
        } else {
            Scope::Namespace
        };
        let current = std::fs::read_to_string(&path)
            .ok()
            .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "));
        let Some(cur) = current else {
            let why = if !root_ns && GLOBAL_SYSCTLS.contains(&key.as_str()) {
                format!(
                    "{why}; global sysctl, not visible inside a network namespace: check it in the root namespace"
                )
            } else {
                format!("{why}; not present on this kernel or in this namespace")
            };
            out.push(Finding {
                item: key,
                scope,
                status: Status::Unreadable,
                current: None,
                recommended: Some(recommended(want)),
                why,
                command: None,
                applied: None,
                apply_error: None,
            });
            continue;
        };
        let ok = satisfies(&cur, want);
        let rec = if ok { cur.clone() } else { recommended(want) };
        let mut why = why;
        if global && !root_ns {
            why.push_str("; global (or read-only) here: change it from the root namespace");
        }
        out.push(Finding {
            command: (!ok).then(|| format!("sysctl -w {key}=\"{rec}\"")),
            item: key,
            scope,
            status: if ok { Status::Ok } else { Status::Change },
            current: Some(cur),
            recommended: Some(recommended(want)),
            why,
            applied: None,
            apply_error: None,
        });
    }
    out
}

fn recommended(want: Want) -> String {
    match want {
        Want::AtLeast(n) => n.to_string(),
        Want::OneOf(v) => v.first().copied().unwrap_or_default().to_owned(),
        Want::PortRange(lo, hi) => format!("{lo} {hi}"),
    }
}

fn satisfies(current: &str, want: Want) -> bool {
    match want {
        Want::AtLeast(n) => current.parse::<u64>().is_ok_and(|v| v >= n),
        Want::OneOf(v) => v.contains(&current),
        Want::PortRange(lo, hi) => {
            let mut it = current.split_whitespace().map(str::parse::<u64>);
            matches!((it.next(), it.next()), (Some(Ok(a)), Some(Ok(b))) if a <= lo && b >= hi)
        }
    }
}

/// Ring sizes (`ethtool -g`) and IRQ affinity of every interface but `lo`.
/// Read-only.
fn check_nics(class_net: &Path) -> Vec<Finding> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(class_net) else {
        return out;
    };
    let mut ifaces: Vec<String> = dir
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .collect();
    ifaces.sort();
    let interrupts = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
    for iface in ifaces {
        out.push(ring_finding(&iface));
        for irq in irqs_of(&interrupts, &iface) {
            let aff = std::fs::read_to_string(format!("/proc/irq/{irq}/smp_affinity_list"))
                .map(|s| s.trim().to_owned());
            out.push(Finding {
                item: format!("{iface} irq {irq}"),
                scope: Scope::Nic,
                status: if aff.is_ok() {
                    Status::Info
                } else {
                    Status::Unreadable
                },
                current: aff.as_ref().ok().map(|a| format!("CPUs {a}")),
                recommended: None,
                why: "spread a NIC's queue IRQs over the CPUs that run the data path (the seed \
                      pins them to isolated cores)"
                    .into(),
                command: aff
                    .is_ok()
                    .then(|| format!("echo CPU_LIST > /proc/irq/{irq}/smp_affinity_list")),
                applied: None,
                apply_error: None,
            });
        }
    }
    out
}

fn ring_finding(iface: &str) -> Finding {
    let why = "larger RX/TX rings absorb bursts instead of dropping (the seed raised them with \
               ethtool -G)";
    let out = std::process::Command::new("ethtool")
        .args(["-g", iface])
        .stdin(std::process::Stdio::null())
        .output();
    let text = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => {
            return Finding {
                item: format!("{iface} rings"),
                scope: Scope::Nic,
                status: Status::Unreadable,
                current: None,
                recommended: None,
                why: format!(
                    "{why}; ethtool -g: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                ),
                command: None,
                applied: None,
                apply_error: None,
            };
        }
        Err(e) => {
            return Finding {
                item: format!("{iface} rings"),
                scope: Scope::Nic,
                status: Status::Unreadable,
                current: None,
                recommended: None,
                why: format!("{why}; ethtool not runnable: {e}"),
                command: None,
                applied: None,
                apply_error: None,
            };
        }
    };
    let Some(r) = parse_rings(&text) else {
        return Finding {
            item: format!("{iface} rings"),
            scope: Scope::Nic,
            status: Status::Unreadable,
            current: None,
            recommended: None,
            why: format!("{why}; ethtool -g output not understood"),
            command: None,
            applied: None,
            apply_error: None,
        };
    };
    let full = r.rx >= r.rx_max && r.tx >= r.tx_max;
    Finding {
        item: format!("{iface} rings"),
        scope: Scope::Nic,
        status: if full { Status::Ok } else { Status::Advice },
        current: Some(format!("rx {} tx {}", r.rx, r.tx)),
        recommended: Some(format!("rx {} tx {}", r.rx_max, r.tx_max)),
        why: why.to_owned(),
        command: (!full).then(|| format!("ethtool -G {iface} rx {} tx {}", r.rx_max, r.tx_max)),
        applied: None,
        apply_error: None,
    }
}

/// Ring sizes from `ethtool -g`.
#[derive(Debug, PartialEq, Eq)]
struct Rings {
    rx_max: u64,
    tx_max: u64,
    rx: u64,
    tx: u64,
}

fn parse_rings(text: &str) -> Option<Rings> {
    let mut max = (None, None);
    let mut cur = (None, None);
    let mut in_current = false;
    for line in text.lines() {
        let l = line.trim();
        if l.starts_with("Pre-set maximums") {
            in_current = false;
        } else if l.starts_with("Current hardware settings") {
            in_current = true;
        }
        let target = if in_current { &mut cur } else { &mut max };
        if let Some(v) = l.strip_prefix("RX:") {
            target.0 = v.trim().parse().ok();
        } else if let Some(v) = l.strip_prefix("TX:") {
            target.1 = v.trim().parse().ok();
        }
    }
    Some(Rings {
        rx_max: max.0?,
        tx_max: max.1?,
        rx: cur.0?,
        tx: cur.1?,
    })
}

/// IRQ numbers whose `/proc/interrupts` line names the interface.
fn irqs_of(interrupts: &str, iface: &str) -> Vec<u32> {
    interrupts
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .last()
                .is_some_and(|name| name == iface || name.starts_with(&format!("{iface}-")))
        })
        .filter_map(|l| l.trim().split(':').next()?.trim().parse().ok())
        .collect()
}

/// Writes every "change" that may be changed here, and reads it back.
fn apply(root: &Path, root_ns: bool, findings: &mut [Finding]) {
    for f in findings.iter_mut().filter(|f| f.status == Status::Change) {
        if f.scope == Scope::Global && !root_ns {
            f.applied = Some(false);
            f.apply_error =
                Some("global sysctl, and this is not the root network namespace".into());
            continue;
        }
        let Some(value) = f.recommended.clone() else {
            continue;
        };
        let path = key_path(root, &f.item);
        let result = std::fs::write(&path, format!("{value}\n"))
            .map_err(|e| format!("writing {}: {e}", path.display()))
            .and_then(|()| {
                let now = std::fs::read_to_string(&path)
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
                    .map_err(|e| format!("reading back {}: {e}", path.display()))?;
                if now == value {
                    Ok(())
                } else {
                    Err(format!("wrote {value:?} but it reads {now:?}"))
                }
            });
        f.applied = Some(result.is_ok());
        f.apply_error = result.err();
    }
}

fn text(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sluice doctor: role {}, method {} ({})",
        match r.role {
            Role::Lb => "lb",
            Role::Real => "real",
        },
        serde_json::to_value(r.method)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        if r.root_namespace {
            "root network namespace"
        } else {
            "inside a network namespace: global sysctls are read-only or hidden here"
        }
    );
    for f in &r.findings {
        let status = match f.status {
            Status::Ok => "ok",
            Status::Change => "change",
            Status::Advice => "advice",
            Status::Info => "info",
            Status::Unreadable => "n/a",
        };
        let scope = match f.scope {
            Scope::Namespace => "netns",
            Scope::Global => "global",
            Scope::Nic => "nic",
        };
        let value = match (&f.current, &f.recommended, f.status) {
            (Some(c), _, Status::Ok | Status::Info) => format!("= {c}"),
            (Some(c), Some(w), _) => format!("= {c}, want {w}"),
            (None, Some(w), _) => format!("(want {w})"),
            (Some(c), None, _) => format!("= {c}"),
            (None, None, _) => String::new(),
        };
        let _ = writeln!(s, "{status:<7}{scope:<7}{} {value}", f.item);
        if matches!(
            f.status,
            Status::Change | Status::Advice | Status::Unreadable
        ) {
            let _ = writeln!(s, "{:14}why: {}", "", f.why);
        }
        if let Some(cmd) = &f.command
            && f.status != Status::Info
        {
            let _ = writeln!(s, "{:14}run: {cmd}", "");
        }
        match (f.applied, &f.apply_error) {
            (Some(true), _) => {
                let _ = writeln!(s, "{:14}applied", "");
            }
            (Some(false), Some(e)) => {
                let _ = writeln!(s, "{:14}not applied: {e}", "");
            }
            _ => {}
        }
    }
    let count = |st: Status| r.findings.iter().filter(|f| f.status == st).count();
    let _ = writeln!(
        s,
        "summary: {} ok, {} to change, {} advice (NIC, never applied), {} not readable",
        count(Status::Ok),
        count(Status::Change),
        count(Status::Advice),
        count(Status::Unreadable)
    );
    if count(Status::Change) > 0 {
        let _ = writeln!(
            s,
            "to keep changes across reboots, put the key = value lines in /etc/sysctl.d/90-sluice.conf"
        );
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fake_root(values: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (k, v) in values {
            let p = key_path(dir.path(), k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{v}\n")).unwrap();
        }
        dir
    }

    #[test]
    fn wants_are_checked() {
        assert!(satisfies("65535", Want::AtLeast(65_535)));
        assert!(!satisfies("4096", Want::AtLeast(65_535)));
        assert!(!satisfies("junk", Want::AtLeast(1)));
        assert!(satisfies("2", Want::OneOf(&["0", "2"])));
        assert!(!satisfies("1", Want::OneOf(&["0", "2"])));
        assert!(satisfies("1024 65535", Want::PortRange(1024, 65_535)));
        assert!(!satisfies("32768 60999", Want::PortRange(1024, 65_535)));
        assert!(!satisfies("1024", Want::PortRange(1024, 65_535)));
    }

    #[test]
    fn real_dr_rules_and_apply_on_a_fake_tree() {
        let root = fake_root(&[
            ("net.core.somaxconn", "4096"),
            ("net.ipv4.tcp_max_syn_backlog", "70000"),
            ("net.ipv4.conf.all.arp_ignore", "0"),
            ("net.ipv4.conf.all.arp_announce", "2"),
            ("net.ipv4.conf.all.rp_filter", "1"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("fs.file-max", "1000"),
        ]);
        let mut f = check_sysctls(root.path(), Role::Real, Method::DR, false);
        let get = |f: &[Finding], k: &str| f.iter().find(|x| x.item == k).unwrap().clone();
        assert_eq!(get(&f, "net.core.somaxconn").status, Status::Change);
        assert_eq!(
            get(&f, "net.core.somaxconn").command.as_deref(),
            Some("sysctl -w net.core.somaxconn=\"65535\"")
        );
        assert_eq!(get(&f, "net.ipv4.tcp_max_syn_backlog").status, Status::Ok);
        assert_eq!(
            get(&f, "net.ipv4.conf.all.arp_ignore").status,
            Status::Change
        );
        assert_eq!(get(&f, "net.ipv4.conf.all.arp_announce").status, Status::Ok);
        assert_eq!(
            get(&f, "net.ipv4.conf.all.rp_filter").status,
            Status::Change
        );
        // Absent here and global: unreadable, not guessed.
        assert_eq!(
            get(&f, "net.core.netdev_max_backlog").status,
            Status::Unreadable
        );
        assert_eq!(get(&f, "fs.file-max").scope, Scope::Global);
        apply(root.path(), false, &mut f);
        let read = |k: &str| {
            std::fs::read_to_string(key_path(root.path(), k))
                .unwrap()
                .trim()
                .to_owned()
        };
        assert_eq!(read("net.core.somaxconn"), "65535");
        assert_eq!(read("net.ipv4.conf.all.arp_ignore"), "1");
        assert_eq!(read("net.ipv4.conf.all.rp_filter"), "0");
        // Untouched: fine already, or global outside the root namespace.
        assert_eq!(read("net.ipv4.tcp_max_syn_backlog"), "70000");
        assert_eq!(read("fs.file-max"), "1000");
        assert_eq!(get(&f, "fs.file-max").applied, Some(false));
        assert!(get(&f, "fs.file-max").apply_error.is_some());
        assert_eq!(get(&f, "net.core.somaxconn").applied, Some(true));
        // No DSR rules for a proxy's real.
        let p = check_sysctls(root.path(), Role::Real, Method::Proxy, false);
        assert!(p.iter().all(|x| !x.item.contains("arp_")));
        // The port range and TIME_WAIT reuse matter only where connections
        // are opened.
        let lb = check_sysctls(root.path(), Role::Lb, Method::Proxy, false);
        assert!(lb.iter().any(|x| x.item == "net.ipv4.ip_local_port_range"));
        let dr = check_sysctls(root.path(), Role::Lb, Method::DR, false);
        assert!(dr.iter().all(|x| x.item != "net.ipv4.ip_local_port_range"));
    }

    #[test]
    fn ethtool_rings_and_irqs_parse() {
        let text = "Ring parameters for eth0:\nPre-set maximums:\nRX:\t\t4096\nRX Mini:\tn/a\nTX:\t\t4096\nCurrent hardware settings:\nRX:\t\t256\nRX Mini:\tn/a\nTX:\t\t512\n";
        assert_eq!(
            parse_rings(text),
            Some(Rings {
                rx_max: 4096,
                tx_max: 4096,
                rx: 256,
                tx: 512
            })
        );
        assert_eq!(parse_rings("nothing"), None);
        let irq = "           CPU0       CPU1\n 24:   1   2   PCI-MSI 1-edge      eth0-TxRx-0\n 25:  3 4 PCI-MSI eth0-TxRx-1\n 26: 0 0 PCI-MSI eth01\n";
        assert_eq!(irqs_of(irq, "eth0"), vec![24, 25]);
    }
}
