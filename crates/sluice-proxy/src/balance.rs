//! Server selection for the proxy.
//!
//! TEMPORARY: this is a small stand-in so the proxy can run on its own. It will
//! be replaced by sluice-core's balancing algorithms (smooth weighted round
//! robin, leastconn, source/uri hash, backups, candidate iterator) once that
//! crate lands; keep the surface (`Balancer::pick`) small so the swap is local.
//!
//! Rules shared by every algorithm (HAProxy semantics):
//! - a server is eligible when it is up, has weight > 0, and the caller does
//!   not skip it (already tried, or full);
//! - backup servers are eligible only when no non-backup server is up with
//!   weight > 0 (skipped servers still count as "up", so a retry does not spill
//!   onto backups while a primary is merely busy or was already tried).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;

use crate::config::Balance;

/// What the balancer needs to know about a server.
pub(crate) trait ServerInfo {
    /// Administratively and health-wise up.
    fn is_up(&self) -> bool;
    /// Current weight.
    fn weight(&self) -> u32;
    /// Sessions currently using the server (leastconn).
    fn active(&self) -> u64;
    /// Backup server.
    fn is_backup(&self) -> bool;
}

/// Picks a server index for each new session.
#[derive(Debug)]
pub(crate) struct Balancer {
    algo: Balance,
    /// Smooth weighted round robin `current_weight` per server (nginx's
    /// algorithm): each pick adds every eligible server's weight to its
    /// current value, takes the largest, and subtracts the total from it.
    /// Also used as the leastconn tie-breaker rotation.
    swrr: Mutex<Vec<i64>>,
}

impl Balancer {
    /// A balancer for `n` servers.
    pub(crate) fn new(algo: Balance, n: usize) -> Self {
        Self {
            algo,
            swrr: Mutex::new(vec![0; n]),
        }
    }

    /// Pick a server. `client` feeds the source hash; `skip(i)` excludes
    /// servers (tried or full). Returns `None` when nothing is eligible.
    pub(crate) fn pick<S: ServerInfo>(
        &self,
        servers: &[S],
        client: IpAddr,
        skip: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let any_primary_up = servers
            .iter()
            .any(|s| !s.is_backup() && s.is_up() && s.weight() > 0);
        let eligible = |i: usize, s: &S| {
            s.is_up() && s.weight() > 0 && s.is_backup() != any_primary_up && !skip(i)
        };
        match self.algo {
            Balance::RoundRobin => self.pick_swrr(servers, &eligible),
            Balance::LeastConn => pick_leastconn(servers, &eligible),
            Balance::Source => pick_hash(servers, &eligible, client),
        }
    }

