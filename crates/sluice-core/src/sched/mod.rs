//! Schedulers: which real server gets a new flow or request.
//!
//! # The model
//!
//! A service's reals are a slice; a real is named by its **index** into that
//! slice, and every scheduler returns such an index. The caller keeps the
//! slice order stable for the life of a service (append new reals, mark
//! removed ones unavailable or rebuild), because the stateful pickers
//! ([`rr::RrPicker`], [`rr::WrrPicker`], [`l7::L7Balancer`]) remember
//! positions.
//!
//! A real takes **new** flows only when it is [`Real::available`] (healthy
//! and not in maintenance or drain) **and** its weight is above zero. Weight 0
//! is IPVS's "quiesce": existing flows continue, new ones go elsewhere.
//!
//! **Ties** are broken by the lowest index everywhere unless a scheduler's
//! docs say otherwise (L7 `leastconn` rotates among ties, as HAProxy does).
//!
//! # L4 (IPVS names)
//!
//! | name | where |
//! |---|---|
//! | `rr`, `wrr` | [`rr`] (IPVS interleaved order; [`rr::wrr_sequence`] gives the XDP ring) |
//! | `lc`, `wlc`, `sed`, `nq` | [`lc`] (pure functions over connection counts) |
//! | `sh`, `dh` | [`hashsched`] (Maglev-backed address hash) |
//! | `mh` | [`maglev`] |
//!
//! Persistence (sticky clients per service) is [`persist::PersistenceTable`].
//! L7 (HAProxy names) is [`l7`].

pub mod hashsched;
pub mod l7;
pub mod lc;
pub mod maglev;
pub mod persist;
pub mod rr;

use std::fmt;
use std::str::FromStr;

/// One real server as the L4 schedulers see it. Built by the caller from its
/// own backend snapshot (config weight, health, operator state, counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Real {
    /// Configured weight. 0 means "take no new flows" (drain/quiesce).
    pub weight: u32,
    /// Active connections (IPVS `activeconns`: ESTABLISHED TCP flows).
    pub active_conns: u32,
    /// Inactive connections (IPVS `inactconns`: every other tracked flow).
    pub inactive_conns: u32,
    /// Healthy and operator-enabled (see [`crate::health::Effective::Serving`]).
    pub available: bool,
}

// === impl Real ===

impl Real {
    /// An available real with `weight` and no connections.
    pub const fn new(weight: u32) -> Self {
        Self {
            weight,
            active_conns: 0,
            inactive_conns: 0,
            available: true,
        }
    }

    /// Whether this real may be given a **new** flow: available and weight > 0.
    pub const fn accepts_new(&self) -> bool {
        self.available && self.weight > 0
    }
}

/// The L4 scheduler of a service, by its IPVS name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L4Scheduler {
    /// Round robin over available reals, ignoring weights (except weight 0).
    Rr,
    /// Weighted round robin, IPVS interleaved order.
    Wrr,
    /// Least connections (IPVS overhead `active*256 + inactive`).
    Lc,
    /// Weighted least connections: min overhead / weight.
    Wlc,
    /// Shortest expected delay: min (active + 1) / weight.
    Sed,
    /// Never queue: an idle real first, otherwise SED.
    Nq,
    /// Source-address hash.
    Sh,
    /// Destination-address hash.
    Dh,
    /// Maglev hash on the flow's 5-tuple.
    Mh,
}

impl L4Scheduler {
    /// Every scheduler, in documentation order.
    pub const ALL: [L4Scheduler; 9] = [
        Self::Rr,
        Self::Wrr,
        Self::Lc,
        Self::Wlc,
        Self::Sed,
        Self::Nq,
        Self::Sh,
        Self::Dh,
        Self::Mh,
    ];

    /// The IPVS name (`"rr"`, `"wlc"`, `"mh"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rr => "rr",
            Self::Wrr => "wrr",
            Self::Lc => "lc",
            Self::Wlc => "wlc",
            Self::Sed => "sed",
            Self::Nq => "nq",
            Self::Sh => "sh",
            Self::Dh => "dh",
            Self::Mh => "mh",
        }
    }

    /// Whether the scheduler is a pure function of the flow key and the real
    /// set (so the XDP program can use a precomputed table and several LBs
    /// agree without sharing state).
    pub const fn is_hash_based(self) -> bool {
        matches!(self, Self::Sh | Self::Dh | Self::Mh)
    }
}

impl fmt::Display for L4Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for L4Scheduler {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| SchedError::UnknownScheduler(s.to_owned()))
    }
}

/// Errors from building scheduler tables. All are configuration errors: they
/// are raised when a table is built, never per flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchedError {
    /// The name is not one of [`L4Scheduler::ALL`] / [`l7::L7Algorithm::ALL`].
    #[error("unknown scheduler {0:?}")]
    UnknownScheduler(String),
    /// A WRR cycle would be longer than [`rr::MAX_WRR_CYCLE_LEN`].
    #[error("wrr cycle of {len} entries exceeds the limit of {max}")]
    WrrCycleTooLong {
        /// Length the weights would need (sum of weight / gcd).
        len: u64,
        /// [`rr::MAX_WRR_CYCLE_LEN`].
        max: usize,
    },
    /// A Maglev table size that is not prime (the permutation needs it).
    #[error("maglev table size {0} is not prime")]
    TableSizeNotPrime(usize),
    /// A Maglev table size outside `MIN_TABLE_SIZE..=MAX_TABLE_SIZE`.
    #[error("maglev table size {size} is outside {min}..={max}")]
    TableSizeOutOfRange {
        /// The requested size.
        size: usize,
        /// [`maglev::MIN_TABLE_SIZE`].
        min: usize,
        /// [`maglev::MAX_TABLE_SIZE`].
        max: usize,
    },
    /// More reals than table slots, so some would get no slot at all.
    #[error("{reals} reals do not fit a table of {size} slots")]
    TooManyReals {
        /// Reals with weight > 0.
        reals: usize,
        /// Table size.
        size: usize,
    },
}

/// Greatest common divisor (Euclid). `gcd(0, x) == x`.
pub const fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        let t = a % b;
        a = b;
        b = t;
    }
    a
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in L4Scheduler::ALL {
            assert_eq!(s.name().parse::<L4Scheduler>().unwrap(), s);
        }
        assert!("wlcx".parse::<L4Scheduler>().is_err());
    }

    #[test]
    fn gcd_examples() {
        assert_eq!(gcd(12, 18), 6);
        assert_eq!(gcd(0, 7), 7);
        assert_eq!(gcd(7, 0), 7);
        assert_eq!(gcd(4, 3), 1);
    }

    #[test]
    fn weight_zero_or_unavailable_takes_no_new_flows() {
        assert!(Real::new(1).accepts_new());
        assert!(!Real::new(0).accepts_new());
        assert!(
            !Real {
                available: false,
                ..Real::new(5)
            }
            .accepts_new()
        );
    }
}
