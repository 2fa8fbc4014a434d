//! Building, using and tearing down a lab.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::exec::{self, IP};
use crate::netns::{self, create_veth_in, ip_in, netns_exists, run_in_netns, set_sysctls_in};
use crate::probe::http_get;
use crate::process::ProcessRecord;
use crate::topology::{LabSpec, LbForwarding, Node, NodeInfo, RealBackend, Topology, Variant};
use crate::{LabError, nginx};

/// How long [`Lab::up`] waits for every real server to answer `/health`, in
/// milliseconds.
pub const READY_TIMEOUT_MS: u64 = 10_000;

/// Timeout of one readiness or status probe, in milliseconds.
pub const PROBE_TIMEOUT_MS: u64 = 1_000;

/// Pause between readiness probes of a real that is not up yet, in milliseconds.
const READY_POLL_MS: u64 = 20;

/// Where the CLI keeps `<label>.json` state files.
pub const DEFAULT_STATE_DIR: &str = "/run/sluice-lab";

/// Bytes of a server log quoted in an error.
const LOG_TAIL_BYTES: usize = 2_000;

/// Pause between checks that `realserver setup` has finished, in milliseconds.
const SETUP_POLL_MS: u64 = 50;

/// Everything a lab created, so that it can be torn down by this process or,
/// through the state file, by another one (`sluice lab down`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// Names and addresses.
    pub topology: Topology,
    /// Namespaces created, in creation order.
    pub namespaces: Vec<String>,
    /// Processes started (servers, and whatever [`Lab::spawn`] started).
    pub processes: Vec<ProcessRecord>,
    /// `sluice realserver setup` on each real ([`Variant::Tun`]).
    #[serde(default)]
    pub setup_processes: Vec<ProcessRecord>,
    /// Temporary directories created (server configs and logs).
    pub temp_dirs: Vec<PathBuf>,
}

/// What a teardown did. Teardown never stops at the first problem; problems
/// are collected in `errors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TeardownReport {
    /// Processes that were still running and were stopped (their `what`).
    pub stopped: Vec<String>,
    /// Namespaces that existed and were deleted.
    pub namespaces_deleted: Vec<String>,
    /// Temporary directories removed.
    pub temp_dirs_removed: Vec<PathBuf>,
    /// Problems met on the way (the teardown carried on).
    pub errors: Vec<String>,
}

impl TeardownReport {
    fn merge(&mut self, other: TeardownReport) {
        self.stopped.extend(other.stopped);
        self.namespaces_deleted.extend(other.namespaces_deleted);
        self.temp_dirs_removed.extend(other.temp_dirs_removed);
        self.errors.extend(other.errors);
    }
}

// === impl LabState ===

impl LabState {
    /// The state file of `label` under `dir`: `dir/<label>.json`.
    #[must_use]
    pub fn path(dir: &Path, label: &str) -> PathBuf {
        dir.join(format!("{label}.json"))
    }

    /// Writes the state to [`LabState::path`] (atomically: a temporary file
    /// renamed into place), creating `dir` if needed. Returns the path.
    ///
    /// # Errors
    /// [`LabError::Io`].
    pub fn save(&self, dir: &Path) -> Result<PathBuf, LabError> {
        fs::create_dir_all(dir)
            .map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
        let path = Self::path(dir, &self.topology.label);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).map_err(|e| LabError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&tmp, text).map_err(|e| LabError::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, &path)
            .map_err(|e| LabError::io(format!("renaming to {}", path.display()), e))?;
        Ok(path)
    }

    /// Reads the state of `label` from `dir`; `Ok(None)` if there is none.
    ///
    /// # Errors
    /// [`LabError::State`] if the file exists but cannot be read or parsed.
    pub fn load(dir: &Path, label: &str) -> Result<Option<Self>, LabError> {
        let path = Self::path(dir, label);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(LabError::State {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| LabError::State {
                path,
                reason: e.to_string(),
            })
    }

    /// Tears down everything recorded: stops processes (SIGTERM, then
    /// SIGKILL; only if PID *and* start time still match), deletes the
    /// namespaces (which removes their veths and the bridge), removes the
    /// temporary directories. Idempotent; "already gone" is not an error.
    pub fn teardown(&self) -> TeardownReport {
        let mut report = TeardownReport::default();
        for p in self.processes.iter().chain(&self.setup_processes).rev() {
            if p.stop() {
                report.stopped.push(p.what.clone());
            }
        }
        for ns in self.namespaces.iter().rev() {
            match netns::delete_netns(ns) {
                Ok(true) => report.namespaces_deleted.push(ns.clone()),
                Ok(false) => {}
                Err(e) => report.errors.push(e.to_string()),
            }
        }
        for dir in &self.temp_dirs {
            match fs::remove_dir_all(dir) {
                Ok(()) => report.temp_dirs_removed.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => report
                    .errors
                    .push(format!("removing {}: {e}", dir.display())),
            }
        }
        report
    }
}

