//! `sluice realserver web`: the lab's real-server web server.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use sluice_lab::webserver::{self, WebStats};

/// Real-server subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum RealserverCommand {
    /// Serve the lab's web content: `/` (a fixed-size body), `/health`,
    /// `/whoami`, `/headers`, `/stats`; every response carries
    /// `X-Served-By: NAME`. Runs until SIGINT or SIGTERM.
    Web(WebArgs),
}

/// Arguments of `sluice realserver web`.
#[derive(Debug, clap::Args)]
pub(crate) struct WebArgs {
    /// Address to listen on; repeat for several (e.g. `0.0.0.0:80` and `[::]:80`).
    #[arg(long, required = true)]
    listen: Vec<SocketAddr>,
    /// Server name sent in `X-Served-By` (e.g. `rs1`).
    #[arg(long)]
    name: String,
    /// Size of the `/` body in bytes.
    #[arg(long, default_value_t = webserver::DEFAULT_BODY_SIZE)]
    size: usize,
}

pub(crate) fn run(c: RealserverCommand) -> anyhow::Result<ExitCode> {
    match c {
        RealserverCommand::Web(args) => web(args),
    }
}

fn web(args: WebArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let mut listeners = Vec::with_capacity(args.listen.len());
        for addr in &args.listen {
            let std_listener = webserver::bind(*addr).with_context(|| format!("binding {addr}"))?;
            listeners.push(tokio::net::TcpListener::from_std(std_listener)?);
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        eprintln!(
            "sluice realserver web: {} listening on {:?}",
            args.name, args.listen
        );
        webserver::serve_all(
            listeners,
            &args.name,
            args.size,
            Arc::new(WebStats::default()),
            shutdown,
        )
        .await
        .context("serving")?;
        Ok(ExitCode::SUCCESS)
    })
}
