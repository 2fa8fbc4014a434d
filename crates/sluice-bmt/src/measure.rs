//! What the benchmark reads around each run: process CPU time, system-wide
//! softirq time, and the run time of a BPF program.

use std::os::fd::OwnedFd;

/// Linux's `USER_HZ`: `/proc/PID/stat` and `/proc/stat` count CPU time in
/// 1/100 s on every Linux ABI, whatever the kernel's internal HZ.
const USER_HZ: u64 = 100;

/// Nanoseconds per `USER_HZ` tick.
const NS_PER_TICK: u64 = 1_000_000_000 / USER_HZ;

/// utime + stime of the whole process (all its threads), in nanoseconds
/// (resolution 10 ms). `None` once the process is gone.
pub(crate) fn process_cpu_ns(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_cpu_ticks(&text).map(|t| t.saturating_mul(NS_PER_TICK))
}

/// utime + stime (fields 14 and 15) from `/proc/PID/stat`. The command name
/// may contain spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat_cpu_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    // After ')' the first field is field 3 (state); utime is field 14.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Softirq time summed over all CPUs since boot (`/proc/stat`), in
/// nanoseconds. System-wide: it includes the client's and the reals' packet
/// processing, so it bounds the LB's kernel-side cost from above.
pub(crate) fn softirq_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_softirq_ticks(&text).map(|t| t.saturating_mul(NS_PER_TICK))
}

/// The first eight values of `/proc/stat`'s aggregate `cpu` line, in ticks:
/// user nice system idle iowait irq softirq steal.
fn aggregate_cpu_ticks(text: &str) -> Option<[u64; 8]> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let mut v = [0u64; 8];
    let mut fields = line.split_whitespace().skip(1);
    for slot in &mut v {
        *slot = fields.next()?.parse().ok()?;
    }
    Some(v)
}

/// The softirq value of the aggregate `cpu` line.
fn parse_softirq_ticks(text: &str) -> Option<u64> {
    aggregate_cpu_ticks(text).map(|v| v[6])
}

/// Busy CPU time summed over all CPUs since boot (`/proc/stat`), in
/// nanoseconds: everything but idle and iowait. System-wide, so it covers
/// the client, the reals, the LB and the kernel work between them.
pub(crate) fn machine_busy_ns() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_busy_ticks(&text).map(|t| t.saturating_mul(NS_PER_TICK))
}

/// user + nice + system + irq + softirq + steal of the aggregate `cpu`
/// line (values 1, 2, 3, 6, 7, 8). Guest time is already inside user.
fn parse_busy_ticks(text: &str) -> Option<u64> {
    let [user, nice, system, _idle, _iowait, irq, softirq, steal] = aggregate_cpu_ticks(text)?;
    Some(user + nice + system + irq + softirq + steal)
}

/// Kernel BPF run-time statistics, on while this value lives
/// (`BPF_ENABLE_STATS`). Closing the descriptor, also when the process
/// dies, turns them off again, so the global `kernel.bpf_stats_enabled`
/// never stays changed behind us.
#[derive(Debug)]
pub(crate) struct BpfStats {
    _fd: OwnedFd,
}

impl BpfStats {
    /// Turns BPF run-time statistics on.
    pub(crate) fn enable() -> Result<Self, String> {
        aya::sys::enable_stats(aya::sys::Stats::RunTime)
            .map(|fd| Self { _fd: fd })
            .map_err(|e| format!("BPF_ENABLE_STATS failed: {e}"))
    }
}

/// Cumulative run time (ns) and run count of the BPF program `id`, if it is
/// loaded. Both stay 0 while statistics are off.
pub(crate) fn prog_run_time(id: u32) -> Option<(u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .map(|p| {
            let ns = u64::try_from(p.run_time().as_nanos()).unwrap_or(u64::MAX);
            (ns, p.run_count())
        })
}

/// The id of the XDP program attached to the interface described by `ip -j
/// -d link show dev IFACE`: the `xdp.prog.id` or `xdp.attached[].prog.id`
/// field.
pub(crate) fn xdp_prog_id(ip_json: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(ip_json).ok()?;
    let xdp = v.get(0)?.get("xdp")?;
    let id = xdp.get("prog").and_then(|p| p.get("id")).or_else(|| {
        xdp.get("attached")?
            .as_array()?
            .iter()
            .find_map(|a| a.get("prog")?.get("id"))
    })?;
    u32::try_from(id.as_u64()?).ok()
}

/// Logical CPUs, for the report.
pub(crate) fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// `uname -r`, for the report.
pub(crate) fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_fields_are_utime_plus_stime() {
        let line = "42 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 30 13 14 15 16 17 18 987654";
        assert_eq!(parse_stat_cpu_ticks(line), Some(280));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        // Our own process has a readable, monotonic CPU time.
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(process_cpu_ns(me).is_some());
    }

    #[test]
    fn softirq_is_the_seventh_value() {
        let text = "cpu  10 20 30 40 50 60 777 80 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_softirq_ticks(text), Some(777));
        assert!(softirq_ns().is_some());
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        let text = "cpu  10 20 30 40000 50 60 70 80 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_busy_ticks(text), Some(10 + 20 + 30 + 60 + 70 + 80));
        assert_eq!(parse_busy_ticks("cpu  1 2 3\n"), None);
        assert_eq!(parse_busy_ticks("cpu  1 2 x 4 5 6 7 8\n"), None);
        assert_eq!(parse_busy_ticks("intr 5\n"), None);
        assert!(machine_busy_ns().is_some());
    }

    #[test]
    fn xdp_prog_id_is_found_in_both_layouts() {
        let a = r#"[{"ifname":"lb0","xdp":{"mode":1,"prog":{"id":57,"name":"sluice_xdp"}}}]"#;
        assert_eq!(xdp_prog_id(a), Some(57));
        let b = r#"[{"ifname":"lb0","xdp":{"mode":4,"attached":[{"mode":1,"prog":{"id":9}}]}}]"#;
        assert_eq!(xdp_prog_id(b), Some(9));
        assert_eq!(xdp_prog_id(r#"[{"ifname":"lb0"}]"#), None);
        assert_eq!(xdp_prog_id("not json"), None);
    }
}