/// Deletes every namespace that belongs to the lab `label` (see
/// [`crate::netns_belongs_to`]), killing processes left inside. For `sluice
/// lab down` without a state file. Idempotent.
///
/// # Errors
/// [`LabError::InvalidSpec`] for a bad label; [`LabError::Io`] if the
/// namespace directory cannot be read. Per-namespace failures go to the report.
pub fn teardown_label(label: &str) -> Result<TeardownReport, LabError> {
    crate::topology::validate_label(label)?;
    let mut report = TeardownReport::default();
    let mut names: Vec<String> = netns::list_netns()?
        .into_iter()
        .filter(|n| crate::topology::netns_belongs_to(label, n))
        .collect();
    // The switch last, like a normal teardown.
    names.sort_by_key(|n| n.ends_with("-sw"));
    for ns in names {
        match netns::delete_netns(&ns) {
            Ok(true) => report.namespaces_deleted.push(ns),
            Ok(false) => {}
            Err(e) => report.errors.push(e.to_string()),
        }
    }
    Ok(report)
}

/// The result of probing one real server from the client namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RealProbe {
    /// `rs1`, ...
    pub name: String,
    /// `real-address:port`.
    pub addr: SocketAddr,
    /// `Ok(X-Served-By)` if `/health` answered 200, else the error.
    pub health: Result<String, String>,
}

/// The result of fetching `/` through the VIP from the client namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipProbe {
    /// `VIP:port`.
    pub addr: SocketAddr,
    /// `Ok((X-Served-By, body length))` on a 200, else the error.
    pub result: Result<(String, usize), String>,
}

/// Probes, from the client namespace, every real's `/health` directly and
/// `/` through each VIP. Used by `sluice lab status`.
///
/// # Errors
/// [`LabError::Setns`] if the client namespace is gone.
pub fn probe_lab(topology: &Topology) -> Result<(Vec<RealProbe>, Vec<VipProbe>), LabError> {
    let timeout = Duration::from_millis(PROBE_TIMEOUT_MS);
    run_in_netns(&topology.client.netns, || {
        let reals = topology
            .reals
            .iter()
            .map(|r| {
                let addr = SocketAddr::new(r.ipv4.into(), topology.port);
                let health = match http_get(addr, "/health", timeout) {
                    Ok(resp) if resp.status == 200 => Ok(resp
                        .header(crate::SERVED_BY_HEADER)
                        .unwrap_or("")
                        .to_owned()),
                    Ok(resp) => Err(format!("HTTP {}", resp.status)),
                    Err(e) => Err(e.to_string()),
                };
                RealProbe {
                    name: r.name.clone(),
                    addr,
                    health,
                }
            })
            .collect();
        let vips = std::iter::once(topology.vip4_addr())
            .chain(topology.vip6_addr())
            .map(|addr| VipProbe {
                addr,
                result: match http_get(addr, "/", timeout) {
                    Ok(resp) if resp.status == 200 => Ok((
                        resp.header(crate::SERVED_BY_HEADER)
                            .unwrap_or("")
                            .to_owned(),
                        resp.body.len(),
                    )),
                    Ok(resp) => Err(format!("HTTP {}", resp.status)),
                    Err(e) => Err(e.to_string()),
                },
            })
            .collect();
        (reals, vips)
    })
}

// === impl Lab ===

/// A running lab. Dropping it tears everything down (also when a test
/// panics); [`Lab::down`] does the same explicitly and reports, and
/// [`Lab::detach`] hands the lab over to a state file instead.
#[derive(Debug)]
pub struct Lab {
    state: LabState,
    /// Processes started through [`Lab::spawn`] / [`Lab::track`].
    user_processes: Mutex<Vec<ProcessRecord>>,
    /// Whether drop must tear down (false after `down`/`detach`).
    armed: bool,
}

impl Lab {
    /// Builds the lab. On any failure, whatever was created is torn down and
    /// the error (with the failing command and its stderr) returned.
    ///
    /// # Errors
    /// [`LabError::NotPrivileged`] without root; [`LabError::AlreadyExists`]
    /// if a namespace of this label exists; [`LabError::Command`] for a
    /// failed step; [`LabError::NotReady`] if a real server does not answer.
    pub fn up(spec: LabSpec) -> Result<Lab, LabError> {
        Self::up_cancellable(spec, &AtomicBool::new(false))
    }

