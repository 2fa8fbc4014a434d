//! HTTP/1.1 load generator with HDR latency percentiles (ab- and wrk-style).
//!
//! [`run`] drives `concurrency` workers against one `http://` URL and
//! returns a [`Report`]. Three load shapes:
//!
//! - **ab-style** (`requests` set, `keep_alive: false`): every request opens a
//!   new TCP connection and sends `Connection: close`, until exactly
//!   `requests` requests have finished.
//! - **wrk-style** (`duration` set, `keep_alive: true`): each worker reuses
//!   its connection for request after request until the duration ends.
//! - **open loop** (`rate` set): requests go out on a fixed schedule of
//!   `rate` per second over all workers, and latency counts from the
//!   scheduled send time (no coordinated omission, as in wrk2).
//!
//! Requests are `GET` with `Host` and `User-Agent: sluice-bench`.
//!
//! # Contracts
//!
//! - Never panics on anything the network or the user supplies: bad URLs and
//!   settings are [`BenchError`]s; failed requests are counted by kind in
//!   [`Errors`] (connect, timeout, io, non-2xx by status class).
//! - Everything is bounded: concurrency ([`MAX_CONCURRENCY`]), run time
//!   ([`MAX_DURATION`], also for `requests` runs), request count
//!   ([`MAX_REQUESTS`]), rate ([`MAX_RATE_PER_SEC`]), each request's time
//!   ([`BenchSpec::timeout`]).
//! - Every task and connection the run started is gone when [`run`] returns
//!   or its future is dropped.
//! - Memory: each worker keeps its own auto-resizing HDR histogram (3
//!   significant digits; about 16 KiB, plus 8 KiB for each doubling of the
//!   largest latency beyond about 2 ms, so roughly 100 KiB at 1 s), merged
//!   once at the end; nothing on the request path takes a lock.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), sluice_bench::BenchError> {
//! use std::time::Duration;
//! let spec = sluice_bench::BenchSpec {
//!     concurrency: 8,
//!     requests: None,
//!     duration: Some(Duration::from_secs(10)),
//!     keep_alive: true,
//!     ..sluice_bench::BenchSpec::new("http://127.0.0.1:8080/")
//! };
//! let report = sluice_bench::run(spec, std::future::pending()).await?;
//! print!("{}", report.to_text());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use http::header::HeaderValue;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

mod report;
mod spec;
mod worker;

pub use report::{Errors, Latency, MAX_ERROR_MESSAGE_BYTES, REPORT_VERSION, Report};
pub use spec::{
    BenchSpec, DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_DURATION, MAX_RATE_PER_SEC, MAX_REQUESTS,
    MAX_TIMEOUT, MAX_URL_BYTES, MIN_TIMEOUT, Target, parse_duration, parse_url,
};

use worker::{HISTOGRAM_SIGFIG, Shared, WorkerStats};

/// How often the progress bar is redrawn.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

/// Why a run could not start or finish. Failed *requests* are not errors:
/// they are counted in [`Report::errors`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// The URL is not a usable `http://` URL.
    #[error("invalid URL {url:?}: {reason}")]
    BadUrl {
        /// The URL (first 200 characters).
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A duration string could not be parsed.
    #[error("invalid duration {input:?}: {reason}")]
    BadDuration {
        /// The input (first 50 characters).
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range or the settings contradict each other.
    #[error("invalid benchmark settings: {0}")]
    Spec(String),
    /// The host name did not resolve (or resolution timed out).
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// Host name from the URL.
        host: String,
        /// Resolver error.
        reason: String,
    },
    /// A bug: a worker task failed or histograms could not be merged.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The tokio runtime to [`run`] on with `threads` client threads: for one
/// thread a current-thread runtime, so the workers run on the calling
/// thread with no hand-offs to and wake-ups of a separate worker thread
/// (ab mode is client-bound, and that overhead showed in its req/s); a
/// multi-thread runtime otherwise.
///
/// # Errors
///
/// The OS refused the runtime's threads or its I/O driver.
pub fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
    }
}

