//! The checker runtime: one tokio task per target, each probing on its own
//! jittered timer and feeding sluice-core's [`HealthState`].
//!
//! Timing, per target:
//! - The first probe fires at a uniformly random point of the first
//!   interval (HAProxy spreads its first checks likewise), so a thousand
//!   targets configured at once do not probe in one burst.
//! - After that the schedule is fixed-rate: each probe fires
//!   `jittered(next_interval)` after the previous one *started* (a slow
//!   probe does not stretch the period; one running past the next fire time
//!   is followed at once). `next_interval` is `interval` while up and
//!   `down_interval` while down.
//! - Every probe is bounded by the check's timeout.
//!
//! Time is tokio's monotonic clock; the state machine gets durations since
//! the checker started.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use sluice_core::health::{CheckResult, FailureReason, Health, HealthState, Transition, jittered};
use sluice_core::service::{Effective, OnRealDown, OperatorState, effective};
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::SpecError;
use crate::probe::{Probe, fmt_duration};
use crate::rng::Rng;
use crate::spec::CheckSpec;

/// Events buffered per subscriber before the slowest one lags (it then
/// gets `RecvError::Lagged` and should re-read [`CheckerHandle::snapshot`]).
pub const EVENT_CHANNEL_CAPACITY: usize = 1024;

/// Probe fire times are rounded up to a multiple of a tick since the
/// checker started, so that the probes due within one tick share one
/// wake-up of the runtime instead of one each: a thousand checks per
/// second would otherwise wake the thread a thousand times per second, and
/// on a VM a wake-up costs more than a loopback TCP handshake (BENCHMARKS.md
/// §6). A target's tick is its shortest interval divided by this, so a
/// probe fires at most 2.5 % of its interval late (the schedule itself does
/// not drift: the next fire time is computed from the unrounded one).
pub(crate) const FIRE_TICK_DIVISOR: u32 = 40;
/// Upper bound of the tick (default 2 s interval: 25 ms; 1,000 checks at
/// 1 s fire in bursts of about 25 every 25 ms); unit: milliseconds.
pub(crate) const FIRE_TICK_MAX: Duration = Duration::from_millis(25);
/// Lower bound of the tick: tokio's timer resolution; unit: milliseconds.
pub(crate) const FIRE_TICK_MIN: Duration = Duration::from_millis(1);

/// The fire-time tick of a check with these timers (see
/// [`FIRE_TICK_DIVISOR`]).
fn fire_tick(health: &sluice_core::health::HealthConfig) -> Duration {
    (health.interval.min(health.down_interval) / FIRE_TICK_DIVISOR)
        .clamp(FIRE_TICK_MIN, FIRE_TICK_MAX)
}

/// `tracing` target of health logs.
pub const LOG_TARGET: &str = "sluice::health";

/// One thing to check.
#[derive(Debug, Clone)]
pub struct Target {
    /// Unique name, e.g. `"web/10.0.0.11:80"`; events and the snapshot use it.
    pub id: String,
    /// Address probed.
    pub addr: IpAddr,
    /// The target's port (the spec's `port`, if set, overrides it).
    pub port: u16,
    /// How.
    pub spec: CheckSpec,
    /// What the target's service does with its flows when it goes down
    /// (for the effective state shown with it; the proxy keeps a down
    /// server's sessions: [`OnRealDown::Keep`]).
    pub on_down: OnRealDown,
}

/// A change of health, published on the event channel and logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthEvent {
    /// [`Target::id`].
    pub id: String,
    /// Address probed.
    pub addr: IpAddr,
    /// Port probed.
    pub port: u16,
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// Class of the failure that completed the `fall` streak (going down).
    pub failure: Option<FailureReason>,
    /// Its human-readable reason, e.g. `"connection refused"` (going down).
    pub reason: Option<String>,
    /// Latency of the success that completed the `rise` streak (going up).
    pub latency: Option<Duration>,
    /// When, as time since the checker started (monotonic).
    pub at: Duration,
    /// When, by the wall clock (for logs and display only).
    pub wall: SystemTime,
}

/// The last probe of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    /// When it finished, as time since the checker started.
    pub at: Duration,
    /// Latency if it passed.
    pub latency: Option<Duration>,
    /// Class of the failure if it failed.
    pub failure: Option<FailureReason>,
    /// Reason if it failed.
    pub reason: Option<String>,
}

