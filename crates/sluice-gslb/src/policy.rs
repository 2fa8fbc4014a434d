//! Which sites and addresses answer a name (no I/O): the policies of
//! docs/GSLB.md, given the sites' health, the client's address and a
//! random value.
//!
//! Rules shared by every policy:
//! - only addresses of the query's family count (A: IPv4, AAAA: IPv6);
//! - a site's healthy addresses are answered in configuration order, at
//!   most [`SitePolicy::max_addresses`] of them;
//! - **fail open**: when no site of the list has a healthy address of the
//!   family, the answer is built as if every address were up (a stale
//!   answer beats none; gdnsd does the same). A topology rule whose sites
//!   are all down falls back to the name's sites instead.

use std::net::IpAddr;

use crate::spec::{PolicyKind, SitePolicy, SiteSpec};

/// The health of each site's addresses.
pub trait HealthView {
    /// True if address `addr` of site `site` is up.
    fn is_up(&self, site: usize, addr: usize) -> bool;
}

/// Every address up (tests, and the fail-open pass).
#[derive(Debug, Clone, Copy)]
pub struct AllUp;

impl HealthView for AllUp {
    fn is_up(&self, _: usize, _: usize) -> bool {
        true
    }
}

/// The address family a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// A records.
    V4,
    /// AAAA records.
    V6,
}

impl Family {
    fn matches(self, a: &IpAddr) -> bool {
        matches!(
            (self, a),
            (Self::V4, IpAddr::V4(_)) | (Self::V6, IpAddr::V6(_))
        )
    }
}

/// What a policy chose.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Choice {
    /// (site index, address), in answer order.
    pub addresses: Vec<(usize, IpAddr)>,
    /// The prefix length of the topology rule that matched the client, if
    /// one did (the ECS scope of the answer).
    pub matched_prefix: Option<u8>,
    /// True if no site was healthy and the answer ignores health.
    pub fail_open: bool,
}

/// The addresses answering a name with policy `p` for a client at
/// `client` (the ECS address, or the resolver's), for `family`. `random`
/// drives the weighted draw (any value; the same value gives the same
/// answer).
pub fn choose(
    p: &SitePolicy,
    sites: &[SiteSpec],
    health: &impl HealthView,
    family: Family,
    client: IpAddr,
    random: u64,
) -> Choice {
    let max = p.max_addresses.max(1);
    match p.kind {
        PolicyKind::Failover => failover_or_open(&p.sites, sites, health, family, max),
        PolicyKind::Weighted => {
            let got = weighted(p, sites, health, family, max, random);
            if got.is_empty() {
                Choice {
                    addresses: weighted(p, sites, &AllUp, family, max, random),
                    matched_prefix: None,
                    fail_open: true,
                }
            } else {
                Choice {
                    addresses: got,
                    ..Choice::default()
                }
            }
        }
        PolicyKind::Topology => {
            if let Some((rule, len)) = best_rule(p, client) {
                let got = failover(&p.topology[rule].sites, sites, health, family, max);
                if !got.is_empty() {
                    return Choice {
                        addresses: got,
                        matched_prefix: Some(len),
                        fail_open: false,
                    };
                }
            }
            failover_or_open(&p.sites, sites, health, family, max)
        }
    }
}

/// The topology rule whose prefix is the longest one containing `client`:
/// (rule index, prefix length). Ties go to the first rule.
pub fn best_rule(p: &SitePolicy, client: IpAddr) -> Option<(usize, u8)> {
    let mut best: Option<(usize, u8)> = None;
    for (i, r) in p.topology.iter().enumerate() {
        for &(net, len) in &r.prefixes {
            if contains(net, len, client) && best.is_none_or(|(_, l)| len > l) {
                best = Some((i, len));
            }
        }
    }
    best
}

/// True if `addr` is within `net/len` (same family only).
pub fn contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(n) & m == u32::from(a) & m
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(n) & m == u128::from(a) & m
        }
        _ => false,
    }
}

fn failover_or_open(
    order: &[usize],
    sites: &[SiteSpec],
    health: &impl HealthView,
    family: Family,
    max: usize,
) -> Choice {
    let got = failover(order, sites, health, family, max);
    if got.is_empty() {
        Choice {
            addresses: failover(order, sites, &AllUp, family, max),
            matched_prefix: None,
            fail_open: true,
        }
    } else {
        Choice {
            addresses: got,
            ..Choice::default()
        }
    }
}

/// The healthy addresses of the first site in `order` that has any.
fn failover(
    order: &[usize],
    sites: &[SiteSpec],
    health: &impl HealthView,
    family: Family,
    max: usize,
) -> Vec<(usize, IpAddr)> {
    for &s in order {
        let got = healthy(s, sites, health, family, max);
        if !got.is_empty() {
            return got;
        }
    }
    Vec::new()
}

/// Up to `max` healthy addresses of site `s` of `family`.
fn healthy(
    s: usize,
    sites: &[SiteSpec],
    health: &impl HealthView,
    family: Family,
    max: usize,
) -> Vec<(usize, IpAddr)> {
    let Some(site) = sites.get(s) else {
        return Vec::new();
    };
    site.addresses
        .iter()
        .enumerate()
        .filter(|(i, a)| family.matches(a) && health.is_up(s, *i))
        .take(max)
        .map(|(_, a)| (s, *a))
        .collect()
}

