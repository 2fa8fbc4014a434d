//! `sluice lab up|status|down`: the network-namespace lab, kept running
//! between commands through a state file (`/run/sluice-lab/<label>.json`);
//! `sluice lab bmt`: the benchmark matrix (the `sluice-bmt` crate).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use sluice_lab::{Lab, LabSpec, LabState, LbForwarding, RealBackend, Topology, netns};

/// Lab subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LabCommand {
    /// Build the lab (client, one-armed LB, real servers on one bridge) and
    /// leave it running; Ctrl-C during set-up tears it down again.
    Up(UpArgs),
    /// Show the lab's namespaces and addresses, and probe every real.
    Status(CommonArgs),
    /// Tear the lab down (from its state file, else by namespace names).
    Down(CommonArgs),
    /// Run the seed study's benchmark matrix (proxy vs HAProxy vs L4 modes)
    /// in fresh labs; writes a table, JSON and a chart.
    Bmt(sluice_bmt::BmtArgs),
}

/// Options shared by every lab subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct CommonArgs {
    /// The lab's label: namespaces are `sl-<label>-<node>`.
    #[arg(long, default_value = sluice_lab::DEFAULT_LABEL)]
    label: String,
    /// Directory of the state files.
    #[arg(long, default_value = sluice_lab::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

