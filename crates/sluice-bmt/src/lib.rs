//! `sluice lab bmt`: the seed study's benchmark matrix, reproduced in the
//! namespace lab (see ../shared/seeds/l2dsr-vs-proxy-bmt.txt). A tool of
//! this repository, run only through the `sluice` binary, which passes
//! [`BmtArgs`] and its own path to [`run`]: the matrix starts that binary
//! as the LB (`sluice run`) and as the reals' web server.
//!
//! For each mode (the `direct` baseline, sluice's L7 proxy in `mode http`
//! and `mode tcp`, HAProxy in both modes, sluice L4 `dr`/`tun`, and
//! `nat`/`fullnat` once the data plane has them) × LB threads × concurrency,
//! it runs `sluice bench` from the client namespace, `reps` times, and keeps
//! medians. The load is ab mode by default (a new connection per request,
//! like the seed's `ab`) or keep-alive connections with `--keepalive`
//! (wrk-style); `--wrk` adds one real `wrk` run per cell as a cross-check.
//! It also reads the LB's CPU cost per request: utime+stime of the LB
//! process for proxies, the XDP program's BPF run time for L4 modes.
//!
//! sluice's proxies are compared with HAProxy in the same mode (`proxy` with
//! `haproxy`, `proxy-tcp` with `haproxy-tcp`) at equal threads, against the
//! targets of issue 4 (see [`TARGET_HTTP_RPS_RATIO`] and its siblings).
//!
//! # Contracts
//!
//! - **Never a fake row.** A mode whose LB does not start, or does not
//!   answer 200 with the full file through its address, is listed under
//!   "not measured" with the reason; a cell without a single 2xx response
//!   is not a row either.
//! - **Bounded.** Every run has a request count or a duration (both capped),
//!   every start a timeout; the matrix is finite.
//! - **Teardown.** One lab per mode family, dropped (torn down) when its
//!   modes are done, on error, and on Ctrl-C/SIGTERM; the results measured
//!   so far are still written and printed.
//! - BPF statistics are switched on through `BPF_ENABLE_STATS`, which the
//!   kernel turns off again when the descriptor closes (also if we crash);
//!   the global `kernel.bpf_stats_enabled` sysctl is never written.

mod chart;
mod error;
mod lb;
mod measure;
mod wrk;

pub use error::BmtError;

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sluice_lab::{Lab, LabError, LabSpec, LbForwarding, Node, RealBackend, Topology};

use error::{chain, require};
use lb::{CpuSource, RunningLb, Start};

/// Version of the `bmt.json` layout (3: proxies measured side by side, with
/// `rps_vs_haproxy_per_rep`; 4: machine CPU per request and busy share,
/// `rps_ceiling_vs_haproxy`).
const BMT_JSON_VERSION: u32 = 4;

/// Share of all CPUs' time (percent) above which a repetition counts as
/// CPU-bound. Only then does [`rps_ceiling`] apply: with idle CPU left, a
/// cheaper LB does not turn into more requests per second.
const MACHINE_SATURATED_PCT: f64 = 90.0;

/// Size of the file every real serves, in bytes (the seed's 5 KiB).
const FILE_SIZE: usize = 5 * 1024;

/// Real servers behind the LB.
const REALS: usize = 3;

/// Concurrency levels of a full run (the seed went to 200,000 over many
/// client VMs; one 2-vCPU box saturates far below that).
const DEFAULT_CONCURRENCY: &[u32] = &[50, 100, 200, 500];
/// Concurrency levels of `--quick`.
const QUICK_CONCURRENCY: &[u32] = &[50, 200];
/// LB threads of a full run.
const DEFAULT_THREADS: &[u16] = &[1, 2];
/// LB threads of `--quick`.
const QUICK_THREADS: &[u16] = &[1];
/// Requests per repetition of a full run.
const DEFAULT_REQUESTS: u64 = 20_000;
/// Requests per repetition of `--quick` (about half a second each here).
const QUICK_REQUESTS: u64 = 5_000;
/// Repetitions per cell; the cell reports medians.
const DEFAULT_REPS: u32 = 3;
/// Duration of one keep-alive repetition of a full run (wrk's `-d10s` in
/// the platform baselines).
const DEFAULT_KEEPALIVE_DURATION: Duration = Duration::from_secs(10);
/// Duration of one keep-alive repetition of `--quick`.
const QUICK_KEEPALIVE_DURATION: Duration = Duration::from_secs(3);

/// Issue 4 target for `mode http`: sluice's req/s over HAProxy's at equal
/// threads, at least.
const TARGET_HTTP_RPS_RATIO: f64 = 1.3;
/// Issue 4 target for `mode http`: sluice's LB CPU per request over
/// HAProxy's, at most.
const TARGET_HTTP_CPU_RATIO: f64 = 0.8;
/// Issue 4 target for `mode tcp`: sluice's req/s over HAProxy `mode tcp`'s
/// at equal threads, at least.
const TARGET_TCP_RPS_RATIO: f64 = 1.1;

/// Most repetitions accepted.
const MAX_REPS: u32 = 20;
/// Most concurrent connections accepted (the open-files limit here is 20000).
const MAX_CONCURRENCY: u32 = 5_000;
/// Most LB threads accepted.
const MAX_LB_THREADS: u16 = 64;
/// Most requests per repetition accepted.
const MAX_REQUESTS: u64 = 10_000_000;
/// Longest `--duration` accepted per repetition.
const MAX_REP_DURATION: Duration = Duration::from_secs(600);

/// Tokio worker threads of the load generator in the client namespace. One,
/// like the seed's single-threaded `ab`; BENCHMARKS.md shows it within the
/// ±15% bound of ab.
const DEFAULT_CLIENT_THREADS: usize = 1;
/// Client threads with `--keepalive`: two, like the baselines' `wrk -t2`.
const DEFAULT_KEEPALIVE_CLIENT_THREADS: usize = 2;
/// Most client threads accepted.
const MAX_CLIENT_THREADS: usize = 64;
/// Smallest `--lb-cpu-pct` accepted, in percent of one CPU: below this a
/// proxy spends its budget on timers and start-up probes, not on requests.
const MIN_LB_CPU_PCT: u32 = 5;

/// How long to wait for the load generator's runtime threads at the end of
/// a run before leaving them behind.
const BENCH_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a running benchmark checks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

/// Sysctls set inside the client and LB namespaces (namespace-local; the
/// root namespace is never touched). New connections per request need many
/// ephemeral ports and reuse of TIME_WAIT ports, as the seed tuned by hand.
const NODE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_local_port_range", "1024 65535"),
    ("net.ipv4.tcp_tw_reuse", "1"),
];

/// A load-balancing mode of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    /// No LB: the client talks to one real (the baseline).
    Direct,
    /// sluice's L7 proxy (`sluice run` with a `[[frontend]]`, mode http).
    Proxy,
    /// HAProxy `mode http`, round robin (the seed's proxy).
    Haproxy,
    /// sluice's L7 proxy relaying bytes (`mode = "tcp"` frontend and backend).
    #[serde(rename = "proxy-tcp")]
    ProxyTcp,
    /// HAProxy `mode tcp`, round robin.
    #[serde(rename = "haproxy-tcp")]
    HaproxyTcp,
    /// sluice L4 `dr` (L2 DSR through XDP).
    Dr,
    /// sluice L4 `tun` (IPIP to routed reals through XDP).
    Tun,
    /// sluice L4 `nat` (once the data plane has it).
    Nat,
    /// sluice L4 `fullnat` (once the data plane has it).
    Fullnat,
}

impl Mode {
    const ALL: [Mode; 9] = [
        Mode::Direct,
        Mode::Proxy,
        Mode::Haproxy,
        Mode::ProxyTcp,
        Mode::HaproxyTcp,
        Mode::Dr,
        Mode::Tun,
        Mode::Nat,
        Mode::Fullnat,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Proxy => "proxy",
            Mode::Haproxy => "haproxy",
            Mode::ProxyTcp => "proxy-tcp",
            Mode::HaproxyTcp => "haproxy-tcp",
            Mode::Dr => "dr",
            Mode::Tun => "tun",
            Mode::Nat => "nat",
            Mode::Fullnat => "fullnat",
        }
    }

    /// Whether the LB can run at the same time as others (on its own port),
    /// so its repetitions are interleaved with theirs: the user-space
    /// proxies and `direct`; an L4 mode owns the LB interface's XDP hook.
    fn side_by_side(self) -> bool {
        self.l4_method().is_none()
    }

    /// Whether the LB has worker threads (the matrix's Thread column).
    fn threaded(self) -> bool {
        matches!(
            self,
            Mode::Proxy | Mode::Haproxy | Mode::ProxyTcp | Mode::HaproxyTcp
        )
    }

    /// The HAProxy mode this mode's "vs HAProxy" figures compare with:
    /// HAProxy `mode tcp` for the byte relays, HAProxy `mode http` for the
    /// rest (as in the seed study).
    fn haproxy_peer(self) -> Mode {
        match self {
            Mode::ProxyTcp | Mode::HaproxyTcp => Mode::HaproxyTcp,
            _ => Mode::Haproxy,
        }
    }

    /// The issue 4 targets of a sluice proxy mode, against
    /// [`Mode::haproxy_peer`].
    fn targets(self) -> Option<Targets> {
        match self {
            Mode::Proxy => Some(Targets {
                rps_ratio_at_least: TARGET_HTTP_RPS_RATIO,
                cpu_ratio_at_most: Some(TARGET_HTTP_CPU_RATIO),
            }),
            Mode::ProxyTcp => Some(Targets {
                rps_ratio_at_least: TARGET_TCP_RPS_RATIO,
                cpu_ratio_at_most: None,
            }),
            _ => None,
        }
    }

    /// The lab this mode runs in.
    fn family(self) -> Family {
        match self {
            Mode::Tun => Family::Tun,
            _ => Family::Dsr,
        }
    }

    /// The `method` of an L4 mode's `[[l4_service]]`.
    fn l4_method(self) -> Option<&'static str> {
        match self {
            Mode::Dr => Some("dr"),
            Mode::Tun => Some("tun"),
            Mode::Nat => Some("nat"),
            Mode::Fullnat => Some("fullnat"),
            Mode::Direct | Mode::Proxy | Mode::Haproxy | Mode::ProxyTcp | Mode::HaproxyTcp => None,
        }
    }
}