/// Sites with healthy addresses, drawn by weight without replacement;
/// their addresses in draw order, up to `max`.
fn weighted(
    p: &SitePolicy,
    sites: &[SiteSpec],
    health: &impl HealthView,
    family: Family,
    max: usize,
    random: u64,
) -> Vec<(usize, IpAddr)> {
    // (weight, the site's healthy addresses); weight 0 never happens
    // (config refuses it) but would simply never be drawn first.
    let mut pool: Vec<(u64, Vec<(usize, IpAddr)>)> = p
        .sites
        .iter()
        .enumerate()
        .map(|(i, &s)| {
            let w = p.weights.get(i).copied().unwrap_or(1);
            (u64::from(w), healthy(s, sites, health, family, max))
        })
        .filter(|(_, a)| !a.is_empty())
        .collect();
    let mut out = Vec::new();
    let mut state = random;
    while out.len() < max && !pool.is_empty() {
        let total: u64 = pool.iter().map(|(w, _)| *w).sum();
        let pick = if total == 0 {
            0
        } else {
            let mut r = splitmix64(&mut state) % total;
            let mut idx = 0;
            for (i, (w, _)) in pool.iter().enumerate() {
                if r < *w {
                    idx = i;
                    break;
                }
                r -= *w;
            }
            idx
        };
        let (_, addrs) = pool.swap_remove(pick);
        out.extend(addrs.into_iter().take(max - out.len()));
    }
    out
}

