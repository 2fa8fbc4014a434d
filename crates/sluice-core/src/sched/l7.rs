//! L7 balancing with HAProxy's algorithm names, plus the failover candidate
//! iterator.
//!
//! # Model
//!
//! A backend pool is a slice of [`Backend`]s; indices name servers. For every
//! request the proxy asks [`L7Balancer::candidates`] for an iterator of server
//! indices in preference order: the first is the algorithm's choice, the
//! rest are the failover order. The iterator is
//!
//! - **de-duplicated**: no index appears twice;
//! - **filtered**: only servers that accept new requests ([`Backend::accepts_new`])
//!   and are not in the caller's `tried` list;
//! - **bounded**: at most `backends.len()` items (the caller still applies its
//!   own retry limit with `.take(retries)`);
//! - **tiered**: `backup` servers appear only when *no* primary server accepts
//!   new requests (HAProxy `backup`; with several backups they are balanced
//!   with the same algorithm, as HAProxy's `option allbackups` does).
//!
//! # Algorithms
//!
//! | name | choice | failover order |
//! |---|---|---|
//! | `roundrobin` | smooth weighted RR (nginx), weights re-read per request | index order after the choice |
//! | `static-rr` | IPVS WRR ([`super::rr::WrrPicker`]) | index order |
//! | `leastconn` | min `active / weight`; ties rotate | index order |
//! | `source` | client IP hash, map-based over serving servers | index order |
//! | `uri` | hash of the path (before `?`), map-based | index order |
//! | `consistent` | Maglev ring over the tier ([`RequestInfo::hash_key`] or client IP) | ring order |
//! | `random` | power of two choices from two caller random values | index order |
//!
//! "Map-based" (HAProxy's default `hash-type`) means `hash % total_weight`
//! over the servers currently serving: exact weights, but a server going up
//! or down remaps many clients. `consistent` keeps clients in place: its ring
//! is built from the tier's configured servers and weights (health does not
//! change it), and a down server's requests move to the next servers on the
//! ring. The ring is updated with [`super::maglev::maglev_table_update`], so
//! adding or removing a server moves only that server's share.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::SchedError;
use super::maglev::{maglev_table_update, min_table_size};
use super::rr::WrrPicker;
use crate::hash::{hash_bytes, hash_ip};

/// Seed for `source` hashing.
const SEED_SOURCE: u64 = 0x6c37_5f73_7263_0001;
/// Seed for `uri` hashing.
const SEED_URI: u64 = 0x6c37_5f75_7269_0001;

/// HAProxy's `balance` algorithms that sluice implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum L7Algorithm {
    /// `roundrobin`: smooth weighted round robin, dynamic weights.
    RoundRobin,
    /// `static-rr`: weighted round robin with IPVS order.
    StaticRr,
    /// `leastconn`: fewest active requests per weight.
    LeastConn,
    /// `source`: hash of the client address.
    Source,
    /// `uri`: hash of the request path.
    Uri,
    /// `consistent`: Maglev consistent hashing of a request key.
    Consistent,
    /// `random`: power of two random choices.
    Random,
}

impl L7Algorithm {
    /// Every algorithm.
    pub const ALL: [L7Algorithm; 7] = [
        Self::RoundRobin,
        Self::StaticRr,
        Self::LeastConn,
        Self::Source,
        Self::Uri,
        Self::Consistent,
        Self::Random,
    ];

    /// The HAProxy-style name (`"roundrobin"`, `"static-rr"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::RoundRobin => "roundrobin",
            Self::StaticRr => "static-rr",
            Self::LeastConn => "leastconn",
            Self::Source => "source",
            Self::Uri => "uri",
            Self::Consistent => "consistent",
            Self::Random => "random",
        }
    }
}

impl fmt::Display for L7Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for L7Algorithm {
    type Err = SchedError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == s)
            .ok_or_else(|| SchedError::UnknownScheduler(s.to_owned()))
    }
}

/// One server of an L7 pool as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Stable key (e.g. [`super::hashsched::real_key`] of its address), used
    /// by `consistent`.
    pub key: u64,
    /// Current weight; 0 = no new requests.
    pub weight: u32,
    /// Requests in flight on this server.
    pub active: u32,
    /// Healthy and operator-enabled.
    pub available: bool,
    /// A `backup` server: used only when no primary accepts new requests.
    pub backup: bool,
}

