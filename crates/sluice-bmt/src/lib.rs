//! `sluice lab bmt`: the seed study's benchmark matrix, reproduced in the
//! namespace lab (see ../shared/seeds/l2dsr-vs-proxy-bmt.txt). A tool of
//! this repository, run only through the `sluice` binary, which passes
//! [`BmtArgs`] and its own path to [`run`]: the matrix starts that binary
//! as the LB (`sluice run`) and as the reals' web server.
//!
//! For each mode (the `direct` baseline, sluice's L7 proxy in `mode http`
//! and `mode tcp`, HAProxy in both modes, sluice L4 `dr`/`tun`/`nat`/`fullnat`,
//! and the kernel's NAT as the peers of `nat` and `fullnat`: nftables
//! `nft-dnat` and `nft-fullnat`) × LB threads × concurrency,
//! it runs `sluice bench` from the client namespace, `reps` times, and keeps
//! medians. The load is ab mode by default (a new connection per request,
//! like the seed's `ab`) or keep-alive connections with `--keepalive`
//! (wrk-style); `--wrk` adds one real `wrk` run per cell as a cross-check.
//! It also reads the LB's CPU cost per request: utime+stime of the LB
//! process for proxies, the XDP program's BPF run time for L4 modes.
//!
//! sluice's proxies are compared with HAProxy in the same mode (`proxy` with
//! `haproxy`, `proxy-tcp` with `haproxy-tcp`) at equal threads, against the
//! targets of issue 4 (see `TARGET_HTTP_RPS_RATIO` and its siblings).
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
mod matrix;
mod measure;
mod natlab;
mod plan;
mod report;
mod stats;
mod wrk;

pub use error::BmtError;
pub use lb::CPU_CAP_PREFIX;
pub use natlab::{KernelNat, NFT_TABLE, nft_rules};
pub use plan::BmtArgs;

use sluice_l4::wire_maps::Method;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use matrix::{lab_up, run_group};
use natlab::ReplyPath;
use plan::groups;
use report::write_outputs;
use stats::add_haproxy_ratios;

/// Version of the `bmt.json` layout (3: proxies measured side by side, with
/// `rps_vs_haproxy_per_rep`; 4: machine CPU per request and busy share,
/// `rps_ceiling_vs_haproxy`).
const BMT_JSON_VERSION: u32 = 4;

/// Share of all CPUs' time (percent) above which a repetition counts as
/// CPU-bound. Only then does [`stats::rps_ceiling`] apply: with idle CPU left, a
/// cheaper LB does not turn into more requests per second.
const MACHINE_SATURATED_PCT: f64 = 90.0;

/// Size of the file every real serves, in bytes (the seed's 5 KiB).
const FILE_SIZE: usize = 5 * 1024;

/// Real servers behind the LB.
const REALS: usize = 3;

/// Issue 4 target for `mode http`: sluice's req/s over HAProxy's at equal
/// threads, at least.
const TARGET_HTTP_RPS_RATIO: f64 = 1.3;
/// Issue 4 target for `mode http`: sluice's LB CPU per request over
/// HAProxy's, at most.
const TARGET_HTTP_CPU_RATIO: f64 = 0.8;
/// Issue 4 target for `mode tcp`: sluice's req/s over HAProxy `mode tcp`'s
/// at equal threads, at least.
const TARGET_TCP_RPS_RATIO: f64 = 1.1;

/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

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
    /// sluice L4 `nat` (the reals route the client via the LB for it:
    /// `natlab`).
    Nat,
    /// sluice L4 `fullnat`: the LB connects to the reals from a local
    /// address added to its interface, so the replies come back to it
    /// (`natlab`).
    Fullnat,
    /// The kernel's own NAT, the peer of `nat`: an nftables DNAT rule
    /// (`numgen inc` over the reals) in the LB namespace, the reals routed
    /// as for `nat` (`natlab`).
    #[serde(rename = "nft-dnat")]
    #[value(name = "nft-dnat")]
    NftDnat,
    /// The kernel's full NAT, the peer of `fullnat`: `nft-dnat`'s DNAT
    /// plus SNAT to the same local address `fullnat` connects from
    /// (`natlab`).
    #[serde(rename = "nft-fullnat")]
    #[value(name = "nft-fullnat")]
    NftFullnat,
}

