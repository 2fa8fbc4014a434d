//! Health state machine: rise/fall counting per check target, kept apart
//! from the operator's state, and the fail-open policy.
//!
//! Sans-IO: the prober (sluice-health) runs checks and feeds each result to
//! [`HealthState::observe`] with `now` (a [`Duration`] since any fixed
//! epoch); it asks [`HealthState::next_interval`] and [`jittered`] when to
//! probe next. Nothing here reads a clock or draws random numbers.
//!
//! Semantics (HAProxy's `rise`/`fall`, keepalived's retry counts):
//!
//! - While **Down**, `rise` consecutive successes make the target **Up**.
//! - While **Up**, `fall` consecutive failures make it **Down**.
//! - A result of the other kind resets the streak; a success while Up (or a
//!   failure while Down) changes nothing but the counters.
//! - The health state and the operator state are independent;
//!   [`crate::service::effective`] combines them with the service's policy.

use std::time::Duration;

/// Default check interval (HAProxy `inter`).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// Default consecutive successes to go Up (HAProxy `rise`).
pub const DEFAULT_RISE: u32 = 2;
/// Default consecutive failures to go Down (HAProxy `fall`).
pub const DEFAULT_FALL: u32 = 3;
/// Largest accepted `rise`/`fall`: beyond this a target would take hours to
/// change state at any sane interval; larger values are configuration typos.
pub const MAX_RISE_FALL: u32 = 1000;
/// Largest jitter, in percent of the interval (±100 % may yield 0).
pub const MAX_JITTER_PERCENT: u8 = 100;

/// Health as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Passing checks.
    Up,
    /// Failing checks.
    Down,
}

/// Why a check failed. Probes map their errors onto these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureReason {
    /// No answer within the check timeout.
    Timeout,
    /// Connection refused (RST to SYN, ICMP port unreachable).
    Refused,
    /// Connection reset or closed early.
    Reset,
    /// Host or network unreachable.
    Unreachable,
    /// HTTP answered with an unexpected status.
    BadStatus(u16),
    /// HTTP answered, but the body lacked the expected content.
    ContentMismatch,
    /// A check script exited non-zero (its code).
    ScriptExit(i32),
    /// Anything else, described.
    Other(String),
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Passed, with the time the check took.
    Ok {
        /// Round-trip time of the check.
        latency: Duration,
    },
    /// Failed.
    Err {
        /// Why.
        reason: FailureReason,
    },
}

/// A change of health, returned by [`HealthState::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Health before.
    pub from: Health,
    /// Health after.
    pub to: Health,
    /// The failure that completed the `fall` streak (`None` when going Up).
    pub reason: Option<FailureReason>,
    /// Latency of the success that completed the `rise` streak.
    pub latency: Option<Duration>,
    /// When (the `now` passed to `observe`).
    pub at: Duration,
}

/// Check parameters of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthConfig {
    /// Consecutive successes to go Up (1..=[`MAX_RISE_FALL`]).
    pub rise: u32,
    /// Consecutive failures to go Down (1..=[`MAX_RISE_FALL`]).
    pub fall: u32,
    /// Interval between checks while Up.
    pub interval: Duration,
    /// Interval while Down (HAProxy `downinter`, keepalived `delay_loop` on
    /// failure); defaults to `interval`.
    pub down_interval: Duration,
    /// State before the first result. HAProxy and keepalived start servers
    /// Up, so that a restart of the LB does not black-hole a healthy pool
    /// for `rise × interval`; choose Down for "prove yourself first".
    pub initial: Health,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            rise: DEFAULT_RISE,
            fall: DEFAULT_FALL,
            interval: DEFAULT_INTERVAL,
            down_interval: DEFAULT_INTERVAL,
            initial: Health::Up,
        }
    }
}

/// Invalid [`HealthConfig`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HealthConfigError {
    /// `rise` outside 1..=[`MAX_RISE_FALL`].
    #[error("rise {0} is outside 1..={max}", max = MAX_RISE_FALL)]
    Rise(u32),
    /// `fall` outside 1..=[`MAX_RISE_FALL`].
    #[error("fall {0} is outside 1..={max}", max = MAX_RISE_FALL)]
    Fall(u32),
    /// A zero interval would check in a busy loop.
    #[error("check interval must be greater than zero")]
    ZeroInterval,
}

// === impl HealthConfig ===

