//! Running the matrix in the lab: the labs, the LBs under test, one
//! repetition at a time.

use sluice_l4::wire_maps::Method;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sluice_lab::{Lab, LabError, LabSpec, LbForwarding, Node, RealBackend, Topology};

use crate::error::chain;
use crate::lb::{self, CpuSource, RunningLb, Start};
use crate::natlab::{KernelNat, NatLab, NftNat};
use crate::stats::{aggregate, busy_pct};
use crate::{
    Backend, BmtError, Cell, FILE_SIZE, Family, Mode, Plan, REALS, Runs, Sample, Unavailable,
    WrkRun, measure, series_label, wrk,
};

/// How long to wait for the load generator's runtime threads at the end of
/// a run before leaving them behind.
const BENCH_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// How often a running benchmark checks for Ctrl-C.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Sysctls set inside the client and LB namespaces (namespace-local; the
/// root namespace is never touched). New connections per request need many
/// ephemeral ports and reuse of TIME_WAIT ports, as the seed tuned by hand.
const NODE_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_local_port_range", "1024 65535"),
    ("net.ipv4.tcp_tw_reuse", "1"),
];

/// Brings up the lab of a family; `Err` is why its modes cannot run.
pub(crate) fn lab_up(
    family: Family,
    plan: &Plan,
    binary: &Path,
    cancel: &AtomicBool,
) -> Result<Lab, String> {
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
pub(crate) fn run_group(
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
        Mode::NftDnat | Mode::NftFullnat => {
            if !lb::in_path("nft") {
                return Err("nft is not installed (scripts/setup.sh installs it)".to_owned());
            }
            let nat_lab = prepare_nat_lab(t, mode)?;
            // nft-fullnat connects from the local address, nft-dnat keeps
            // the client's.
            let nat = match nat_lab.as_ref().and_then(|n| n.local.as_ref()) {
                Some(local) => KernelNat::FullNat(local.addr),
                None => KernelNat::Dnat,
            };
            let nft = NftNat::set(t, nat).map_err(|e| format!("{}: {e}", mode.name()))?;
            let vip = t.vip4_addr();
            let ok = lab
                .in_netns(Node::Client, move || {
                    sluice_lab::http_get(vip, "/", Duration::from_secs(2))
                })
                .map_err(|e| e.to_string())?;
            match ok {
                Ok(r) if r.status == 200 && r.body.len() == FILE_SIZE => {}
                Ok(r) => return Err(format!("the VIP answered HTTP {} through nft", r.status)),
                Err(e) => return Err(format!("the VIP does not answer through nft: {e}")),
            }
            let mut lb = RunningLb::none();
            lb.nft = Some(nft);
            lb.nat_lab = nat_lab;
            Ok((lb, vip))
        }
        Mode::Dr | Mode::Tun | Mode::Nat | Mode::Fullnat => {
            let method = mode.l4_method().unwrap_or(Method::Dr);
            let vip = t.vip4_addr();
            let ips: Vec<IpAddr> = reals.iter().map(SocketAddr::ip).collect();
            let tun_source = (mode == Mode::Tun).then_some(IpAddr::V4(t.lb.ipv4));
            // nat's and fullnat's replies must cross the LB: the lab is
            // changed for as long as the LB runs (put back when it is
            // dropped), before the daemon starts (it refuses a local
            // address its interface does not have).
            let nat_lab = prepare_nat_lab(t, mode)?;
            let local_addr = nat_lab
                .as_ref()
                .and_then(|n| n.local.as_ref())
                .map(|l| IpAddr::V4(l.addr));
            let mut lb = lb::start(
                lab,
                Start {
                    argv: vec![sluice, "run".into(), "-c".into(), "{CONFIG}".into()],
                    config: (
                        "sluice.toml",
                        lb::l4_config(method, &t.lb.iface, vip, &ips, tun_source, local_addr),
                    ),
                    probe: vip,
                    body_len: FILE_SIZE,
                    xdp: Some((t.lb.switch_port.clone(), t.lb.iface.clone())),
                    // XDP runs in softirq context, outside any cgroup.
                    cpu_pct: None,
                },
            )
            .map_err(|e| format!("sluice run (L4 {method}): {e}"))?;
            lb.nat_lab = nat_lab;
            Ok((lb, vip))
        }
    }
}

/// The lab changes of a NAT mode (see [`Mode::reply_path`]), `None` for
/// the other modes.
fn prepare_nat_lab(t: &Topology, mode: Mode) -> Result<Option<NatLab>, String> {
    mode.reply_path()
        .map(|path| NatLab::set(t, path))
        .transpose()
        .map_err(|e| format!("preparing the lab for {}: {e}", mode.name()))
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
