//! What to run: the target URL, the stop conditions and the load shape.

use std::time::Duration;

use crate::BenchError;

// === Limits ===

/// Most concurrent workers (connections) one run may use. Each worker holds
/// at most one TCP connection, so this also bounds open sockets.
pub const MAX_CONCURRENCY: u32 = 10_000;

/// Longest run, in any mode. `-n` runs stop here too, so a run that never
/// reaches its count (for example against a server that stalls) still ends.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Most requests one run may be asked for with `-n`.
pub const MAX_REQUESTS: u64 = 1_000_000_000;

/// Highest `--rate`, in requests per second over all workers.
pub const MAX_RATE_PER_SEC: f64 = 10_000_000.0;

/// Longest per-request timeout.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Shortest per-request timeout; below this every request on a normal
/// network would time out and the run would measure nothing.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Default per-request timeout (`--timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;

// === BenchSpec ===

/// One benchmark run.
///
/// A run stops at whichever comes first: `requests` finished requests, the
/// end of `duration`, [`MAX_DURATION`], or the caller's cancel future. At
/// least one of `requests` and `duration` must be set.
#[derive(Debug, Clone)]
pub struct BenchSpec {
    /// Target, `http://host[:port][/path][?query]`. `https` is not supported.
    pub url: String,
    /// Number of concurrent workers; each has at most one connection and one
    /// request in flight. 1 ..= [`MAX_CONCURRENCY`].
    pub concurrency: u32,
    /// Stop after this many finished requests (responses plus transport
    /// errors), like `ab -n`.
    pub requests: Option<u64>,
    /// Stop after this long, like `wrk -d` or `ab -t`.
    pub duration: Option<Duration>,
    /// Open-loop mode: send at this many requests per second overall, on a
    /// fixed schedule. Latency is measured from each request's *scheduled*
    /// send time, so a stalled server shows up in the percentiles instead of
    /// slowing the client down (no coordinated omission, as in wrk2).
    /// `None` is closed loop: each worker sends its next request as soon as
    /// the previous one finished.
    pub rate: Option<f64>,
    /// Reuse each worker's connection for its next request. `false` opens a
    /// new TCP connection per request and sends `Connection: close` (ab's
    /// default).
    pub keep_alive: bool,
    /// Per-request timeout, covering connect (when the request needs a new
    /// connection), sending and reading the whole response body.
    pub timeout: Duration,
    /// Draw a progress bar on stderr. The bar is hidden anyway when stderr is
    /// not a terminal; callers should also pass `false` when stdout is not a
    /// terminal.
    pub progress: bool,
}

impl BenchSpec {
    /// A spec for `url` with ab's defaults: one worker, one request, a new
    /// connection per request, [`DEFAULT_TIMEOUT`], no progress bar.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            concurrency: 1,
            requests: Some(1),
            duration: None,
            rate: None,
            keep_alive: false,
            timeout: DEFAULT_TIMEOUT,
            progress: false,
        }
    }

    /// Checks every field against its limit.
    ///
    /// # Errors
    ///
    /// [`BenchError::Spec`] naming the offending setting.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |msg: String| Err(BenchError::Spec(msg));
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return bad(format!(
                "concurrency must be 1..={MAX_CONCURRENCY}, got {}",
                self.concurrency
            ));
        }
        if self.requests.is_none() && self.duration.is_none() {
            return bad("set a request count or a duration (or both)".to_owned());
        }
        if let Some(n) = self.requests
            && (n == 0 || n > MAX_REQUESTS)
        {
            return bad(format!("request count must be 1..={MAX_REQUESTS}, got {n}"));
        }
        if let Some(d) = self.duration
            && (d.is_zero() || d > MAX_DURATION)
        {
            return bad(format!(
                "duration must be more than 0 and at most {}s, got {d:?}",
                MAX_DURATION.as_secs()
            ));
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= MAX_RATE_PER_SEC)
        {
            return bad(format!(
                "rate must be more than 0 and at most {MAX_RATE_PER_SEC} requests/s, got {r}"
            ));
        }
        if self.timeout < MIN_TIMEOUT || self.timeout > MAX_TIMEOUT {
            return bad(format!(
                "timeout must be {MIN_TIMEOUT:?}..={MAX_TIMEOUT:?}, got {:?}",
                self.timeout
            ));
        }
        Ok(())
    }
}

// === Target ===

/// A parsed `http://` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address as written (IPv6 without brackets).
    pub host: String,
    /// TCP port (80 when the URL has none).
    pub port: u16,
    /// Value of the `Host` header: the URL's authority without user info.
    pub authority: String,
    /// Request target: path and query, `/` when the URL has no path.
    pub path_and_query: String,
}