/// Runs the benchmark described by `spec` until it completes, or until
/// `cancel` resolves (then the report covers what ran and has
/// [`Report::interrupted`] set).
///
/// Must be awaited inside a tokio runtime (workers are spawned with
/// `tokio::spawn`; with a multi-thread runtime they spread over its threads).
/// Name resolution happens once, before the clock starts; every request goes
/// to the first address found.
///
/// # Errors
///
/// [`BenchError`] when the spec or URL is invalid or the host does not
/// resolve. An unreachable target is *not* an error: the report counts the
/// connect failures and keeps the first message.
pub async fn run(spec: BenchSpec, cancel: impl Future<Output = ()>) -> Result<Report, BenchError> {
    spec.validate()?;
    let target = parse_url(&spec.url)?;
    let peer = resolve(&target, spec.timeout).await?;
    let host_header = HeaderValue::from_str(&target.authority).map_err(|e| BenchError::BadUrl {
        url: spec.url.clone(),
        reason: format!("host is not a valid header value: {e}"),
    })?;
    let path: http::Uri = target
        .path_and_query
        .parse()
        .map_err(|e: http::uri::InvalidUri| BenchError::BadUrl {
            url: spec.url.clone(),
            reason: e.to_string(),
        })?;
    let empty_histogram = Histogram::<u64>::new(HISTOGRAM_SIGFIG)
        .map_err(|e| BenchError::Internal(format!("histogram: {e:?}")))?;

    let start = Instant::now();
    let run_time = spec.duration.unwrap_or(MAX_DURATION).min(MAX_DURATION);
    let deadline = start + run_time;
    let bar = progress_bar(&spec);
    let shared = Arc::new(Shared {
        peer,
        host_header,
        path,
        keep_alive: spec.keep_alive,
        timeout: spec.timeout,
        rate: spec.rate,
        max_tickets: spec.requests.unwrap_or(u64::MAX),
        start,
        deadline,
        next_ticket: AtomicU64::new(0),
        finished: AtomicU64::new(0),
        count_progress: bar.is_some(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    // A JoinSet aborts its tasks when dropped, so dropping this future
    // (the caller gave up) also stops every worker.
    let mut workers = JoinSet::new();
    for _ in 0..spec.concurrency {
        workers.spawn(worker::run_worker(
            Arc::clone(&shared),
            stop_rx.clone(),
            empty_histogram.clone(),
        ));
    }
    drop(stop_rx);

    let mut stats: Vec<WorkerStats> = Vec::with_capacity(workers.len());
    let mut stopped_at: Option<Instant> = None;
    let mut interrupted = false;
    let sleep = tokio::time::sleep_until(deadline);
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    tokio::pin!(cancel, sleep);
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(Ok(s)) => stats.push(s),
                Some(Err(e)) => {
                    return Err(BenchError::Internal(format!("worker task failed: {e}")));
                }
            },
            () = &mut sleep, if stopped_at.is_none() => {
                stopped_at = Some(deadline);
                stop_tx.send_replace(true);
            }
            () = &mut cancel, if stopped_at.is_none() => {
                interrupted = true;
                stopped_at = Some(Instant::now());
                stop_tx.send_replace(true);
            }
            _ = ticker.tick(), if bar.is_some() => {
                if let Some(bar) = &bar {
                    update_bar(bar, &spec, &shared, start);
                }
            }
        }
    }
    let elapsed = stopped_at.unwrap_or_else(Instant::now) - start;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    build_report(&spec, peer, stats, elapsed, interrupted)
}

/// Resolves the target once; the first address wins.
async fn resolve(target: &Target, timeout: Duration) -> Result<SocketAddr, BenchError> {
    let err = |reason: String| BenchError::Resolve {
        host: target.host.clone(),
        reason,
    };
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let mut addrs = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| err(format!("no answer within {timeout:?}")))?
        .map_err(|e| err(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| err("no addresses found".to_owned()))
}

fn progress_bar(spec: &BenchSpec) -> Option<ProgressBar> {
    if !spec.progress {
        return None;
    }
    let (len, template) = match spec.requests {
        Some(n) => (n, "{bar:40} {pos}/{len} requests  {elapsed_precise}"),
        None => (0, "{bar:40} {msg}"),
    };
    let len = match spec.duration {
        // Duration runs count in milliseconds of the run.
        Some(d) if spec.requests.is_none() => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        _ => len,
    };
    let style = ProgressStyle::with_template(template).ok()?;
    // stderr keeps stdout clean for the report; indicatif draws nothing when
    // stderr is not a terminal.
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(style);
    Some(bar)
}

fn update_bar(bar: &ProgressBar, spec: &BenchSpec, shared: &Shared, start: Instant) {
    let finished = shared.finished.load(Ordering::Relaxed);
    if spec.requests.is_some() {
        bar.set_position(finished);
    } else {
        let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
        bar.set_position(ms);
        bar.set_message(format!("{:.1}s, {finished} requests", ms as f64 / 1000.0));
    }
}

fn build_report(
    spec: &BenchSpec,
    peer: SocketAddr,
    stats: Vec<WorkerStats>,
    elapsed: Duration,
    interrupted: bool,
) -> Result<Report, BenchError> {
    let mut histogram = Histogram::<u64>::new(HISTOGRAM_SIGFIG)
        .map_err(|e| BenchError::Internal(format!("histogram: {e:?}")))?;
    let mut errors = Errors::default();
    let (mut responses, mut ok, mut connections, mut body_bytes, mut bytes_read) = (0, 0, 0, 0, 0);
    for s in stats {
        histogram
            .add(&s.histogram)
            .map_err(|e| BenchError::Internal(format!("merging histograms: {e:?}")))?;
        responses += s.responses;
        ok += s.ok;
        connections += s.connections;
        body_bytes += s.body_bytes;
        bytes_read += s.bytes_read.load(Ordering::Relaxed);
        errors.merge(s.errors);
    }
    let secs = elapsed.as_secs_f64();
    let per_sec = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    Ok(Report {
        version: REPORT_VERSION,
        url: spec.url.clone(),
        peer: peer.to_string(),
        concurrency: spec.concurrency,
        keep_alive: spec.keep_alive,
        rate: spec.rate,
        interrupted,
        requests: responses + errors.transport(),
        responses,
        ok,
        connections,
        duration_secs: secs,
        requests_per_sec: per_sec(responses as f64),
        bytes_read,
        body_bytes,
        transfer_mb_per_sec: per_sec(bytes_read as f64) / 1e6,
        latency_us: Latency::from_histogram(&histogram),
        errors,
    })
}
