//! The proxy's lifecycle as every task sees it: the shutdown phase, and
//! what a client connection holds while it is open.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use crate::frontend::FrontendRt;
use crate::stats::Counters;

/// Proxy lifecycle, broadcast to every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Phase {
    Running,
    /// Stop accepting; let open sessions finish.
    Draining,
    /// Cut every open session (`hard_stop_after` ran out).
    Stopped,
}

/// Wait until the phase is at least `at_least` (or the sender is gone).
pub(crate) async fn wait_phase(rx: &mut watch::Receiver<Phase>, at_least: Phase) {
    let _ = rx.wait_for(|p| *p >= at_least).await;
}

/// Held by every task of one client connection (the connection itself,
/// and a WebSocket/Upgrade tunnel it turned into, which outlives it):
/// while any holds it, the connection counts in the frontend's
/// `sessions_current` and against its `maxconn`, and a graceful shutdown
/// waits for it.
#[derive(Debug)]
pub(crate) struct ConnHold {
    fe: Arc<FrontendRt>,
    _permit: Option<OwnedSemaphorePermit>,
    /// The shutdown waits until every clone of this sender is gone.
    _drain: mpsc::Sender<()>,
}

impl ConnHold {
    /// Count a new session on `fe`; undone when the last holder drops it.
    pub(crate) fn new(
        fe: Arc<FrontendRt>,
        permit: Option<OwnedSemaphorePermit>,
        drain: mpsc::Sender<()>,
    ) -> Self {
        fe.stats.session_start();
        Self {
            fe,
            _permit: permit,
            _drain: drain,
        }
    }
}

impl Drop for ConnHold {
    fn drop(&mut self) {
        Counters::dec(&self.fe.stats.sessions_current);
    }
}

/// What a client connection's tasks carry of the lifecycle.
#[derive(Debug, Clone)]
pub(crate) struct Lifecycle {
    pub(crate) phase: watch::Receiver<Phase>,
    /// Kept for its `Drop`: the connection is open while a clone lives.
    pub(crate) _hold: Arc<ConnHold>,
}