impl HealthConfig {
    /// Checks the limits.
    ///
    /// # Errors
    ///
    /// The first limit violated, as a [`HealthConfigError`].
    pub fn validate(&self) -> Result<(), HealthConfigError> {
        if !(1..=MAX_RISE_FALL).contains(&self.rise) {
            return Err(HealthConfigError::Rise(self.rise));
        }
        if !(1..=MAX_RISE_FALL).contains(&self.fall) {
            return Err(HealthConfigError::Fall(self.fall));
        }
        if self.interval.is_zero() || self.down_interval.is_zero() {
            return Err(HealthConfigError::ZeroInterval);
        }
        Ok(())
    }
}

/// The last result, for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastResult {
    /// When it was observed.
    pub at: Duration,
    /// What it was.
    pub result: CheckResult,
}

/// Rise/fall state of one check target, plus counters for display.
#[derive(Debug, Clone)]
pub struct HealthState {
    config: HealthConfig,
    health: Health,
    /// Current streak of successes (reset by a failure).
    successes: u32,
    /// Current streak of failures (reset by a success).
    failures: u32,
    last: Option<LastResult>,
    last_change: Option<Duration>,
    checks_total: u64,
    failures_total: u64,
    transitions_total: u64,
}

// === impl HealthState ===

impl HealthState {
    /// A target in `config.initial` state.
    ///
    /// # Errors
    ///
    /// The config's [`HealthConfig::validate`] error.
    pub fn new(config: HealthConfig) -> Result<Self, HealthConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            health: config.initial,
            successes: 0,
            failures: 0,
            last: None,
            last_change: None,
            checks_total: 0,
            failures_total: 0,
            transitions_total: 0,
        })
    }

    /// Feeds one check result; returns the transition if health changed.
    pub fn observe(&mut self, now: Duration, result: CheckResult) -> Option<Transition> {
        self.checks_total += 1;
        let transition = match &result {
            CheckResult::Ok { latency } => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                (self.health == Health::Down && self.successes >= self.config.rise).then_some(
                    Transition {
                        from: Health::Down,
                        to: Health::Up,
                        reason: None,
                        latency: Some(*latency),
                        at: now,
                    },
                )
            }
            CheckResult::Err { reason } => {
                self.failures_total += 1;
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                (self.health == Health::Up && self.failures >= self.config.fall).then(|| {
                    Transition {
                        from: Health::Up,
                        to: Health::Down,
                        reason: Some(reason.clone()),
                        latency: None,
                        at: now,
                    }
                })
            }
        };
        if let Some(t) = &transition {
            self.health = t.to;
            self.last_change = Some(now);
            self.transitions_total += 1;
        }
        self.last = Some(LastResult { at: now, result });
        transition
    }

    /// Current health.
    pub const fn health(&self) -> Health {
        self.health
    }

    /// The configuration.
    pub const fn config(&self) -> &HealthConfig {
        &self.config
    }

    /// Interval until the next check: `interval` while Up, `down_interval`
    /// while Down. Apply [`jittered`] before sleeping.
    pub const fn next_interval(&self) -> Duration {
        match self.health {
            Health::Up => self.config.interval,
            Health::Down => self.config.down_interval,
        }
    }

    /// Current streak: `(consecutive successes, consecutive failures)`; one
    /// of them is 0.
    pub const fn streak(&self) -> (u32, u32) {
        (self.successes, self.failures)
    }

    /// The last result, if any.
    pub const fn last_result(&self) -> Option<&LastResult> {
        self.last.as_ref()
    }

    /// When health last changed (`None`: never, still the initial state).
    pub const fn last_change(&self) -> Option<Duration> {
        self.last_change
    }

    /// Checks observed.
    pub const fn checks_total(&self) -> u64 {
        self.checks_total
    }

    /// Failed checks observed.
    pub const fn failures_total(&self) -> u64 {
        self.failures_total
    }

    /// Health changes so far.
    pub const fn transitions_total(&self) -> u64 {
        self.transitions_total
    }
}