impl LastCheck {
    /// True if the probe passed.
    pub const fn passed(&self) -> bool {
        self.latency.is_some()
    }
}

/// One target as `sluice ctl` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetStatus {
    /// [`Target::id`].
    pub id: String,
    /// Address probed.
    pub addr: IpAddr,
    /// Port probed.
    pub port: u16,
    /// Probe type keyword (`"tcp"`, `"http"`, ...).
    pub check: &'static str,
    /// Health from the checks.
    pub health: Health,
    /// Operator state.
    pub operator: OperatorState,
    /// Health and operator state combined.
    pub effective: Effective,
    /// The last probe, if any ran yet.
    pub last: Option<LastCheck>,
    /// Latency of the last passing probe.
    pub last_latency: Option<Duration>,
    /// When health last changed, as time since the checker started
    /// (`None`: still the initial state).
    pub last_change: Option<Duration>,
    /// Current streak of passing probes.
    pub consecutive_successes: u32,
    /// Current streak of failing probes.
    pub consecutive_failures: u32,
    /// Probes run.
    pub checks_total: u64,
    /// Probes failed.
    pub failures_total: u64,
    /// Health changes.
    pub transitions_total: u64,
}

/// Errors of [`Checker::start`] and [`CheckerHandle::set_operator_state`].
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    /// A target's spec is invalid.
    #[error("health check of {id}: {source}")]
    Spec {
        /// The target.
        id: String,
        /// What is wrong.
        source: SpecError,
    },
    /// Two targets share an id.
    #[error("duplicate health-check target id {0:?}")]
    DuplicateId(String),
    /// No target has this id.
    #[error("no health-check target {0:?}")]
    UnknownTarget(String),
}

/// Starts checkers.
#[derive(Debug)]
pub struct Checker;

/// Shared, per-target state: what the task writes and `snapshot` reads.
#[derive(Debug)]
struct Shared {
    id: String,
    addr: IpAddr,
    port: u16,
    check: &'static str,
    on_down: OnRealDown,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: HealthState,
    operator: OperatorState,
    last: Option<LastCheck>,
    last_latency: Option<Duration>,
}

impl Shared {
    /// Locks the state; a poisoned lock (a panic while holding it, which
    /// the code under it cannot do) still holds consistent data.
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn status(&self) -> TargetStatus {
        let inner = self.lock();
        let (successes, failures) = inner.state.streak();
        TargetStatus {
            id: self.id.clone(),
            addr: self.addr,
            port: self.port,
            check: self.check,
            health: inner.state.health(),
            operator: inner.operator,
            effective: effective(inner.state.health(), inner.operator, self.on_down),
            last: inner.last.clone(),
            last_latency: inner.last_latency,
            last_change: inner.state.last_change(),
            consecutive_successes: successes,
            consecutive_failures: failures,
            checks_total: inner.state.checks_total(),
            failures_total: inner.state.failures_total(),
            transitions_total: inner.state.transitions_total(),
        }
    }
}

/// A running checker. Dropping it stops every check (tasks are aborted,
/// running scripts killed); [`CheckerHandle::shutdown`] also waits for that.
#[derive(Debug)]
pub struct CheckerHandle {
    targets: Vec<Arc<Shared>>,
    by_id: HashMap<String, usize>,
    events: broadcast::Sender<HealthEvent>,
    tasks: JoinSet<()>,
    epoch: Instant,
}

// === impl Checker ===

