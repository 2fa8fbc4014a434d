//! The result of a run: counts, rates, latency percentiles and errors.
//!
//! [`Report`] serializes (with `serde`) to the JSON object that
//! `sluice bench --json` prints. Field names are stable; new fields may be
//! added, existing ones are not renamed or removed without bumping
//! [`REPORT_VERSION`].
//!
//! Example (`sluice bench --json`, one line, wrapped here):
//!
//! ```text
//! {"version":1,"url":"http://127.0.0.1:8080/file5k","peer":"127.0.0.1:8080",
//!  "concurrency":4,"keep_alive":true,"rate":null,"interrupted":false,
//!  "requests":932,"responses":932,"ok":932,"connections":4,
//!  "duration_secs":1.0,"requests_per_sec":932.0,"bytes_read":4960104,
//!  "body_bytes":4771840,"transfer_mb_per_sec":4.960104,
//!  "latency_us":{"count":932,"min":699,"mean":4284.06,"p50":3075,"p90":8775,
//!                "p99":13095,"p999":18559,"max":18559},
//!  "errors":{"connect":0,"timeout":0,"io":0,"status_3xx":0,"status_4xx":0,
//!            "status_5xx":0,"status_other":0,"first":null}}
//! ```

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Version of the JSON layout of [`Report`] (`"version"` in the JSON).
pub const REPORT_VERSION: u32 = 1;

/// Longest error message kept in [`Errors::first`], in bytes.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 512;

/// Outcome of one benchmark run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// JSON layout version, [`REPORT_VERSION`].
    pub version: u32,
    /// Target URL as given.
    pub url: String,
    /// Socket address the host resolved to (all requests go there).
    pub peer: String,
    /// Number of workers (concurrent connections / requests in flight).
    pub concurrency: u32,
    /// Whether connections were reused (`false`: one connection per request).
    pub keep_alive: bool,
    /// Target rate in requests/s for open-loop runs, `null` for closed loop.
    pub rate: Option<f64>,
    /// `true` when the caller cancelled the run (Ctrl-C): the numbers cover
    /// only the part that ran.
    pub interrupted: bool,
    /// Finished requests: `responses` plus transport errors (connect,
    /// timeout, io). With `-n N` and no interruption this is exactly `N`.
    /// Requests still in flight when a duration ends are not counted.
    pub requests: u64,
    /// Requests that got a complete response, whatever the status.
    pub responses: u64,
    /// Responses with a 2xx status.
    pub ok: u64,
    /// TCP connections opened successfully.
    pub connections: u64,
    /// Wall time of the run in seconds.
    pub duration_secs: f64,
    /// `responses / duration_secs` (completed responses per second).
    pub requests_per_sec: f64,
    /// Bytes read from the sockets: status lines, headers, bodies and any
    /// chunked framing.
    pub bytes_read: u64,
    /// Response body bytes (decoded length of the bodies).
    pub body_bytes: u64,
    /// `bytes_read / duration_secs / 1e6` (MB = 10^6 bytes, headers included).
    pub transfer_mb_per_sec: f64,
    /// Latency of completed responses, in microseconds.
    pub latency_us: Latency,
    /// Failures by kind.
    pub errors: Errors,
}

/// Latency distribution in microseconds, from an HDR histogram with three
/// significant digits. Each latency runs from the request's start (closed
/// loop) or its scheduled send time (`--rate`) until the last body byte; it
/// includes connecting when the request opened a connection. All zero when
/// there were no responses.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of samples (equals [`Report::responses`]).
    pub count: u64,
    /// Smallest.
    pub min: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

/// Failures by kind. `connect`, `timeout` and `io` are transport errors (no
/// response); the `status_*` fields count responses that arrived with a
/// non-2xx status (they are also counted in [`Report::responses`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Errors {
    /// Opening the TCP connection failed (refused, unreachable, or it did not
    /// complete within the request timeout).
    pub connect: u64,
    /// Connected, but the response did not complete within the timeout.
    pub timeout: u64,
    /// The connection was reset or closed early, or the response was not
    /// valid HTTP/1.1.
    pub io: u64,
    /// Responses with a 3xx status.
    pub status_3xx: u64,
    /// Responses with a 4xx status.
    pub status_4xx: u64,
    /// Responses with a 5xx status.
    pub status_5xx: u64,
    /// Responses with any other non-2xx status (for example 1xx or 6xx+).
    pub status_other: u64,
    /// The first transport error's message, `null` when there was none.
    pub first: Option<String>,
}

// === impl Latency ===

