//! Connection-count schedulers: `lc`, `wlc`, `sed`, `nq` (IPVS formulas).
//!
//! All four are pure functions of the reals' counters; they skip reals that
//! do not accept new flows ([`Real::accepts_new`]: unavailable or weight 0)
//! and break ties by the **lowest index** (IPVS keeps the first real it
//! found and replaces it only on a strictly better one, in list order).
//!
//! Ratios are compared by cross-multiplication in `u128`, never by division,
//! so there is neither rounding nor overflow (`(2^32 * 256 + 2^32) * 2^32`
//! fits easily).

use super::Real;

/// IPVS `ip_vs_dest_conn_overhead()`: active connections weigh 256 times an
/// inactive one (`activeconns << 8 + inactconns`).
pub const fn conn_overhead(r: &Real) -> u64 {
    ((r.active_conns as u64) << 8) + r.inactive_conns as u64
}

/// SED/NQ overhead (`ip_vs_sed_dest_overhead`): `activeconns + 1`, the
/// expected number of connections once this one is added.
pub const fn sed_overhead(r: &Real) -> u64 {
    r.active_conns as u64 + 1
}

/// `lc`: the eligible real with the smallest [`conn_overhead`]; weights are
/// ignored (other than 0 = drain).
pub fn lc(reals: &[Real]) -> Option<usize> {
    eligible(reals)
        .min_by_key(|&(i, r)| (conn_overhead(r), i))
        .map(|(i, _)| i)
}

/// `wlc`: the eligible real with the smallest `conn_overhead / weight`.
pub fn wlc(reals: &[Real]) -> Option<usize> {
    min_ratio(reals, conn_overhead)
}

/// `sed`: the eligible real with the smallest `(active + 1) / weight`.
pub fn sed(reals: &[Real]) -> Option<usize> {
    min_ratio(reals, sed_overhead)
}

/// `nq`: the first eligible real with no active connection, otherwise the
/// [`sed`] choice.
pub fn nq(reals: &[Real]) -> Option<usize> {
    eligible(reals)
        .find(|(_, r)| r.active_conns == 0)
        .map(|(i, _)| i)
        .or_else(|| sed(reals))
}

fn eligible(reals: &[Real]) -> impl Iterator<Item = (usize, &Real)> {
    reals.iter().enumerate().filter(|(_, r)| r.accepts_new())
}

/// Smallest `overhead(r) / weight`, first index on ties. IPVS's test is
/// `loh * dw > doh * lw` ("the candidate is strictly better").
fn min_ratio(reals: &[Real], overhead: fn(&Real) -> u64) -> Option<usize> {
    let mut best: Option<(usize, u128, u128)> = None;
    for (i, r) in eligible(reals) {
        let (doh, dw) = (u128::from(overhead(r)), u128::from(r.weight));
        match best {
            Some((_, loh, lw)) if loh * dw <= doh * lw => {}
            _ => best = Some((i, doh, dw)),
        }
    }
    best.map(|(i, _, _)| i)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn real(weight: u32, active: u32, inactive: u32) -> Real {
        Real {
            weight,
            active_conns: active,
            inactive_conns: inactive,
            available: true,
        }
    }

    #[test]
    fn lc_counts_active_256_times() {
        // a: 1 active = 256; b: 200 inactive = 200 -> b.
        let rs = [real(1, 1, 0), real(1, 0, 200)];
        assert_eq!(lc(&rs), Some(1));
        // b: 300 inactive = 300 > 256 -> a.
        let rs = [real(1, 1, 0), real(1, 0, 300)];
        assert_eq!(lc(&rs), Some(0));
    }

    #[test]
    fn wlc_divides_by_weight() {
        // a: 10 active, w 1 -> 2560; b: 30 active, w 4 -> 1920 -> b.
        let rs = [real(1, 10, 0), real(4, 30, 0)];
        assert_eq!(wlc(&rs), Some(1));
        // lc ignores weights and picks a.
        assert_eq!(lc(&rs), Some(0));
    }

    #[test]
    fn sed_vs_wlc_on_idle_servers() {
        // All idle: wlc ties at 0 -> lowest index even if weak; sed prefers
        // the heaviest ((0+1)/w smallest).
        let rs = [real(1, 0, 0), real(10, 0, 0)];
        assert_eq!(wlc(&rs), Some(0));
        assert_eq!(sed(&rs), Some(1));
    }

    #[test]
    fn nq_prefers_idle_then_sed() {
        // b idle though weak -> nq picks it; sed picks c: (1+1)/10 < (0+1)/1.
        let rs = [real(5, 3, 0), real(1, 0, 0), real(10, 1, 0)];
        assert_eq!(nq(&rs), Some(1));
        assert_eq!(sed(&rs), Some(2));
        let rs = [real(5, 3, 0), real(1, 2, 0), real(10, 1, 0)];
        assert_eq!(nq(&rs), Some(2));
    }

    #[test]
    fn drain_and_unavailable_never_chosen() {
        let rs = [
            real(0, 0, 0),
            Real {
                available: false,
                ..real(5, 0, 0)
            },
            real(1, 100, 0),
        ];
        for f in [lc, wlc, sed, nq] {
            assert_eq!(f(&rs), Some(2));
        }
        let none = [real(0, 0, 0)];
        for f in [lc, wlc, sed, nq] {
            assert_eq!(f(&none), None);
            assert_eq!(f(&[]), None);
        }
    }

    #[test]
    fn extreme_counters_do_not_overflow() {
        let rs = [real(u32::MAX, u32::MAX, u32::MAX), real(1, 0, u32::MAX)];
        // a: (2^32-1)*257 / (2^32-1) = 257; b: 2^32-1 -> a.
        assert_eq!(wlc(&rs), Some(0));
    }

    /// Brute-force reference: exact rational comparison via f64-free
    /// pairwise check "no other eligible real is strictly better, and no
    /// earlier one is equal".
    fn reference(reals: &[Real], key: fn(&Real) -> (u64, u64)) -> Option<usize> {
        let el: Vec<usize> = (0..reals.len())
            .filter(|&i| reals[i].accepts_new())
            .collect();
        el.iter().copied().find(|&i| {
            let (ni, di) = key(&reals[i]);
            el.iter().all(|&j| {
                let (nj, dj) = key(&reals[j]);
                let (l, r) = (
                    u128::from(ni) * u128::from(dj),
                    u128::from(nj) * u128::from(di),
                );
                l < r || (l == r && i <= j)
            })
        })
    }

    fn arb_real() -> impl Strategy<Value = Real> {
        (0u32..6, 0u32..20, 0u32..600, prop::bool::weighted(0.85)).prop_map(|(w, a, i, av)| Real {
            weight: w,
            active_conns: a,
            inactive_conns: i,
            available: av,
        })
    }

    proptest! {
        /// (d) lc/wlc/sed/nq agree with a brute-force reference.
        #[test]
        fn formulas_match_reference(rs in prop::collection::vec(arb_real(), 0..10)) {
            prop_assert_eq!(lc(&rs), reference(&rs, |r| (conn_overhead(r), 1)));
            prop_assert_eq!(wlc(&rs), reference(&rs, |r| (conn_overhead(r), u64::from(r.weight))));
            prop_assert_eq!(sed(&rs), reference(&rs, |r| (sed_overhead(r), u64::from(r.weight))));
            let idle = (0..rs.len()).find(|&i| rs[i].accepts_new() && rs[i].active_conns == 0);
            let want_nq = idle.or_else(|| reference(&rs, |r| (sed_overhead(r), u64::from(r.weight))));
            prop_assert_eq!(nq(&rs), want_nq);
        }
    }
}
