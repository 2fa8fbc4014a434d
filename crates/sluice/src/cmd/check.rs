//! `sluice check -c FILE`: validate a configuration and exit, like
//! `haproxy -c`. Exit 0 with a one-line summary, or 1 with one
//! `FILE:LINE:COL: key.path: ...` line per problem: the config crate's own
//! checks, then every rule a plane would refuse the file for at
//! `sluice run` ([`super::plan`]).

use std::process::ExitCode;

use anyhow::Context as _;
use sluice_config::{Config, Diagnostics};

use super::plan::{self, Plan};

/// Arguments of `sluice check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file to validate.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: std::path::PathBuf,
}

/// Reads, validates and plans a config file: what `sluice run` starts, or
/// every problem with its position. `check` and `run` share it.
pub(crate) fn load(path: &std::path::Path) -> anyhow::Result<Result<(Config, Plan), Diagnostics>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading configuration {}", path.display()))?;
    let file = path.display().to_string();
    let cfg = match sluice_config::parse(&file, &text) {
        Ok(c) => c,
        Err(d) => return Ok(Err(d)),
    };
    Ok(match plan::plan(&cfg) {
        Ok(p) => Ok((cfg, p)),
        Err(problems) => Err(plan::diagnostics(&file, &text, &problems)),
    })
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    match load(&args.config)? {
        Ok((cfg, _)) => {
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
