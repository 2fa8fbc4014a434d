//! `sluice check -c FILE`.

use std::process::ExitCode;

/// Arguments of `sluice check`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file to validate.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: std::path::PathBuf,
}

pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not wired yet")
}