impl Mode {
    const ALL: [Mode; 11] = [
        Mode::Direct,
        Mode::Proxy,
        Mode::Haproxy,
        Mode::ProxyTcp,
        Mode::HaproxyTcp,
        Mode::Dr,
        Mode::Tun,
        Mode::Nat,
        Mode::Fullnat,
        Mode::NftDnat,
        Mode::NftFullnat,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Proxy => "proxy",
            Mode::Haproxy => "haproxy",
            Mode::ProxyTcp => "proxy-tcp",
            Mode::HaproxyTcp => "haproxy-tcp",
            Mode::Dr => Method::Dr.as_str(),
            Mode::Tun => Method::Tun.as_str(),
            Mode::Nat => Method::Nat.as_str(),
            Mode::Fullnat => Method::Fullnat.as_str(),
            Mode::NftDnat => "nft-dnat",
            Mode::NftFullnat => "nft-fullnat",
        }
    }

    /// Whether the LB can run at the same time as others (on its own port),
    /// so its repetitions are interleaved with theirs: the user-space
    /// proxies and `direct`; an L4 mode owns the LB interface's XDP hook,
    /// and the kernel's NAT the VIP's route through the LB and the reals'.
    fn side_by_side(self) -> bool {
        self.l4_method().is_none() && self.reply_path().is_none()
    }

    /// How the reals' replies reach the LB in a NAT mode (sluice's and the
    /// kernel's alike, so that each pair runs on the same lab); `None`
    /// for the modes whose reals answer the client directly.
    fn reply_path(self) -> Option<ReplyPath> {
        match self {
            Mode::Nat | Mode::NftDnat => Some(ReplyPath::ClientViaLb),
            Mode::Fullnat | Mode::NftFullnat => Some(ReplyPath::ToLocalAddress),
            Mode::Direct
            | Mode::Proxy
            | Mode::Haproxy
            | Mode::ProxyTcp
            | Mode::HaproxyTcp
            | Mode::Dr
            | Mode::Tun => None,
        }
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
    fn l4_method(self) -> Option<Method> {
        match self {
            Mode::Dr => Some(Method::Dr),
            Mode::Tun => Some(Method::Tun),
            Mode::Nat => Some(Method::Nat),
            Mode::Fullnat => Some(Method::Fullnat),
            Mode::Direct
            | Mode::Proxy
            | Mode::Haproxy
            | Mode::ProxyTcp
            | Mode::HaproxyTcp
            | Mode::NftDnat
            | Mode::NftFullnat => None,
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
    /// machine allows, see [`stats::rps_ceiling`]. `None` when the peer's run was
    /// not CPU-bound or lacks a CPU figure.
    rps_ceiling_vs_haproxy: Option<f64>,
    /// Req/s of each repetition over the HAProxy peer's repetition of the
    /// same round (measured one after the other; empty unless both ran side
    /// by side, see [`matrix::run_group`]). Drift between rounds cancels out here.
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

/// The `--wrk` cross-check runs, and why some are missing.
#[derive(Debug, Default)]
struct Runs {
    runs: Vec<WrkRun>,
    skipped: Vec<String>,
}

/// The legend label of an LB: mode, plus threads for threaded modes.
fn series_label(mode: Mode, threads: Option<u16>) -> String {
    match threads {
        Some(t) => format!("{} t{t}", mode.name()),
        None => mode.name().to_owned(),
    }
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

    #[test]
    fn utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_700_000_000), "20231114-221320");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
    }
}
