//! `sluice bench URL`: the HTTP/1.1 load generator of `sluice-bench` on the
//! command line, with ab- and wrk-style options.
//!
//! Exit codes: 0 when at least one response was 2xx; 1 when none was (an
//! unreachable target, every request failing or non-2xx); 2 for bad
//! arguments or a run that could not start (bad URL, unresolvable host);
//! 130 after Ctrl-C (the partial report is printed first).

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use sluice_bench::{BenchSpec, parse_duration};

/// Most tokio worker threads `--threads` accepts.
const MAX_THREADS: usize = 1024;

/// Default `-c` in wrk-style duration mode (wrk's default).
const DEFAULT_DURATION_MODE_CONNECTIONS: u32 = 10;

/// How long to wait at exit for runtime threads still blocked (for example
/// in a name lookup that timed out) before leaving them behind.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// Exit code after Ctrl-C (128 + SIGINT), as shells report it.
const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `sluice bench`.
///
/// ab-style by default (`-n`, `-c`, `-k`, `-t`: a new connection per request
/// unless `-k`); giving `-d` switches to wrk-style (keep-alive unless
/// `--no-keepalive`, 10 connections unless `-c`). `--rate` makes either an
/// open-loop run at a fixed rate.
#[derive(Debug, clap::Args)]
#[command(after_help = "Exit status: 0 if any response was 2xx, 1 if none was, \
                        2 on bad arguments, 130 after Ctrl-C.\n\
                        --json prints one JSON object; its fields are documented \
                        on sluice_bench::Report.")]
pub(crate) struct Args {
    /// Target URL: http://host[:port]/path (https is not supported yet).
    pub(crate) url: String,

    /// Total requests to finish (ab -n). Defaults to 1 when neither -t nor
    /// -d is given.
    #[arg(short = 'n', long = "requests")]
    pub(crate) requests: Option<u64>,

    /// Concurrent connections / requests in flight (ab -c, wrk -c). Default
    /// 1, or 10 with -d.
    #[arg(short = 'c', long = "concurrency")]
    pub(crate) concurrency: Option<u32>,

    /// Reuse connections (ab -k). Without it, ab mode opens a new TCP
    /// connection per request.
    #[arg(short = 'k', long = "keepalive", conflicts_with = "no_keepalive")]
    pub(crate) keepalive: bool,

    /// Time limit (ab -t): seconds, or a duration such as 30s or 2m.
    #[arg(short = 't', long = "timelimit", value_parser = parse_cli_duration, conflicts_with = "duration")]
    pub(crate) timelimit: Option<Duration>,

    /// wrk-style run of this length, e.g. 10s, 500ms, 2m (keep-alive by
    /// default).
    #[arg(short = 'd', long = "duration", value_parser = parse_cli_duration)]
    pub(crate) duration: Option<Duration>,

    /// Open a new connection per request in -d mode too.
    #[arg(long = "no-keepalive")]
    pub(crate) no_keepalive: bool,

    /// Open loop: send this many requests per second overall on a fixed
    /// schedule; latency counts from each scheduled send time (like wrk2).
    #[arg(short = 'R', long = "rate")]
    pub(crate) rate: Option<f64>,

    /// Tokio worker threads (default: the number of CPUs).
    #[arg(long = "threads")]
    pub(crate) threads: Option<usize>,

    /// Per-request timeout, connect included (e.g. 5s, 500ms).
    #[arg(long = "timeout", value_parser = parse_cli_duration, default_value = "5s")]
    pub(crate) timeout: Duration,

    /// Print one JSON object instead of the text report.
    #[arg(long = "json")]
    pub(crate) json: bool,
}

fn parse_cli_duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

impl Args {
    /// Turns the ab/wrk-style flags into a library spec.
    fn to_spec(&self) -> BenchSpec {
        let duration_mode = self.duration.is_some();
        let keep_alive = if duration_mode {
            !self.no_keepalive
        } else {
            self.keepalive
        };
        let duration = self.duration.or(self.timelimit);
        let requests = match (self.requests, duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            // ab's default: one request.
            (None, None) => Some(1),
        };
        let default_concurrency = if duration_mode {
            DEFAULT_DURATION_MODE_CONNECTIONS
        } else {
            1
        };
        BenchSpec {
            url: self.url.clone(),
            concurrency: self.concurrency.unwrap_or(default_concurrency),
            requests,
            duration,
            rate: self.rate,
            keep_alive,
            timeout: self.timeout,
            // The bar goes to stderr; keep it away from redirected or JSON
            // output.
            progress: !self.json && std::io::stdout().is_terminal(),
        }
    }
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = args.to_spec();
    // Fail on bad settings before starting any threads.
    spec.validate()?;
    sluice_bench::parse_url(&spec.url)?;
    let threads = match args.threads {
        Some(t) if (1..=MAX_THREADS).contains(&t) => t,
        Some(t) => anyhow::bail!("--threads must be 1..={MAX_THREADS}, got {t}"),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let runtime = sluice_bench::runtime(threads).context("starting the tokio runtime")?;
    let result = runtime.block_on(sluice_bench::run(spec, ctrl_c()));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    let report = result?;

    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(if report.interrupted {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if report.ok == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Resolves on the first Ctrl-C. If the handler cannot be installed the run
/// simply cannot be interrupted early (it still ends at -n/-d and the
/// limits); it must not count as an immediate interruption.
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn spec(argv: &[&str]) -> BenchSpec {
        let mut full = vec!["bench"];
        full.extend_from_slice(argv);
        Cli::try_parse_from(full).unwrap().args.to_spec()
    }

    #[test]
    fn ab_mode_defaults() {
        let s = spec(&["http://h/"]);
        assert_eq!(
            (s.requests, s.duration, s.concurrency, s.keep_alive),
            (Some(1), None, 1, false)
        );
        let s = spec(&["http://h/", "-n", "100", "-c", "4"]);
        assert_eq!(
            (s.requests, s.concurrency, s.keep_alive),
            (Some(100), 4, false)
        );
        let s = spec(&["http://h/", "-n", "100", "-k"]);
        assert!(s.keep_alive);
        let s = spec(&["http://h/", "-t", "3"]);
        assert_eq!(
            (s.requests, s.duration),
            (None, Some(Duration::from_secs(3)))
        );
        assert!(!s.keep_alive);
        assert_eq!(s.timeout, sluice_bench::DEFAULT_TIMEOUT);
    }

    #[test]
    fn wrk_mode_defaults() {
        let s = spec(&["http://h/", "-d", "10s"]);
        assert_eq!(
            (s.requests, s.duration),
            (None, Some(Duration::from_secs(10)))
        );
        assert_eq!((s.concurrency, s.keep_alive), (10, true));
        let s = spec(&["http://h/", "-d", "500ms", "--no-keepalive", "-c", "3"]);
        assert_eq!((s.concurrency, s.keep_alive), (3, false));
        let s = spec(&[
            "http://h/",
            "-d",
            "2s",
            "--rate",
            "200",
            "--timeout",
            "250ms",
        ]);
        assert_eq!(
            (s.rate, s.timeout),
            (Some(200.0), Duration::from_millis(250))
        );
    }

    #[test]
    fn conflicting_or_bad_flags_are_rejected() {
        for argv in [
            &["bench", "http://h/", "-d", "1s", "-t", "1"][..],
            &["bench", "http://h/", "-k", "--no-keepalive"],
            &["bench", "http://h/", "-d", "ten"],
            &["bench", "http://h/", "--timeout", "-1"],
            &["bench"],
        ] {
            assert!(Cli::try_parse_from(argv).is_err(), "{argv:?} accepted");
        }
    }
}
