//! `sluice realserver ...`.

use std::process::ExitCode;

/// Real-server subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RealserverCommand {
    /// Serve the lab's web content.
    Web,
}

pub(crate) fn run(_c: RealserverCommand) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not wired yet")
}