/// Arguments of `sluice lab up`.
#[derive(Debug, clap::Args)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Number of real servers (1 to 25).
    #[arg(long, default_value_t = sluice_lab::DEFAULT_REALS)]
    reals: usize,
    /// What runs on each real server.
    #[arg(long, value_enum, default_value_t = Backend::Sluice)]
    backend: Backend,
    /// What the LB namespace does with VIP traffic.
    #[arg(long, value_enum, default_value_t = Forwarding::Ecmp)]
    lb_forwarding: Forwarding,
    /// The IPv4 VIP.
    #[arg(long, default_value_t = sluice_lab::DEFAULT_VIP4)]
    vip: Ipv4Addr,
    /// The IPv6 VIP.
    #[arg(long, default_value_t = sluice_lab::DEFAULT_VIP6)]
    vip6: Ipv6Addr,
    /// Build an IPv4-only lab.
    #[arg(long)]
    no_ipv6: bool,
    /// Real servers' TCP port.
    #[arg(long, default_value_t = sluice_lab::DEFAULT_PORT)]
    port: u16,
    /// Size of the `/` body in bytes.
    #[arg(long, default_value_t = sluice_lab::webserver::DEFAULT_BODY_SIZE)]
    size: usize,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Backend {
    /// `sluice realserver web` (this binary).
    Sluice,
    /// nginx (nginx-light), one generated config per real.
    Nginx,
    /// No server; start your own.
    None,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Forwarding {
    /// Kernel ECMP route over the reals.
    Ecmp,
    /// No VIP route on the LB (an XDP program forwards).
    None,
}

pub(crate) fn run(c: LabCommand) -> anyhow::Result<ExitCode> {
    match c {
        LabCommand::Up(args) => up(args),
        LabCommand::Status(args) => status(&args),
        LabCommand::Down(args) => down(&args),
        LabCommand::Bmt(args) => {
            // The matrix starts this very binary as the LB (`sluice run`)
            // and as the reals' web server.
            let binary = std::env::current_exe().context("locating the sluice binary")?;
            Ok(sluice_bmt::run(args, &binary)?)
        }
    }
}

fn up(args: UpArgs) -> anyhow::Result<ExitCode> {
    let label = args.common.label.clone();
    if let Some(state) = LabState::load(&args.common.state_dir, &label)? {
        anyhow::bail!(
            "lab {label:?} is already up ({} namespaces recorded in {}); \
             run `sluice lab down --label {label}` first",
            state.namespaces.len(),
            LabState::path(&args.common.state_dir, &label).display()
        );
    }
    let mut spec = LabSpec::new(&label);
    spec.reals = args.reals;
    spec.vip4 = args.vip;
    spec.vip6 = (!args.no_ipv6).then_some(args.vip6);
    spec.port = args.port;
    spec.body_size = args.size;
    spec.lb_forwarding = match args.lb_forwarding {
        Forwarding::Ecmp => LbForwarding::Ecmp,
        Forwarding::None => LbForwarding::None,
    };
    spec.backend = match args.backend {
        Backend::Sluice => RealBackend::Sluice {
            binary: std::env::current_exe().context("locating the sluice binary")?,
        },
        Backend::Nginx => RealBackend::Nginx,
        Backend::None => RealBackend::None,
    };

    let lab = up_interruptible(spec)?;
    let state = lab.state();
    // Only once the state is safely on disk does the lab outlive us.
    let path = state
        .save(&args.common.state_dir)
        .context("saving the lab state (the lab was torn down)")?;
    let state = lab.detach();
    print_topology(&state.topology);
    println!("state: {}", path.display());
    println!("tear down with: sluice lab down --label {label}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `Lab::up` on a blocking thread while SIGINT/SIGTERM are caught, so an
/// interrupt cancels set-up and everything created is torn down.
fn up_interruptible(spec: LabSpec) -> anyhow::Result<Lab> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let lab = rt.block_on(async move {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&cancel);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let mut task = tokio::task::spawn_blocking(move || Lab::up_cancellable(spec, &flag));
        tokio::select! {
            res = &mut task => return Ok::<_, anyhow::Error>(res?),
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("sluice lab up: interrupted, tearing down");
        cancel.store(true, Ordering::SeqCst);
        Ok(task.await?)
    })?;
    Ok(lab?)
}

fn status(args: &CommonArgs) -> anyhow::Result<ExitCode> {
    let Some(state) = LabState::load(&args.state_dir, &args.label)? else {
        let left: Vec<String> = netns::list_netns()?
            .into_iter()
            .filter(|n| sluice_lab::netns_belongs_to(&args.label, n))
            .collect();
        println!("lab {:?}: no state file", args.label);
        if !left.is_empty() {
            println!("namespaces left over: {}", left.join(" "));
        }
        return Ok(ExitCode::FAILURE);
    };
    let t = &state.topology;
    print_topology(t);
    let mut healthy = true;
    println!("namespaces:");
    for ns in &state.namespaces {
        let present = netns::netns_exists(ns);
        healthy &= present;
        println!("  {ns:<24} {}", if present { "present" } else { "MISSING" });
    }
    println!("processes:");
    for p in &state.processes {
        let running = p.is_running();
        healthy &= running;
        println!(
            "  {:<12} pid {:<8} {}",
            p.what,
            p.pid,
            if running { "running" } else { "GONE" }
        );
    }
    if !netns::netns_exists(&t.client.netns) {
        println!("client namespace missing: cannot probe");
        return Ok(ExitCode::FAILURE);
    }
    let (reals, vips) = sluice_lab::probe_lab(t)?;
    println!("probes from {}:", t.client.netns);
    for r in &reals {
        match &r.health {
            Ok(by) => println!(
                "  {:<5} http://{}/health ok (X-Served-By {by})",
                r.name, r.addr
            ),
            Err(e) => {
                healthy = false;
                println!("  {:<5} http://{}/health FAILED: {e}", r.name, r.addr);
            }
        }
    }
    for v in &vips {
        match &v.result {
            Ok((by, len)) => println!("  VIP   http://{}/ ok, {len} bytes from {by}", v.addr),
            // Without a forwarding LB the VIP is expected to be dark.
            Err(e) if t.lb_forwarding == LbForwarding::None => {
                println!(
                    "  VIP   http://{}/ no answer ({e}); LB forwarding is off",
                    v.addr
                );
            }
            Err(e) => {
                healthy = false;
                println!("  VIP   http://{}/ FAILED: {e}", v.addr);
            }
        }
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn down(args: &CommonArgs) -> anyhow::Result<ExitCode> {
    sluice_lab::check_privileges()?;
    let mut report = sluice_lab::TeardownReport::default();
    let path = LabState::path(&args.state_dir, &args.label);
    match LabState::load(&args.state_dir, &args.label) {
        Ok(Some(state)) => report = state.teardown(),
        Ok(None) => println!(
            "lab {:?}: no state file, deleting namespaces by name",
            args.label
        ),
        Err(e) => eprintln!("sluice lab down: {e}; deleting namespaces by name"),
    }
    // Also catches namespaces a crashed `up` or a damaged state file left.
    let sweep = sluice_lab::teardown_label(&args.label)?;
    report.namespaces_deleted.extend(sweep.namespaces_deleted);
    report.errors.extend(sweep.errors);
    // And the CPU caps of a benchmark that was killed outright.
    for cap in sluice_lab::sweep_stale_caps(sluice_bmt::CPU_CAP_PREFIX) {
        println!("removed the stale CPU cgroup {}", cap.display());
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => report
            .errors
            .push(format!("removing {}: {e}", path.display())),
    }
    println!(
        "lab {:?}: stopped {} process(es), deleted {} namespace(s), removed {} temp dir(s)",
        args.label,
        report.stopped.len(),
        report.namespaces_deleted.len(),
        report.temp_dirs_removed.len()
    );
    if report.errors.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        for e in &report.errors {
            eprintln!("sluice lab down: {e}");
        }
        Ok(ExitCode::FAILURE)
    }
}

fn print_topology(t: &Topology) {
    println!(
        "lab {:?}: variant {:?}, LB forwarding {:?}, backend {:?}",
        t.label, t.variant, t.lb_forwarding, t.backend
    );
    match t.vip6 {
        Some(v6) => println!("VIP {} and {v6}, port {}", t.vip4, t.port),
        None => println!("VIP {}, port {}", t.vip4, t.port),
    }
    println!("switch {:<20} bridge {}", t.switch_netns, t.bridge);
    for n in std::iter::once(&t.client).chain([&t.lb]).chain(&t.reals) {
        let v6 = n
            .ipv6
            .map(|a| format!(" {a}/{}", t.prefix_len6))
            .unwrap_or_default();
        println!(
            "{:<6} {:<20} {:<5} {} {}/{}{v6}",
            n.name,
            n.netns,
            n.iface,
            netns::format_mac(&n.mac),
            n.ipv4,
            t.prefix_len4
        );
    }
}
