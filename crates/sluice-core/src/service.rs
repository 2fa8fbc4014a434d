//! What the data path does with a real (an L4 real or an L7 server): one
//! rule combining its health (from the checks), its operator state and its
//! service's policy (`on_real_down`, `fail_open`). The L4 control plane,
//! the proxy and the health checker all ask here, so `sluice ctl list`,
//! `sluice ctl checks` and the traffic never disagree.
//!
//! | health \ operator | Enabled | Drain | Maintenance |
//! |---|---|---|---|
//! | Up | Serving | Draining | Out |
//! | Down, `on_real_down = keep` | Draining | Draining | Out |
//! | Down, `on_real_down = expire` | Out | Out | Out |
//!
//! - *Serving*: gets new flows and keeps its existing ones.
//! - *Draining*: keeps its existing flows, gets no new ones.
//! - *Out*: gets nothing; its existing flows go elsewhere (L4: their next
//!   packet is scheduled again).
//!
//! **Fail-open**: when no real of a service is Serving and the service has
//! `fail_open`, every real the operator left *Enabled* serves regardless of
//! its health (checks can be wrong, e.g. a broken health endpoint; sending
//! traffic beats a certain outage). Drained and maintenance reals are never
//! brought back.

use std::fmt;
use std::str::FromStr;

use crate::health::Health;

/// Operator (admin) state, kept apart from health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OperatorState {
    /// Normal operation.
    #[default]
    Enabled,
    /// No new flows; existing flows continue.
    Drain,
    /// Out of service: no flows at all (checks keep running).
    Maintenance,
}

impl OperatorState {
    /// Every state, in documentation order.
    pub const ALL: [OperatorState; 3] = [Self::Enabled, Self::Drain, Self::Maintenance];

    /// The name used by `sluice ctl` and the admin API.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enabled => "enabled",
            Self::Drain => "drain",
            Self::Maintenance => "maintenance",
        }
    }
}

impl FromStr for OperatorState {
    type Err = UnknownName;
    /// Also accepts the short forms `enable` and `maint`.
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "enabled" | "enable" => Ok(Self::Enabled),
            "drain" => Ok(Self::Drain),
            "maintenance" | "maint" => Ok(Self::Maintenance),
            _ => Err(UnknownName::new(s, "enabled, drain or maintenance")),
        }
    }
}

/// What happens to the flows of a real whose health check marks it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnRealDown {
    /// Keep them (the real only stops getting new flows), like a drain.
    #[default]
    Keep,
    /// Expire them: their next packet is scheduled to a healthy real.
    Expire,
}

impl OnRealDown {
    /// Every policy, in documentation order.
    pub const ALL: [OnRealDown; 2] = [Self::Keep, Self::Expire];

    /// The configuration keyword.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Keep => "keep",
            Self::Expire => "expire",
        }
    }
}

impl FromStr for OnRealDown {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, UnknownName> {
        match s {
            "keep" => Ok(Self::Keep),
            "expire" => Ok(Self::Expire),
            _ => Err(UnknownName::new(s, "keep or expire")),
        }
    }
}

/// What the data path does with a real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effective {
    /// Gets new flows and keeps existing ones.
    Serving,
    /// Keeps existing flows only.
    Draining,
    /// Gets nothing; existing flows are moved elsewhere.
    Out,
}

impl Effective {
    /// The name shown by `sluice ctl`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Serving => "serving",
            Self::Draining => "draining",
            Self::Out => "out",
        }
    }

    /// Whether the real gets new flows.
    pub const fn new_flows(self) -> bool {
        matches!(self, Self::Serving)
    }

    /// Whether the real keeps the flows it has.
    pub const fn keeps_flows(self) -> bool {
        matches!(self, Self::Serving | Self::Draining)
    }
}

/// A service's policy for its reals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RealPolicy {
    /// What happens to the flows of a real that goes down.
    pub on_real_down: OnRealDown,
    /// With no real Serving, serve from every Enabled real anyway.
    pub fail_open: bool,
}

/// One real on its own (no fail-open, which needs the whole service):
/// see the module's table.
pub const fn effective(
    health: Health,
    operator: OperatorState,
    on_real_down: OnRealDown,
) -> Effective {
    match (operator, health, on_real_down) {
        (OperatorState::Maintenance, _, _) => Effective::Out,
        (OperatorState::Enabled, Health::Up, _) => Effective::Serving,
        (OperatorState::Drain, Health::Up, _) | (_, Health::Down, OnRealDown::Keep) => {
            Effective::Draining
        }
        (_, Health::Down, OnRealDown::Expire) => Effective::Out,
    }
}

/// Health and operator state of one real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RealStatus {
    /// From the checks.
    pub health: Health,
    /// From the operator.
    pub operator: OperatorState,
}

/// What a service does with each of its reals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceView {
    /// `reals[i]`: what real `i` gets.
    pub reals: Vec<Effective>,
    /// `true` when no real was Serving and `fail_open` put the Enabled
    /// ones back (worth a loud log line and a metric).
    pub failed_open: bool,
}

