//! Round robin (`rr`) and IPVS weighted round robin (`wrr`).
//!
//! # IPVS `wrr`, exactly
//!
//! From `net/netfilter/ipvs/ip_vs_wrr.c`: with `di = gcd` of the positive
//! weights and `mw = max_weight - (di - 1)`, a current weight `cw` starts at
//! `mw`. Each pick walks the list from the last pick; a real whose weight is
//! `>= cw` is chosen. Each time the walk wraps past the end of the list,
//! `cw -= di`, and when `cw <= 0` it restarts at `mw`.
//!
//! Worked example, weights a=4, b=3, c=2 (`di = 1`, `mw = 4`):
//!
//! | `cw` | reals with weight `>= cw` | picks |
//! |---|---|---|
//! | 4 | a | a |
//! | 3 | a, b | a b |
//! | 2 | a, b, c | a b c |
//! | 1 | a, b, c | a b c |
//!
//! so a fresh service yields `a a b a b c a b c` and then repeats. (Read from
//! the second pick, the same cycle is `a b a b c a b c a`.) Over one cycle
//! each real is picked exactly `weight / gcd` times.
//!
//! Where sluice differs from IPVS: IPVS computes `gcd`/`max` over every real
//! and skips "overloaded" ones while walking; sluice computes them over the
//! reals that accept new flows ([`Real::accepts_new`]), which guarantees
//! that some real always qualifies and so bounds the walk to two passes.

use super::{Real, SchedError, gcd};

/// Longest WRR cycle [`wrr_sequence`] will build, in entries. Weights such as
/// `[65_535, 1]` (IPVS's maximum weight) still fit; the limit stops a typo
/// like `weight 4000000000` from allocating gigabytes.
pub const MAX_WRR_CYCLE_LEN: usize = 1 << 20;

/// Plain round robin over the reals that accept new flows; weights other
/// than 0 are ignored (IPVS `rr`).
#[derive(Debug, Clone, Default)]
pub struct RrPicker {
    /// Index of the last pick, `None` before the first.
    last: Option<usize>,
}

// === impl RrPicker ===

impl RrPicker {
    /// A picker whose first pick is the first eligible real.
    pub const fn new() -> Self {
        Self { last: None }
    }

    /// Picks the next eligible real after the previous pick, cyclically.
    /// `None` when no real accepts new flows.
    pub fn pick(&mut self, reals: &[Real]) -> Option<usize> {
        let n = reals.len();
        let start = self.last.map_or(0, |l| l.wrapping_add(1));
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| reals[i].accepts_new());
        if found.is_some() {
            self.last = found;
        }
        found
    }
}

/// Stateful IPVS weighted round robin (see the module docs for the order).
///
/// The picker re-reads weights and availability on every pick. When the set
/// of eligible weights changes (different gcd, max or real count) it applies
/// IPVS's `ip_vs_wrr_dest_changed`: the walk restarts at the head of the list
/// and `cw` is clamped into the new range.
#[derive(Debug, Clone, Default)]
pub struct WrrPicker {
    /// Last picked index; `None` is IPVS's "list head" (before index 0).
    cl: Option<usize>,
    /// Current weight level.
    cw: i64,
    /// `(di, mw, n)` the state was computed for; `None` before the first pick.
    params: Option<(i64, i64, usize)>,
}

// === impl WrrPicker ===

impl WrrPicker {
    /// A fresh picker (its first pick is the first real of maximum weight
    /// in list order).
    pub const fn new() -> Self {
        Self {
            cl: None,
            cw: 0,
            params: None,
        }
    }

    /// Picks the next real. `None` when no real accepts new flows.
    pub fn pick(&mut self, reals: &[Real]) -> Option<usize> {
        self.pick_by(reals.len(), |i| {
            if reals[i].accepts_new() {
                reals[i].weight
            } else {
                0
            }
        })
    }

