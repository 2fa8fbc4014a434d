//! `sluice realserver toa`: the real server's side of TOA (`fullnat`).
//!
//! `--iface IFACE` attaches `sluice_toa` to the interface, which records
//! the client a `fullnat` LB announces in each connection's TOA option,
//! pins the map in bpffs (`--pin-dir`, default `/sys/fs/bpf/sluice`) and
//! runs until SIGINT or SIGTERM (then detaches and unpins).
//! `--lookup PEER` answers "who is this connection really from" from the
//! pinned map, in another process (`sluice_l4::toa::lookup`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use sluice_l4::AttachMode;
use sluice_l4::toa::{self, ToaEntry, ToaReader};

use super::XdpMode;

/// Arguments of `sluice realserver toa`.
#[derive(Debug, clap::Args)]
pub(crate) struct ToaArgs {
    /// Interface receiving the LB's `fullnat` connections: `sluice_toa` is
    /// attached to it. With `--lookup`: read only this interface's map
    /// (default: every map pinned in `--pin-dir`).
    #[arg(long, required_unless_present = "lookup")]
    iface: Option<String>,
    /// XDP attach mode of `sluice_toa`.
    #[arg(long, value_enum, default_value_t = XdpMode::Native)]
    xdp_mode: XdpMode,
    /// Print the client of the connection whose peer (as this host sees
    /// it: the LB's local address) is PEER, and exit: 0 if known, 1 if
    /// not.
    #[arg(long, value_name = "PEER_ADDR:PORT")]
    lookup: Option<SocketAddr>,
    /// With `--lookup`: this host's end of the connection (needed when the
    /// same peer address and port reach several local addresses or ports).
    #[arg(long, value_name = "ADDR:PORT", requires = "lookup")]
    local: Option<SocketAddr>,
    /// Directory on a BPF file system (bpffs) where the map is pinned as
    /// `toa-IFACE`.
    #[arg(long, value_name = "DIR", default_value = toa::DEFAULT_PIN_DIR)]
    pin_dir: PathBuf,
}

pub(crate) fn run(args: &ToaArgs) -> anyhow::Result<ExitCode> {
    match (args.lookup, &args.iface) {
        (Some(peer), iface) => lookup(&args.pin_dir, iface.as_deref(), peer, args.local),
        (None, Some(iface)) => serve(&args.pin_dir, iface, args.xdp_mode),
        // clap requires one of the two.
        (None, None) => anyhow::bail!("give --iface IFACE or --lookup PEER_ADDR:PORT"),
    }
}

fn lookup(
    pin_dir: &Path,
    iface: Option<&str>,
    peer: SocketAddr,
    local: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    let pins = match iface {
        Some(iface) => vec![toa::pin_path(pin_dir, iface)?],
        None => toa::pins_in(pin_dir)?,
    };
    if pins.is_empty() {
        anyhow::bail!(
            "no TOA map is pinned in {}: is `sluice realserver toa --iface IFACE` running \
             (with the same --pin-dir)?",
            pin_dir.display()
        );
    }
    let mut found: Vec<ToaEntry> = Vec::new();
    for pin in &pins {
        found.extend(toa::lookup(pin, peer, local)?);
    }
    found.sort_by_key(|e| std::cmp::Reverse(e.last_seen_ns));
    let to = local.map(|l| format!(" to {l}")).unwrap_or_default();
    match found.as_slice() {
        [] => {
            eprintln!(
                "sluice realserver toa: no TOA recorded for the connection from {peer}{to} \
                 (not a fullnat connection, or its entry was evicted)"
            );
            Ok(ExitCode::from(1))
        }
        [one] => {
            println!("{}", one.client);
            Ok(ExitCode::SUCCESS)
        }
        several => {
            // The same peer address and port toward several local ends.
            for e in several {
                println!("{} local {}", e.client, e.local);
            }
            eprintln!(
                "sluice realserver toa: {} connections from {peer}; --local ADDR:PORT picks one",
                several.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn serve(pin_dir: &Path, iface: &str, xdp_mode: XdpMode) -> anyhow::Result<ExitCode> {
    // Handlers first: a signal arriving after "ready" must run the clean-up.
    let stop = super::StopSignals::install()?;
    let (mode, how) = match xdp_mode {
        XdpMode::Native => (AttachMode::Native, "native"),
        XdpMode::Generic => (AttachMode::Generic, "generic"),
    };
    let reader = ToaReader::start(iface, mode, pin_dir)
        .with_context(|| format!("starting the TOA reader on {iface}"))?;
    let pinned = reader
        .pinned_at()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    println!("attached sluice_toa to {iface} ({how} XDP)");
    println!("map pinned at {pinned}");
    println!("ready; detaching and unpinning on SIGTERM/SIGINT");
    stop.wait();
    drop(reader);
    println!("detached sluice_toa from {iface}, removed {pinned}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use clap::Parser as _;

    use super::super::RealserverCommand;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: RealserverCommand,
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(["realserver", "toa"].iter().chain(args))
    }

    #[test]
    fn arguments() {
        let Cli {
            command: RealserverCommand::Toa(a),
        } = parse(&["--iface", "eth0"]).unwrap()
        else {
            panic!("not toa")
        };
        assert_eq!(a.iface.as_deref(), Some("eth0"));
        assert_eq!(
            a.pin_dir,
            std::path::Path::new(sluice_l4::toa::DEFAULT_PIN_DIR)
        );
        assert!(a.lookup.is_none());
        assert!(parse(&["--lookup", "10.0.0.5:40001", "--local", "10.0.0.9:80"]).is_ok());
        // One of --iface and --lookup; --local only with --lookup.
        assert!(parse(&[]).is_err());
        assert!(parse(&["--iface", "eth0", "--local", "10.0.0.9:80"]).is_err());
        assert!(parse(&["--lookup", "10.0.0.5"]).is_err());
    }
}