/// SplitMix64: a tiny, good-enough generator for the weighted draw.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::spec::TopologyRule;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn sites() -> Vec<SiteSpec> {
        vec![
            SiteSpec {
                name: "eu".into(),
                addresses: vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1")],
            },
            SiteSpec {
                name: "us".into(),
                addresses: vec![ip("198.51.100.1")],
            },
            SiteSpec {
                name: "ap".into(),
                addresses: vec![ip("203.0.113.1"), ip("2001:db8::3")],
            },
        ]
    }

    /// Health with a set of (site, addr) down.
    struct Down(HashSet<(usize, usize)>);
    impl HealthView for Down {
        fn is_up(&self, s: usize, a: usize) -> bool {
            !self.0.contains(&(s, a))
        }
    }
    fn down(list: &[(usize, usize)]) -> Down {
        Down(list.iter().copied().collect())
    }

    fn policy(kind: PolicyKind, order: &[usize], max: usize) -> SitePolicy {
        SitePolicy {
            kind,
            sites: order.to_vec(),
            weights: vec![1; order.len()],
            max_addresses: max,
            topology: Vec::new(),
        }
    }

    const C: &str = "10.1.2.3";

    #[test]
    fn failover_takes_the_first_healthy_site() {
        let p = policy(PolicyKind::Failover, &[0, 1, 2], 2);
        let s = sites();
        let c = choose(&p, &s, &AllUp, Family::V4, ip(C), 0);
        assert_eq!(
            c.addresses,
            vec![(0, ip("192.0.2.1")), (0, ip("192.0.2.2"))]
        );
        // One address of eu down: the other remains.
        let c = choose(&p, &s, &down(&[(0, 0)]), Family::V4, ip(C), 0);
        assert_eq!(c.addresses, vec![(0, ip("192.0.2.2"))]);
        // eu down: us.
        let c = choose(&p, &s, &down(&[(0, 0), (0, 1)]), Family::V4, ip(C), 0);
        assert_eq!(c.addresses, vec![(1, ip("198.51.100.1"))]);
        assert!(!c.fail_open);
        // Per family: eu's IPv6 address is still up.
        let c = choose(&p, &s, &down(&[(0, 0), (0, 1)]), Family::V6, ip(C), 0);
        assert_eq!(c.addresses, vec![(0, ip("2001:db8::1"))]);
        // IPv6 skips us (no IPv6 address) when eu's is down.
        let c = choose(&p, &s, &down(&[(0, 2)]), Family::V6, ip(C), 0);
        assert_eq!(c.addresses, vec![(2, ip("2001:db8::3"))]);
    }

    #[test]
    fn everything_down_fails_open_to_the_first_site() {
        let p = policy(PolicyKind::Failover, &[1, 0], 1);
        let s = sites();
        let all = down(&[(0, 0), (0, 1), (0, 2), (1, 0), (2, 0), (2, 1)]);
        let c = choose(&p, &s, &all, Family::V4, ip(C), 0);
        assert_eq!(c.addresses, vec![(1, ip("198.51.100.1"))]);
        assert!(c.fail_open);
    }

    #[test]
    fn max_addresses_bounds_the_answer() {
        let p = policy(PolicyKind::Failover, &[0], 1);
        let c = choose(&p, &sites(), &AllUp, Family::V4, ip(C), 0);
        assert_eq!(c.addresses.len(), 1);
    }

    #[test]
    fn weighted_follows_the_weights() {
        let mut p = policy(PolicyKind::Weighted, &[0, 1], 1);
        p.weights = vec![3, 1];
        let s = sites();
        let mut counts = [0u32; 2];
        let mut seed = 1u64;
        for _ in 0..40_000 {
            let r = splitmix64(&mut seed);
            let c = choose(&p, &s, &AllUp, Family::V4, ip(C), r);
            counts[c.addresses[0].0] += 1;
        }
        let share = f64::from(counts[0]) / 40_000.0;
        assert!((0.72..0.78).contains(&share), "eu share {share}");
    }

    #[test]
    fn weighted_answers_several_sites_and_skips_the_down_ones() {
        let mut p = policy(PolicyKind::Weighted, &[0, 1, 2], 3);
        p.weights = vec![1, 1, 1];
        let s = sites();
        let c = choose(&p, &s, &down(&[(0, 0), (0, 1)]), Family::V4, ip(C), 7);
        let got: HashSet<usize> = c.addresses.iter().map(|(s, _)| *s).collect();
        assert_eq!(got, HashSet::from([1, 2]));
        assert_eq!(c.addresses.len(), 2);
        // All up, max 3: eu brings two addresses, so some answers hold two sites.
        let c = choose(&p, &s, &AllUp, Family::V4, ip(C), 7);
        assert_eq!(c.addresses.len(), 3);
        // Everything down: fail open.
        let all = down(&[(0, 0), (0, 1), (1, 0), (2, 0)]);
        let c = choose(&p, &s, &all, Family::V4, ip(C), 7);
        assert!(c.fail_open);
        assert_eq!(c.addresses.len(), 3);
    }

    #[test]
    fn weighted_is_a_function_of_the_random_value() {
        let p = policy(PolicyKind::Weighted, &[0, 1, 2], 1);
        let s = sites();
        let a = choose(&p, &s, &AllUp, Family::V4, ip(C), 42);
        let b = choose(&p, &s, &AllUp, Family::V4, ip(C), 42);
        assert_eq!(a, b);
    }

    fn topology() -> SitePolicy {
        let mut p = policy(PolicyKind::Topology, &[1, 0], 1);
        p.topology = vec![
            TopologyRule {
                prefixes: vec![(ip("10.0.0.0"), 8), (ip("2001:db8:aa::"), 48)],
                sites: vec![0, 2],
            },
            TopologyRule {
                prefixes: vec![(ip("10.9.0.0"), 16)],
                sites: vec![2],
            },
        ];
        p
    }

    #[test]
    fn topology_picks_the_longest_matching_prefix() {
        let p = topology();
        let s = sites();
        let c = choose(&p, &s, &AllUp, Family::V4, ip("10.1.2.3"), 0);
        assert_eq!(c.addresses, vec![(0, ip("192.0.2.1"))]);
        assert_eq!(c.matched_prefix, Some(8));
        let c = choose(&p, &s, &AllUp, Family::V4, ip("10.9.2.3"), 0);
        assert_eq!(c.addresses, vec![(2, ip("203.0.113.1"))]);
        assert_eq!(c.matched_prefix, Some(16));
        // IPv6 client prefix, IPv4 answer.
        let c = choose(&p, &s, &AllUp, Family::V4, ip("2001:db8:aa::5"), 0);
        assert_eq!(c.addresses[0].0, 0);
        // No rule: the fallback list (us first).
        let c = choose(&p, &s, &AllUp, Family::V4, ip("172.16.0.1"), 0);
        assert_eq!(c.addresses, vec![(1, ip("198.51.100.1"))]);
        assert_eq!(c.matched_prefix, None);
    }

    #[test]
    fn topology_fails_over_within_the_rule_then_to_the_fallback() {
        let p = topology();
        let s = sites();
        // eu down: the rule's next site, ap.
        let c = choose(
            &p,
            &s,
            &down(&[(0, 0), (0, 1)]),
            Family::V4,
            ip("10.1.2.3"),
            0,
        );
        assert_eq!(c.addresses, vec![(2, ip("203.0.113.1"))]);
        // eu and ap down: the fallback (us).
        let c = choose(
            &p,
            &s,
            &down(&[(0, 0), (0, 1), (2, 0)]),
            Family::V4,
            ip("10.1.2.3"),
            0,
        );
        assert_eq!(c.addresses, vec![(1, ip("198.51.100.1"))]);
        assert_eq!(c.matched_prefix, None);
    }

    #[test]
    fn prefixes() {
        assert!(contains(ip("10.0.0.0"), 8, ip("10.255.0.1")));
        assert!(!contains(ip("10.0.0.0"), 8, ip("11.0.0.1")));
        assert!(contains(ip("0.0.0.0"), 0, ip("1.2.3.4")));
        assert!(!contains(ip("0.0.0.0"), 0, ip("::1")));
        assert!(contains(ip("2001:db8::"), 32, ip("2001:db8:1::1")));
        assert!(contains(ip("::"), 0, ip("2001:db8:1::1")));
        assert!(contains(ip("10.1.2.3"), 32, ip("10.1.2.3")));
    }
}