impl Checker {
    /// Validates every target, then spawns one task per target on the
    /// current tokio runtime. Returns the handle and a receiver that sees
    /// every event from the first probe on (later [`CheckerHandle::subscribe`]
    /// calls see only later events).
    ///
    /// # Errors
    ///
    /// An invalid spec or a duplicate id; nothing is started then.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (as `tokio::spawn` does).
    pub fn start(
        targets: Vec<Target>,
    ) -> Result<(CheckerHandle, broadcast::Receiver<HealthEvent>), CheckerError> {
        let mut prepared = Vec::with_capacity(targets.len());
        let mut by_id = HashMap::with_capacity(targets.len());
        for (i, t) in targets.into_iter().enumerate() {
            let spec_err = |source| CheckerError::Spec {
                id: t.id.clone(),
                source,
            };
            let state = HealthState::new(t.spec.health).map_err(|e| spec_err(e.into()))?;
            let probe = Probe::new(&t.spec.probe)
                .and_then(|p| p.with_mark(t.spec.fwmark))
                .map_err(spec_err)?;
            if t.spec.timeout.is_zero() {
                return Err(spec_err(SpecError::ZeroTimeout));
            }
            if by_id.insert(t.id.clone(), i).is_some() {
                return Err(CheckerError::DuplicateId(t.id));
            }
            prepared.push((t, state, probe));
        }

        let (events, rx) = broadcast::channel(EVENT_CHANNEL_CAPACITY);
        let epoch = Instant::now();
        let mut tasks = JoinSet::new();
        let mut shared_all = Vec::with_capacity(prepared.len());
        for (t, state, probe) in prepared {
            let shared = Arc::new(Shared {
                id: t.id,
                addr: t.addr,
                port: t.spec.port.unwrap_or(t.port),
                check: t.spec.probe.kind(),
                on_down: t.on_down,
                inner: Mutex::new(Inner {
                    state,
                    operator: OperatorState::Enabled,
                    last: None,
                    last_latency: None,
                }),
            });
            shared_all.push(shared.clone());
            let task = TargetTask {
                shared,
                probe,
                timeout: t.spec.timeout,
                jitter_percent: t.spec.jitter_percent,
                tick: fire_tick(&t.spec.health),
                epoch,
                events: events.clone(),
                rng: Rng::from_entropy(),
            };
            tasks.spawn(task.run());
        }
        Ok((
            CheckerHandle {
                targets: shared_all,
                by_id,
                events,
                tasks,
                epoch,
            },
            rx,
        ))
    }
}

// === impl CheckerHandle ===

impl CheckerHandle {
    /// A new receiver of health events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<HealthEvent> {
        self.events.subscribe()
    }

    /// Status of every target, in the order given to [`Checker::start`].
    pub fn snapshot(&self) -> Vec<TargetStatus> {
        self.targets.iter().map(|s| s.status()).collect()
    }

    /// Status of one target.
    pub fn status(&self, id: &str) -> Option<TargetStatus> {
        self.by_id.get(id).map(|&i| self.targets[i].status())
    }

    /// Sets a target's operator state (drain, maintenance). Checks keep
    /// running in every operator state, so leaving maintenance uses current
    /// health. No event is published: the caller made the change.
    ///
    /// # Errors
    ///
    /// [`CheckerError::UnknownTarget`].
    pub fn set_operator_state(&self, id: &str, state: OperatorState) -> Result<(), CheckerError> {
        let i = self
            .by_id
            .get(id)
            .ok_or_else(|| CheckerError::UnknownTarget(id.to_owned()))?;
        self.targets[*i].lock().operator = state;
        Ok(())
    }

    /// The instant the checker started; event and status times count from it.
    pub const fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Stops every check and waits until all tasks are gone (running
    /// scripts are killed with their process groups).
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// `t` rounded up to the next multiple of `tick` after `epoch` (`t`
/// itself when it already is one or lies before `epoch`).
fn align_up(epoch: Instant, t: Instant, tick: Duration) -> Instant {
    let since = t.saturating_duration_since(epoch).as_nanos();
    let tick_ns = tick.as_nanos().max(1);
    let rounded = since.div_ceil(tick_ns).saturating_mul(tick_ns);
    let extra = u64::try_from(rounded - since).unwrap_or(0);
    t + Duration::from_nanos(extra)
}

/// One target's loop.
struct TargetTask {
    shared: Arc<Shared>,
    probe: Probe,
    timeout: Duration,
    jitter_percent: u8,
    /// See [`fire_tick`].
    tick: Duration,
    epoch: Instant,
    events: broadcast::Sender<HealthEvent>,
    rng: Rng,
}

impl TargetTask {
    async fn run(mut self) {
        let first_interval = self.shared.lock().state.next_interval();
        let spread = jittered(first_interval, self.jitter_percent, self.rng.next_u64());
        let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX);
        let offset = Duration::from_nanos(self.rng.next_u64() % nanos.saturating_add(1));
        let mut fire_at = Instant::now() + offset;
        loop {
            let fire_at_tick = align_up(self.epoch, fire_at, self.tick);
            tokio::time::sleep_until(fire_at_tick).await;
            let result = self
                .probe
                .run(self.shared.addr, self.shared.port, self.timeout)
                .await;
            let next = self.record(result);
            fire_at = (fire_at + jittered(next, self.jitter_percent, self.rng.next_u64()))
                .max(Instant::now());
        }
    }

    /// Feeds one result to the state machine; publishes and logs a
    /// transition. Returns the next interval.
    fn record(&self, result: Result<Duration, crate::ProbeFailure>) -> Duration {
        let now = self.epoch.elapsed();
        let (check, last) = match result {
            Ok(latency) => (
                CheckResult::Ok { latency },
                LastCheck {
                    at: now,
                    latency: Some(latency),
                    failure: None,
                    reason: None,
                },
            ),
            Err(f) => (
                CheckResult::Err {
                    reason: f.reason.clone(),
                },
                LastCheck {
                    at: now,
                    latency: None,
                    failure: Some(f.reason),
                    reason: Some(f.detail),
                },
            ),
        };
        let (transition, next) = {
            let mut inner = self.shared.lock();
            let transition = inner.state.observe(now, check);
            if last.latency.is_some() {
                inner.last_latency = last.latency;
            }
            let reason = last.reason.clone();
            inner.last = Some(last);
            (transition.map(|t| (t, reason)), inner.state.next_interval())
        };
        if let Some((t, reason)) = transition {
            self.publish(t, reason);
        }
        next
    }

    fn publish(&self, t: Transition, reason: Option<String>) {
        let s = &self.shared;
        let event = HealthEvent {
            id: s.id.clone(),
            addr: s.addr,
            port: s.port,
            from: t.from,
            to: t.to,
            failure: t.reason,
            reason: if t.to == Health::Down { reason } else { None },
            latency: t.latency,
            at: t.at,
            wall: SystemTime::now(),
        };
        match event.to {
            Health::Down => tracing::warn!(
                target: LOG_TARGET,
                id = %s.id, addr = %s.addr, port = s.port, check = s.check,
                reason = event.reason.as_deref().unwrap_or("unknown"),
                "{} is DOWN: {}", s.id, event.reason.as_deref().unwrap_or("unknown"),
            ),
            Health::Up => tracing::info!(
                target: LOG_TARGET,
                id = %s.id, addr = %s.addr, port = s.port, check = s.check,
                latency = %event.latency.map(fmt_duration).unwrap_or_default(),
                "{} is UP (latency {})", s.id, event.latency.map(fmt_duration).unwrap_or_default(),
            ),
        }
        // No receiver is fine: the snapshot has the state.
        let _ = self.events.send(event);
    }
}

