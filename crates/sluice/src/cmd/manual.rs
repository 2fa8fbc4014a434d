//! `sluice man --out DIR` and `sluice completions SHELL`: the man pages
//! and shell completions, generated from the command-line definition
//! itself (clap_mangen, clap_complete), so they never drift from it. Used
//! by the Debian package (scripts/package.sh); hidden from `--help`.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;

/// Arguments of `sluice man`.
#[derive(Debug, clap::Args)]
pub(crate) struct ManArgs {
    /// Directory to write `sluice.1` and one page per subcommand
    /// (`sluice-run.1`, ...) into; created if missing.
    #[arg(long, default_value = ".")]
    out: PathBuf,
}

/// Writes the man pages of `cli` (the whole `sluice` command) to `--out`.
pub(crate) fn man(args: ManArgs, cli: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    clap_mangen::generate_to(cli, &args.out)
        .with_context(|| format!("writing man pages to {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `sluice completions`.
#[derive(Debug, clap::Args)]
pub(crate) struct CompletionsArgs {
    /// The shell to write completions for, to standard output.
    shell: clap_complete::Shell,
}

/// Writes `cli`'s completions for the shell to standard output.
pub(crate) fn completions(
    args: CompletionsArgs,
    mut cli: clap::Command,
) -> anyhow::Result<ExitCode> {
    let name = cli.get_name().to_owned();
    clap_complete::generate(args.shell, &mut cli, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
