//! `sluice lab up|status|down`.

use std::process::ExitCode;

/// Lab subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Build the lab.
    Up,
}

pub(crate) fn run(_c: LabCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not wired yet")
}
