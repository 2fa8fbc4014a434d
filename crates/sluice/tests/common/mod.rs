//! Shared helpers for the L4 lab tests: a lab whose LB forwards nothing by
//! itself, the `sluice run` daemon started inside the LB namespace, and
//! clients in the client namespace.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::{
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Output},
    time::{Duration, Instant},
};

use sluice_l4::{AttachMode, Helper, HelperProgram};
use sluice_lab::{Lab, LabError, LabSpec, LbForwarding, Node, RealBackend, http_get};

/// The `sluice` binary under test.
pub const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// Admin endpoint of the daemon inside the LB namespace.
pub const ADMIN: &str = "127.0.0.1:9900";
/// How long the daemon may take to come up.
const DAEMON_START: Duration = Duration::from_secs(20);

/// The lab of `spec`, up (the tests need root).
pub fn lab_up(spec: LabSpec) -> Lab {
    match Lab::up(spec) {
        Ok(lab) => lab,
        Err(e @ LabError::NotPrivileged { .. }) => panic!("lab tests need root: {e}"),
        Err(e) => panic!("lab up failed: {e}"),
    }
}

/// A lab with `reals` sluice web servers and no kernel forwarding on the LB.
pub fn l4_lab(tag: &str, reals: usize) -> Lab {
    let mut spec = LabSpec::new(&LabSpec::unique_label(tag));
    spec.reals = reals;
    spec.lb_forwarding = LbForwarding::None;
    spec.backend = RealBackend::Sluice {
        binary: PathBuf::from(SLUICE),
    };
    lab_up(spec)
}

/// `sluice run` in the LB namespace plus the XDP_PASS program on the
/// switch-side end of the LB's veth (native XDP_TX into a veth needs a
/// program on the peer). Dropping it stops the daemon with SIGTERM and
/// waits, so the program is detached before the lab goes down.
pub struct Daemon {
    child: Child,
    _pass: HelperProgram,
    _dir: tempfile::TempDir,
    pub log: PathBuf,
    /// The configuration file it runs (rewrite it and reload).
    pub config: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}