/// What a sluice proxy mode must reach against HAProxy (issue 4).
#[derive(Debug, Clone, Copy)]
struct Targets {
    /// req/s over HAProxy's, at least.
    rps_ratio_at_least: f64,
    /// LB CPU per request over HAProxy's, at most. Set for `mode http`
    /// only, which is also held to a p99 no higher than HAProxy's.
    cpu_ratio_at_most: Option<f64>,
}

/// A lab topology shared by several modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    /// One-armed: client, LB and reals on one bridge (L2 DSR lab).
    Dsr,
    /// Reals behind a router (IPIP lab).
    Tun,
}

/// What the reals run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Backend {
    /// nginx (nginx-light), like the seed.
    Nginx,
    /// `sluice realserver web`.
    Sluice,
}

/// Arguments of `sluice lab bmt`.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Outputs bmt.md (the seed-shaped table), bmt.json, bmt.svg and bmt.png \
                        in --out. Exit status: 0 when at least one cell was measured, 1 when \
                        none was, 130 after Ctrl-C (what was measured is still written)."
)]
pub struct BmtArgs {
    /// Reduced matrix: threads 1, concurrency 50 and 200, short runs (under
    /// 3 minutes here). Explicit options still win.
    #[arg(long)]
    quick: bool,
    /// Modes to run, comma-separated (default: all; unavailable ones are
    /// listed as such).
    #[arg(long, value_enum, value_delimiter = ',')]
    modes: Option<Vec<Mode>>,
    /// LB threads for the proxies (default 1,2; --quick 1).
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<u16>>,
    /// Concurrency levels (default 50,100,200,500; --quick 50,200).
    #[arg(long, value_delimiter = ',')]
    concurrency: Option<Vec<u32>>,
    /// Requests per repetition (default 20000; --quick 5000; with
    /// --keepalive the default is a duration instead).
    #[arg(long, conflicts_with = "duration")]
    requests: Option<u64>,
    /// Run each repetition for this long instead of a request count (e.g.
    /// 5s; default with --keepalive: 10s, --quick 3s).
    #[arg(long, value_parser = parse_cli_duration)]
    duration: Option<Duration>,
    /// Keep-alive load, wrk-style: each client connection carries many
    /// requests (default: ab-style, a new connection per request).
    #[arg(long)]
    keepalive: bool,
    /// Also run `wrk -t2 -c<concurrency> -d<this> --latency` once per cell
    /// (keep-alive, from the client namespace) as a cross-check, e.g. 10s.
    #[arg(long, value_parser = parse_cli_duration, requires = "keepalive")]
    wrk: Option<Duration>,
    /// Repetitions per cell (medians are reported).
    #[arg(long)]
    reps: Option<u32>,
    /// Output directory (default bench-results/<UTC timestamp>/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// What the reals run.
    #[arg(long, value_enum, default_value_t = Backend::Nginx)]
    backend: Backend,
    /// Load-generator threads in the client namespace (default 1, like ab;
    /// 2 with --keepalive, like wrk -t2).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Hold each proxy (sluice and HAProxy alike, all its threads together)
    /// to this much CPU, in percent of one CPU, with a CPU cgroup: the LB
    /// becomes the bottleneck instead of the client and reals sharing the
    /// machine, so req/s compares the LBs' capacity per CPU. L4 modes run
    /// in the kernel's softirq and are not capped.
    #[arg(long)]
    lb_cpu_pct: Option<u32>,
}

fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    sluice_bench::parse_duration(s).map_err(|e| e.to_string())
}

/// The resolved matrix.
#[derive(Debug, Clone, Serialize)]
struct Plan {
    modes: Vec<Mode>,
    threads: Vec<u16>,
    concurrency: Vec<u32>,
    requests: Option<u64>,
    duration_secs: Option<f64>,
    reps: u32,
    backend: Backend,
    client_threads: usize,
    quick: bool,
    /// Keep-alive load instead of a new connection per request.
    keep_alive: bool,
    /// Length of the `wrk` cross-check run per cell, if any.
    wrk_secs: Option<f64>,
    /// CPU budget of the proxies, in percent of one CPU (a CPU cgroup).
    lb_cpu_pct: Option<u32>,
}

impl Plan {
    fn from_args(a: &BmtArgs) -> Result<Self, BmtError> {
        let mut modes = a.modes.clone().unwrap_or_else(|| Mode::ALL.to_vec());
        modes.sort();
        modes.dedup();
        let mut threads = a.threads.clone().unwrap_or_else(|| {
            if a.quick {
                QUICK_THREADS.to_vec()
            } else {
                DEFAULT_THREADS.to_vec()
            }
        });
        threads.sort_unstable();
        threads.dedup();
        let mut concurrency = a.concurrency.clone().unwrap_or_else(|| {
            if a.quick {
                QUICK_CONCURRENCY.to_vec()
            } else {
                DEFAULT_CONCURRENCY.to_vec()
            }
        });
        concurrency.sort_unstable();
        concurrency.dedup();
        let reps = a.reps.unwrap_or(DEFAULT_REPS);
        let (requests, duration) = match (a.requests, a.duration) {
            (Some(n), _) => (Some(n), None),
            (None, Some(d)) => (None, Some(d)),
            (None, None) if a.keepalive && a.quick => (None, Some(QUICK_KEEPALIVE_DURATION)),
            (None, None) if a.keepalive => (None, Some(DEFAULT_KEEPALIVE_DURATION)),
            (None, None) if a.quick => (Some(QUICK_REQUESTS), None),
            (None, None) => (Some(DEFAULT_REQUESTS), None),
        };
        let client_threads = a.client_threads.unwrap_or(if a.keepalive {
            DEFAULT_KEEPALIVE_CLIENT_THREADS
        } else {
            DEFAULT_CLIENT_THREADS
        });
        require(!modes.is_empty(), || {
            "--modes must name at least one mode".to_owned()
        })?;
        require(
            threads.iter().all(|t| (1..=MAX_LB_THREADS).contains(t)) && !threads.is_empty(),
            || format!("--threads must be 1..={MAX_LB_THREADS}"),
        )?;
        require(
            concurrency
                .iter()
                .all(|c| (1..=MAX_CONCURRENCY).contains(c))
                && !concurrency.is_empty(),
            || format!("--concurrency must be 1..={MAX_CONCURRENCY}"),
        )?;
        require((1..=MAX_REPS).contains(&reps), || {
            format!("--reps must be 1..={MAX_REPS}")
        })?;
        if let Some(n) = requests {
            require((1..=MAX_REQUESTS).contains(&n), || {
                format!("--requests must be 1..={MAX_REQUESTS}")
            })?;
        }
        if let Some(d) = duration {
            require(!d.is_zero() && d <= MAX_REP_DURATION, || {
                format!("--duration must be more than 0 and at most {MAX_REP_DURATION:?}")
            })?;
        }
        if let Some(d) = a.wrk {
            // wrk counts whole seconds.
            require(d >= Duration::from_secs(1) && d <= MAX_REP_DURATION, || {
                format!("--wrk must be at least 1s and at most {MAX_REP_DURATION:?}")
            })?;
        }
        require((1..=MAX_CLIENT_THREADS).contains(&client_threads), || {
            format!("--client-threads must be 1..={MAX_CLIENT_THREADS}")
        })?;
        if let Some(pct) = a.lb_cpu_pct {
            require(
                (MIN_LB_CPU_PCT..=sluice_lab::MAX_CPU_CAP_PCT).contains(&pct),
                || {
                    format!(
                        "--lb-cpu-pct must be {MIN_LB_CPU_PCT}..={} (percent of one CPU)",
                        sluice_lab::MAX_CPU_CAP_PCT
                    )
                },
            )?;
        }
        Ok(Plan {
            modes,
            threads,
            concurrency,
            requests,
            duration_secs: duration.map(|d| d.as_secs_f64()),
            reps,
            backend: a.backend,
            client_threads,
            quick: a.quick,
            keep_alive: a.keepalive,
            wrk_secs: a.wrk.map(|d| d.as_secs_f64()),
            lb_cpu_pct: a.lb_cpu_pct,
        })
    }

    /// The thread counts a mode runs with: `None` for modes without threads.
    fn threads_of(&self, mode: Mode) -> Vec<Option<u16>> {
        if mode.threaded() {
            self.threads.iter().map(|&t| Some(t)).collect()
        } else {
            vec![None]
        }
    }
}

/// One repetition's numbers.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    requests: u64,
    ok: u64,
    errors: u64,
    duration_secs: f64,
    requests_per_sec: f64,
    latency_mean_ms: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// LB CPU per request in µs (see `Cell::cpu_source`).
    lb_cpu_us_per_req: Option<f64>,
    /// System-wide softirq time per request in µs (all namespaces).
    softirq_us_per_req: Option<f64>,
    /// Busy CPU time of the whole machine per request in µs: client, reals,
    /// LB and the kernel between them.
    machine_cpu_us_per_req: Option<f64>,
    /// Busy share of all CPUs during the repetition, in percent.
    machine_busy_pct: Option<f64>,
}