    fn pick_swrr<S: ServerInfo>(
        &self,
        servers: &[S],
        eligible: &dyn Fn(usize, &S) -> bool,
    ) -> Option<usize> {
        // Poisoning only means another thread panicked mid-update; the
        // weights are still plain integers, so keep going with them.
        let mut current = self.swrr.lock().unwrap_or_else(|e| e.into_inner());
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for (i, s) in servers.iter().enumerate() {
            if !eligible(i, s) {
                continue;
            }
            let w = i64::from(s.weight());
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best?;
        current[b] -= total;
        Some(b)
    }
}

fn pick_leastconn<S: ServerInfo>(
    servers: &[S],
    eligible: &dyn Fn(usize, &S) -> bool,
) -> Option<usize> {
    // Compare active/weight without division: a.active * b.weight < b.active * a.weight.
    let mut best: Option<(usize, u128, u128)> = None;
    for (i, s) in servers.iter().enumerate() {
        if !eligible(i, s) {
            continue;
        }
        let (a, w) = (u128::from(s.active()), u128::from(s.weight()));
        if best.is_none_or(|(_, ba, bw)| a * bw < ba * w) {
            best = Some((i, a, w));
        }
    }
    best.map(|(i, _, _)| i)
}

fn pick_hash<S: ServerInfo>(
    servers: &[S],
    eligible: &dyn Fn(usize, &S) -> bool,
    client: IpAddr,
) -> Option<usize> {
    // `DefaultHasher::new()` uses fixed keys, so the mapping is stable across
    // runs and processes (map-based hashing, as HAProxy's default
    // `hash-type map-based`: it moves when the eligible set changes).
    let mut h = DefaultHasher::new();
    client.hash(&mut h);
    let total: u64 = servers
        .iter()
        .enumerate()
        .filter(|(i, s)| eligible(*i, s))
        .map(|(_, s)| u64::from(s.weight()))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = h.finish() % total;
    for (i, s) in servers.iter().enumerate() {
        if !eligible(i, s) {
            continue;
        }
        let w = u64::from(s.weight());
        if point < w {
            return Some(i);
        }
        point -= w;
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct S {
        up: bool,
        w: u32,
        active: u64,
        backup: bool,
    }
    impl ServerInfo for S {
        fn is_up(&self) -> bool {
            self.up
        }
        fn weight(&self) -> u32 {
            self.w
        }
        fn active(&self) -> u64 {
            self.active
        }
        fn is_backup(&self) -> bool {
            self.backup
        }
    }
    fn s(w: u32) -> S {
        S {
            up: true,
            w,
            active: 0,
            backup: false,
        }
    }
    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn swrr_is_smooth_and_weighted() {
        let b = Balancer::new(Balance::RoundRobin, 3);
        let servers = [s(5), s(1), s(1)];
        let picks: Vec<usize> = (0..7)
            .map(|_| b.pick(&servers, IP, &|_| false).unwrap())
            .collect();
        // nginx's documented sequence for weights 5,1,1: a a b a c a a.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn skip_and_down_servers_are_not_picked() {
        let b = Balancer::new(Balance::RoundRobin, 3);
        let mut servers = [s(1), s(1), s(1)];
        servers[1].up = false;
        for _ in 0..10 {
            let p = b.pick(&servers, IP, &|i| i == 0).unwrap();
            assert_eq!(p, 2);
        }
        assert_eq!(b.pick(&servers, IP, &|i| i != 1), None);
    }

    #[test]
    fn backups_only_when_all_primaries_down() {
        let b = Balancer::new(Balance::RoundRobin, 3);
        let mut servers = [s(1), s(1), s(1)];
        servers[2].backup = true;
        for _ in 0..10 {
            assert_ne!(b.pick(&servers, IP, &|_| false).unwrap(), 2);
        }
        // A primary that is only skipped (tried/full) keeps backups out.
        assert_eq!(b.pick(&servers, IP, &|i| i < 2), None);
        servers[0].up = false;
        servers[1].w = 0;
        assert_eq!(b.pick(&servers, IP, &|_| false), Some(2));
    }

    #[test]
    fn leastconn_weighs_active_sessions() {
        let b = Balancer::new(Balance::LeastConn, 3);
        let mut servers = [s(1), s(2), s(1)];
        servers[0].active = 3;
        servers[1].active = 4; // 4/2 = 2 per weight unit
        servers[2].active = 5;
        assert_eq!(b.pick(&servers, IP, &|_| false), Some(1));
        servers[0].active = 1;
        assert_eq!(b.pick(&servers, IP, &|_| false), Some(0));
    }

    #[test]
    fn source_hash_is_sticky_and_spreads() {
        let b = Balancer::new(Balance::Source, 3);
        let servers = [s(1), s(1), s(1)];
        let mut seen = [0u32; 3];
        for last in 0..=255u8 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, last));
            let first = b.pick(&servers, ip, &|_| false).unwrap();
            assert_eq!(b.pick(&servers, ip, &|_| false), Some(first));
            seen[first] += 1;
        }
        assert!(seen.iter().all(|&n| n > 40), "{seen:?}");
    }
}