// === impl Backend ===

impl Backend {
    /// An available primary server with no active requests.
    pub const fn new(key: u64, weight: u32) -> Self {
        Self {
            key,
            weight,
            active: 0,
            available: true,
            backup: false,
        }
    }

    /// Whether the server may get new requests (available, weight > 0).
    pub const fn accepts_new(&self) -> bool {
        self.available && self.weight > 0
    }
}

/// What the hashing and random algorithms need from a request.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestInfo<'a> {
    /// The client address (`source`; `consistent` when no `hash_key`).
    pub client_ip: Option<IpAddr>,
    /// The request target's path and query (`uri` hashes up to `?`).
    pub path: Option<&'a str>,
    /// A caller-computed key for `consistent` (cookie, header, ...).
    pub hash_key: Option<u64>,
    /// Two caller-supplied random values (`random`); no RNG lives here.
    pub random: [u64; 2],
}

/// Cached consistent-hash ring for one tier.
#[derive(Debug, Clone)]
struct Ring {
    backup_tier: bool,
    /// `(key, weight)` of the tier's servers with weight > 0, ring order.
    members: Vec<(u64, u32)>,
    /// Ring member -> backend index.
    backend_of: Vec<usize>,
    /// Slot -> ring member.
    table: Vec<u32>,
}

/// Per-pool balancing state (round-robin positions, the consistent ring).
/// One per backend pool; `&mut` per request, so the proxy keeps it behind a
/// lock or per worker.
#[derive(Debug, Clone)]
pub struct L7Balancer {
    algorithm: L7Algorithm,
    /// Smooth WRR current weights, by backend index.
    swrr: Vec<i64>,
    wrr: WrrPicker,
    lc_next: usize,
    ring: Option<Ring>,
}

// === impl L7Balancer ===

impl L7Balancer {
    /// A balancer for `algorithm` with fresh state.
    pub fn new(algorithm: L7Algorithm) -> Self {
        Self {
            algorithm,
            swrr: Vec::new(),
            wrr: WrrPicker::new(),
            lc_next: 0,
            ring: None,
        }
    }

    /// The algorithm.
    pub const fn algorithm(&self) -> L7Algorithm {
        self.algorithm
    }

    /// The first candidate (see [`Self::candidates`]).
    pub fn select(&mut self, backends: &[Backend], req: &RequestInfo<'_>) -> Option<usize> {
        self.candidates(backends, req, &[]).next()
    }

    /// Candidates in preference order, skipping `tried` (see module docs).
    /// Advances round-robin state once.
    pub fn candidates(
        &mut self,
        backends: &[Backend],
        req: &RequestInfo<'_>,
        tried: &[usize],
    ) -> Candidates {
        let n = backends.len();
        let backup_tier = if backends.iter().any(|b| !b.backup && b.accepts_new()) {
            false
        } else if backends.iter().any(|b| b.backup && b.accepts_new()) {
            true
        } else {
            return Candidates {
                order: Vec::new(),
                pos: 0,
            };
        };
        let eligible: Vec<bool> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| b.backup == backup_tier && b.accepts_new() && !tried.contains(&i))
            .collect();
        let weight = |i: usize| if eligible[i] { backends[i].weight } else { 0 };