/// One row: medians over the repetitions.
#[derive(Debug, Clone, Serialize)]
struct Cell {
    mode: Mode,
    /// Legend label: mode, plus threads for threaded modes.
    series: String,
    threads: Option<u16>,
    concurrency: u32,
    /// Requests per repetition (median for duration runs).
    total_requests: u64,
    file_size_bytes: usize,
    requests_per_sec: f64,
    requests_per_sec_min: f64,
    requests_per_sec_max: f64,
    latency_mean_ms: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// Failed requests summed over all repetitions.
    errors: u64,
    lb_cpu_us_per_req: Option<f64>,
    /// `process` (utime+stime), `bpf` (XDP run time) or `none`.
    cpu_source: &'static str,
    softirq_us_per_req: Option<f64>,
    machine_cpu_us_per_req: Option<f64>,
    machine_busy_pct: Option<f64>,
    /// The HAProxy row the `*_vs_haproxy` figures compare with (series
    /// label, e.g. `haproxy-tcp t2`): the same HAProxy mode as
    /// [`Mode::haproxy_peer`], same concurrency, same threads (HAProxy with
    /// the fewest threads for modes without threads).
    haproxy_peer: Option<String>,
    /// Requests/sec over the HAProxy peer's.
    rps_vs_haproxy: Option<f64>,
    /// LB CPU per request over the HAProxy peer's.
    cpu_vs_haproxy: Option<f64>,
    /// p99 latency over the HAProxy peer's.
    p99_vs_haproxy: Option<f64>,
    /// The highest req/s ratio over the HAProxy peer that this run's
    /// machine allows, see [`rps_ceiling`]. `None` when the peer's run was
    /// not CPU-bound or lacks a CPU figure.
    rps_ceiling_vs_haproxy: Option<f64>,
    /// Req/s of each repetition over the HAProxy peer's repetition of the
    /// same round (measured one after the other; empty unless both ran side
    /// by side, see [`run_group`]). Drift between rounds cancels out here.
    rps_vs_haproxy_per_rep: Vec<f64>,
    samples: Vec<Sample>,
}

/// One `wrk` cross-check run (keep-alive, 2 threads) of a cell.
#[derive(Debug, Clone, Serialize)]
struct WrkRun {
    mode: Mode,
    series: String,
    threads: Option<u16>,
    concurrency: u32,
    duration_secs: u64,
    requests: u64,
    requests_per_sec: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    /// Socket errors plus non-2xx/3xx responses.
    errors: u64,
    /// LB CPU per request over the wrk run (same source as the cell's).
    lb_cpu_us_per_req: Option<f64>,
}

/// A mode (or mode × threads) that produced no row, and why.
#[derive(Debug, Clone, Serialize)]
struct Unavailable {
    mode: Mode,
    threads: Option<u16>,
    concurrency: Option<u32>,
    reason: String,
}

/// `bmt.json`.
#[derive(Debug, Serialize)]
struct Results {
    version: u32,
    command: String,
    started_unix: u64,
    elapsed_secs: f64,
    interrupted: bool,
    machine: Machine,
    plan: Plan,
    cells: Vec<Cell>,
    unavailable: Vec<Unavailable>,
    /// The `--wrk` cross-check runs (empty without `--wrk`).
    wrk: Vec<WrkRun>,
    /// Why `--wrk` runs are missing, when they are.
    wrk_skipped: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
}

/// Runs the matrix of `args` with `binary` (the `sluice` executable) as the
/// LB and, with `--backend sluice`, as the reals' web server; writes
/// `bmt.md`, `bmt.json`, `bmt.svg` and `bmt.png` and prints the table.
///
/// Returns the exit status: success when at least one cell was measured,
/// failure when none was, 130 after Ctrl-C (what was measured is still
/// written).
///
/// # Errors
/// [`BmtError`] when the matrix is out of bounds, without the privileges
/// the lab needs, or when the results cannot be written.
pub fn run(args: BmtArgs, binary: &Path) -> Result<ExitCode, BmtError> {
    let plan = Plan::from_args(&args)?;
    sluice_lab::check_privileges()?;
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("bench-results").join(utc_stamp(started_unix)));
    std::fs::create_dir_all(&out)
        .map_err(|e| BmtError::io(format!("creating {}", out.display()), e))?;
    let cancel = signal_flag()?;

    eprintln!(
        "sluice lab bmt: modes {}; threads {:?}; concurrency {:?}; {} × {} rep(s), {}; reals: {} × {REALS}",
        plan.modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(","),
        plan.threads,
        plan.concurrency,
        match (plan.requests, plan.duration_secs) {
            (Some(n), _) => format!("{n} requests"),
            (None, Some(d)) => format!("{d}s"),
            (None, None) => "?".to_owned(),
        },
        plan.reps,
        if plan.keep_alive {
            "keep-alive"
        } else {
            "new connection per request"
        },
        match plan.backend {
            Backend::Nginx => "nginx",
            Backend::Sluice => "sluice web",
        },
    );

    // XDP run time is only counted while statistics are on.
    let needs_bpf = plan.modes.iter().any(|m| m.l4_method().is_some());
    let bpf_stats = if needs_bpf {
        match measure::BpfStats::enable() {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("sluice lab bmt: {e}; L4 CPU falls back to system-wide softirq time");
                None
            }
        }
    } else {
        None
    };

    let mut cells = Vec::new();
    let mut unavailable = Vec::new();
    let mut wrk_runs = Runs::default();
    if plan.wrk_secs.is_some() && !lb::in_path("wrk") {
        wrk_runs
            .skipped
            .push("wrk is not installed (scripts/setup.sh installs it)".to_owned());
    }
    for family in [Family::Dsr, Family::Tun] {
        let modes: Vec<Mode> = plan
            .modes
            .iter()
            .copied()
            .filter(|m| m.family() == family)
            .collect();
        if modes.is_empty() || cancel.load(Ordering::SeqCst) {
            continue;
        }
        let lab = match lab_up(family, &plan, binary, &cancel) {
            Ok(lab) => lab,
            Err(reason) => {
                for m in modes {
                    for t in plan.threads_of(m) {
                        unavailable.push(Unavailable {
                            mode: m,
                            threads: t,
                            concurrency: None,
                            reason: reason.clone(),
                        });
                    }
                }
                continue;
            }
        };
        for group in groups(&plan, &modes) {
            if cancel.load(Ordering::SeqCst) {
                break;
            }
            run_group(
                &lab,
                &plan,
                binary,
                &group,
                &cancel,
                &mut cells,
                &mut unavailable,
                &mut wrk_runs,
            );
        }
        let report = lab.down();
        for e in &report.errors {
            eprintln!("sluice lab bmt: teardown: {e}");
        }
    }
    drop(bpf_stats);

    add_haproxy_ratios(&mut cells);
    let interrupted = cancel.load(Ordering::SeqCst);
    let results = Results {
        version: BMT_JSON_VERSION,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix,
        elapsed_secs: started.elapsed().as_secs_f64(),
        interrupted,
        machine: Machine {
            cpus: measure::cpus(),
            kernel: measure::kernel_release(),
        },
        plan,
        cells,
        unavailable,
        wrk: wrk_runs.runs,
        wrk_skipped: wrk_runs.skipped,
    };
    write_outputs(&results, &out)?;
    Ok(if interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if results.cells.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Brings up the lab of a family; `Err` is why its modes cannot run.
fn lab_up(family: Family, plan: &Plan, binary: &Path, cancel: &AtomicBool) -> Result<Lab, String> {
    let mut spec = match family {
        Family::Dsr => LabSpec::new(&LabSpec::unique_label("bmtd")),
        Family::Tun => {
            let mut s = LabSpec::tun(&LabSpec::unique_label("bmtt"));
            s.sluice_binary = Some(binary.to_path_buf());
            s
        }
    };
    spec.reals = REALS;
    spec.vip6 = None;
    spec.body_size = FILE_SIZE;
    spec.lb_forwarding = LbForwarding::None;
    spec.backend = match plan.backend {
        Backend::Nginx => RealBackend::Nginx,
        Backend::Sluice => RealBackend::Sluice {
            binary: binary.to_path_buf(),
        },
    };
    let t0 = Instant::now();
    let lab = match Lab::up_cancellable(spec, cancel) {
        Ok(lab) => lab,
        Err(e @ LabError::NotPrivileged { .. }) => return Err(e.to_string()),
        Err(e) => return Err(format!("lab set-up failed: {e}")),
    };
    for node in [Node::Client, Node::Lb] {
        for (k, v) in NODE_SYSCTLS {
            let kv = format!("{k}={v}");
            match lab.exec(node, &["sysctl", "-q", "-w", &kv]) {
                Ok(o) if o.status.success() => {}
                Ok(o) => {
                    return Err(format!(
                        "sysctl -w {kv} in {node}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    ));
                }
                Err(e) => return Err(format!("sysctl -w {kv} in {node}: {e}")),
            }
        }
    }
    eprintln!(
        "sluice lab bmt: {} lab {} up in {:.1}s",
        match family {
            Family::Dsr => "one-armed (dr)",
            Family::Tun => "routed (tun)",
        },
        lab.label(),
        t0.elapsed().as_secs_f64()
    );
    Ok(lab)
}

/// The `--wrk` cross-check runs, and why some are missing.
#[derive(Debug, Default)]
struct Runs {
    runs: Vec<WrkRun>,
    skipped: Vec<String>,
}

/// The LBs of `modes` (one family) in the order they are measured: every
/// proxy and `direct` side by side in one group, each L4 mode alone (one XDP
/// program per interface).
fn groups(plan: &Plan, modes: &[Mode]) -> Vec<Vec<(Mode, Option<u16>)>> {
    let lbs = |m: Mode| plan.threads_of(m).into_iter().map(move |t| (m, t));
    let together: Vec<_> = modes
        .iter()
        .filter(|m| m.side_by_side())
        .flat_map(|&m| lbs(m))
        .collect();
    let mut out = Vec::new();
    if !together.is_empty() {
        out.push(together);
    }
    for &m in modes.iter().filter(|m| !m.side_by_side()) {
        out.extend(lbs(m).map(|lb| vec![lb]));
    }
    out
}

/// The legend label of an LB: mode, plus threads for threaded modes.
fn series_label(mode: Mode, threads: Option<u16>) -> String {
    match threads {
        Some(t) => format!("{} t{t}", mode.name()),
        None => mode.name().to_owned(),
    }
}

/// One LB of a group while it runs, with the rows measured so far.
struct Member {
    mode: Mode,
    threads: Option<u16>,
    series: String,
    lb: RunningLb,
    target: SocketAddr,
    cells: Vec<Cell>,
    wrk: Vec<WrkRun>,
}

/// Starts the LBs of `group` side by side (LB k listens on the lab's
/// port plus k), measures every concurrency level and stops them again. The
/// repetitions are interleaved: repetition r loads every LB in turn,
/// starting with LB r mod n, so a drift of the shared machine (other
/// tenants, frequency, memory) hits all of them alike instead of whichever
/// LB happened to be measured during it. Failures become `unavailable`
/// entries; rows are reported LB by LB.
#[allow(clippy::too_many_arguments)]
fn run_group(
    lab: &Lab,
    plan: &Plan,
    binary: &Path,
    group: &[(Mode, Option<u16>)],
    cancel: &AtomicBool,
    cells: &mut Vec<Cell>,
    unavailable: &mut Vec<Unavailable>,
    wrk_runs: &mut Runs,
) {
    let t = lab.topology();
    let mut members = Vec::new();
    for (k, &(mode, threads)) in group.iter().enumerate() {
        let series = series_label(mode, threads);
        // Groups hold at most every mode × every thread count (both bounded).
        let slot = u16::try_from(k).unwrap_or(u16::MAX);
        match start_lb(lab, t, binary, mode, threads, plan.lb_cpu_pct, slot) {
            Ok((lb, target)) => {
                eprintln!("sluice lab bmt: {series}: serving at http://{target}/");
                members.push(Member {
                    mode,
                    threads,
                    series,
                    lb,
                    target,
                    cells: Vec::new(),
                    wrk: Vec::new(),
                });
            }
            Err(reason) => {
                eprintln!("sluice lab bmt: {series}: not available: {reason}");
                unavailable.push(Unavailable {
                    mode,
                    threads,
                    concurrency: None,
                    reason,
                });
            }
        }
    }
    let n = members.len();
    for &c in &plan.concurrency {
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); n];
        let mut failures: Vec<Option<String>> = vec![None; n];
        'reps: for rep in 0..plan.reps as usize {
            for j in 0..n {
                let i = (rep + j) % n;
                if failures[i].is_some() {
                    continue;
                }
                if cancel.load(Ordering::SeqCst) {
                    break 'reps;
                }
                let m = &members[i];
                match measure_rep(lab, &m.lb, m.target, c, plan, cancel) {
                    Ok(None) => break 'reps, // interrupted: the partial rep is dropped
                    Ok(Some(s)) if s.ok == 0 => {
                        failures[i] = Some(format!(
                            "rep {}: no 2xx response ({} requests, {} errors)",
                            rep + 1,
                            s.requests,
                            s.errors
                        ));
                    }
                    Ok(Some(s)) => {
                        eprintln!(
                            "sluice lab bmt: {} c{c} rep {}/{}: {:.0} req/s, {} errors, LB CPU {}",
                            m.series,
                            rep + 1,
                            plan.reps,
                            s.requests_per_sec,
                            s.errors,
                            s.lb_cpu_us_per_req
                                .map_or_else(|| "–".to_owned(), |v| format!("{v:.1} µs/req"))
                        );
                        samples[i].push(s);
                    }
                    Err(e) => failures[i] = Some(format!("rep {}: {}", rep + 1, chain(&e))),
                }
            }
        }
        for (m, (samples, failure)) in members.iter_mut().zip(samples.into_iter().zip(failures)) {
            if let Some(reason) = failure {
                eprintln!("sluice lab bmt: {} c{c}: not measured: {reason}", m.series);
                unavailable.push(Unavailable {
                    mode: m.mode,
                    threads: m.threads,
                    concurrency: Some(c),
                    reason,
                });
                continue;
            }
            // Only complete cells become rows (an interrupt leaves a cell short).
            if samples.len() != plan.reps as usize {
                continue;
            }
            m.cells
                .push(aggregate(m.mode, &m.series, m.threads, c, &m.lb, samples));
            if let Some(secs) = plan.wrk_secs
                && wrk_runs.skipped.is_empty()
                && !cancel.load(Ordering::SeqCst)
            {
                let secs = wrk::whole_secs(Duration::from_secs_f64(secs));
                match run_wrk(lab, &m.lb, m.target, c, secs) {
                    Ok((r, lb_cpu)) => {
                        eprintln!(
                            "sluice lab bmt: {} c{c} wrk: {:.0} req/s, p99 {:.2} ms, {} errors",
                            m.series, r.requests_per_sec, r.p99_ms, r.errors
                        );
                        m.wrk.push(WrkRun {
                            mode: m.mode,
                            series: m.series.clone(),
                            threads: m.threads,
                            concurrency: c,
                            duration_secs: secs,
                            requests: r.requests,
                            requests_per_sec: r.requests_per_sec,
                            latency_p50_ms: r.p50_ms,
                            latency_p99_ms: r.p99_ms,
                            errors: r.errors,
                            lb_cpu_us_per_req: lb_cpu,
                        });
                    }
                    Err(e) => {
                        eprintln!("sluice lab bmt: {} c{c} wrk: {e}", m.series);
                        wrk_runs.skipped.push(format!("{} c{c}: {e}", m.series));
                    }
                }
            }
        }
    }
    for m in members {
        cells.extend(m.cells);
        wrk_runs.runs.extend(m.wrk);
    }
}

