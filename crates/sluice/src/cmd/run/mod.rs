//! `sluice run -c FILE`: the daemon. Plans the configuration (the same
//! checks as `sluice check`), builds the runtime, starts the planes (the
//! L4 XDP data plane, the L7 proxy, their health checks) and the admin
//! endpoint, and on SIGINT/SIGTERM shuts the proxy down gracefully (open
//! connections get `hard_stop_after`) and detaches the XDP program.

mod caps;
mod fdlimit;
mod gslb;
mod guard;
mod ha;
mod l4;
mod l7;
mod notify;
mod reload;
mod sync;

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
};

use anyhow::{Context as _, bail};
use sluice_config::Config;

use super::admin::{AdminState, admin_loop};
use super::plan::Plan;
pub(crate) use gslb::Gslb;
pub(crate) use ha::Ha;
pub(crate) use l4::Plane;
pub(crate) use reload::{Refused, Reloader};

/// Arguments of `sluice run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: std::path::PathBuf,
    /// Write the proxy's access log (one line per request or TCP session,
    /// with HAProxy's Tq/Tw/Tc/Tr/Tt timers) to standard error. Other
    /// diagnostics follow `SLUICE_LOG` (default `info`).
    #[arg(long)]
    pub(crate) access_log: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cfg, plan) = match super::check::load(&args.config)? {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            bail!("{}: invalid configuration", args.config.display());
        }
    };
    caps::check(&cfg)?;
    fdlimit::apply(&cfg);
    // One runtime for everything: the proxy's workers (`global.threads`,
    // pinned per `global.cpu_map`), health checks and the admin endpoint.
    let threads = usize::from(cfg.global.threads.unwrap_or(0));
    let cpus: Vec<usize> = cfg.global.cpu_map.iter().map(|c| usize::from(*c)).collect();
    let rt = super::runtime::build_runtime(threads, &cpus).context("starting the runtime")?;
    rt.block_on(serve(cfg, plan, args.config))
}