/// Parses and checks a benchmark URL.
///
/// Only `http://` with a host is accepted; `https://` is refused with a
/// message saying TLS is not supported yet, and user info is refused because
/// the generator sends no credentials.
///
/// # Errors
///
/// [`BenchError::BadUrl`] saying what is wrong.
pub fn parse_url(url: &str) -> Result<Target, BenchError> {
    let bad = |reason: &str| BenchError::BadUrl {
        url: url.chars().take(200).collect(),
        reason: reason.to_owned(),
    };
    if url.len() > MAX_URL_BYTES {
        return Err(bad("URL too long"));
    }
    if !url.contains("://") {
        return Err(bad("missing scheme; write http://host[:port]/path"));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported yet (TLS is not implemented in sluice-bench); use http://",
            ));
        }
        Some(other) => {
            return Err(bad(&format!(
                "scheme {other:?} is not supported; use http://"
            )));
        }
        None => return Err(bad("missing scheme; write http://host[:port]/path")),
    }
    let Some(authority) = uri.authority() else {
        return Err(bad("missing host"));
    };
    if authority.as_str().contains('@') {
        return Err(bad("user info (user:password@) is not supported"));
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    // Look for the port after any bracketed IPv6 literal; `Authority::port`
    // silently returns `None` for a port that does not fit in u16.
    let auth = authority.as_str();
    let after_host = auth.rfind(']').map_or(auth, |i| &auth[i + 1..]);
    let port = match after_host.rfind(':') {
        None => 80,
        Some(i) => after_host[i + 1..]
            .parse::<u16>()
            .map_err(|_| bad("port must be a number 1..=65535"))?,
    };
    if port == 0 {
        return Err(bad("port 0 is not a valid destination"));
    }
    let path_and_query = uri
        .path_and_query()
        .map_or_else(|| "/".to_owned(), |pq| pq.as_str().to_owned());
    let path_and_query = if path_and_query.is_empty() {
        "/".to_owned()
    } else {
        path_and_query
    };
    Ok(Target {
        host: host.to_owned(),
        port,
        authority: authority.as_str().to_owned(),
        path_and_query,
    })
}

/// Parses a duration such as `10s`, `500ms`, `2m`, `1h` or a plain number of
/// seconds (`10`, `0.5`).
///
/// # Errors
///
/// [`BenchError::BadDuration`] for anything else, negative, or longer than
/// [`MAX_DURATION`].
pub fn parse_duration(input: &str) -> Result<Duration, BenchError> {
    let bad = |reason: &str| BenchError::BadDuration {
        input: input.chars().take(50).collect(),
        reason: reason.to_owned(),
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad("expected a number, e.g. 10s or 500ms"));
    }
    let value: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let secs_per_unit = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "us" => 0.000_001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(bad("unknown unit; use us, ms, s, m or h")),
    };
    let secs = value * secs_per_unit;
    if !secs.is_finite() || secs > MAX_DURATION.as_secs_f64() {
        return Err(bad(&format!(
            "longer than the limit of {}s",
            MAX_DURATION.as_secs()
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_http_urls() {
        let t = parse_url("http://127.0.0.1:8080/a/b?c=d").unwrap();
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 8080);
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/a/b?c=d");

        let t = parse_url("http://example.test").unwrap();
        assert_eq!((t.port, t.path_and_query.as_str()), (80, "/"));

        let t = parse_url("http://[::1]:81/").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("::1", 81));
        assert_eq!(t.authority, "[::1]:81");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for (url, needle) in [
            ("https://example.test/", "https is not supported"),
            ("ftp://example.test/", "not supported"),
            ("example.test/x", "scheme"),
            ("/just/a/path", "scheme"),
            ("http://", ""),
            ("http://:80/", "host"),
            ("http://h:99999/", ""),
            ("http://h:0/", "port 0"),
            ("http://u:p@h/", "user info"),
            ("", ""),
            ("not a url at all", ""),
        ] {
            let err = parse_url(url).unwrap_err();
            assert!(
                matches!(err, BenchError::BadUrl { .. }),
                "{url:?} gave {err:?}"
            );
            assert!(err.to_string().contains(needle), "{url:?}: {err}");
        }
        let long = format!("http://h/{}", "a".repeat(MAX_URL_BYTES));
        assert!(parse_url(&long).is_err());
    }

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        for bad in ["", "s", "-1s", "10x", "1.2.3s", "25h", "1e999"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn validate_enforces_limits() {
        let ok = BenchSpec::new("http://h/");
        ok.validate().unwrap();
        let cases: Vec<(&str, BenchSpec)> = vec![
            (
                "concurrency",
                BenchSpec {
                    concurrency: 0,
                    ..ok.clone()
                },
            ),
            (
                "concurrency",
                BenchSpec {
                    concurrency: MAX_CONCURRENCY + 1,
                    ..ok.clone()
                },
            ),
            (
                "request count or a duration",
                BenchSpec {
                    requests: None,
                    ..ok.clone()
                },
            ),
            (
                "request count",
                BenchSpec {
                    requests: Some(0),
                    ..ok.clone()
                },
            ),
            (
                "duration",
                BenchSpec {
                    duration: Some(Duration::ZERO),
                    ..ok.clone()
                },
            ),
            (
                "rate",
                BenchSpec {
                    rate: Some(0.0),
                    ..ok.clone()
                },
            ),
            (
                "rate",
                BenchSpec {
                    rate: Some(f64::NAN),
                    ..ok.clone()
                },
            ),
            (
                "timeout",
                BenchSpec {
                    timeout: Duration::ZERO,
                    ..ok.clone()
                },
            ),
        ];
        for (needle, spec) in cases {
            let err = spec.validate().unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }
}