        let mut order = Vec::with_capacity(n);
        let first = match self.algorithm {
            L7Algorithm::RoundRobin => self.smooth_wrr(backends, &eligible),
            L7Algorithm::StaticRr => self.wrr.pick_by(n, weight),
            L7Algorithm::LeastConn => self.least_conn(backends, &eligible),
            L7Algorithm::Source => {
                let h = req.client_ip.map_or(0, |ip| hash_ip(ip, None, SEED_SOURCE));
                map_based(backends, &eligible, h)
            }
            L7Algorithm::Uri => {
                let path = req.path.unwrap_or("");
                let path = path.split('?').next().unwrap_or(path);
                map_based(backends, &eligible, hash_bytes(path.as_bytes(), SEED_URI))
            }
            L7Algorithm::Random => {
                let a = map_based(backends, &eligible, req.random[0]);
                let b = map_based(backends, &eligible, req.random[1]);
                match (a, b) {
                    (Some(a), Some(b)) if lighter(&backends[b], &backends[a]) => Some(b),
                    (a, _) => a,
                }
            }
            L7Algorithm::Consistent => {
                let key = req
                    .hash_key
                    .or_else(|| req.client_ip.map(|ip| hash_ip(ip, None, SEED_SOURCE)))
                    .unwrap_or(0);
                self.refresh_ring(backends, backup_tier);
                if let Some(ring) = &self.ring {
                    let m = ring.table.len();
                    if m > 0 {
                        let start = (key % m as u64) as usize;
                        for k in 0..m {
                            let i = ring.backend_of[ring.table[(start + k) % m] as usize];
                            if eligible[i] && !order.contains(&i) {
                                order.push(i);
                            }
                        }
                    }
                }
                order.first().copied()
            }
        };
        if let Some(f) = first.filter(|&f| order.is_empty() && f < n) {
            order.push(f);
        }
        // Failover order: index order after the first choice (for
        // `consistent`, any eligible server the ring walk missed, which
        // cannot happen, but the fallback keeps the contract local).
        let start = first.map_or(0, |f| f + 1);
        for k in 0..n {
            let i = (start + k) % n;
            if eligible[i] && !order.contains(&i) {
                order.push(i);
            }
        }
        Candidates { order, pos: 0 }
    }

    /// nginx's smooth weighted round robin: every eligible server gains its
    /// weight, the highest current weight wins (lowest index on ties) and
    /// pays back the total. Weights are read per call, so runtime weight
    /// changes apply at once. A server that stops accepting requests forgets
    /// its accumulated credit so it does not burst when it returns.
    fn smooth_wrr(&mut self, backends: &[Backend], eligible: &[bool]) -> Option<usize> {
        if self.swrr.len() != backends.len() {
            self.swrr = vec![0; backends.len()];
        }
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, b) in backends.iter().enumerate() {
            if !b.accepts_new() {
                self.swrr[i] = 0;
            }
            if !eligible[i] {
                continue;
            }
            self.swrr[i] += i64::from(b.weight);
            total += i64::from(b.weight);
            if best.is_none_or(|j| self.swrr[i] > self.swrr[j]) {
                best = Some(i);
            }
        }
        let b = best?;
        self.swrr[b] -= total;
        Some(b)
    }

    /// Fewest active requests per weight; among ties the first at or after
    /// the rotating cursor, so idle servers share the load.
    fn least_conn(&mut self, backends: &[Backend], eligible: &[bool]) -> Option<usize> {
        let n = backends.len();
        let mut best: Option<usize> = None;
        for k in 0..n {
            let i = (self.lc_next + k) % n;
            if !eligible[i] {
                continue;
            }
            if best.is_none_or(|j| lighter(&backends[i], &backends[j])) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            self.lc_next = (b + 1) % n;
        }
        best
    }

    /// Rebuilds the consistent ring when the tier's configured servers or
    /// weights changed (health changes do not rebuild it).
    fn refresh_ring(&mut self, backends: &[Backend], backup_tier: bool) {
        let (members, backend_of): (Vec<(u64, u32)>, Vec<usize>) = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.backup == backup_tier && b.weight > 0)
            .map(|(i, b)| ((b.key, b.weight), i))
            .unzip();
        if let Some(r) = &mut self.ring
            && r.backup_tier == backup_tier
            && r.members == members
        {
            // Same servers; only their positions in the slice may differ.
            r.backend_of = backend_of;
            return;
        }
        let (prev, prev_keys, prev_m) = match self.ring.take() {
            Some(r) if r.backup_tier == backup_tier => {
                let m = r.table.len();
                (r.table, r.members.iter().map(|m| m.0).collect(), m)
            }
            _ => (Vec::new(), Vec::new(), 0),
        };
        let min = min_table_size(members.len());
        let m = if prev_m >= min { prev_m } else { min };
        self.ring = maglev_table_update(&prev, &prev_keys, &members, m)
            .ok()
            .map(|table| Ring {
                backup_tier,
                members,
                backend_of,
                table,
            });
    }
}

/// Whether `a` is strictly less loaded than `b`: `a.active / a.weight <
/// b.active / b.weight`, by cross-multiplication (weights are > 0 here).
fn lighter(a: &Backend, b: &Backend) -> bool {
    u64::from(a.active) * u64::from(b.weight) < u64::from(b.active) * u64::from(a.weight)
}

