//! `sluice run`'s connection sync (`[sync]`, docs/HA.md): the XDP data
//! plane announces its new sessions, `sluice-ha`'s daemon streams them
//! and the periodic walks to the peers while this node is active, and
//! installs the peers' sessions here. The glue between the two crates is
//! this file's: `sluice-l4`'s feed, walker and installer behind
//! `sluice-ha`'s traits.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sluice_config::StateSync;
use sluice_ha::sync::{Installed, NewSessions, SessionSink, SessionTable, SyncConfig, SyncHandle};
use sluice_l4::sync::{Outcome, SessionFeed, SessionInstaller, SessionWalker};
use sluice_wire::sync::SyncEntry;
use tokio::sync::watch;

use super::Plane;

/// How often the installer re-reads the control plane's services and
/// real slots (a configuration change is picked up within this).
const DIRECTORY_REFRESH: Duration = Duration::from_secs(1);

/// "This node is active" for a node without VRRP: always. Every node then
/// sends its own sessions and installs its peers' (active-active).
pub(super) fn always_active() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(true);
    // The sender is dropped: the value stays `true` for good.
    drop(tx);
    rx
}

/// Starts connection sync when `[sync]` enables it: announcements on in
/// the data plane, then the daemon. `active` says whether this node is
/// the active one (only then does it send). The handle keeps it running.
pub(super) fn start(
    cfg: &StateSync,
    plane: Option<&Plane>,
    active: watch::Receiver<bool>,
) -> anyhow::Result<Option<SyncHandle>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let Some(plane) = plane else {
        bail!("[sync] is enabled but there is no L4 service to sync");
    };
    let Some(listen) = cfg.listen else {
        bail!("[sync] is enabled without a listen address");
    };
    let (feed, walker, installer) = {
        let mut g = plane
            .lock()
            .map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?;
        let dir = g.sync_directory();
        let dp = g.dataplane_mut();
        dp.set_sync(true)
            .context("turning session announcements on")?;
        (
            dp.sync_feed().context("opening the sync ring")?,
            dp.sync_walker().context("opening the session table")?,
            dp.sync_installer(dir)
                .context("opening the session table")?,
        )
    };
    let handle = sluice_ha::sync::start(
        SyncConfig {
            listen,
            peers: cfg.peers.clone(),
            interval: cfg.interval,
        },
        Box::new(Feed(feed)),
        Box::new(Walker(walker)),
        Box::new(Sink {
            installer,
            plane: plane.clone(),
            refreshed: Instant::now(),
        }),
        active,
    )
    .with_context(|| format!("starting connection sync on {listen}"))?;
    eprintln!(
        "sluice: connection sync on {} with {} peer(s)",
        handle.local_addr().unwrap_or(listen),
        cfg.peers.len()
    );
    Ok(Some(handle))
}

struct Feed(SessionFeed);

impl NewSessions for Feed {
    fn drain(&mut self, max: usize, out: &mut dyn FnMut(SyncEntry)) -> usize {
        self.0.drain(max, out)
    }
}

struct Walker(SessionWalker);

impl SessionTable for Walker {
    fn walk(&mut self, full: bool, out: &mut dyn FnMut(SyncEntry)) -> usize {
        self.0.walk(full, out)
    }
}

struct Sink {
    installer: SessionInstaller,
    plane: Plane,
    refreshed: Instant,
}

impl SessionSink for Sink {
    fn install(&mut self, e: &SyncEntry) -> Result<Installed, String> {
        if self.refreshed.elapsed() >= DIRECTORY_REFRESH {
            // `try_lock`: the control thread holds the lock through whole
            // walks of the session table; the old directory serves until
            // the next entry finds it free.
            if let Ok(g) = self.plane.try_lock() {
                self.installer.set_directory(g.sync_directory());
                self.refreshed = Instant::now();
            }
        }
        match self.installer.install(e).map_err(|e| e.to_string())? {
            Outcome::Installed => Ok(Installed::Yes),
            Outcome::UnknownService
            | Outcome::OtherMethod
            | Outcome::UnknownReal
            | Outcome::UnknownLocal => Ok(Installed::Unknown),
        }
    }
}
