//! From repetitions to rows: medians, and the figures that compare a row
//! with its HAProxy peer.

use crate::lb::{CpuSource, RunningLb};
use crate::{Cell, FILE_SIZE, MACHINE_SATURATED_PCT, Mode, Sample};

/// Busy share of `cpus` CPUs over `secs` seconds, in percent, from two
/// readings of [`crate::measure::machine_busy_ns`].
pub(crate) fn busy_pct(a: Option<u64>, b: Option<u64>, secs: f64, cpus: usize) -> Option<f64> {
    let (a, b) = (a?, b?);
    let capacity_ns = secs * 1e9 * cpus as f64;
    (b >= a && capacity_ns > 0.0).then(|| (b - a) as f64 / capacity_ns * 100.0)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
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

pub(crate) fn median_opt(v: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<Option<f64>> = v.collect();
    // A figure only if every repetition has one.
    let all: Option<Vec<f64>> = v.into_iter().collect();
    all.filter(|a| !a.is_empty()).map(median)
}

pub(crate) fn aggregate(
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
pub(crate) fn add_haproxy_ratios(cells: &mut [Cell]) {
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
pub(crate) fn rps_ceiling(haproxy: &Cell) -> Option<f64> {
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
pub(crate) fn cpu_ratio_needed(haproxy: &Cell, target: f64) -> Option<f64> {
    let (total, lb) = saturated_cpu(haproxy)?;
    Some(((total / target - (total - lb)) / lb).max(0.0))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::report::ceiling_cell;
    use crate::series_label;

    pub(crate) fn cell(mode: Mode, threads: Option<u16>, c: u32, rps: f64) -> Cell {
        cell_with(mode, threads, c, rps, 2.0, Some(10.0))
    }

    pub(crate) fn cell_with(
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
}