impl std::fmt::Debug for TargetTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetTask")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tick_follows_the_shortest_interval_within_bounds() {
        let cfg = |interval_ms: u64, down_ms: u64| sluice_core::health::HealthConfig {
            rise: 2,
            fall: 3,
            interval: Duration::from_millis(interval_ms),
            down_interval: Duration::from_millis(down_ms),
            initial: Health::Up,
        };
        assert_eq!(fire_tick(&cfg(2000, 2000)), FIRE_TICK_MAX);
        assert_eq!(fire_tick(&cfg(1000, 1000)), Duration::from_millis(25));
        assert_eq!(fire_tick(&cfg(2000, 400)), Duration::from_millis(10));
        assert_eq!(fire_tick(&cfg(200, 2000)), Duration::from_millis(5));
        assert_eq!(fire_tick(&cfg(20, 20)), FIRE_TICK_MIN);
    }

    #[test]
    fn fire_times_round_up_to_the_tick() {
        let epoch = Instant::now();
        let tick = Duration::from_millis(10);
        let at = |ms: u64, us: u64| epoch + Duration::from_millis(ms) + Duration::from_micros(us);
        assert_eq!(align_up(epoch, at(0, 0), tick), at(0, 0));
        assert_eq!(align_up(epoch, at(0, 1), tick), at(10, 0));
        assert_eq!(align_up(epoch, at(10, 0), tick), at(10, 0));
        assert_eq!(align_up(epoch, at(1234, 567), tick), at(1240, 0));
        // Before the epoch: unchanged (cannot happen in the checker, but
        // must not panic).
        let before = epoch.checked_sub(Duration::from_millis(3)).unwrap_or(epoch);
        assert_eq!(align_up(epoch, before, tick), before);
    }
}