/// HAProxy "map-based" hashing: `h % Σweight` over the eligible servers in
/// index order.
fn map_based(backends: &[Backend], eligible: &[bool], h: u64) -> Option<usize> {
    let total: u64 = (0..backends.len())
        .filter(|&i| eligible[i])
        .map(|i| u64::from(backends[i].weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut t = h % total;
    for (i, b) in backends.iter().enumerate() {
        if !eligible[i] {
            continue;
        }
        let w = u64::from(b.weight);
        if t < w {
            return Some(i);
        }
        t -= w;
    }
    None
}

/// Server indices in preference order; see [`L7Balancer::candidates`].
#[derive(Debug, Clone)]
pub struct Candidates {
    order: Vec<usize>,
    pos: usize,
}

impl Iterator for Candidates {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let i = self.order.get(self.pos).copied()?;
        self.pos += 1;
        Some(i)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.order.len() - self.pos;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Candidates {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::Ipv4Addr;

    fn pool(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Backend::new(1000 + i as u64, w))
            .collect()
    }

    fn run(b: &mut L7Balancer, pool: &[Backend], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| b.select(pool, &RequestInfo::default()).unwrap())
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for a in L7Algorithm::ALL {
            assert_eq!(a.name().parse::<L7Algorithm>().unwrap(), a);
        }
        assert!("round-robin".parse::<L7Algorithm>().is_err());
    }

    #[test]
    fn smooth_wrr_matches_nginx_example() {
        // nginx's documented sequence for weights 5,1,1: a a b a c a a.
        let p = pool(&[5, 1, 1]);
        let mut b = L7Balancer::new(L7Algorithm::RoundRobin);
        assert_eq!(
            run(&mut b, &p, 14),
            [0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0]
        );
    }

    #[test]
    fn smooth_wrr_picks_up_weight_changes() {
        let mut p = pool(&[1, 1]);
        let mut b = L7Balancer::new(L7Algorithm::RoundRobin);
        assert_eq!(run(&mut b, &p, 4), [0, 1, 0, 1]);
        p[1].weight = 3;
        let picks = run(&mut b, &p, 8);
        assert_eq!(picks.iter().filter(|&&x| x == 1).count(), 6);
    }

    #[test]
    fn static_rr_is_ipvs_order() {
        let p = pool(&[4, 3, 2]);
        let mut b = L7Balancer::new(L7Algorithm::StaticRr);
        assert_eq!(run(&mut b, &p, 9), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn leastconn_weights_and_rotates_ties() {
        let mut p = pool(&[1, 1, 1]);
        let mut b = L7Balancer::new(L7Algorithm::LeastConn);
        assert_eq!(run(&mut b, &p, 4), [0, 1, 2, 0], "ties rotate");
        p[0].active = 5;
        p[1].active = 2;
        p[2].active = 3;
        assert_eq!(b.select(&p, &RequestInfo::default()), Some(1));
        p[2].weight = 2; // 3/2 < 2/1
        assert_eq!(b.select(&p, &RequestInfo::default()), Some(2));
    }

    #[test]
    fn source_and_uri_are_sticky_and_uri_ignores_query() {
        let p = pool(&[1, 1, 1, 1]);
        let mut b = L7Balancer::new(L7Algorithm::Source);
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
        let req = RequestInfo {
            client_ip: Some(ip),
            ..Default::default()
        };
        let first = b.select(&p, &req).unwrap();
        assert!((0..10).all(|_| b.select(&p, &req) == Some(first)));
        let mut seen = [false; 4];
        for c in 0..200u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(c));
            seen[b
                .select(
                    &p,
                    &RequestInfo {
                        client_ip: Some(ip),
                        ..Default::default()
                    },
                )
                .unwrap()] = true;
        }
        assert_eq!(seen, [true; 4], "spreads clients");
        let mut u = L7Balancer::new(L7Algorithm::Uri);
        let a = u.select(
            &p,
            &RequestInfo {
                path: Some("/img/a.png?x=1"),
                ..Default::default()
            },
        );
        let b2 = u.select(
            &p,
            &RequestInfo {
                path: Some("/img/a.png?x=2"),
                ..Default::default()
            },
        );
        assert_eq!(a, b2);
    }

    #[test]
    fn random_prefers_the_lighter_of_two() {
        let mut p = pool(&[1, 1]);
        p[0].active = 10;
        let mut b = L7Balancer::new(L7Algorithm::Random);
        // total weight 2: r=0 -> server 0, r=1 -> server 1.
        let req = RequestInfo {
            random: [0, 1],
            ..Default::default()
        };
        assert_eq!(b.select(&p, &req), Some(1));
        let req = RequestInfo {
            random: [0, 0],
            ..Default::default()
        };
        assert_eq!(b.select(&p, &req), Some(0), "both draws the same server");
    }

    #[test]
    fn backups_only_when_every_primary_is_down() {
        let mut p = pool(&[1, 1, 1, 1]);
        p[2].backup = true;
        p[3].backup = true;
        let mut b = L7Balancer::new(L7Algorithm::RoundRobin);
        let c: Vec<_> = b.candidates(&p, &RequestInfo::default(), &[]).collect();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|&i| i < 2), "{c:?}");
        // All primaries tried but still up: no backups (HAProxy semantics).
        assert_eq!(
            b.candidates(&p, &RequestInfo::default(), &[0, 1]).count(),
            0
        );
        p[0].available = false;
        p[1].weight = 0;
        let c: Vec<_> = b.candidates(&p, &RequestInfo::default(), &[]).collect();
        assert_eq!(c.len(), 2);
        assert!(c.iter().all(|&i| i >= 2), "{c:?}");
        p[2].available = false;
        p[3].available = false;
        assert_eq!(b.select(&p, &RequestInfo::default()), None);
    }

    #[test]
    fn consistent_keeps_keys_when_another_server_goes_down_or_is_removed() {
        let mut p = pool(&[1; 8]);
        let mut b = L7Balancer::new(L7Algorithm::Consistent);
        let req = |k: u64| RequestInfo {
            hash_key: Some(crate::hash::mix64(k)),
            ..Default::default()
        };
        let before: Vec<usize> = (0..2000).map(|k| b.select(&p, &req(k)).unwrap()).collect();
        p[3].available = false;
        for (k, &was) in before.iter().enumerate() {
            let now = b.select(&p, &req(k as u64)).unwrap();
            if was != 3 {
                assert_eq!(now, was, "key {k} moved although its server is up");
            } else {
                assert_ne!(now, 3);
            }
        }
        // Removing server 5 from the pool entirely (indices shift down).
        p[3].available = true;
        p.remove(5);
        for (k, &was) in before.iter().enumerate() {
            let now = b.select(&p, &req(k as u64)).unwrap();
            if was != 5 {
                let was_new = if was > 5 { was - 1 } else { was };
                assert_eq!(now, was_new, "key {k}");
            }
        }
    }

    fn arb_pool() -> impl Strategy<Value = Vec<Backend>> {
        prop::collection::vec(
            (
                0u32..4,
                0u32..5,
                prop::bool::weighted(0.8),
                prop::bool::weighted(0.3),
            ),
            0..10,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (w, a, av, bk))| Backend {
                    key: i as u64 * 7919,
                    weight: w,
                    active: a,
                    available: av,
                    backup: bk,
                })
                .collect()
        })
    }

    proptest! {
        /// The candidate iterator contract, for every algorithm.
        #[test]
        fn candidates_contract(
            p in arb_pool(),
            alg in prop::sample::select(L7Algorithm::ALL.to_vec()),
            tried in prop::collection::vec(0usize..10, 0..4),
            r in any::<[u64; 2]>(),
            key in any::<u64>(),
        ) {
            let mut b = L7Balancer::new(alg);
            let ip = IpAddr::V4(Ipv4Addr::from(key as u32));
            let req = RequestInfo { client_ip: Some(ip), path: Some("/x"), hash_key: Some(key), random: r };
            let c: Vec<usize> = b.candidates(&p, &req, &tried).collect();
            let any_primary = p.iter().any(|s| !s.backup && s.accepts_new());
            let mut seen = std::collections::HashSet::new();
            for &i in &c {
                prop_assert!(seen.insert(i), "duplicate {}", i);
                prop_assert!(p[i].accepts_new());
                prop_assert!(!tried.contains(&i));
                prop_assert_eq!(p[i].backup, !any_primary);
            }
            // Complete: every eligible server of the tier is listed.
            let tier_eligible = (0..p.len())
                .filter(|&i| p[i].accepts_new() && !tried.contains(&i) && p[i].backup != any_primary)
                .count();
            prop_assert_eq!(c.len(), tier_eligible);
        }
    }
}