    /// Picks among `n` candidates whose effective weight is `weight_of(i)`
    /// (0 = not eligible). Used by [`Self::pick`] and by the L7 `static-rr`.
    pub fn pick_by(&mut self, n: usize, weight_of: impl Fn(usize) -> u32) -> Option<usize> {
        let (mut g, mut max) = (0u32, 0u32);
        for i in 0..n {
            let w = weight_of(i);
            if w > 0 {
                g = gcd(g, w);
                max = max.max(w);
            }
        }
        if max == 0 {
            return None;
        }
        let di = i64::from(g);
        let mw = i64::from(max) - (di - 1);
        if self.params != Some((di, mw, n)) {
            // ip_vs_wrr_dest_changed(): restart at the head, keep cw if it is
            // still meaningful, rounded onto the new gcd grid.
            let first = self.params.is_none();
            self.params = Some((di, mw, n));
            self.cl = None;
            if first || self.cw > mw || self.cw <= 0 {
                self.cw = mw;
            } else if di > 1 {
                self.cw = (self.cw / di) * di + 1;
            }
        }
        let mut pos = self.cl;
        // Some real has weight >= mw >= cw, so one pass from the head always
        // finds a pick; a pass that started mid-list may find none. Hence at
        // most two passes plus the wrap steps.
        for _ in 0..(2 * n + 2) {
            let next = pos.map_or(0, |p| p + 1);
            if next >= n {
                self.cw -= di;
                if self.cw <= 0 {
                    self.cw = mw;
                }
                pos = None;
                continue;
            }
            pos = Some(next);
            let w = weight_of(next);
            if w > 0 && i64::from(w) >= self.cw {
                self.cl = pos;
                return pos;
            }
        }
        // Unreachable by the argument above; fail closed rather than panic.
        None
    }
}