/// `interval` moved uniformly by up to ±`jitter_percent` % (clamped to
/// [`MAX_JITTER_PERCENT`]), chosen by the caller's `random` value, so probes
/// of many targets do not synchronise. Deterministic in `random`.
pub fn jittered(interval: Duration, jitter_percent: u8, random: u64) -> Duration {
    let pct = u128::from(jitter_percent.min(MAX_JITTER_PERCENT));
    let nanos = interval.as_nanos();
    let span = nanos * pct / 100;
    if span == 0 {
        return interval;
    }
    // Uniform over [nanos - span, nanos + span] (modulo bias is at most
    // 2^-64 relative, irrelevant here).
    let offset = u128::from(random) % (2 * span + 1);
    let out = nanos - span + offset;
    Duration::from_nanos(u64::try_from(out).unwrap_or(u64::MAX))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
    fn ok() -> CheckResult {
        CheckResult::Ok { latency: ms(3) }
    }
    fn err() -> CheckResult {
        CheckResult::Err {
            reason: FailureReason::Timeout,
        }
    }

    /// A virtual-time driver: probes at `next_interval()` steps and feeds
    /// the scripted results; returns (time, transition) pairs.
    fn drive(state: &mut HealthState, script: &[bool]) -> Vec<(Duration, Health)> {
        let mut now = Duration::ZERO;
        let mut out = Vec::new();
        for &pass in script {
            now += state.next_interval();
            if let Some(t) = state.observe(now, if pass { ok() } else { err() }) {
                out.push((t.at, t.to));
            }
        }
        out
    }

    #[test]
    fn fall_then_rise_with_defaults_in_virtual_time() {
        let cfg = HealthConfig {
            down_interval: ms(500),
            ..HealthConfig::default()
        };
        let mut s = HealthState::new(cfg).unwrap();
        assert_eq!(s.health(), Health::Up);
        // Two failures, a success (resets), three failures -> Down at check 6.
        // Then 1 success, 1 failure (resets), 2 successes -> Up.
        let script = [
            false, false, true, false, false, false, true, false, true, true,
        ];
        let t = drive(&mut s, &script);
        // Checks 1..6 every 2 s (Up) -> Down at 12 s; then every 500 ms.
        assert_eq!(
            t,
            vec![(ms(12_000), Health::Down), (ms(14_000), Health::Up)]
        );
        assert_eq!(s.checks_total(), 10);
        assert_eq!(s.failures_total(), 6);
        assert_eq!(s.transitions_total(), 2);
        assert_eq!(s.last_change(), Some(ms(14_000)));
        assert_eq!(s.last_result().unwrap().result, ok());
        assert_eq!(s.streak(), (2, 0));
    }

    #[test]
    fn transition_carries_reason_and_latency() {
        let cfg = HealthConfig {
            rise: 1,
            fall: 1,
            ..HealthConfig::default()
        };
        let mut s = HealthState::new(cfg).unwrap();
        let t = s
            .observe(
                ms(1),
                CheckResult::Err {
                    reason: FailureReason::BadStatus(503),
                },
            )
            .unwrap();
        assert_eq!((t.from, t.to), (Health::Up, Health::Down));
        assert_eq!(t.reason, Some(FailureReason::BadStatus(503)));
        assert_eq!(s.observe(ms(2), err()), None, "already down");
        let t = s
            .observe(ms(3), CheckResult::Ok { latency: ms(42) })
            .unwrap();
        assert_eq!(
            (t.to, t.latency, t.reason),
            (Health::Up, Some(ms(42)), None)
        );
    }

    #[test]
    fn initial_down_needs_rise_successes() {
        let cfg = HealthConfig {
            initial: Health::Down,
            rise: 3,
            ..HealthConfig::default()
        };
        let mut s = HealthState::new(cfg).unwrap();
        assert_eq!(s.next_interval(), DEFAULT_INTERVAL);
        assert_eq!(s.last_change(), None);
        assert_eq!(drive(&mut s, &[true, true]), vec![]);
        assert_eq!(s.health(), Health::Down);
        assert_eq!(s.observe(ms(1), ok()).map(|t| t.to), Some(Health::Up));
    }

    #[test]
    fn config_validation() {
        let bad = |c: HealthConfig| HealthState::new(c).unwrap_err();
        assert_eq!(
            bad(HealthConfig {
                rise: 0,
                ..Default::default()
            }),
            HealthConfigError::Rise(0)
        );
        assert_eq!(
            bad(HealthConfig {
                fall: 1001,
                ..Default::default()
            }),
            HealthConfigError::Fall(1001)
        );
        assert_eq!(
            bad(HealthConfig {
                down_interval: Duration::ZERO,
                ..Default::default()
            }),
            HealthConfigError::ZeroInterval
        );
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let i = Duration::from_secs(2);
        assert_eq!(jittered(i, 0, 12345), i);
        assert_eq!(jittered(i, 10, 0), ms(1800), "random 0 is the low end");
        // span = 200 ms = 2e8 ns; random = 2*span is the top end.
        assert_eq!(jittered(i, 10, 400_000_000), ms(2200));
        assert_eq!(jittered(i, 10, 200_000_000), i);
        for r in [1u64, 99, u64::MAX, 0xdead_beef] {
            let j = jittered(i, 10, r);
            assert!(j >= ms(1800) && j <= ms(2200));
            assert_eq!(j, jittered(i, 10, r));
        }
        assert!(jittered(i, 255, u64::MAX) <= ms(4000), "clamped to 100 %");
    }
}