impl Latency {
    pub(crate) fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min: h.min(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

// === impl Errors ===

impl Errors {
    /// Transport errors: `connect + timeout + io`.
    pub fn transport(&self) -> u64 {
        self.connect + self.timeout + self.io
    }

    /// Responses with a non-2xx status.
    pub fn non_2xx(&self) -> u64 {
        self.status_3xx + self.status_4xx + self.status_5xx + self.status_other
    }

    /// Adds `other`'s counts; keeps `self.first` when set.
    pub(crate) fn merge(&mut self, other: Errors) {
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.status_3xx += other.status_3xx;
        self.status_4xx += other.status_4xx;
        self.status_5xx += other.status_5xx;
        self.status_other += other.status_other;
        if self.first.is_none() {
            self.first = other.first;
        }
    }

    /// Counts a response status that is not 2xx.
    pub(crate) fn count_status(&mut self, status: u16) {
        match status / 100 {
            3 => self.status_3xx += 1,
            4 => self.status_4xx += 1,
            5 => self.status_5xx += 1,
            _ => self.status_other += 1,
        }
    }

    /// Remembers `message` if it is the first transport error.
    pub(crate) fn note_first(&mut self, message: &str) {
        if self.first.is_none() {
            let mut end = message.len().min(MAX_ERROR_MESSAGE_BYTES);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            self.first = Some(message[..end].to_owned());
        }
    }
}

// === impl Report ===

impl Report {
    /// Human-readable report, several aligned lines, ending in a newline.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        // Writing to a String cannot fail; the results are ignored.
        let mode = match self.rate {
            Some(r) => format!("open loop at {r} req/s"),
            None => "closed loop".to_owned(),
        };
        let conns = if self.keep_alive {
            "keep-alive"
        } else {
            "new connection per request"
        };
        let _ = writeln!(s, "Target:         {} ({})", self.url, self.peer);
        let _ = writeln!(
            s,
            "Mode:           {mode}, {} workers, {conns}",
            self.concurrency
        );
        if self.interrupted {
            let _ = writeln!(s, "Interrupted:    yes (partial report)");
        }
        let _ = writeln!(
            s,
            "Requests:       {} finished, {} responses, {} 2xx",
            self.requests, self.responses, self.ok
        );
        let _ = writeln!(s, "Duration:       {:.3} s", self.duration_secs);
        let _ = writeln!(s, "Requests/sec:   {:.2}", self.requests_per_sec);
        let _ = writeln!(
            s,
            "Transfer:       {:.3} MB/s ({} bytes read incl. headers, {} body bytes)",
            self.transfer_mb_per_sec, self.bytes_read, self.body_bytes
        );
        let _ = writeln!(s, "Connections:    {} opened", self.connections);
        let l = &self.latency_us;
        let _ = writeln!(
            s,
            "Latency (us):   p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (min {}, mean {:.1})",
            l.p50, l.p90, l.p99, l.p999, l.max, l.min, l.mean
        );
        let e = &self.errors;
        let _ = writeln!(
            s,
            "Errors:         connect {}, timeout {}, io {}",
            e.connect, e.timeout, e.io
        );
        let _ = writeln!(
            s,
            "Non-2xx:        3xx {}, 4xx {}, 5xx {}, other {}",
            e.status_3xx, e.status_4xx, e.status_5xx, e.status_other
        );
        if let Some(first) = &e.first {
            let _ = writeln!(s, "First error:    {first}");
        }
        s
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn latency_from_histogram_is_ordered() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=10_000u64 {
            h.record(v).unwrap();
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 10_000);
        assert_eq!(l.min, 1);
        assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        // Three significant digits: within 0.1 % of the exact quantile.
        assert!((4995..=5005).contains(&l.p50), "{}", l.p50);
        assert!((9890..=9910).contains(&l.p99), "{}", l.p99);
        assert_eq!(
            Latency::from_histogram(&Histogram::new(3).unwrap()),
            Latency::default()
        );
    }

    #[test]
    fn errors_classify_and_merge() {
        let mut a = Errors::default();
        for s in [301, 404, 404, 500, 503, 599, 600, 101] {
            a.count_status(s);
        }
        assert_eq!(
            (a.status_3xx, a.status_4xx, a.status_5xx, a.status_other),
            (1, 2, 3, 2)
        );
        a.note_first("first");
        a.note_first("second");
        let mut b = Errors {
            connect: 2,
            first: Some("b".into()),
            ..Errors::default()
        };
        b.merge(a.clone());
        assert_eq!(b.first.as_deref(), Some("b"));
        assert_eq!(b.non_2xx(), 8);
        assert_eq!(b.transport(), 2);
        let mut c = Errors::default();
        c.merge(a);
        assert_eq!(c.first.as_deref(), Some("first"));
    }

    #[test]
    fn first_error_is_truncated_on_a_char_boundary() {
        let mut e = Errors::default();
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        e.note_first(&long);
        let kept = e.first.unwrap();
        assert!(kept.len() <= MAX_ERROR_MESSAGE_BYTES && !kept.is_empty());
    }
}
