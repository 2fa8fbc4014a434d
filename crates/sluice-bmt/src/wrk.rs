//! The `wrk` cross-check: one real `wrk` run (keep-alive, two threads, like
//! the platform baselines) from the client namespace, and the parsing of its
//! `--latency` report.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_lab::{Lab, Node};

/// wrk threads, as in the baselines (`wrk -t2`).
const WRK_THREADS: &str = "2";

/// wrk's per-request timeout in seconds (its default, 2 s, counts slow
/// responses of a saturated box as errors; the benchmark's own client uses 5 s).
const WRK_TIMEOUT_SECS: u64 = 5;

/// Extra seconds `timeout(1)` grants wrk beyond its `-d` before killing it
/// (start-up, connection teardown, report).
const WRK_GRACE_SECS: u64 = 10;

/// What one wrk run reported.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WrkReport {
    /// Requests completed ("N requests in ...").
    pub(crate) requests: u64,
    /// "Requests/sec:".
    pub(crate) requests_per_sec: f64,
    /// The 50% line of the latency distribution, in ms.
    pub(crate) p50_ms: f64,
    /// The 99% line of the latency distribution, in ms.
    pub(crate) p99_ms: f64,
    /// Socket errors (connect, read, write, timeout) plus non-2xx/3xx
    /// responses.
    pub(crate) errors: u64,
}

/// Runs `wrk -t2 -c<concurrency> -d<secs>s --latency` against `target` in
/// the client namespace. `Err` is why there is no report.
pub(crate) fn run(
    lab: &Lab,
    target: SocketAddr,
    concurrency: u32,
    secs: u64,
) -> Result<WrkReport, String> {
    let c = concurrency.to_string();
    let d = format!("{secs}s");
    let kill_after = (secs + WRK_GRACE_SECS).to_string();
    let to = format!("{WRK_TIMEOUT_SECS}s");
    let url = format!("http://{target}/");
    let out = lab
        .exec(
            Node::Client,
            &[
                "timeout",
                &kill_after,
                "wrk",
                "-t",
                WRK_THREADS,
                "-c",
                &c,
                "-d",
                &d,
                "--timeout",
                &to,
                "--latency",
                &url,
            ],
        )
        .map_err(|e| format!("starting wrk: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse(&stdout).ok_or_else(|| format!("unreadable wrk report: {}", stdout.trim()))
}

/// wrk's `-d` for a duration `d`: whole seconds, at least one.
pub(crate) fn whole_secs(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Parses a `wrk --latency` report. `None` when a figure is missing.
pub(crate) fn parse(report: &str) -> Option<WrkReport> {
    let mut requests = None;
    let mut rps = None;
    let mut p50 = None;
    let mut p99 = None;
    let mut errors = 0;
    for line in report.lines().map(str::trim) {
        if line.contains(" requests in ") {
            requests = line.split_whitespace().next()?.parse().ok();
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("50%") {
            p50 = latency_ms(v.trim());
        } else if let Some(v) = line.strip_prefix("99%") {
            p99 = latency_ms(v.trim());
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "Socket errors: connect 0, read 3, write 0, timeout 1"
            for part in rest.split(',') {
                errors += part
                    .split_whitespace()
                    .last()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
            }
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            errors += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Some(WrkReport {
        requests: requests?,
        requests_per_sec: rps?,
        p50_ms: p50?,
        p99_ms: p99?,
        errors,
    })
}

/// wrk's latency figure (`812.00us`, `3.61ms`, `1.02s`, `2.00m`) in ms.
fn latency_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60_000.0)
    } else {
        return None;
    };
    num.trim().parse::<f64>().ok().map(|x| x * scale)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://10.99.0.1:80/
  2 threads and 100 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.81ms    2.10ms  41.20ms   88.00%
    Req/Sec    13.20k     1.10k   15.00k    70.00%
  Latency Distribution
     50%    3.61ms
     75%    4.20ms
     90%    5.90ms
     99%    1.02s
  262842 requests in 10.00s, 1.36GB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 2
Requests/sec:  26270.45
Transfer/sec:    139.00MB
";

    #[test]
    fn a_latency_report_is_parsed() {
        let r = parse(REPORT).unwrap();
        assert_eq!(r.requests, 262_842);
        assert!((r.requests_per_sec - 26_270.45).abs() < 1e-9);
        assert!((r.p50_ms - 3.61).abs() < 1e-9);
        assert!((r.p99_ms - 1020.0).abs() < 1e-9);
        assert_eq!(r.errors, 6);
    }

    #[test]
    fn missing_figures_give_no_report() {
        // Without --latency there is no distribution.
        let no_dist: String = REPORT
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(parse(&no_dist), None);
        assert_eq!(parse(""), None);
        assert_eq!(latency_ms("812.00us"), Some(0.812));
        assert_eq!(latency_ms("2.00m"), Some(120_000.0));
        assert_eq!(latency_ms("12"), None);
        assert_eq!(whole_secs(Duration::from_millis(300)), 1);
        assert_eq!(whole_secs(Duration::from_secs(8)), 8);
    }
}