/// One `wrk` run against `target`, with the LB's CPU per request around it.
fn run_wrk(
    lab: &Lab,
    lb: &RunningLb,
    target: SocketAddr,
    concurrency: u32,
    secs: u64,
) -> Result<(wrk::WrkReport, Option<f64>), String> {
    let cpu0 = lb_cpu_ns(lb.cpu);
    let r = wrk::run(lab, target, concurrency, secs)?;
    let cpu1 = lb_cpu_ns(lb.cpu);
    if r.requests == 0 {
        return Err("wrk completed no request".to_owned());
    }
    let lb_cpu = match (cpu0, cpu1) {
        (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1000.0 / r.requests as f64),
        _ => None,
    };
    Ok((r, lb_cpu))
}

/// Starts the LB of a mode as member `slot` of its group; returns it and
/// the address the client loads.
fn start_lb(
    lab: &Lab,
    t: &Topology,
    binary: &Path,
    mode: Mode,
    threads: Option<u16>,
    lb_cpu_pct: Option<u32>,
    slot: u16,
) -> Result<(RunningLb, SocketAddr), String> {
    let port = t.port;
    // Proxies of one group run side by side: each on its own port (the
    // reals stay on the lab's port) and admin endpoint.
    let lb_addr = SocketAddr::new(IpAddr::V4(t.lb.ipv4), port.saturating_add(slot));
    let reals: Vec<SocketAddr> = t
        .reals
        .iter()
        .map(|r| SocketAddr::new(IpAddr::V4(r.ipv4), port))
        .collect();
    let sluice = binary.display().to_string();
    let threads = threads.unwrap_or(1);
    match mode {
        Mode::Direct => {
            let target = *reals.first().ok_or("the lab has no real")?;
            let ok = lab
                .in_netns(Node::Client, move || {
                    sluice_lab::http_get(target, "/", Duration::from_secs(2))
                })
                .map_err(|e| e.to_string())?;
            match ok {
                Ok(r) if r.status == 200 && r.body.len() == FILE_SIZE => {
                    Ok((RunningLb::none(), target))
                }
                Ok(r) => Err(format!("real answered HTTP {}", r.status)),
                Err(e) => Err(format!("real does not answer: {e}")),
            }
        }
        Mode::Proxy | Mode::ProxyTcp => {
            let l7 = if mode == Mode::Proxy { "http" } else { "tcp" };
            let lb = lb::start(
                lab,
                Start {
                    argv: vec![sluice, "run".into(), "-c".into(), "{CONFIG}".into()],
                    config: (
                        "sluice.toml",
                        lb::proxy_config(threads, l7, lb_addr, &reals, slot),
                    ),
                    probe: lb_addr,
                    body_len: FILE_SIZE,
                    xdp: None,
                    cpu_pct: lb_cpu_pct,
                },
            )
            .map_err(|e| format!("sluice run (L7 proxy, mode {l7}): {e}"))?;
            Ok((lb, lb_addr))
        }
        Mode::Haproxy | Mode::HaproxyTcp => {
            let l7 = if mode == Mode::Haproxy { "http" } else { "tcp" };
            if !lb::in_path("haproxy") {
                return Err("haproxy is not installed (scripts/setup.sh installs it)".to_owned());
            }
            let lb = lb::start(
                lab,
                Start {
                    argv: vec![
                        "haproxy".into(),
                        "-db".into(),
                        "-f".into(),
                        "{CONFIG}".into(),
                    ],
                    config: (
                        "haproxy.cfg",
                        lb::haproxy_config(threads, l7, lb_addr, &reals),
                    ),
                    probe: lb_addr,
                    body_len: FILE_SIZE,
                    xdp: None,
                    cpu_pct: lb_cpu_pct,
                },
            )
            .map_err(|e| format!("haproxy (mode {l7}): {e}"))?;
            Ok((lb, lb_addr))
        }
        Mode::Dr | Mode::Tun | Mode::Nat | Mode::Fullnat => {
            let method = mode.l4_method().unwrap_or("dr");
            let vip = t.vip4_addr();
            let ips: Vec<IpAddr> = reals.iter().map(SocketAddr::ip).collect();
            let tun_source = (mode == Mode::Tun).then_some(IpAddr::V4(t.lb.ipv4));
            let lb = lb::start(
                lab,
                Start {
                    argv: vec![sluice, "run".into(), "-c".into(), "{CONFIG}".into()],
                    config: (
                        "sluice.toml",
                        lb::l4_config(
                            method,
                            &t.lb.iface,
                            vip,
                            &ips,
                            tun_source,
                            Some(IpAddr::V4(t.lb.ipv4)),
                        ),
                    ),
                    probe: vip,
                    body_len: FILE_SIZE,
                    xdp: Some((t.lb.switch_port.clone(), t.lb.iface.clone())),
                    // XDP runs in softirq context, outside any cgroup.
                    cpu_pct: None,
                },
            )
            .map_err(|e| format!("sluice run (L4 {method}): {e}"))?;
            Ok((lb, vip))
        }
    }
}