    /// [`Lab::up`] that stops (tearing down, returning
    /// [`LabError::Cancelled`]) as soon as it sees `cancel` set, e.g. from a
    /// SIGINT handler.
    ///
    /// # Errors
    /// As [`Lab::up`], plus [`LabError::Cancelled`].
    pub fn up_cancellable(spec: LabSpec, cancel: &AtomicBool) -> Result<Lab, LabError> {
        exec::check_privileges()?;
        let topology = spec.topology()?;
        for ns in topology.namespaces() {
            if netns_exists(&ns) {
                return Err(LabError::AlreadyExists(ns));
            }
        }
        let mut lab = Lab {
            state: LabState {
                topology,
                namespaces: Vec::new(),
                processes: Vec::new(),
                setup_processes: Vec::new(),
                temp_dirs: Vec::new(),
            },
            user_processes: Mutex::new(Vec::new()),
            armed: true,
        };
        let started = Instant::now();
        match lab.build(&spec, cancel) {
            Ok(()) => {
                tracing::info!(label = %spec.label, reals = spec.reals, ms = started.elapsed().as_millis(), "lab up");
                Ok(lab)
            }
            Err(err) => {
                let report = lab.teardown();
                for e in &report.errors {
                    tracing::warn!(error = %e, "teardown after a failed set-up");
                }
                if cancel.load(Ordering::SeqCst) {
                    Err(LabError::Cancelled)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Names and addresses.
    #[must_use]
    pub fn topology(&self) -> &Topology {
        &self.state.topology
    }

    /// The label.
    #[must_use]
    pub fn label(&self) -> &str {
        &self.state.topology.label
    }

    /// A node's namespace, interface and addresses.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`].
    pub fn node(&self, node: Node) -> Result<&NodeInfo, LabError> {
        self.state.topology.node(node)
    }

    /// A node's namespace name.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`].
    pub fn netns(&self, node: Node) -> Result<&str, LabError> {
        self.state.topology.netns(node)
    }

    /// The real-server processes the lab started (empty with
    /// [`RealBackend::None`]), `real_processes()[0]` on `rs1`.
    #[must_use]
    pub fn real_processes(&self) -> &[ProcessRecord] {
        &self.state.processes
    }

    /// Runs `argv` in the node's namespace (`ip netns exec`) and returns its
    /// output whatever the exit status.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`], [`LabError::Spawn`].
    pub fn exec(&self, node: Node, argv: &[&str]) -> Result<Output, LabError> {
        netns::exec_in(self.netns(node)?, argv)
    }

    /// A not-yet-started command running `argv` in the node's namespace. Set
    /// its stdio as needed, spawn it, and pass the child to [`Lab::track`].
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`], [`LabError::InvalidSpec`] for an empty argv.
    pub fn command(&self, node: Node, argv: &[&str]) -> Result<Command, LabError> {
        netns::command_in(self.netns(node)?, argv)
    }

    /// Starts `argv` in the node's namespace in the background (stdin and
    /// stdout null, stderr inherited). The process is stopped at teardown if
    /// still running.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`], [`LabError::Spawn`].
    pub fn spawn(&self, node: Node, argv: &[&str]) -> Result<Child, LabError> {
        let netns = self.netns(node)?;
        let mut cmd = netns::command_in(netns, argv)?;
        cmd.stdin(Stdio::null()).stdout(Stdio::null());
        let child = cmd.spawn().map_err(|source| LabError::Spawn {
            command: netns::exec_display(netns, argv),
            source,
        })?;
        self.track(node, &child, &argv.join(" "));
        Ok(child)
    }

    /// Records a child started from [`Lab::command`] so teardown stops it.
    pub fn track(&self, node: Node, child: &Child, what: &str) {
        let netns = self.netns(node).unwrap_or_default();
        if let Some(rec) = ProcessRecord::new(child.id(), netns, what) {
            self.lock_user_processes().push(rec);
        }
    }

    /// Runs `f` on a fresh thread inside the node's namespace (`setns`); see
    /// [`crate::Netns::in_netns`]. Load and attach XDP programs, write maps
    /// holding ifindexes, open sockets from a node with this.
    ///
    /// # Errors
    /// [`LabError::NoSuchNode`], [`LabError::Setns`].
    pub fn in_netns<F, T>(&self, node: Node, f: F) -> Result<T, LabError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in_netns(self.netns(node)?, f)
    }

    /// A snapshot of everything the lab created, processes from
    /// [`Lab::spawn`] included.
    #[must_use]
    pub fn state(&self) -> LabState {
        let mut state = self.state.clone();
        state
            .processes
            .extend(self.lock_user_processes().iter().cloned());
        state
    }

    /// Disarms the drop guard and returns the state: the lab keeps running
    /// after this process exits (the CLI's `lab up` saves it to a file).
    #[must_use]
    pub fn detach(mut self) -> LabState {
        self.armed = false;
        self.state()
    }

    /// Tears the lab down now and reports what was done.
    #[must_use = "the report lists problems met during teardown"]
    pub fn down(mut self) -> TeardownReport {
        self.armed = false;
        self.teardown()
    }

    fn teardown(&mut self) -> TeardownReport {
        let mut report = TeardownReport::default();
        let user: Vec<ProcessRecord> = std::mem::take(&mut *self.lock_user_processes());
        for p in user.iter().rev() {
            if p.stop() {
                report.stopped.push(p.what.clone());
            }
        }
        report.merge(self.state.teardown());
        report
    }

    fn lock_user_processes(&self) -> std::sync::MutexGuard<'_, Vec<ProcessRecord>> {
        // A panic while holding this lock leaves a valid Vec; keep using it.
        self.user_processes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    // --- set-up steps ---

    fn build(&mut self, spec: &LabSpec, cancel: &AtomicBool) -> Result<(), LabError> {
        let step = || {
            if cancel.load(Ordering::SeqCst) {
                Err(LabError::Cancelled)
            } else {
                Ok(())
            }
        };
        let t = self.state.topology.clone();
        let dir = tempfile::Builder::new()
            .prefix(&format!("sluice-lab-{}-", t.label))
            .tempdir()
            .map_err(|e| LabError::io("creating the lab's temporary directory", e))?
            .keep();
        self.state.temp_dirs.push(dir.clone());

        for ns in t.namespaces() {
            step()?;
            exec::run(&[IP, "netns", "add", &ns])?;
            self.state.namespaces.push(ns.clone());
            ip_in(&ns, &["link", "set", "lo", "up"])?;
        }

        // The switch: a bridge, no addresses, no IPv6 chatter of its own.
        let sw = t.switch_netns.as_str();
        set_sysctls_in(
            sw,
            &[
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
            ],
        )?;
        ip_in(
            sw,
            &["link", "add", &t.bridge, "type", "bridge", "stp_state", "0"],
        )?;
        ip_in(sw, &["link", "set", &t.bridge, "up"])?;
        if let Some(r) = &t.router {
            ip_in(
                sw,
                &[
                    "link",
                    "add",
                    &r.real_bridge,
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                ],
            )?;
            ip_in(sw, &["link", "set", &r.real_bridge, "up"])?;
        }

        // Every node interface with the bridge its switch port joins.
        let mut ports: Vec<(&NodeInfo, &str)> = vec![(&t.client, &t.bridge), (&t.lb, &t.bridge)];
        ports.extend(t.peer_lb.iter().map(|n| (n, t.bridge.as_str())));
        if let Some(r) = &t.router {
            ports.push((&r.front, &t.bridge));
            ports.push((&r.back, &r.real_bridge));
        }
        ports.extend(t.reals.iter().map(|r| (r, t.real_bridge())));
        for (node, bridge) in ports {
            step()?;
            if t.vip6.is_some() {
                // Interfaces created below inherit `default`. Without DAD the
                // link-local address is usable at once; while it is
                // tentative, the LB cannot resolve next hops for forwarded
                // IPv6 packets and the first connections through the VIP
                // time out.
                set_sysctls_in(
                    &node.netns,
                    &[
                        ("net.ipv6.conf.all.accept_dad", "0"),
                        ("net.ipv6.conf.default.accept_dad", "0"),
                    ],
                )?;
            }
            create_veth_in(
                &node.netns,
                &node.iface,
                Some(&node.mac),
                sw,
                &node.switch_port,
            )?;
            ip_in(sw, &["link", "set", &node.switch_port, "master", bridge])?;
            // Tunnelled frames are bigger than the client's packets: every
            // interface but the client's carries them.
            if t.variant == Variant::Tun && node.name != t.client.name {
                let mtu = crate::topology::TUN_PATH_MTU.to_string();
                ip_in(&node.netns, &["link", "set", &node.iface, "mtu", &mtu])?;
                ip_in(sw, &["link", "set", &node.switch_port, "mtu", &mtu])?;
            }
            let a4 = format!("{}/{}", node.ipv4, t.prefix_len4);
            ip_in(&node.netns, &["addr", "add", &a4, "dev", &node.iface])?;
            if let Some(ip6) = node.ipv6 {
                let a6 = format!("{ip6}/{}", t.prefix_len6);
                ip_in(
                    &node.netns,
                    &["-6", "addr", "add", &a6, "dev", &node.iface, "nodad"],
                )?;
            }
        }

        step()?;
        self.wire_client_and_lb(&t)?;
        match spec.variant {
            Variant::Dsr => self.wire_dsr(spec, &t)?,
            Variant::Tun => {
                self.wire_tun(&t)?;
                self.start_setup(spec, &t, &dir, cancel)?;
            }
        }

        self.start_servers(spec, &t, &dir, cancel)?;
        Ok(())
    }

    /// Sysctls and VIP routes of the client and the LB, common to all variants.
    fn wire_client_and_lb(&self, t: &Topology) -> Result<(), LabError> {
        let c = &t.client;
        // The LB forwards out of the interface it received on, which makes it
        // send ICMP redirects; a client obeying them would bypass the LB.
        let client_if_redirects = format!("net.ipv4.conf.{}.accept_redirects", c.iface);
        let mut client_sysctls = vec![
            ("net.ipv4.conf.all.accept_redirects", "0"),
            ("net.ipv4.conf.default.accept_redirects", "0"),
            (client_if_redirects.as_str(), "0"),
        ];
        if t.vip6.is_some() {
            client_sysctls.push(("net.ipv6.conf.all.accept_redirects", "0"));
            client_sysctls.push(("net.ipv6.conf.default.accept_redirects", "0"));
        }
        set_sysctls_in(&c.netns, &client_sysctls)?;
        // Gotcha 3: native XDP on veth loses CHECKSUM_PARTIAL; full checksums
        // from the client keep TCP through an XDP LB working.
        exec::check(
            &[
                IP, "netns", "exec", &c.netns, "ethtool", "-K", &c.iface, "tx", "off",
            ],
            netns::exec_in(&c.netns, &["ethtool", "-K", &c.iface, "tx", "off"])?,
        )?;
        let vip4 = format!("{}/32", t.vip4);
        let lb4 = t.lb.ipv4.to_string();
        // With an HA pair the VIP is on-link: the LB holding it answers
        // ARP / neighbour solicitations (and announces itself on
        // failover).
        let via4: &[&str] = if t.peer_lb.is_some() {
            &[]
        } else {
            &["via", &lb4]
        };
        ip_in(
            &c.netns,
            &[&["route", "add", vip4.as_str()], via4, &["dev", &c.iface]].concat(),
        )?;
        if let (Some(vip6), Some(lb6)) = (t.vip6, t.lb.ipv6) {
            let vip6 = format!("{vip6}/128");
            let lb6 = lb6.to_string();
            let via6: &[&str] = if t.peer_lb.is_some() {
                &[]
            } else {
                &["via", &lb6]
            };
            ip_in(
                &c.netns,
                &[
                    &["-6", "route", "add", vip6.as_str()],
                    via6,
                    &["dev", &c.iface],
                ]
                .concat(),
            )?;
        }

        let lb = &t.lb;
        let lb_if_redirects = format!("net.ipv4.conf.{}.send_redirects", lb.iface);
        let mut lb_sysctls = vec![
            ("net.ipv4.ip_forward", "1"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
            (lb_if_redirects.as_str(), "0"),
            ("net.ipv4.fib_multipath_hash_policy", "1"),
        ];
        if t.vip6.is_some() {
            lb_sysctls.push(("net.ipv6.conf.all.forwarding", "1"));
            lb_sysctls.push(("net.ipv6.fib_multipath_hash_policy", "1"));
        }
        set_sysctls_in(&lb.netns, &lb_sysctls)?;
        if let Some(peer) = &t.peer_lb {
            // Same interface name, so the same sysctls.
            set_sysctls_in(&peer.netns, &lb_sysctls)?;
        }
        Ok(())
    }

    /// Routes and sysctls of the one-armed L2 DSR variant.
    fn wire_dsr(&self, spec: &LabSpec, t: &Topology) -> Result<(), LabError> {
        let lb = &t.lb;
        let vip4 = format!("{}/32", t.vip4);
        if spec.lb_forwarding == LbForwarding::Ecmp {
            let hops4: Vec<String> = t.reals.iter().map(|r| r.ipv4.to_string()).collect();
            let mut argv = vec!["route", "add", vip4.as_str()];
            for h in &hops4 {
                argv.extend(["nexthop", "via", h.as_str(), "dev", lb.iface.as_str()]);
            }
            ip_in(&lb.netns, &argv)?;
            if let Some(vip6) = t.vip6 {
                let vip6 = format!("{vip6}/128");
                let hops6: Vec<String> = t
                    .reals
                    .iter()
                    .filter_map(|r| r.ipv6)
                    .map(|a| a.to_string())
                    .collect();
                let mut argv = vec!["-6", "route", "add", vip6.as_str()];
                for h in &hops6 {
                    argv.extend(["nexthop", "via", h.as_str(), "dev", lb.iface.as_str()]);
                }
                ip_in(&lb.netns, &argv)?;
            }
        }

        for r in &t.reals {
            ip_in(&r.netns, &["addr", "add", &vip4, "dev", "lo"])?;
            if let Some(vip6) = t.vip6 {
                let vip6 = format!("{vip6}/128");
                ip_in(
                    &r.netns,
                    &["-6", "addr", "add", &vip6, "dev", "lo", "nodad"],
                )?;
            }
            // Never answer ARP for the VIP (it is on lo, not eth0), never use
            // it as an ARP source: only the LB may attract VIP traffic.
            let ignore_if = format!("net.ipv4.conf.{}.arp_ignore", r.iface);
            let announce_if = format!("net.ipv4.conf.{}.arp_announce", r.iface);
            let rp_if = format!("net.ipv4.conf.{}.rp_filter", r.iface);
            set_sysctls_in(
                &r.netns,
                &[
                    ("net.ipv4.conf.all.arp_ignore", "1"),
                    ("net.ipv4.conf.all.arp_announce", "2"),
                    (ignore_if.as_str(), "1"),
                    (announce_if.as_str(), "2"),
                    ("net.ipv4.conf.all.rp_filter", "0"),
                    ("net.ipv4.conf.default.rp_filter", "0"),
                    (rp_if.as_str(), "0"),
                ],
            )?;
        }
        Ok(())
    }

    /// Routes and sysctls of the routed L3 DSR (IPIP) variant. The reals'
    /// VIPs, ARP sysctls and decapsulation come from `realserver setup`.
    fn wire_tun(&self, t: &Topology) -> Result<(), LabError> {
        let Some(router) = &t.router else {
            return Err(LabError::InvalidSpec(
                "the tun variant needs a router in its topology".to_owned(),
            ));
        };
        let subnet4 = format!("{}/{}", crate::topology::REAL_SUBNET4, t.prefix_len4);
        let subnet6 = format!("{}/{}", crate::topology::REAL_SUBNET6, t.prefix_len6);
        let via4 = router.front.ipv4.to_string();
        let via6 = router.front.ipv6.map(|a| a.to_string());
        // The client reaches the reals (and their replies' path) through the
        // router, the VIP through the LB; the LB sends its tunnels to the router.
        for node in [&t.client, &t.lb].into_iter().chain(t.peer_lb.iter()) {
            ip_in(
                &node.netns,
                &["route", "add", &subnet4, "via", &via4, "dev", &node.iface],
            )?;
            if let Some(via6) = &via6 {
                ip_in(
                    &node.netns,
                    &[
                        "-6",
                        "route",
                        "add",
                        &subnet6,
                        "via",
                        via6,
                        "dev",
                        &node.iface,
                    ],
                )?;
            }
        }

        let mut rtr_sysctls = vec![
            ("net.ipv4.ip_forward", "1"),
            // Tunnels with a varied outer source (`tun_vary_source`) come
            // from addresses nobody owns; the router must not filter them.
            ("net.ipv4.conf.all.rp_filter", "0"),
            ("net.ipv4.conf.default.rp_filter", "0"),
            ("net.ipv4.conf.all.send_redirects", "0"),
            ("net.ipv4.conf.default.send_redirects", "0"),
        ];
        let rp_front = format!("net.ipv4.conf.{}.rp_filter", router.front.iface);
        let rp_back = format!("net.ipv4.conf.{}.rp_filter", router.back.iface);
        rtr_sysctls.push((rp_front.as_str(), "0"));
        rtr_sysctls.push((rp_back.as_str(), "0"));
        if t.vip6.is_some() {
            rtr_sysctls.push(("net.ipv6.conf.all.forwarding", "1"));
        }
        set_sysctls_in(&router.front.netns, &rtr_sysctls)?;

        let gw4 = router.back.ipv4.to_string();
        let gw6 = router.back.ipv6.map(|a| a.to_string());
        for r in &t.reals {
            ip_in(
                &r.netns,
                &["route", "add", "default", "via", &gw4, "dev", &r.iface],
            )?;
            if let Some(gw6) = &gw6 {
                ip_in(
                    &r.netns,
                    &["-6", "route", "add", "default", "via", gw6, "dev", &r.iface],
                )?;
            }
        }
        Ok(())
    }

    /// Starts `sluice realserver setup --vip ... --tun-iface eth0` on every
    /// real and waits until each has its VIPs on `lo` and `sluice_decap` on
    /// its interface.
    fn start_setup(
        &mut self,
        spec: &LabSpec,
        t: &Topology,
        dir: &Path,
        cancel: &AtomicBool,
    ) -> Result<(), LabError> {
        let Some(binary) = spec.setup_binary() else {
            return Err(LabError::InvalidSpec(
                "the tun variant needs the sluice binary for `realserver setup`".to_owned(),
            ));
        };
        let binary = binary.display().to_string();
        let vips: Vec<String> = std::iter::once(t.vip4.to_string())
            .chain(t.vip6.map(|v| v.to_string()))
            .collect();
        let mut logs = Vec::new();
        for r in &t.reals {
            if cancel.load(Ordering::SeqCst) {
                return Err(LabError::Cancelled);
            }
            let rdir = dir.join(&r.name);
            fs::create_dir_all(&rdir)
                .map_err(|e| LabError::io(format!("creating {}", rdir.display()), e))?;
            let mut argv = vec![binary.as_str(), "realserver", "setup"];
            for v in &vips {
                argv.extend(["--vip", v.as_str()]);
            }
            argv.extend(["--tun-iface", r.iface.as_str()]);
            let log = rdir.join("setup.log");
            let out = File::create(&log)
                .map_err(|e| LabError::io(format!("creating {}", log.display()), e))?;
            let err = out
                .try_clone()
                .map_err(|e| LabError::io(format!("duplicating {}", log.display()), e))?;
            let mut cmd = netns::command_in(&r.netns, &argv)?;
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0);
            let child = cmd.spawn().map_err(|source| LabError::Spawn {
                command: netns::exec_display(&r.netns, &argv),
                source,
            })?;
            match ProcessRecord::new(child.id(), &r.netns, &format!("setup {}", r.name)) {
                Some(rec) => self.state.setup_processes.push(rec),
                None => {
                    return Err(LabError::NotReady {
                        name: r.name.clone(),
                        waited_ms: 0,
                        last_error: format!(
                            "realserver setup exited at once: {}",
                            log_tail(&[&log])
                        ),
                    });
                }
            }
            logs.push(log);
        }

        let started = Instant::now();
        let deadline = started + Duration::from_millis(READY_TIMEOUT_MS);
        for (i, r) in t.reals.iter().enumerate() {
            loop {
                if cancel.load(Ordering::SeqCst) {
                    return Err(LabError::Cancelled);
                }
                let missing = setup_missing(r, &vips);
                let Some(missing) = missing else { break };
                let exited = self
                    .state
                    .setup_processes
                    .get(i)
                    .is_some_and(|p| !p.is_running());
                if exited || Instant::now() >= deadline {
                    let tail = logs.get(i).map_or_else(String::new, |l| log_tail(&[l]));
                    return Err(LabError::NotReady {
                        name: r.name.clone(),
                        waited_ms: started.elapsed().as_millis(),
                        last_error: format!(
                            "realserver setup {}: missing {missing}; log: {tail}",
                            if exited { "exited" } else { "did not finish" }
                        ),
                    });
                }
                thread::sleep(Duration::from_millis(SETUP_POLL_MS));
            }
        }
        Ok(())
    }

    /// Starts one server per real and waits until each answers `/health`.
    fn start_servers(
        &mut self,
        spec: &LabSpec,
        t: &Topology,
        dir: &Path,
        cancel: &AtomicBool,
    ) -> Result<(), LabError> {
        let mut logs = Vec::new();
        for r in &t.reals {
            if cancel.load(Ordering::SeqCst) {
                return Err(LabError::Cancelled);
            }
            let rdir = dir.join(&r.name);
            fs::create_dir_all(&rdir)
                .map_err(|e| LabError::io(format!("creating {}", rdir.display()), e))?;
            let port = t.port.to_string();
            let listen4 = format!("0.0.0.0:{port}");
            let listen6 = format!("[::]:{port}");
            let size = spec.body_size.to_string();
            let (argv, what, log): (Vec<String>, String, PathBuf) = match &spec.backend {
                RealBackend::None => return Ok(()),
                RealBackend::Sluice { binary } => {
                    let mut argv = vec![
                        binary.display().to_string(),
                        "realserver".into(),
                        "web".into(),
                        "--listen".into(),
                        listen4,
                    ];
                    if t.vip6.is_some() {
                        argv.extend(["--listen".into(), listen6]);
                    }
                    argv.extend(["--name".into(), r.name.clone(), "--size".into(), size]);
                    (argv, format!("web {}", r.name), rdir.join("server.log"))
                }
                RealBackend::Nginx => {
                    let conf = nginx::write_site(
                        &rdir,
                        &r.name,
                        t.port,
                        t.vip6.is_some(),
                        spec.body_size,
                    )?;
                    let errlog = rdir.join("error.log");
                    let argv = vec![
                        nginx::NGINX.to_owned(),
                        "-p".into(),
                        rdir.display().to_string(),
                        "-c".into(),
                        conf.display().to_string(),
                        "-e".into(),
                        errlog.display().to_string(),
                    ];
                    (argv, format!("nginx {}", r.name), errlog)
                }
            };
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            let out_log = rdir.join("server.out");
            let out = File::create(&out_log)
                .map_err(|e| LabError::io(format!("creating {}", out_log.display()), e))?;
            let err = out
                .try_clone()
                .map_err(|e| LabError::io(format!("duplicating {}", out_log.display()), e))?;
            let mut cmd = netns::command_in(&r.netns, &argv)?;
            // Own process group: a terminal's Ctrl-C after `lab up` returned
            // must not kill the servers; teardown stops them by PID.
            cmd.stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .process_group(0);
            let child = cmd.spawn().map_err(|source| LabError::Spawn {
                command: netns::exec_display(&r.netns, &argv),
                source,
            })?;
            match ProcessRecord::new(child.id(), &r.netns, &what) {
                Some(rec) => self.state.processes.push(rec),
                None => {
                    return Err(LabError::NotReady {
                        name: r.name.clone(),
                        waited_ms: 0,
                        last_error: format!("exited at once: {}", log_tail(&[&out_log, &log])),
                    });
                }
            }
            logs.push((out_log, log));
        }
        self.wait_ready(t, &logs, cancel)
    }

    fn wait_ready(
        &self,
        t: &Topology,
        logs: &[(PathBuf, PathBuf)],
        cancel: &AtomicBool,
    ) -> Result<(), LabError> {
        let started = Instant::now();
        let deadline = started + Duration::from_millis(READY_TIMEOUT_MS);
        let procs = &self.state.processes;
        run_in_netns(&t.client.netns, || {
            for (i, r) in t.reals.iter().enumerate() {
                let addr = SocketAddr::new(r.ipv4.into(), t.port);
                loop {
                    if cancel.load(Ordering::SeqCst) {
                        return Err(LabError::Cancelled);
                    }
                    let last_error =
                        match http_get(addr, "/health", Duration::from_millis(PROBE_TIMEOUT_MS)) {
                            Ok(resp)
                                if resp.status == 200
                                    && resp.header(crate::SERVED_BY_HEADER) == Some(&r.name) =>
                            {
                                break;
                            }
                            Ok(resp) => format!(
                                "HTTP {} served by {:?}",
                                resp.status,
                                resp.header(crate::SERVED_BY_HEADER)
                            ),
                            Err(e) => e.to_string(),
                        };
                    let exited = procs.get(i).is_some_and(|p| !p.is_running());
                    if exited || Instant::now() >= deadline {
                        let (out, log) = &logs[i.min(logs.len().saturating_sub(1))];
                        let tail = log_tail(&[out, log]);
                        return Err(LabError::NotReady {
                            name: r.name.clone(),
                            waited_ms: started.elapsed().as_millis(),
                            last_error: if exited {
                                format!("server exited; log: {tail}")
                            } else {
                                format!("{last_error}; log: {tail}")
                            },
                        });
                    }
                    thread::sleep(Duration::from_millis(READY_POLL_MS));
                }
            }
            // With a forwarding LB, the lab is ready once the VIP answers
            // too (neighbour resolution through the LB is then done).
            if t.lb_forwarding == LbForwarding::Ecmp {
                for vip in std::iter::once(t.vip4_addr()).chain(t.vip6_addr()) {
                    loop {
                        if cancel.load(Ordering::SeqCst) {
                            return Err(LabError::Cancelled);
                        }
                        let last_error =
                            match http_get(vip, "/health", Duration::from_millis(PROBE_TIMEOUT_MS))
                            {
                                Ok(resp) if resp.status == 200 => break,
                                Ok(resp) => format!("HTTP {}", resp.status),
                                Err(e) => e.to_string(),
                            };
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                name: format!("VIP {vip}"),
                                waited_ms: started.elapsed().as_millis(),
                                last_error,
                            });
                        }
                        thread::sleep(Duration::from_millis(READY_POLL_MS));
                    }
                }
            }
            Ok(())
        })?
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.armed {
            self.armed = false;
            let report = self.teardown();
            for e in &report.errors {
                tracing::warn!(label = %self.label(), error = %e, "lab teardown problem");
            }
        }
    }
}