/// One full IPVS WRR cycle for `weights` (index `i` has weight
/// `weights[i]`; 0 = never picked), as a fresh [`WrrPicker`] would produce
/// it. Its length is `sum(weight / gcd)`; the XDP side uses it as a ring.
///
/// Returns an empty vector when every weight is 0.
///
/// # Errors
///
/// [`SchedError::WrrCycleTooLong`] when the cycle would exceed
/// [`MAX_WRR_CYCLE_LEN`].
pub fn wrr_sequence(weights: &[u32]) -> Result<Vec<usize>, SchedError> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w));
    let Some(&max) = weights.iter().max().filter(|&&m| m > 0) else {
        return Ok(Vec::new());
    };
    let len: u64 = weights.iter().map(|&w| u64::from(w / g)).sum();
    if len > MAX_WRR_CYCLE_LEN as u64 {
        return Err(SchedError::WrrCycleTooLong {
            len,
            max: MAX_WRR_CYCLE_LEN,
        });
    }
    let di = i64::from(g);
    let mut out = Vec::with_capacity(len as usize);
    let mut cw = i64::from(max) - (di - 1);
    while cw > 0 {
        out.extend(
            weights
                .iter()
                .enumerate()
                .filter(|&(_, &w)| w > 0 && i64::from(w) >= cw)
                .map(|(i, _)| i),
        );
        cw -= di;
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reals(weights: &[u32]) -> Vec<Real> {
        weights.iter().map(|&w| Real::new(w)).collect()
    }

    const A: usize = 0;
    const B: usize = 1;
    const C: usize = 2;

    #[test]
    fn ipvs_worked_example_4_3_2() {
        // Hand-traced through ip_vs_wrr_schedule (module docs table).
        let expected = vec![A, A, B, A, B, C, A, B, C];
        assert_eq!(wrr_sequence(&[4, 3, 2]).unwrap(), expected);
        let rs = reals(&[4, 3, 2]);
        let mut p = WrrPicker::new();
        let picks: Vec<_> = (0..18).map(|_| p.pick(&rs).unwrap()).collect();
        assert_eq!(&picks[..9], &expected[..]);
        assert_eq!(&picks[9..], &expected[..], "the cycle repeats");
        // The listing is the same cycle read from the second pick.
        assert_eq!(&picks[1..10], &[A, B, A, B, C, A, B, C, A]);
    }

    #[test]
    fn gcd_scales_the_cycle() {
        // gcd 2: di = 2, mw = 4 - 1 = 3, levels 3 and 1.
        assert_eq!(wrr_sequence(&[4, 2]).unwrap(), vec![A, A, B]);
        assert_eq!(wrr_sequence(&[100, 100, 100]).unwrap(), vec![A, B, C]);
    }

    #[test]
    fn zero_weights_are_skipped_and_all_zero_is_empty() {
        assert_eq!(wrr_sequence(&[0, 2, 0, 1]).unwrap(), vec![1, 1, 3]);
        assert!(wrr_sequence(&[0, 0]).unwrap().is_empty());
        assert!(wrr_sequence(&[]).unwrap().is_empty());
        let mut p = WrrPicker::new();
        assert_eq!(p.pick(&reals(&[0, 0])), None);
    }

    #[test]
    fn cycle_length_limit() {
        let err = wrr_sequence(&[u32::MAX, 1]).unwrap_err();
        assert!(matches!(err, SchedError::WrrCycleTooLong { .. }));
        assert_eq!(wrr_sequence(&[65_535, 1]).unwrap().len(), 65_536);
    }

    #[test]
    fn unavailable_real_is_skipped_and_picker_recovers() {
        let mut rs = reals(&[4, 3, 2]);
        let mut p = WrrPicker::new();
        rs[A].available = false;
        let picks: Vec<_> = (0..5).map(|_| p.pick(&rs).unwrap()).collect();
        // After the change: di=1, mw=3 over {b, c}: b, b, c, b, c.
        assert_eq!(picks, vec![B, B, C, B, C]);
        rs[A].available = true;
        // Params change again: walk restarts from the head at cw clamped to 4.
        let picks: Vec<_> = (0..9).map(|_| p.pick(&rs).unwrap()).collect();
        let counts = [A, B, C].map(|r| picks.iter().filter(|&&x| x == r).count());
        assert_eq!(counts, [4, 3, 2]);
    }

    #[test]
    fn rr_cycles_over_eligible() {
        let mut rs = reals(&[1, 0, 5, 1]);
        let mut p = RrPicker::new();
        let picks: Vec<_> = (0..6).map(|_| p.pick(&rs).unwrap()).collect();
        assert_eq!(picks, vec![0, 2, 3, 0, 2, 3]);
        rs[2].available = false;
        // Last pick was 3: wraps to 0, then skips 1 (weight 0) and 2 (down).
        assert_eq!(p.pick(&rs), Some(0));
        assert_eq!(p.pick(&rs), Some(3));
        assert_eq!(RrPicker::new().pick(&[]), None);
    }

    proptest! {
        /// (c) one cycle gives each real exactly weight/gcd picks, and the
        /// stateful picker reproduces the sequence cycle after cycle.
        #[test]
        fn wrr_cycle_counts(weights in proptest::collection::vec(0u32..40, 1..12)) {
            let seq = wrr_sequence(&weights).unwrap();
            let g = weights.iter().fold(0, |g, &w| gcd(g, w));
            for (i, &w) in weights.iter().enumerate() {
                let picks = seq.iter().filter(|&&x| x == i).count() as u32;
                let want = w.checked_div(g).unwrap_or(0);
                prop_assert_eq!(picks, want, "real {} weight {}", i, w);
            }
            let rs = reals(&weights);
            let mut p = WrrPicker::new();
            for _ in 0..3 {
                let cycle: Vec<_> = (0..seq.len()).map(|_| p.pick(&rs).unwrap()).collect();
                prop_assert_eq!(&cycle, &seq);
            }
        }
    }
}