/// How long a stopped process may take to exit before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// SIGTERM, then SIGKILL after [`STOP_GRACE`]; reaped either way.
pub fn stop_gracefully(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// keepalived (Debian's package) running in `node`'s namespace with a
/// VRRPv3 instance for the lab's VIP on `lb0` (router id 51, as the HA
/// tests' sluice instances); stopped gracefully on drop.
pub struct Keepalived {
    child: Child,
    dir: tempfile::TempDir,
}

impl Keepalived {
    /// Starts it with `priority`, `advert_int` in keepalived's syntax
    /// (seconds: `"1"`, `"0.1"`) and `preempt`.
    pub fn start(lab: &Lab, node: Node, priority: u8, advert_int: &str, preempt: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // keepalived needs `state BACKUP` for nopreempt.
        let nopreempt = if preempt { "" } else { "    nopreempt\n" };
        std::fs::write(
            dir.path().join("k.conf"),
            format!(
                "global_defs {{\n    vrrp_version 3\n    script_user root\n    enable_script_security\n}}\n\
                 vrrp_instance vi1 {{\n    state BACKUP\n    interface lb0\n    virtual_router_id 51\n    \
                 priority {priority}\n    advert_int {advert_int}\n{nopreempt}    virtual_ipaddress {{\n        \
                 10.99.255.1/32 dev lb0\n    }}\n}}\n"
            ),
        )
        .unwrap();
        let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
        let mut cmd = lab
            .command(
                node,
                &[
                    "keepalived",
                    "--dont-fork",
                    "--log-console",
                    "--vrrp",
                    "-f",
                    &p("k.conf"),
                    "-p",
                    &p("k.pid"),
                    "-r",
                    &p("v.pid"),
                ],
            )
            .unwrap();
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(p("k.log")).unwrap())
            .stderr(std::fs::File::create(p("k.err")).unwrap());
        let child = cmd.spawn().unwrap();
        lab.track(node, &child, "keepalived");
        Self { child, dir }
    }

    /// A crash: keepalived's VRRP work runs in a child process that, when
    /// its parent dies, gives the VIP up gracefully (priority 0). SIGKILL
    /// to that child first (its pid file), then the parent.
    pub fn kill(&mut self) {
        let vpid = std::fs::read_to_string(self.dir.path().join("v.pid")).unwrap_or_default();
        if let Ok(pid) = vpid.trim().parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Keepalived {
    fn drop(&mut self) {
        stop_gracefully(&mut self.child);
    }
}

impl Daemon {
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the daemon with SIGKILL (no clean-up of its own: a crash)
    /// and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the daemon with `config` (TOML text) and waits for its admin
/// endpoint.
pub fn start_daemon(lab: &Lab, config: &str) -> Daemon {
    start_daemon_with(lab, config, &[])
}

/// [`start_daemon`] with extra `sluice run` arguments.
pub fn start_daemon_with(lab: &Lab, config: &str, extra: &[&str]) -> Daemon {
    start_daemon_on(lab, Node::Lb, config, extra)
}

/// [`start_daemon_with`] on `node` (an LB: [`Node::Lb`] or [`Node::PeerLb`]).
pub fn start_daemon_on(lab: &Lab, node: Node, config: &str, extra: &[&str]) -> Daemon {
    start_daemon_as(lab, node, &[SLUICE], config, extra)
}

/// [`start_daemon_on`] with `launcher` in front of `run -c FILE EXTRA`
/// (`[SLUICE]`, or a wrapper such as capsh ending in the binary). The
/// configuration is readable by every user.
pub fn start_daemon_as(
    lab: &Lab,
    node: Node,
    launcher: &[&str],
    config: &str,
    extra: &[&str],
) -> Daemon {
    let sw_port = lab.topology().node(node).unwrap().switch_port.clone();
    let pass = lab
        .in_netns(Node::Switch, move || {
            HelperProgram::attach(Helper::Pass, &sw_port, AttachMode::Native)
        })
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(&cfg, config).unwrap();
    readable_by_all(dir.path());
    let log = dir.path().join("daemon.log");
    let logf = std::fs::File::create(&log).unwrap();
    let mut cmd = lab
        .command(
            node,
            &[launcher, &["run", "-c", cfg.to_str().unwrap()], extra].concat(),
        )
        .unwrap();
    cmd.stdout(logf.try_clone().unwrap()).stderr(logf);
    let child = cmd.spawn().unwrap();
    lab.track(node, &child, "sluice run");
    let mut d = Daemon {
        child,
        _pass: pass,
        _dir: dir,
        log,
        config: cfg,
    };
    let admin: SocketAddr = ADMIN.parse().unwrap();
    let deadline = Instant::now() + DAEMON_START;
    loop {
        let up = lab
            .in_netns(node, move || {
                http_get(admin, "/v1/health", Duration::from_millis(300)).is_ok()
            })
            .unwrap();
        if up {
            return d;
        }
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!(
                "sluice run exited with {st}:\n{}",
                std::fs::read_to_string(&d.log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not come up:\n{}",
            std::fs::read_to_string(&d.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Opens `dir` (a tempdir, 0700) and its files to every user, for a
/// daemon started as another user (tests/capabilities.rs).
pub fn readable_by_all(dir: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
}

/// Runs `sluice ARGS` in the LB namespace (for `ctl`).
pub fn sluice_in_lb(lab: &Lab, args: &[&str]) -> Output {
    let mut argv = vec![SLUICE];
    argv.extend_from_slice(args);
    lab.exec(Node::Lb, &argv).unwrap()
}

/// `sluice ctl list --json` parsed.
pub fn ctl_list(lab: &Lab) -> serde_json::Value {
    let out = sluice_in_lb(lab, &["ctl", "list", "--json"]);
    assert!(
        out.status.success(),
        "ctl list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One global counter via `sluice ctl counters --json`.
pub fn counter(lab: &Lab, name: &str) -> u64 {
    let out = sluice_in_lb(lab, &["ctl", "counters", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ctl counters --json: {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {v}"))
}

/// `sluice ctl metrics`: the Prometheus text the admin endpoint serves.
pub fn metrics(lab: &Lab) -> String {
    let out = sluice_in_lb(lab, &["ctl", "metrics"]);
    assert!(
        out.status.success(),
        "ctl metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of one series (`name{labels}` exactly as rendered) in
/// [`metrics`] text, if present.
pub fn metric(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// GET on a new connection from the client namespace: (status, body
/// length, X-Served-By).
pub fn get(lab: &Lab, addr: SocketAddr, path: &str) -> Result<(u16, usize, String), String> {
    let path = path.to_owned();
    lab.in_netns(Node::Client, move || {
        http_get(addr, &path, Duration::from_secs(3))
            .map(|r| {
                (
                    r.status,
                    r.body.len(),
                    r.header("x-served-by").unwrap_or("").to_owned(),
                )
            })
            .map_err(|e| e.to_string())
    })
    .unwrap()
}

/// A persistent HTTP/1.1 connection made from the client namespace.
pub struct KeepAlive {
    stream: BufReader<TcpStream>,
}

impl KeepAlive {
    /// Connects from the client namespace.
    pub fn connect(lab: &Lab, addr: SocketAddr) -> std::io::Result<Self> {
        let s = lab
            .in_netns(Node::Client, move || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(3))
            })
            .unwrap()?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        Ok(Self {
            stream: BufReader::new(s),
        })
    }

    /// One request on the connection; returns X-Served-By.
    pub fn get(&mut self, path: &str) -> std::io::Result<String> {
        let req = format!("GET {path} HTTP/1.1\r\nHost: vip\r\n\r\n");
        self.stream.get_mut().write_all(req.as_bytes())?;
        let mut status = String::new();
        self.stream.read_line(&mut status)?;
        if !status.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!("status line {status:?}")));
        }
        let mut len = 0usize;
        let mut served = String::new();
        loop {
            let mut l = String::new();
            if self.stream.read_line(&mut l)? == 0 {
                return Err(std::io::Error::other("connection closed in headers"));
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                } else if k.eq_ignore_ascii_case("x-served-by") {
                    served = v.trim().to_owned();
                }
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok(served)
    }
}

/// Runs wrk from the client namespace and returns its output.
pub fn wrk(lab: &Lab, url: &str, conns: u32, secs: u32) -> String {
    let c = conns.to_string();
    let d = format!("{secs}s");
    let out = lab
        .exec(
            Node::Client,
            &["wrk", "-t", "2", "-c", &c, "-d", &d, "--timeout", "2s", url],
        )
        .unwrap();
    assert!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Requests completed in a wrk report.
pub fn wrk_requests(report: &str) -> u64 {
    report
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Socket errors and non-2xx responses in a wrk report (0 when absent).
pub fn wrk_errors(report: &str) -> u64 {
    let mut n = 0;
    for l in report.lines() {
        if let Some(rest) = l.trim().strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                n += part
                    .split_whitespace()
                    .last()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
        if let Some(rest) = l.trim().strip_prefix("Non-2xx or 3xx responses:") {
            n += rest.trim().parse::<u64>().unwrap_or(0);
        }
    }
    n
}

/// Reads a real's web-server counters (`/stats`) from the client namespace.
pub fn real_requests(lab: &Lab, real: std::net::Ipv4Addr) -> u64 {
    let addr = SocketAddr::from((real, 80));
    lab.in_netns(Node::Client, move || {
        let r = http_get(addr, "/stats", Duration::from_secs(3)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v.get("requests").and_then(|x| x.as_u64()).unwrap()
    })
    .unwrap()
}

/// Reads all of a reader (for logs).
pub fn read_all(p: &std::path::Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// A `tun` lab (reals on 10.98.0.0/24 and fd98::/64 behind a router, each
/// running `sluice realserver setup --tun-iface eth0`) with `reals` sluice
/// web servers and no kernel forwarding on the LB.
pub fn tun_lab(tag: &str, reals: usize) -> Lab {
    let mut spec = LabSpec::tun(&LabSpec::unique_label(tag));
    spec.reals = reals;
    spec.backend = RealBackend::Sluice {
        binary: PathBuf::from(SLUICE),
    };
    lab_up(spec)
}

/// `curl EXTRA... URL` from the client namespace on a new connection:
/// (status, body bytes, X-Served-By), or curl's error.
pub fn curl(lab: &Lab, extra: &[&str], url: &str) -> Result<(u16, usize, String), String> {
    let mut argv = vec![
        "curl",
        "-sS",
        "-g",
        "--max-time",
        "3",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download} %header{x-served-by}",
    ];
    argv.extend_from_slice(extra);
    argv.push(url);
    let out = lab.exec(Node::Client, &argv).unwrap();
    if !out.status.success() {
        return Err(format!(
            "curl {url}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut f = text.split_whitespace();
    let status = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let size = f.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    Ok((status, size, f.next().unwrap_or("").to_owned()))
}

/// One counter of `nstat -az` (absolute values, zeros included) in `node`'s
/// namespace, e.g. `IpInUnknownProtos`.
pub fn nstat(lab: &Lab, node: Node, name: &str) -> u64 {
    let out = lab.exec(node, &["nstat", "-asz", "--json"]).unwrap();
    assert!(
        out.status.success(),
        "nstat: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["kernel"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in nstat output"))
}

/// Body of the long transfers that are cut (bytes, the web server's
/// largest): at `RATE_LIMIT` it takes far longer than a test waits, so
/// it is surely in flight when its real dies.
pub const LONG_BODY_BYTES: u64 = 64 * 1024 * 1024;
/// Body of the long transfers that must complete (bytes): a few seconds
/// at `RATE_LIMIT`.
pub const LONG_OK_BYTES: u64 = 8 * 1024 * 1024;
/// curl's receive rate for the long transfers (curl's `--limit-rate`
/// syntax).
pub const RATE_LIMIT: &str = "2M";
/// How long a long transfer may take at most (seconds).
pub const LONG_MAX_SECS: u64 = 60;

/// Starts `sluice realserver web` on `node` listening on `listen` as
/// `name` with a `/` of `size` bytes (`taskset -c CPU` first with
/// `cpu`), and waits until it answers `/whoami` from the client.
pub fn spawn_web(
    lab: &Lab,
    node: Node,
    listen: &str,
    name: &str,
    size: u64,
    cpu: Option<&str>,
) -> std::process::Child {
    let size = size.to_string();
    let mut argv: Vec<&str> = Vec::new();
    if let Some(cpu) = cpu {
        argv.extend(["taskset", "-c", cpu]);
    }
    argv.extend([
        SLUICE,
        "realserver",
        "web",
        "--listen",
        listen,
        "--name",
        name,
        "--size",
        &size,
    ]);
    let child = lab.spawn(node, &argv).unwrap();
    let direct: SocketAddr = listen.parse().unwrap();
    let up = (0..50).any(|_| {
        let ok = get(lab, direct, "/whoami").is_ok_and(|(_, _, n)| n == name);
        if !ok {
            std::thread::sleep(Duration::from_millis(100));
        }
        ok
    });
    assert!(up, "the web server {name} on {listen} did not come up");
    child
}

/// The client's curl downloading `url` at `RATE_LIMIT`, at most
/// `LONG_MAX_SECS`, printing the bytes it received.
fn long_curl(lab: &Lab, url: &str) -> std::process::Command {
    let max = LONG_MAX_SECS.to_string();
    lab.command(
        Node::Client,
        &[
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "--limit-rate",
            RATE_LIMIT,
            "--max-time",
            &max,
            "-w",
            "%{size_download}",
            url,
        ],
    )
    .unwrap()
}

/// Downloads `url` at `RATE_LIMIT`: the bytes received (curl must
/// succeed).
pub fn long_transfer(lab: &Lab, url: &str) -> u64 {
    let out = long_curl(lab, url).output().unwrap();
    assert!(
        out.status.success(),
        "the long transfer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// Starts a long download of `url` (a body of `body` bytes), kills
/// `web` (its server) while it is in flight, and asserts that the
/// transfer ends promptly, short of the body, with an error: a reset
/// through the LB, never a hang.
pub fn transfer_ends_when_the_real_dies(
    lab: &Lab,
    mut web: std::process::Child,
    url: &str,
    body: u64,
) {
    let mut client = long_curl(lab, url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        client.try_wait().unwrap().is_none(),
        "the long transfer ended before the real died"
    );
    let killed_at = std::time::Instant::now();
    web.kill().unwrap();
    let _ = web.wait();
    let out = client.wait_with_output().unwrap();
    let took = killed_at.elapsed();
    let received: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    assert!(
        !out.status.success() && received < body,
        "curl should fail short of the body: {:?}, {received} bytes, {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took < Duration::from_secs(LONG_MAX_SECS / 2),
        "the transfer hung for {took:?} after the real died: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(received > 0, "nothing arrived before the real died");
}