/// One repetition: LB CPU and softirq around one `sluice bench` run from the
/// client namespace. `Ok(None)` when interrupted.
fn measure_rep(
    lab: &Lab,
    lb: &RunningLb,
    target: SocketAddr,
    concurrency: u32,
    plan: &Plan,
    cancel: &AtomicBool,
) -> Result<Option<Sample>, BmtError> {
    let spec = sluice_bench::BenchSpec {
        concurrency,
        requests: plan.requests,
        duration: plan.duration_secs.map(Duration::from_secs_f64),
        keep_alive: plan.keep_alive,
        progress: false,
        ..sluice_bench::BenchSpec::new(format!("http://{target}/"))
    };
    let cpu0 = lb_cpu_ns(lb.cpu);
    let soft0 = measure::softirq_ns();
    let busy0 = measure::machine_busy_ns();
    let report = bench_in_client(lab, spec, plan.client_threads, cancel)?;
    let cpu1 = lb_cpu_ns(lb.cpu);
    let soft1 = measure::softirq_ns();
    let busy1 = measure::machine_busy_ns();
    if report.interrupted {
        return Ok(None);
    }
    let responses = report.responses;
    let per_req_us = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if responses > 0 && b >= a => {
            Some((b - a) as f64 / 1000.0 / responses as f64)
        }
        _ => None,
    };
    let mut lb_cpu = per_req_us(cpu0, cpu1);
    // With BPF statistics off, run time stays 0: no figure rather than 0.
    if matches!(lb.cpu, CpuSource::Bpf(_)) && lb_cpu == Some(0.0) {
        lb_cpu = None;
    }
    let e = &report.errors;
    Ok(Some(Sample {
        requests: report.requests,
        ok: report.ok,
        errors: e.connect
            + e.timeout
            + e.io
            + e.status_3xx
            + e.status_4xx
            + e.status_5xx
            + e.status_other,
        duration_secs: report.duration_secs,
        requests_per_sec: report.requests_per_sec,
        latency_mean_ms: report.latency_us.mean / 1000.0,
        latency_p50_ms: report.latency_us.p50 as f64 / 1000.0,
        latency_p99_ms: report.latency_us.p99 as f64 / 1000.0,
        lb_cpu_us_per_req: lb_cpu,
        softirq_us_per_req: per_req_us(soft0, soft1),
        machine_cpu_us_per_req: per_req_us(busy0, busy1),
        machine_busy_pct: busy_pct(busy0, busy1, report.duration_secs, measure::cpus()),
    }))
}

/// Busy share of `cpus` CPUs over `secs` seconds, in percent, from two
/// readings of [`measure::machine_busy_ns`].
fn busy_pct(a: Option<u64>, b: Option<u64>, secs: f64, cpus: usize) -> Option<f64> {
    let (a, b) = (a?, b?);
    let capacity_ns = secs * 1e9 * cpus as f64;
    (b >= a && capacity_ns > 0.0).then(|| (b - a) as f64 / capacity_ns * 100.0)
}

fn lb_cpu_ns(src: CpuSource) -> Option<u64> {
    match src {
        CpuSource::Process(pid) => measure::process_cpu_ns(pid),
        CpuSource::Bpf(id) => measure::prog_run_time(id).map(|(ns, _)| ns),
        CpuSource::None => None,
    }
}

/// Runs the load generator on a thread inside the client namespace; its
/// runtime's worker threads inherit the namespace, so every socket is
/// opened there.
fn bench_in_client(
    lab: &Lab,
    spec: sluice_bench::BenchSpec,
    threads: usize,
    cancel: &AtomicBool,
) -> Result<sluice_bench::Report, BmtError> {
    lab.in_netns(Node::Client, move || {
        let rt = sluice_bench::runtime(threads)
            .map_err(|e| BmtError::io("starting the load generator's runtime", e))?;
        let cancelled = async {
            while !cancel.load(Ordering::SeqCst) {
                tokio::time::sleep(CANCEL_POLL).await;
            }
        };
        let report = rt.block_on(sluice_bench::run(spec, cancelled));
        rt.shutdown_timeout(BENCH_SHUTDOWN_TIMEOUT);
        Ok(report?)
    })?
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

fn median_opt(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<Option<f64>> = v.collect();
    // A figure only if every repetition has one.
    let all: Option<Vec<f64>> = v.into_iter().collect();
    all.filter(|a| !a.is_empty()).map(median)
}

fn aggregate(
    mode: Mode,
    series: &str,
    threads: Option<u16>,
    concurrency: u32,
    lb: &RunningLb,
    samples: Vec<Sample>,
) -> Cell {
    let rps: Vec<f64> = samples.iter().map(|s| s.requests_per_sec).collect();
    Cell {
        mode,
        series: series.to_owned(),
        threads,
        concurrency,
        total_requests: median(samples.iter().map(|s| s.requests as f64).collect()).round() as u64,
        file_size_bytes: FILE_SIZE,
        requests_per_sec: median(rps.clone()),
        requests_per_sec_min: rps.iter().copied().fold(f64::INFINITY, f64::min),
        requests_per_sec_max: rps.iter().copied().fold(0.0, f64::max),
        latency_mean_ms: median(samples.iter().map(|s| s.latency_mean_ms).collect()),
        latency_p50_ms: median(samples.iter().map(|s| s.latency_p50_ms).collect()),
        latency_p99_ms: median(samples.iter().map(|s| s.latency_p99_ms).collect()),
        errors: samples.iter().map(|s| s.errors).sum(),
        lb_cpu_us_per_req: median_opt(samples.iter().map(|s| s.lb_cpu_us_per_req)),
        cpu_source: match lb.cpu {
            CpuSource::Process(_) => "process",
            CpuSource::Bpf(_) => "bpf",
            CpuSource::None => "none",
        },
        softirq_us_per_req: median_opt(samples.iter().map(|s| s.softirq_us_per_req)),
        machine_cpu_us_per_req: median_opt(samples.iter().map(|s| s.machine_cpu_us_per_req)),
        machine_busy_pct: median_opt(samples.iter().map(|s| s.machine_busy_pct)),
        haproxy_peer: None,
        rps_vs_haproxy: None,
        cpu_vs_haproxy: None,
        p99_vs_haproxy: None,
        rps_ceiling_vs_haproxy: None,
        rps_vs_haproxy_per_rep: Vec::new(),
        samples,
    }
}

/// Fills the `*_vs_haproxy` figures: against HAProxy in the mode's
/// [`Mode::haproxy_peer`] mode at the same concurrency and threads, or with
/// its fewest threads for modes without threads.
fn add_haproxy_ratios(cells: &mut [Cell]) {
    let haproxy: Vec<Cell> = cells
        .iter()
        .filter(|c| matches!(c.mode, Mode::Haproxy | Mode::HaproxyTcp))
        .cloned()
        .collect();
    let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
    for c in cells.iter_mut() {
        let peer_mode = c.mode.haproxy_peer();
        let Some(peer) = haproxy
            .iter()
            .filter(|h| {
                h.mode == peer_mode
                    && h.concurrency == c.concurrency
                    && (c.threads.is_none() || h.threads == c.threads)
            })
            .min_by_key(|h| h.threads)
        else {
            continue;
        };
        c.haproxy_peer = Some(peer.series.clone());
        c.rps_vs_haproxy = ratio(c.requests_per_sec, peer.requests_per_sec);
        c.p99_vs_haproxy = ratio(c.latency_p99_ms, peer.latency_p99_ms);
        c.rps_ceiling_vs_haproxy = rps_ceiling(peer);
        c.cpu_vs_haproxy = match (c.lb_cpu_us_per_req, peer.lb_cpu_us_per_req) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => None,
        };
        if c.mode.side_by_side() && peer.mode.side_by_side() {
            c.rps_vs_haproxy_per_rep = c
                .samples
                .iter()
                .zip(&peer.samples)
                .filter_map(|(a, b)| ratio(a.requests_per_sec, b.requests_per_sec))
                .collect();
        }
    }
}

/// The highest req/s ratio over HAProxy that a CPU-bound run on this
/// machine can show: the one sluice would reach if its LB cost no CPU at
/// all. When every CPU is busy, req/s is the CPU capacity over the machine's
/// CPU per request, `T`; of HAProxy's `T`, its own LB took `L`, and the rest
/// (client, reals, kernel) stays whichever LB runs. So sluice's ratio is
/// `(T_h) / (T_h - L_h + L_sluice)`, at most `T_h / (T_h - L_h)`. `None`
/// unless HAProxy's run kept the CPUs at least [`MACHINE_SATURATED_PCT`]
/// busy (LB-bound runs with a CPU cap are not, by design).
fn rps_ceiling(haproxy: &Cell) -> Option<f64> {
    let (total, lb) = saturated_cpu(haproxy)?;
    Some(total / (total - lb))
}

/// HAProxy's machine-wide and LB CPU per request (`T`, `L`), if its run was
/// CPU-bound and the figures are consistent (`T > L > 0`).
fn saturated_cpu(haproxy: &Cell) -> Option<(f64, f64)> {
    let total = haproxy.machine_cpu_us_per_req?;
    let lb = haproxy.lb_cpu_us_per_req?;
    let saturated = haproxy.machine_busy_pct? >= MACHINE_SATURATED_PCT;
    (saturated && lb > 0.0 && total > lb).then_some((total, lb))
}

