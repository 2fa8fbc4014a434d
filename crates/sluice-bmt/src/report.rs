//! The outputs: the seed-shaped Markdown table with the issue 4 comparison
//! and the wrk cross-check, `bmt.json`, and the chart.

use std::fmt::Write as _;
use std::path::Path;

use crate::stats::cpu_ratio_needed;
use crate::{
    Backend, BmtError, Cell, FILE_SIZE, MACHINE_SATURATED_PCT, REALS, Results,
    TARGET_HTTP_CPU_RATIO, TARGET_HTTP_RPS_RATIO, TARGET_TCP_RPS_RATIO, Targets, chart,
    series_label,
};

/// The ceiling column: the ceiling and what the req/s target asks of the
/// LB's CPU, or why there is no figure.
pub(crate) fn ceiling_cell(haproxy: &Cell, ceiling: Option<f64>, target: f64) -> String {
    match (ceiling, cpu_ratio_needed(haproxy, target)) {
        (Some(c), Some(n)) if n > 0.0 => format!("{c:.2}× (≥ {target} needs CPU ≤ {n:.2}×)"),
        (Some(c), Some(_)) => format!("{c:.2}× (≥ {target} out of reach)"),
        _ => "–".to_owned(),
    }
}

/// The seed-shaped table (Thread, Concurrency, Total Requests, File Size,
/// Requests/sec, Latency) with the extra columns, then the issue 4
/// comparison of sluice's proxies with HAProxy and the wrk cross-check.
pub(crate) fn markdown(r: &Results) -> String {
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
         program (BPF statistics), which leaves out the kernel's own receive path; \
         `nft-dnat` and `nft-fullnat` (the kernel's NAT) have no LB process, so none is \
         shown: compare them with `nat` and `fullnat` by the whole machine's CPU per \
         request (`machine_cpu_us_per_req` in bmt.json). vs HAProxy = req/s over HAProxy's with the same threads at the same concurrency, \
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

pub(crate) fn write_outputs(r: &Results, out: &Path) -> Result<(), BmtError> {
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::plan::tests::plan;
    use crate::stats::add_haproxy_ratios;
    use crate::stats::tests::{cell, cell_with};
    use crate::{BMT_JSON_VERSION, Machine, Mode, Unavailable, WrkRun};

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
}
