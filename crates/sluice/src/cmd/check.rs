//! `sluice check -c FILE`: validate a configuration and exit, like
//! `haproxy -c`. Exit 0 with a one-line summary, or 1 with one
//! `FILE:LINE:COL: key.path: ...` line per problem.

use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `sluice check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file to validate.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: std::path::PathBuf,
}

/// Reads and validates a config file; the binary's other subcommands share it.
pub(crate) fn load(
    path: &std::path::Path,
) -> anyhow::Result<Result<sluice_config::Config, sluice_config::Diagnostics>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration {}", path.display()))?;
    Ok(sluice_config::parse(&path.display().to_string(), &text))
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match load(&args.config)? {
        Ok(cfg) => {
            println!("{}: {}", args.config.display(), cfg.summary());
            Ok(ExitCode::SUCCESS)
        }
        Err(diags) => {
            eprintln!("{diags}");
            eprintln!(
                "{}: {} problem(s) found",
                args.config.display(),
                diags.len()
            );
            Ok(ExitCode::from(1))
        }
    }
}
