//! `sluice bench URL`.

use std::process::ExitCode;

/// Arguments of `sluice bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Target URL.
    pub(crate) url: String,
}

pub(crate) fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not wired yet")
}