/// The LB CPU per request, as a ratio to HAProxy's, that sluice would need
/// to reach `target` × HAProxy's req/s in this CPU-bound run: from
/// `T_h / (T_h - L_h + L) = target`, `L = T_h / target - (T_h - L_h)`.
/// `Some(0.0)` when even a zero-cost LB falls short (target above
/// [`rps_ceiling`]); `None` where the ceiling does not apply.
fn cpu_ratio_needed(haproxy: &Cell, target: f64) -> Option<f64> {
    let (total, lb) = saturated_cpu(haproxy)?;
    Some(((total / target - (total - lb)) / lb).max(0.0))
}

/// The ceiling column: the ceiling and what the req/s target asks of the
/// LB's CPU, or why there is no figure.
fn ceiling_cell(haproxy: &Cell, ceiling: Option<f64>, target: f64) -> String {
    match (ceiling, cpu_ratio_needed(haproxy, target)) {
        (Some(c), Some(n)) if n > 0.0 => format!("{c:.2}× (≥ {target} needs CPU ≤ {n:.2}×)"),
        (Some(c), Some(_)) => format!("{c:.2}× (≥ {target} out of reach)"),
        _ => "–".to_owned(),
    }
}

/// The seed-shaped table (Thread, Concurrency, Total Requests, File Size,
/// Requests/sec, Latency) with the extra columns, then the issue 4
/// comparison of sluice's proxies with HAProxy and the wrk cross-check.
fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let p = &r.plan;
    let _ = writeln!(s, "# sluice lab bmt\n");
    let _ = writeln!(s, "Command: `{}`\n", r.command);
    let _ = writeln!(
        s,
        "Machine: {} vCPU, kernel {}. Lab: client, one-armed LB and {REALS} reals \
         ({}) in network namespaces on one host; everything shares the same CPUs.\n",
        r.machine.cpus,
        r.machine.kernel,
        match p.backend {
            Backend::Nginx => "nginx, 1 worker each",
            Backend::Sluice => "sluice realserver web",
        }
    );
    let _ = writeln!(
        s,
        "Load: `sluice bench` in {}, {} client thread(s), {} per repetition, {} \
         repetition(s) per cell; figures are medians{}. The proxies (and `direct`) run \
         side by side, each on its own port, and are loaded in turn, one repetition each \
         per round, so a slow phase of the shared machine hits all of them alike; L4 modes \
         run one after the other.\n",
        if p.keep_alive {
            "keep-alive mode (wrk-style: each connection carries many requests)"
        } else {
            "ab mode (a new TCP connection per request)"
        },
        p.client_threads,
        match (p.requests, p.duration_secs) {
            (Some(n), _) => format!("{n} requests"),
            (None, Some(d)) => format!("{d} s"),
            (None, None) => "?".to_owned(),
        },
        p.reps,
        if r.interrupted {
            " (**interrupted**: only complete cells are shown)"
        } else {
            ""
        }
    );
    if let Some(pct) = p.lb_cpu_pct {
        let _ = writeln!(
            s,
            "**LB-bound run**: every proxy (sluice and HAProxy, all threads together) is \
             held to {pct}% of one CPU by a CPU cgroup ({} ms period), so the LB, not the \
             client and reals sharing the machine, limits req/s. L4 modes are not capped.\n",
            sluice_lab::CPU_CAP_PERIOD_US / 1000
        );
    }
    let _ = writeln!(
        s,
        "| Mode | Thread | Concurrency | Total Requests | File Size | Requests/sec | Latency (ms) | p50 (ms) | p99 (ms) | Errors | LB CPU (µs/req) | vs HAProxy | CPU vs HAProxy |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for c in &r.cells {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {}KiB | {:.2} ({:.0}–{:.0}) | {:.3} | {:.2} | {:.2} | {} | {} | {} | {} |",
            c.mode.name(),
            threads_cell(c.threads),
            c.concurrency,
            c.total_requests,
            c.file_size_bytes / 1024,
            c.requests_per_sec,
            c.requests_per_sec_min,
            c.requests_per_sec_max,
            c.latency_mean_ms,
            c.latency_p50_ms,
            c.latency_p99_ms,
            c.errors,
            match c.lb_cpu_us_per_req {
                Some(v) => format!("{v:.1} ({})", c.cpu_source),
                None => "–".to_owned(),
            },
            times(c.rps_vs_haproxy),
            times(c.cpu_vs_haproxy),
        );
    }
    if r.cells.is_empty() {
        let _ = writeln!(s, "| (no cell measured) | | | | | | | | | | | | |");
    }
    targets_section(&mut s, &r.cells);
    wrk_section(&mut s, r);
    if !r.unavailable.is_empty() {
        let _ = writeln!(s, "\nNot measured (no row is shown for these):\n");
        for u in &r.unavailable {
            let series = series_label(u.mode, u.threads);
            let what = match u.concurrency {
                Some(c) => format!("{series} c{c}"),
                None => series,
            };
            let _ = writeln!(s, "- **{what}**: {}", u.reason.replace('|', "\\|"));
        }
    }
    let _ = writeln!(
        s,
        "\nColumns: Requests/sec is the median (range over the repetitions in brackets). \
         Latency is the mean time per request{} (median over the repetitions); p50 and p99 \
         likewise. LB CPU per request: `process` = utime+stime of the LB \
         process (all threads, 10 ms resolution) over the run; `bpf` = run time of the XDP \
         program (BPF statistics), which leaves out the kernel's own receive path. \
         vs HAProxy = req/s over HAProxy's with the same threads at the same concurrency, \
         in the same mode: `proxy-tcp` and `haproxy-tcp` against `haproxy-tcp`, every other \
         mode against `haproxy` (`mode http`; HAProxy with its fewest threads for modes \
         without threads); CPU vs HAProxy likewise for LB CPU per request. Proxies listen \
         on the LB's address, L4 modes on the VIP; `direct` loads one real.",
        if p.keep_alive {
            ""
        } else {
            " including the TCP handshake"
        }
    );
    s
}

/// The Thread column: the count, or a dash for modes without threads.
fn threads_cell(t: Option<u16>) -> String {
    t.map_or_else(|| "–".to_owned(), |t| t.to_string())
}

/// A ratio as `1.23×`, or a dash.
fn times(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×"))
}

/// Whether `v` meets a target: at least `target` (`at_least`) or at most.
fn verdict(v: Option<f64>, target: f64, at_least: bool) -> &'static str {
    match v {
        None => "no figure",
        Some(v) if (at_least && v >= target) || (!at_least && v <= target) => "met",
        Some(_) => "**not met**",
    }
}

/// The issue 4 comparison: each sluice proxy row against its HAProxy peer,
/// with the targets and whether this run meets them.
fn targets_section(s: &mut String, cells: &[Cell]) {
    let rows: Vec<(&Cell, &Cell, Targets)> = cells
        .iter()
        .filter_map(|c| {
            let targets = c.mode.targets()?;
            let peer = c.haproxy_peer.as_ref()?;
            let h = cells
                .iter()
                .find(|h| &h.series == peer && h.concurrency == c.concurrency)?;
            Some((c, h, targets))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## sluice vs HAProxy (issue 4 targets)\n\n\
         Same run, same threads, same concurrency, medians. The proxies ran side by side \
         and were loaded in turn, one repetition each per round; \"per round\" is each \
         round's req/s ratio (drift between rounds cancels out there). `mode http` targets: req/s \
         ≥ {TARGET_HTTP_RPS_RATIO}× HAProxy's, p99 ≤ HAProxy's, LB CPU per request \
         ≤ {TARGET_HTTP_CPU_RATIO}× HAProxy's. `mode tcp` target: req/s ≥ \
         {TARGET_TCP_RPS_RATIO}× HAProxy `mode tcp`'s. \"Ceiling\" is the highest req/s \
         ratio this run's machine allows: the one sluice would show if its LB cost no CPU \
         at all, from HAProxy's machine-wide and LB CPU per request (only when every CPU was \
         at least {MACHINE_SATURATED_PCT} % busy; a target above it cannot be met here), and \
         in brackets the LB CPU per request, over HAProxy's, that the req/s target needs in \
         this run.\n"
    );
    let _ = writeln!(
        s,
        "| sluice | HAProxy | Concurrency | req/s sluice / HAProxy | req/s ratio | per round | ceiling | p99 ms sluice / HAProxy | LB CPU µs/req sluice / HAProxy | CPU ratio |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
    for (c, h, targets) in rows {
        let (rps_target, cpu_target) = (targets.rps_ratio_at_least, targets.cpu_ratio_at_most);
        let cpu = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"));
        let p99_verdict = if cpu_target.is_some() {
            format!(
                " ({})",
                verdict(c.p99_vs_haproxy, 1.0, false).replace("**", "")
            )
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} / {:.0} | {} (≥ {rps_target}: {}) | {} | {} | {:.2} / {:.2}{} | {} / {} | {}{} |",
            c.series,
            h.series,
            c.concurrency,
            c.requests_per_sec,
            h.requests_per_sec,
            times(c.rps_vs_haproxy),
            verdict(c.rps_vs_haproxy, rps_target, true),
            if c.rps_vs_haproxy_per_rep.is_empty() {
                "–".to_owned()
            } else {
                c.rps_vs_haproxy_per_rep
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" · ")
            },
            ceiling_cell(h, c.rps_ceiling_vs_haproxy, rps_target),
            c.latency_p99_ms,
            h.latency_p99_ms,
            p99_verdict,
            cpu(c.lb_cpu_us_per_req),
            cpu(h.lb_cpu_us_per_req),
            times(c.cpu_vs_haproxy),
            match cpu_target {
                Some(t) => format!(" (≤ {t}: {})", verdict(c.cpu_vs_haproxy, t, false)),
                None => String::new(),
            },
        );
    }
}