/// Every real of a service at once, with fail-open (see the module docs).
pub fn service_view(reals: &[RealStatus], policy: RealPolicy) -> ServiceView {
    let mut view: Vec<Effective> = reals
        .iter()
        .map(|r| effective(r.health, r.operator, policy.on_real_down))
        .collect();
    let mut failed_open = false;
    if policy.fail_open && !view.iter().any(|e| e.new_flows()) {
        for (e, r) in view.iter_mut().zip(reals) {
            if r.operator == OperatorState::Enabled {
                *e = Effective::Serving;
                failed_open = true;
            }
        }
    }
    ServiceView {
        reals: view,
        failed_open,
    }
}

/// A name that is not one of a type's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name {name:?}, expected {expected}")]
pub struct UnknownName {
    /// What was given.
    pub name: String,
    /// The names accepted.
    pub expected: &'static str,
}

impl UnknownName {
    /// `name` is not one of `expected`.
    pub fn new(name: &str, expected: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            expected,
        }
    }
}

impl fmt::Display for OperatorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for OnRealDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Effective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The table every plane is tested against (`cases()`): each combination
/// of health, operator state, `on_real_down` and `fail_open` for a real
/// that is alone in its service or next to one healthy Enabled real, with
/// what the real gets. Planes run it through their own machinery (L4's
/// maps, the proxy's balancer, the checker's status) and compare.
pub mod table {
    use super::*;

    /// One case of the table.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Case {
        /// The real under test.
        pub real: RealStatus,
        /// The service's policy.
        pub policy: RealPolicy,
        /// Whether a second, healthy and Enabled real is in the service
        /// (then fail-open never triggers).
        pub with_healthy_peer: bool,
        /// What the real under test gets.
        pub expect: Effective,
    }

    /// Every case, derived from the module's rule by hand (not by calling
    /// it), so a change of the rule shows here.
    pub fn cases() -> Vec<Case> {
        use Effective::{Draining, Out, Serving};
        use OperatorState::{Drain, Enabled, Maintenance};
        let mut out = Vec::new();
        for health in [Health::Up, Health::Down] {
            for operator in OperatorState::ALL {
                for on_real_down in OnRealDown::ALL {
                    for fail_open in [false, true] {
                        for with_healthy_peer in [false, true] {
                            let alone_failing_open = fail_open && !with_healthy_peer;
                            let expect = match (operator, health) {
                                (Maintenance, _) => Out,
                                (Enabled, Health::Up) => Serving,
                                (Enabled, Health::Down) if alone_failing_open => Serving,
                                (Drain, Health::Up) => Draining,
                                (_, Health::Down) => match on_real_down {
                                    OnRealDown::Keep => Draining,
                                    OnRealDown::Expire => Out,
                                },
                            };
                            out.push(Case {
                                real: RealStatus { health, operator },
                                policy: RealPolicy {
                                    on_real_down,
                                    fail_open,
                                },
                                with_healthy_peer,
                                expect,
                            });
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_matches_the_table() {
        let peer = RealStatus {
            health: Health::Up,
            operator: OperatorState::Enabled,
        };
        for c in table::cases() {
            let reals: Vec<RealStatus> = if c.with_healthy_peer {
                vec![c.real, peer]
            } else {
                vec![c.real]
            };
            let view = service_view(&reals, c.policy);
            assert_eq!(view.reals[0], c.expect, "{c:?}");
            if c.with_healthy_peer {
                assert_eq!(view.reals[1], Effective::Serving, "{c:?}");
            }
            assert_eq!(
                view.failed_open,
                !c.with_healthy_peer
                    && c.policy.fail_open
                    && c.real.operator == OperatorState::Enabled
                    && c.real.health == Health::Down,
                "{c:?}"
            );
        }
        assert_eq!(table::cases().len(), 48);
    }

    #[test]
    fn fail_open_brings_back_only_enabled_reals() {
        use OperatorState::*;
        let st = |health, operator| RealStatus { health, operator };
        let policy = RealPolicy {
            on_real_down: OnRealDown::Expire,
            fail_open: true,
        };
        let all_down = [
            st(Health::Down, Enabled),
            st(Health::Down, Maintenance),
            st(Health::Down, Enabled),
            st(Health::Up, Drain),
        ];
        let v = service_view(&all_down, policy);
        use Effective::*;
        assert_eq!(v.reals, vec![Serving, Out, Serving, Draining]);
        assert!(v.failed_open);
        let none_enabled = [st(Health::Down, Drain), st(Health::Down, Maintenance)];
        let v = service_view(&none_enabled, policy);
        assert_eq!((v.reals, v.failed_open), (vec![Out, Out], false));
        assert!(!service_view(&[], policy).failed_open);
    }

    #[test]
    fn names_round_trip() {
        for s in OperatorState::ALL {
            assert_eq!(s.as_str().parse::<OperatorState>().unwrap(), s);
        }
        for p in OnRealDown::ALL {
            assert_eq!(p.as_str().parse::<OnRealDown>().unwrap(), p);
        }
        assert_eq!(
            "maint".parse::<OperatorState>().unwrap(),
            OperatorState::Maintenance
        );
        let e = "x".parse::<OperatorState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown name \"x\", expected enabled, drain or maintenance"
        );
    }
}