async fn serve(cfg: Config, plan: Plan, path: std::path::PathBuf) -> anyhow::Result<ExitCode> {
    let plane = match &plan.l4 {
        Some(l4) => Some(Arc::new(Mutex::new(l4::start(l4, &cfg)?))),
        None => None,
    };
    // L7: every frontend bound before anything is served; bind errors end
    // start-up with the address in the message.
    let proxy = match plan.proxy {
        Some(pc) => {
            let h = sluice_proxy::Proxy::start(pc)
                .await
                .context("starting the L7 proxy")?;
            for (name, addr) in h.local_addrs() {
                eprintln!("sluice: frontend {name} listening on {addr}");
            }
            Some(Arc::new(h))
        }
        None => None,
    };
    let l7_checks = match proxy.clone() {
        Some(p) => l7::start_health(&cfg, p)?.map(Arc::new),
        None => None,
    };
    let admin = tokio::net::TcpListener::bind(cfg.global.admin)
        .await
        .with_context(|| format!("binding the admin endpoint {}", cfg.global.admin))?;
    eprintln!(
        "sluice: running; admin endpoint http://{}",
        admin.local_addr().unwrap_or(cfg.global.admin)
    );

    // Health checks of L4 reals; the handle keeps the checks running.
    let specs = plan.l4.as_ref().map_or(&[][..], |p| &p.specs[..]);
    let (checks, _via_vip_routes) = match plane.clone() {
        Some(p) => match l4::start_health(&cfg, specs, p)? {
            Some((h, routes)) => (Some(Arc::new(h)), Some(routes)),
            None => (None, None),
        },
        None => (None, None),
    };

    // GSLB: its sites may follow the L4 and L7 checks started above.
    let gslb = match &plan.gslb {
        Some(g) => Some(Arc::new(
            gslb::start(&cfg, g, checks.clone(), l7_checks.clone()).await?,
        )),
        None => None,
    };

    // VRRP last: a node takes part in the election only once what it
    // would serve is up (and its watchdog watches exactly that).
    let frontends: Vec<std::net::SocketAddr> = proxy
        .as_ref()
        .map(|p| p.local_addrs().iter().map(|(_, a)| *a).collect())
        .unwrap_or_default();
    // An HA node with L4 services guards its kernel against answering for
    // them after a crash (guard.rs), before it can become master.
    let guarded = !cfg.vrrp_instances.is_empty() && plan.l4.is_some();
    if guarded && let Some(l4) = &plan.l4 {
        guard::install(&l4.specs)?;
    }
    // Sync's silent peers reach VRRP through this channel (VRRP starts
    // first: sync needs to know whether this node is master).
    let (silent_tx, silent_rx) = tokio::sync::watch::channel(Vec::new());
    let ha = Ha::start(&cfg, plan.l4.as_ref(), &frontends, &silent_rx)
        .await?
        .map(Arc::new);

    if let Some(p) = plane.clone() {
        std::thread::Builder::new()
            .name("sluice-l4-control".into())
            .spawn(move || l4::control_loop(&p))
            .context("starting the control thread")?;
    }

    // Only the VRRP master sends its sessions; without VRRP every node
    // does (active-active).
    let active = ha.as_ref().map_or_else(sync::always_active, |h| h.active());
    let sync = sync::start(&cfg.sync, plane.as_ref(), active)?;
    if let Some(h) = &sync {
        let mut from = h.silent_peers();
        tokio::spawn(async move {
            while from.changed().await.is_ok() {
                let v = from.borrow_and_update().clone();
                silent_tx.send_replace(v);
            }
        });
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing the SIGHUP handler")?;
    let reloader = Arc::new(Reloader::new(
        path,
        cfg.clone(),
        plan.l4.clone(),
        plane.clone(),
    ));
    let state = AdminState {
        plane: plane.clone(),
        l4_checks: checks.clone(),
        l7_checks,
        proxy: proxy.clone(),
        ha: ha.clone(),
        sync: sync.as_ref().map(|h| h.counters().clone()),
        reloader: reloader.clone(),
        gslb,
    };
    // Ready once everything serves and SIGTERM is handled (a stop right
    // after READY=1 must be graceful).
    notify::notify(notify::READY);
    let admin_task = admin_loop(admin, state);
    tokio::pin!(admin_task);
    loop {
        tokio::select! {
            r = &mut admin_task => {
                r?;
                break;
            }
            _ = tokio::signal::ctrl_c() => {
                eprintln!("sluice: SIGINT, shutting down");
                break;
            }
            _ = term.recv() => {
                eprintln!("sluice: SIGTERM, shutting down");
                break;
            }
            _ = hup.recv() => {
                let r = reloader.clone();
                let out = tokio::task::spawn_blocking(move || r.reload()).await;
                log_reload(out);
            }
        }
    }
    notify::notify(notify::STOPPING);
    if let Some(h) = ha {
        // Hand the addresses over first (priority 0: the backup takes
        // over after its skew time, not after three intervals).
        h.stop().await;
    }
    if let Some(p) = proxy {
        // Stop accepting, let open connections (tunnels included) finish,
        // cut what remains after `hard_stop_after`.
        p.shutdown().await;
    }
    if let Some(p) = plane {
        let mut g = p
            .lock()
            .map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?;
        g.dataplane_mut()
            .detach()
            .context("detaching the XDP program")?;
    }
    if guarded && let Err(e) = guard::remove() {
        eprintln!("sluice: removing the HA guard: {e:#}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Logs a SIGHUP reload's outcome (the admin endpoint's `POST /v1/reload`
/// answers its caller instead).
fn log_reload(out: Result<Result<u64, Refused>, tokio::task::JoinError>) {
    match out {
        Ok(Ok(g)) => eprintln!("sluice: SIGHUP: configuration reloaded, generation {g}"),
        Ok(Err(Refused::Invalid(d))) => {
            eprintln!("sluice: SIGHUP: invalid configuration, nothing changed:\n{d}");
        }
        Ok(Err(Refused::NeedsRestart(what))) => eprintln!(
            "sluice: SIGHUP: nothing changed: reload cannot apply changes to {}; restart to apply them",
            what.join(", ")
        ),
        Ok(Err(Refused::Failed(e))) => {
            eprintln!("sluice: SIGHUP: reload failed, nothing changed: {e}")
        }
        Err(e) => eprintln!("sluice: SIGHUP: reload failed: {e}"),
    }
}