/// The `--wrk` cross-check table, with req/s over HAProxy's wrk run.
fn wrk_section(s: &mut String, r: &Results) {
    if r.plan.wrk_secs.is_none() {
        return;
    }
    let _ = writeln!(
        s,
        "\n## wrk cross-check\n\n\
         One `wrk -t2 -c<concurrency> -d<duration> --latency` run per cell (keep-alive), \
         from the client namespace, right after the cell's `sluice bench` repetitions \
         against the same LB. Single runs: noisier than the medians above.\n"
    );
    let _ = writeln!(
        s,
        "| Mode | Thread | Concurrency | Duration (s) | Requests | Requests/sec | p50 (ms) | p99 (ms) | Errors | LB CPU (µs/req) | vs HAProxy |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for w in &r.wrk {
        let peer_mode = w.mode.haproxy_peer();
        let peer = r
            .wrk
            .iter()
            .filter(|h| {
                h.mode == peer_mode
                    && h.concurrency == w.concurrency
                    && (w.threads.is_none() || h.threads == w.threads)
            })
            .min_by_key(|h| h.threads)
            .filter(|h| h.requests_per_sec > 0.0)
            .map(|h| w.requests_per_sec / h.requests_per_sec);
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            w.mode.name(),
            threads_cell(w.threads),
            w.concurrency,
            w.duration_secs,
            w.requests,
            w.requests_per_sec,
            w.latency_p50_ms,
            w.latency_p99_ms,
            w.errors,
            w.lb_cpu_us_per_req
                .map_or_else(|| "–".to_owned(), |v| format!("{v:.1}")),
            times(peer),
        );
    }
    if r.wrk.is_empty() {
        let _ = writeln!(s, "| (no wrk run) | | | | | | | | | | |");
    }
    for why in &r.wrk_skipped {
        let _ = writeln!(s, "\n- wrk not run or failed: {}", why.replace('|', "\\|"));
    }
}

fn write_outputs(r: &Results, out: &Path) -> Result<(), BmtError> {
    let md = markdown(r);
    let md_path = out.join("bmt.md");
    std::fs::write(&md_path, &md)
        .map_err(|e| BmtError::io(format!("writing {}", md_path.display()), e))?;
    let json_path = out.join("bmt.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(r)?)
        .map_err(|e| BmtError::io(format!("writing {}", json_path.display()), e))?;

    let mut series: Vec<chart::Series> = Vec::new();
    for c in &r.cells {
        let i = match series.iter().position(|s| s.label == c.series) {
            Some(i) => i,
            None => {
                series.push(chart::Series {
                    label: c.series.clone(),
                    rps: Vec::new(),
                    cpu: Vec::new(),
                });
                series.len() - 1
            }
        };
        series[i].rps.push((c.concurrency, c.requests_per_sec));
        if let Some(v) = c.lb_cpu_us_per_req {
            series[i].cpu.push((c.concurrency, v));
        }
    }
    let title = format!(
        "sluice lab bmt: {} KiB file, {}, {} vCPU, kernel {}",
        FILE_SIZE / 1024,
        if r.plan.keep_alive {
            "keep-alive"
        } else {
            "ab mode"
        },
        r.machine.cpus,
        r.machine.kernel
    );
    let svg = chart::svg(&title, &r.plan.concurrency, &series);
    let svg_path = out.join("bmt.svg");
    std::fs::write(&svg_path, &svg)
        .map_err(|e| BmtError::io(format!("writing {}", svg_path.display()), e))?;
    let png_path = out.join("bmt.png");
    chart::write_png(&svg, &png_path)?;

    println!("{md}");
    println!("results: {} and {}", md_path.display(), json_path.display());
    println!("chart:   {} and {}", svg_path.display(), png_path.display());
    Ok(())
}

/// A flag set on the first SIGINT or SIGTERM, by a watcher thread.
fn signal_flag() -> Result<Arc<AtomicBool>, BmtError> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BmtError::io("starting the signal runtime", e))?;
    // Registering here (not in the thread) means a Ctrl-C right after this
    // returns is already ours, not the default "terminate".
    let mut term = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .map_err(BmtError::Signal)?;
    let mut int = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .map_err(BmtError::Signal)?;
    std::thread::Builder::new()
        .name("bmt-signals".into())
        .spawn(move || {
            rt.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            eprintln!("sluice lab bmt: interrupted; stopping and tearing down the lab");
            set.store(true, Ordering::SeqCst);
        })
        .map_err(|e| BmtError::io("starting the signal thread", e))?;
    Ok(flag)
}

