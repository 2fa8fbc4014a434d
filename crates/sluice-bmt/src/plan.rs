//! The matrix asked for: `sluice lab bmt`'s options, their defaults and
//! bounds, and the order in which the LBs are measured.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::require;
use crate::{Backend, BmtError, Mode, Plan};

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
    pub(crate) out: Option<PathBuf>,
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

impl Plan {
    pub(crate) fn from_args(a: &BmtArgs) -> Result<Self, BmtError> {
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
    pub(crate) fn threads_of(&self, mode: Mode) -> Vec<Option<u16>> {
        if mode.threaded() {
            self.threads.iter().map(|&t| Some(t)).collect()
        } else {
            vec![None]
        }
    }
}

/// The LBs of `modes` (one family) in the order they are measured: every
/// proxy and `direct` side by side in one group, each L4 mode alone (one XDP
/// program per interface).
pub(crate) fn groups(plan: &Plan, modes: &[Mode]) -> Vec<Vec<(Mode, Option<u16>)>> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: BmtArgs,
    }

    pub(crate) fn plan(argv: &[&str]) -> Result<Plan, Box<dyn std::error::Error>> {
        let mut full = vec!["bmt"];
        full.extend_from_slice(argv);
        Ok(Plan::from_args(&Cli::try_parse_from(full)?.args)?)
    }

    #[test]
    fn user_space_lbs_form_one_group_and_l4_modes_run_alone() {
        let p = plan(&[
            "--modes",
            "dr,haproxy,direct,nft-fullnat,proxy,nat,fullnat,nft-dnat",
            "--threads",
            "2,1",
        ])
        .unwrap();
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
                vec![(Mode::Fullnat, None)],
                // The kernel's NAT owns the VIP's path through the LB.
                vec![(Mode::NftDnat, None)],
                vec![(Mode::NftFullnat, None)],
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
        assert_eq!(Mode::NftFullnat.name(), "nft-fullnat");
        assert_eq!(
            serde_json::to_value(Mode::NftFullnat).unwrap(),
            serde_json::json!("nft-fullnat")
        );
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
}
