//! The `sluice` command: L4 (XDP) and L7 load balancer, config checker,
//! namespace lab, benchmark tools. This crate only wires the library crates
//! together; algorithms live below it (see docs/ARCHITECTURE.md).

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

mod cmd;

/// mimalloc instead of glibc's malloc: the proxy allocates and frees small
/// buffers and header maps on every request from several threads, where
/// mimalloc's thread-local free lists are cheaper (BENCHMARKS.md §3).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// sluice: one binary for an XDP L4 fast path and an L7/TCP proxy.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the load balancer (L4 XDP data plane, admin endpoint).
    Run(cmd::run::Args),
    /// Talk to a running daemon: list services, add/remove reals, weights.
    Ctl(cmd::ctl::Args),
    /// Validate a configuration file and exit (like `haproxy -c`).
    Check(cmd::check::Args),
    /// Reload a running daemon's configuration file (as SIGHUP, and as
    /// `sluice ctl reload`): checked first; nothing changes unless it is
    /// valid and reload can apply the difference.
    Reload(cmd::ctl::ReloadArgs),
    /// Build, inspect and tear down the network-namespace lab.
    #[command(subcommand)]
    Lab(cmd::lab::LabCommand),
    /// HTTP load generator (ab- and wrk-style).
    Bench(cmd::bench::Args),
    /// Real-server side helpers (the lab's web server; VIP set-up for DSR).
    #[command(subcommand)]
    Realserver(cmd::realserver::RealserverCommand),
    /// Check the kernel and NIC settings for a role and method; `--apply`
    /// fixes what it reports.
    Doctor(cmd::doctor::Args),
    /// Write the man pages (packaging).
    #[command(hide = true)]
    Man(cmd::manual::ManArgs),
    /// Write shell completions to standard output (packaging).
    #[command(hide = true)]
    Completions(cmd::manual::CompletionsArgs),
}

/// Environment variable with `tracing` filter directives (`RUST_LOG`
/// syntax, e.g. `debug` or `warn,sluice_proxy=debug`).
const LOG_ENV: &str = "SLUICE_LOG";

/// Filter when `SLUICE_LOG` is unset: warnings and notices of every crate.
const DEFAULT_LOG_FILTER: &str = "info";

/// Diagnostics to standard error. The proxy's access log (target
/// `sluice::access`, one line per request) is off unless `access_log`
/// (`sluice run --access-log`) turns it on: at tens of thousands of
/// requests per second it is the operator's choice, as in HAProxy, where
/// a frontend logs only with `log` and `option httplog`.
fn init_logging(access_log: bool) {
    use tracing_subscriber::EnvFilter;
    let base = std::env::var(LOG_ENV).unwrap_or_else(|_| DEFAULT_LOG_FILTER.to_owned());
    let access = if access_log { "info" } else { "off" };
    let directives = format!("{base},{}={access}", sluice_proxy::ACCESS_LOG_TARGET);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|e| {
        eprintln!("sluice: ignoring {LOG_ENV}={base}: {e}");
        EnvFilter::new(format!(
            "{DEFAULT_LOG_FILTER},{}={access}",
            sluice_proxy::ACCESS_LOG_TARGET
        ))
    });
    // Colours only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(&cli.command, Command::Run(a) if a.access_log));
    let result = match cli.command {
        Command::Check(args) => cmd::check::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Ctl(args) => cmd::ctl::run(args),
        Command::Reload(args) => cmd::ctl::run(args.into()),
        Command::Lab(c) => cmd::lab::run(c),
        Command::Realserver(c) => cmd::realserver::run(c),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Doctor(args) => cmd::doctor::run(args),
        Command::Man(args) => cmd::manual::man(args, Cli::command()),
        Command::Completions(args) => cmd::manual::completions(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sluice: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