/// `YYYYmmdd-HHMMSS` in UTC.
fn utc_stamp(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(0);
    let secs = unix % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BmtArgs,
    }

    fn plan(argv: &[&str]) -> Result<Plan, Box<dyn std::error::Error>> {
        let mut full = vec!["bmt"];
        full.extend_from_slice(argv);
        Ok(Plan::from_args(&Cli::try_parse_from(full)?.args)?)
    }

    #[test]
    fn user_space_lbs_form_one_group_and_l4_modes_run_alone() {
        let p = plan(&["--modes", "dr,haproxy,direct,proxy,nat", "--threads", "2,1"]).unwrap();
        let modes = p.modes.clone();
        let g = groups(&p, &modes);
        assert_eq!(
            g,
            vec![
                vec![
                    (Mode::Direct, None),
                    (Mode::Proxy, Some(1)),
                    (Mode::Proxy, Some(2)),
                    (Mode::Haproxy, Some(1)),
                    (Mode::Haproxy, Some(2)),
                ],
                vec![(Mode::Dr, None)],
                vec![(Mode::Nat, None)],
            ]
        );
    }

    #[test]
    fn quick_and_full_matrices() {
        let q = plan(&["--quick"]).unwrap();
        assert_eq!(q.threads, vec![1]);
        assert_eq!(q.concurrency, vec![50, 200]);
        assert_eq!((q.requests, q.reps), (Some(QUICK_REQUESTS), 3));
        assert_eq!(q.modes.len(), Mode::ALL.len());
        let f = plan(&[]).unwrap();
        assert_eq!(f.threads, vec![1, 2]);
        assert_eq!(f.concurrency, vec![50, 100, 200, 500]);
        let c = plan(&[
            "--modes",
            "dr,direct",
            "--concurrency",
            "10",
            "--duration",
            "2s",
            "--reps",
            "1",
        ])
        .unwrap();
        assert_eq!(c.modes, vec![Mode::Direct, Mode::Dr]);
        assert_eq!((c.requests, c.duration_secs), (None, Some(2.0)));
        assert_eq!(c.threads_of(Mode::Dr), vec![None]);
        assert_eq!(f.threads_of(Mode::Haproxy), vec![Some(1), Some(2)]);
        assert!(!f.keep_alive);
        assert_eq!(f.client_threads, DEFAULT_CLIENT_THREADS);
    }

    #[test]
    fn keepalive_and_tcp_modes() {
        let k = plan(&["--keepalive", "--modes", "haproxy-tcp,proxy-tcp,proxy"]).unwrap();
        assert!(k.keep_alive);
        assert_eq!(k.modes, vec![Mode::Proxy, Mode::ProxyTcp, Mode::HaproxyTcp]);
        // A duration by default, like wrk; two client threads like wrk -t2.
        assert_eq!(
            (k.requests, k.duration_secs),
            (None, Some(DEFAULT_KEEPALIVE_DURATION.as_secs_f64()))
        );
        assert_eq!(k.client_threads, DEFAULT_KEEPALIVE_CLIENT_THREADS);
        assert_eq!(k.threads_of(Mode::ProxyTcp), vec![Some(1), Some(2)]);
        assert_eq!(k.wrk_secs, None);
        let q = plan(&["--keepalive", "--quick"]).unwrap();
        assert_eq!(
            q.duration_secs,
            Some(QUICK_KEEPALIVE_DURATION.as_secs_f64())
        );
        // Explicit choices win.
        let n = plan(&[
            "--keepalive",
            "--requests",
            "500",
            "--client-threads",
            "1",
            "--wrk",
            "3s",
        ])
        .unwrap();
        assert_eq!((n.requests, n.duration_secs), (Some(500), None));
        assert_eq!((n.client_threads, n.wrk_secs), (1, Some(3.0)));
        assert_eq!(Mode::ProxyTcp.name(), "proxy-tcp");
        assert_eq!(
            serde_json::to_value(Mode::HaproxyTcp).unwrap(),
            serde_json::json!("haproxy-tcp")
        );
    }

    #[test]
    fn bad_matrices_are_refused() {
        for argv in [
            &["--reps", "0"][..],
            &["--concurrency", "0"],
            &["--concurrency", "100000"],
            &["--threads", "0"],
            &["--requests", "0"],
            &["--duration", "0s"],
            &["--modes", "ipvs"],
            &["--requests", "5", "--duration", "1s"],
            // wrk is a keep-alive cross-check; it needs --keepalive.
            &["--wrk", "5s"],
            &["--keepalive", "--wrk", "500ms"],
            // A CPU budget too small to serve anything, or above 64 CPUs.
            &["--lb-cpu-pct", "4"],
            &["--lb-cpu-pct", "6401"],
            &["--lb-cpu-pct", "-1"],
        ] {
            assert!(plan(argv).is_err(), "{argv:?} accepted");
        }
    }

    fn cell(mode: Mode, threads: Option<u16>, c: u32, rps: f64) -> Cell {
        cell_with(mode, threads, c, rps, 2.0, Some(10.0))
    }

    fn cell_with(
        mode: Mode,
        threads: Option<u16>,
        c: u32,
        rps: f64,
        p99: f64,
        cpu: Option<f64>,
    ) -> Cell {
        let s = Sample {
            requests: 100,
            ok: 100,
            errors: 0,
            duration_secs: 1.0,
            requests_per_sec: rps,
            latency_mean_ms: 1.0,
            latency_p50_ms: 0.5,
            latency_p99_ms: p99,
            lb_cpu_us_per_req: cpu,
            softirq_us_per_req: None,
            machine_cpu_us_per_req: None,
            machine_busy_pct: None,
        };
        aggregate(
            mode,
            &series_label(mode, threads),
            threads,
            c,
            &RunningLb::none(),
            vec![s.clone(), s],
        )
    }

    #[test]
    fn medians_and_ratios() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(median_opt([Some(1.0), None].into_iter()), None);
        assert_eq!(median_opt([Some(1.0), Some(3.0)].into_iter()), Some(2.0));
        let mut cells = vec![
            cell(Mode::Haproxy, Some(1), 50, 5000.0),
            cell(Mode::Haproxy, Some(2), 50, 8000.0),
            cell(Mode::Proxy, Some(2), 50, 6000.0),
            cell(Mode::Dr, None, 50, 10_000.0),
            cell(Mode::Dr, None, 200, 10_000.0),
        ];
        add_haproxy_ratios(&mut cells);
        assert_eq!(cells[0].rps_vs_haproxy, Some(1.0));
        assert_eq!(cells[2].rps_vs_haproxy, Some(0.75));
        assert_eq!(cells[3].rps_vs_haproxy, Some(2.0));
        assert_eq!(cells[4].rps_vs_haproxy, None);
        assert_eq!(cells[3].cpu_source, "none");
        assert_eq!(cells[2].haproxy_peer.as_deref(), Some("haproxy t2"));
        assert_eq!(cells[2].latency_p50_ms, 0.5);
        // Per-round ratios only where both ran side by side (not for L4).
        assert_eq!(cells[2].rps_vs_haproxy_per_rep, [0.75, 0.75]);
        assert!(cells[3].rps_vs_haproxy_per_rep.is_empty());
    }

    #[test]
    fn tcp_compares_with_haproxy_tcp_and_http_with_haproxy() {
        let mut cells = vec![
            cell_with(Mode::Haproxy, Some(1), 100, 10_000.0, 10.0, Some(50.0)),
            cell_with(Mode::HaproxyTcp, Some(1), 100, 20_000.0, 8.0, Some(20.0)),
            cell_with(Mode::Proxy, Some(1), 100, 14_000.0, 9.0, Some(35.0)),
            cell_with(Mode::ProxyTcp, Some(1), 100, 21_000.0, 8.0, Some(30.0)),
            cell_with(Mode::ProxyTcp, Some(2), 100, 21_000.0, 8.0, None),
        ];
        // HAProxy http kept the CPUs busy (the ceiling applies: 100 µs per
        // request on the machine, 50 of them HAProxy's); HAProxy tcp did not.
        (cells[0].machine_cpu_us_per_req, cells[0].machine_busy_pct) = (Some(100.0), Some(97.0));
        (cells[1].machine_cpu_us_per_req, cells[1].machine_busy_pct) = (Some(90.0), Some(60.0));
        add_haproxy_ratios(&mut cells);
        assert_eq!(cells[2].rps_ceiling_vs_haproxy, Some(2.0));
        assert_eq!(cells[3].rps_ceiling_vs_haproxy, None);
        assert_eq!(cells[2].haproxy_peer.as_deref(), Some("haproxy t1"));
        assert_eq!(cells[2].rps_vs_haproxy, Some(1.4));
        assert_eq!(cells[2].cpu_vs_haproxy, Some(0.7));
        assert_eq!(cells[2].p99_vs_haproxy, Some(0.9));
        assert_eq!(cells[3].haproxy_peer.as_deref(), Some("haproxy-tcp t1"));
        assert_eq!(cells[3].rps_vs_haproxy, Some(1.05));
        assert_eq!(cells[3].cpu_vs_haproxy, Some(1.5));
        assert_eq!(cells[1].rps_vs_haproxy, Some(1.0));
        // No HAProxy tcp at 2 threads: no ratio rather than a wrong one.
        assert_eq!(cells[4].haproxy_peer, None);
        assert_eq!(cells[4].rps_vs_haproxy, None);

        let mut r = results(cells);
        r.plan = plan(&["--keepalive"]).unwrap();
        let md = markdown(&r);
        assert!(md.contains("keep-alive mode"), "{md}");
        assert!(
            md.contains("## sluice vs HAProxy (issue 4 targets)"),
            "{md}"
        );
        // http: 1.4× ≥ 1.3 met (and in each of the two rounds), p99 9 ≤ 10
        // met, CPU 0.7 ≤ 0.8 met.
        assert!(
            md.contains("| proxy t1 | haproxy t1 | 100 | 14000 / 10000 | 1.40× (≥ 1.3: met) | 1.40 · 1.40 | 2.00× (≥ 1.3 needs CPU ≤ 0.54×) | 9.00 / 10.00 (met) | 35.0 / 50.0 | 0.70× (≤ 0.8: met) |"),
            "{md}"
        );
        // tcp: 1.05× < 1.1, not met.
        assert!(
            md.contains("| proxy-tcp t1 | haproxy-tcp t1 | 100 | 21000 / 20000 | 1.05× (≥ 1.1: **not met**) | 1.05 · 1.05 | – |"),
            "{md}"
        );
        assert!(!md.contains("| proxy-tcp t2 | haproxy"), "{md}");
    }

    #[test]
    fn ceiling_needs_a_saturated_machine_and_both_cpu_figures() {
        let mut h = cell_with(Mode::Haproxy, Some(1), 100, 10_000.0, 10.0, Some(20.0));
        assert_eq!(rps_ceiling(&h), None, "no machine figure");
        (h.machine_cpu_us_per_req, h.machine_busy_pct) = (Some(100.0), Some(95.0));
        assert_eq!(rps_ceiling(&h), Some(1.25));
        h.machine_busy_pct = Some(MACHINE_SATURATED_PCT - 1.0);
        assert_eq!(rps_ceiling(&h), None, "idle CPU left");
        h.machine_busy_pct = Some(99.0);
        // 1.25× at most; 1.1× needs 100/1.1 - 80 = 10.9 µs, 0.545× of 20.
        assert!((cpu_ratio_needed(&h, 1.1).unwrap() - (100.0 / 1.1 - 80.0) / 20.0).abs() < 1e-9);
        assert_eq!(cpu_ratio_needed(&h, 1.3), Some(0.0));
        assert_eq!(
            ceiling_cell(&h, rps_ceiling(&h), 1.3),
            "1.25× (≥ 1.3 out of reach)"
        );
        assert_eq!(
            ceiling_cell(&h, rps_ceiling(&h), 1.1),
            "1.25× (≥ 1.1 needs CPU ≤ 0.55×)"
        );
        // Inconsistent readings (LB above the machine) give no figure.
        h.machine_cpu_us_per_req = Some(15.0);
        assert_eq!(rps_ceiling(&h), None);
        h.lb_cpu_us_per_req = None;
        assert_eq!(rps_ceiling(&h), None);
    }

    #[test]
    fn busy_share_is_over_all_cpus() {
        // 3 s of CPU time in 2 s on 2 CPUs: 75 % busy.
        assert_eq!(
            busy_pct(Some(1_000), Some(3_000_001_000), 2.0, 2),
            Some(75.0)
        );
        assert_eq!(busy_pct(Some(5), Some(4), 2.0, 2), None);
        assert_eq!(busy_pct(None, Some(4), 2.0, 2), None);
        assert_eq!(busy_pct(Some(1), Some(4), 0.0, 2), None);
    }

    fn results(cells: Vec<Cell>) -> Results {
        Results {
            version: BMT_JSON_VERSION,
            command: "sluice lab bmt".into(),
            started_unix: 0,
            elapsed_secs: 1.0,
            interrupted: false,
            machine: Machine {
                cpus: 2,
                kernel: "6.18".into(),
            },
            plan: plan(&["--quick"]).unwrap(),
            cells,
            unavailable: Vec::new(),
            wrk: Vec::new(),
            wrk_skipped: Vec::new(),
        }
    }

    #[test]
    fn wrk_runs_get_their_own_table_and_ratios() {
        let mut r = results(Vec::new());
        r.plan = plan(&["--keepalive", "--wrk", "2s"]).unwrap();
        let run = |mode: Mode, rps: f64| WrkRun {
            mode,
            series: format!("{} t1", mode.name()),
            threads: Some(1),
            concurrency: 100,
            duration_secs: 2,
            requests: 1000,
            requests_per_sec: rps,
            latency_p50_ms: 1.0,
            latency_p99_ms: 3.0,
            errors: 0,
            lb_cpu_us_per_req: Some(12.0),
        };
        r.wrk = vec![run(Mode::HaproxyTcp, 4000.0), run(Mode::ProxyTcp, 5000.0)];
        let md = markdown(&r);
        assert!(md.contains("## wrk cross-check"), "{md}");
        assert!(
            md.contains(
                "| proxy-tcp | 1 | 100 | 2 | 1000 | 5000.00 | 1.00 | 3.00 | 0 | 12.0 | 1.25× |"
            ),
            "{md}"
        );
        // Without --wrk there is no such section.
        r.plan = plan(&["--keepalive"]).unwrap();
        assert!(!markdown(&r).contains("wrk cross-check"));
    }

    #[test]
    fn table_has_the_seed_columns_and_no_rows_for_unavailable_modes() {
        let mut r = results(vec![cell(Mode::Direct, None, 50, 1234.5)]);
        r.unavailable = vec![Unavailable {
            mode: Mode::Tun,
            threads: None,
            concurrency: None,
            reason: "no lab".into(),
        }];
        let md = markdown(&r);
        assert!(md.contains(
            "| Mode | Thread | Concurrency | Total Requests | File Size | Requests/sec | Latency (ms) | p50 (ms) | p99 (ms) |"
        ));
        assert!(md.contains(
            "| direct | – | 50 | 100 | 5KiB | 1234.50 (1234–1234) | 1.000 | 0.50 | 2.00 |"
        ));
        assert!(md.contains("ab mode"));
        // No HAProxy proxy rows: no target section.
        assert!(!md.contains("issue 4 targets"));
        assert!(!md.contains("| tun |"));
        assert!(md.contains("- **tun**: no lab"));
    }

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