/// What `realserver setup` has not done yet on real `r`: a VIP missing from
/// `lo` or no XDP program on its interface; `None` when it is all there.
fn setup_missing(r: &NodeInfo, vips: &[String]) -> Option<String> {
    let json = |argv: &[&str]| -> Option<serde_json::Value> {
        let out = netns::ip_in(&r.netns, argv).ok()?;
        serde_json::from_slice(&out.stdout).ok()
    };
    let on_lo: Vec<String> = json(&["-j", "addr", "show", "dev", "lo"])
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("addr_info")?.as_array())
        .flatten()
        .filter_map(|a| Some(a.get("local")?.as_str()?.to_owned()))
        .collect();
    if let Some(v) = vips.iter().find(|v| !on_lo.contains(v)) {
        return Some(format!("VIP {v} on lo"));
    }
    let has_xdp = json(&["-j", "link", "show", "dev", &r.iface])
        .as_ref()
        .and_then(serde_json::Value::as_array)
        .and_then(|a| a.first())
        .is_some_and(|l| l.get("xdp").is_some());
    if !has_xdp {
        return Some(format!("an XDP program on {}", r.iface));
    }
    None
}

/// The last [`LOG_TAIL_BYTES`] of the given log files, for error messages.
fn log_tail(paths: &[&Path]) -> String {
    let mut text = String::new();
    for p in paths {
        if let Ok(bytes) = fs::read(p) {
            text.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    text_tail(&text, LOG_TAIL_BYTES)
}

/// At most the last `max_bytes` of `text` (trimmed, cut at a character
/// boundary), or `(empty)`: the end of a log for an error message.
pub fn text_tail(text: &str, max_bytes: usize) -> String {
    let text = text.trim();
    if text.is_empty() {
        return "(empty)".to_owned();
    }
    let start = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|&i| text.len() - i <= max_bytes)
        .unwrap_or(0);
    text[start..].to_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = LabSpec::new("unit").topology().unwrap();
        let state = LabState {
            namespaces: t.namespaces(),
            topology: t,
            processes: vec![ProcessRecord {
                pid: 42,
                start_time: 7,
                netns: "sl-unit-rs1".into(),
                what: "web rs1".into(),
            }],
            setup_processes: Vec::new(),
            temp_dirs: vec![PathBuf::from("/tmp/none")],
        };
        assert_eq!(LabState::load(dir.path(), "unit").unwrap(), None);
        let path = state.save(dir.path()).unwrap();
        assert_eq!(path, dir.path().join("unit.json"));
        assert_eq!(LabState::load(dir.path(), "unit").unwrap(), Some(state));
        fs::write(&path, "{").unwrap();
        assert!(matches!(
            LabState::load(dir.path(), "unit"),
            Err(LabError::State { .. })
        ));
    }

    #[test]
    fn teardown_of_nothing_is_quiet() {
        let t = LabSpec::new("unitgone").topology().unwrap();
        let tmp = tempfile::tempdir().unwrap().keep();
        let state = LabState {
            namespaces: vec!["sl-unitgone-nonexistent".into()],
            topology: t,
            processes: Vec::new(),
            setup_processes: Vec::new(),
            temp_dirs: vec![tmp.clone()],
        };
        let r = state.teardown();
        assert!(r.errors.is_empty(), "{r:?}");
        assert!(r.namespaces_deleted.is_empty());
        assert_eq!(r.temp_dirs_removed, vec![tmp.clone()]);
        assert!(!tmp.exists());
        // Idempotent.
        assert_eq!(state.teardown(), TeardownReport::default());
    }

    #[test]
    fn log_tail_keeps_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        fs::write(&p, "x".repeat(3 * LOG_TAIL_BYTES) + "END").unwrap();
        let tail = log_tail(&[&p]);
        assert!(tail.ends_with("END"));
        assert!(tail.len() <= LOG_TAIL_BYTES);
        assert_eq!(log_tail(&[&dir.path().join("missing")]), "(empty)");
    }
}
