//! Maglev consistent hashing (`mh`): the permutations of Google's paper
//! (Eisenbud et al., NSDI 2016, §3.4), filled up to weighted quotas in
//! rounds (below: how and why this differs from the paper's fill).
//!
//! # Contract
//!
//! [`maglev_table`] is a pure function of `m` and the **set** of
//! `(stable key, weight)` pairs: not of their order, not of any earlier
//! table. Every load balancer with the same reals, weights and health
//! therefore builds the same table, whatever its history (reals added and
//! removed in another order, health flaps, restarts), and they agree on
//! where a flow goes without sharing state: an ECMP reshuffle or a failover
//! to a peer does not break connections. Entry `table[slot]` is an index
//! into the caller's `reals`; a flow goes to `table[hash(flow) % m]`
//! ([`maglev_lookup`]).
//!
//! - **Permutation.** Real `i` with stable key `k` prefers slots
//!   `offset, offset + skip, offset + 2·skip, ... (mod m)` with
//!   `offset = hash_u64(k, SEED_OFFSET) % m` and
//!   `skip = hash_u64(k, SEED_SKIP) % (m - 1) + 1` ([`crate::hash::hash_u64`]).
//!   `m` must be prime so every `skip` is coprime with `m` and the sequence
//!   visits every slot.
//! - **Quotas.** Real `i` gets exactly `m · wᵢ / Σw` slots, rounded by
//!   largest remainder (ties to the lower key), so the quotas sum to `m`.
//!   With equal weights every real gets `floor(m/N)` or `ceil(m/N)` slots;
//!   with `m >= 100·N` that is within 1 % of perfect. Weight 0 reals get no
//!   slot, exactly as if they were absent (the L4 plane passes a drained or
//!   health-down real with weight 0).
//! - **Fill.** In round `r` (0, 1, 2, ...) every real short of its quota,
//!   in ascending key order, looks at the `r`-th slot of its permutation and
//!   takes it if it is free. The paper's fill (and Katran's) instead lets
//!   each real take the *next free* slot of its permutation on its turn, so
//!   how far a real has walked depends on how many slots the others took
//!   before it; here a real's claims in round `r` depend only on which slots
//!   are taken, which about halves the extra churn (below). Key order makes the
//!   turns independent of the caller's order, which may come from its
//!   history; the result is mapped back to the caller's indexes. Reals with
//!   the same key are indistinguishable: callers give distinct reals
//!   distinct keys.
//! - **Disruption.** Removing a real frees its slots (≈ 1/N of them), which
//!   go to the others; adding one takes ≈ 1/N. Some other slots move too:
//!   the freed slots do not fall to the others in exactly their new quotas,
//!   so some reals then give up or take other slots. Measured by the test `churn_against_one_over_n` (a
//!   fixed sweep; BENCHMARKS.md, "Maglev"): the share of slots that change
//!   real when one real of N is removed (or added: the same two tables),
//!   divided by 1/N, the least any scheme must move:
//!
//!   | table size | N | this fill: mean / max | the paper's fill: mean / max |
//!   |---|---|---|---|
//!   | `min_table_size(N)` (≈ 100·N) | 2..=64 | **1.36×** / 1.77× | 1.70× / 2.75× |
//!   | 65 537 (the default) | 2, 4, ..., 64 | **1.08×** / 1.21× | 1.14× / 1.33× |
//!
//!   Established flows do not depend on it: the connection table pins them
//!   to their real (as Katran's LRU does); only flows without a session
//!   (new ones, or ones whose session was lost) follow the table.
//!
//! [`maglev_table_update`] instead moves exactly the minimum (only the
//! removed real's slots, only the newcomer's) by updating the previous
//! table, at the price of depending on history. It serves the L7
//! `consistent` ring, where proxies need not agree for a connection to
//! survive (each terminates its own); the L4 plane uses [`maglev_table`].
//!
//! Sizes: [`min_table_size`] gives the smallest prime `>= 100·N` (and
//! `>= 251`); Katran's default is [`KATRAN_TABLE_SIZE`] (65 537).

use std::collections::HashMap;

use super::SchedError;
use crate::hash::hash_u64;

/// Seed for a real's slot offset (an arbitrary fixed constant; changing it
/// reshuffles every table, so it never changes).
pub const SEED_OFFSET: u64 = 0x6d61_676c_6576_0001;
/// Seed for a real's skip (see [`SEED_OFFSET`]).
pub const SEED_SKIP: u64 = 0x6d61_676c_6576_0002;

/// Smallest accepted table size.
pub const MIN_TABLE_SIZE: usize = 2;
/// Largest accepted table size, in slots (4 bytes each: 64 MiB at most).
pub const MAX_TABLE_SIZE: usize = 1 << 24;
/// Slots per real that [`min_table_size`] asks for (the paper's M ≥ 100·N,
/// which keeps equal-weight imbalance within 1 %).
pub const SLOTS_PER_REAL: usize = 100;
/// Floor for [`min_table_size`], so tiny services still spread well.
pub const MIN_RECOMMENDED_TABLE_SIZE: usize = 251;
/// Katran's default ring size (a prime).
pub const KATRAN_TABLE_SIZE: usize = 65_537;

/// Marks a slot not yet taken while the table is being filled.
const EMPTY: u32 = u32::MAX;

/// Whether `n` is prime (trial division; table sizes are small).
pub fn is_prime(n: usize) -> bool {
    if n < 2 {
        return false;
    }
    if n.is_multiple_of(2) {
        return n == 2;
    }
    let mut d = 3usize;
    while d.saturating_mul(d) <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 2;
    }
    true
}

/// The smallest prime `>= n`. Saturates at the largest prime below
/// `usize::MAX` in theory; in practice callers stay below
/// [`MAX_TABLE_SIZE`].
pub fn next_prime(n: usize) -> usize {
    let mut c = n.max(2);
    while !is_prime(c) {
        match c.checked_add(1) {
            Some(x) => c = x,
            None => break,
        }
    }
    c
}

/// Smallest prime `>= SLOTS_PER_REAL · n_reals` and `>= 251`.
pub fn min_table_size(n_reals: usize) -> usize {
    next_prime(
        n_reals
            .saturating_mul(SLOTS_PER_REAL)
            .max(MIN_RECOMMENDED_TABLE_SIZE),
    )
}

/// Builds a Maglev lookup table of `m` slots for `reals`, given as
/// `(stable key, weight)` pairs in any order. Entries index into `reals`;
/// resolved to keys, the table is the same for every order of the same
/// pairs, and the same whether weight-0 pairs are passed or left out (see
/// the module doc). Returns an empty table when no real has weight > 0 (the
/// service has nowhere to send new flows).
///
/// # Errors
///
/// - [`SchedError::TableSizeNotPrime`] if `m` is not prime;
/// - [`SchedError::TableSizeOutOfRange`] if `m` is outside
///   [`MIN_TABLE_SIZE`]`..=`[`MAX_TABLE_SIZE`];
/// - [`SchedError::TooManyReals`] if more reals have weight > 0 than there
///   are slots.
pub fn maglev_table(reals: &[(u64, u32)], m: usize) -> Result<Vec<u32>, SchedError> {
    let mut walks = walks(reals, m)?;
    if walks.is_empty() {
        return Ok(Vec::new());
    }
    let m64 = m as u64;
    let quota = quotas(&walks, m);
    let mut count = vec![0usize; walks.len()];
    // The reals still short of their quota, in key order: full ones drop
    // out, so the late rounds, which look for the last free slots, only
    // walk the few reals still short.
    let mut short: Vec<usize> = (0..walks.len()).filter(|&j| quota[j] > 0).collect();
    let mut table = vec![EMPTY; m];
    let mut filled = 0usize;
    // Round r: every real short of its quota looks at the r-th slot of its
    // permutation and takes it if it is free (not the next free one, as the
    // paper's fill does: a real's claims then do not depend on how many
    // slots the others took before, which about halves the extra churn). A slot
    // never becomes free again and a permutation visits every slot in m
    // rounds, so a real still short after m rounds would have taken every
    // free slot: as the quotas sum to m, the table is full by then.
    for _ in 0..m {
        for &j in &short {
            let w = &mut walks[j];
            let slot = &mut table[w.cur as usize];
            if *slot == EMPTY {
                *slot = w.idx;
                count[j] += 1;
                filled += 1;
            }
            w.cur = (w.cur + w.skip) % m64;
        }
        if filled == m {
            break;
        }
        short.retain(|&j| count[j] < quota[j]);
    }
    debug_assert_eq!(filled, m, "the quotas sum to m");
    Ok(table)
}

/// Each real's number of slots: `m · weight / Σweight`, rounded by largest
/// remainder (ties to the walk that comes first, the lower key), so the
/// quotas sum to exactly `m` and equal weights get `floor(m/N)` or
/// `ceil(m/N)`. `walks` is not empty.
fn quotas(walks: &[Walk], m: usize) -> Vec<usize> {
    let total_w: u128 = walks.iter().map(|w| u128::from(w.weight)).sum();
    let mut quota: Vec<usize> = Vec::with_capacity(walks.len());
    let mut rems: Vec<(u128, usize)> = Vec::with_capacity(walks.len());
    for (j, w) in walks.iter().enumerate() {
        let share = m as u128 * u128::from(w.weight);
        // share / total_w <= m, which fits usize.
        quota.push((share / total_w) as usize);
        rems.push((share % total_w, j));
    }
    let leftover = m - quota.iter().sum::<usize>();
    rems.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, j) in rems.iter().take(leftover) {
        quota[j] += 1;
    }
    quota
}

/// Rebuilds a table for `reals` with **minimal disruption** relative to a
/// previous table `prev` (built for reals whose stable keys were
/// `prev_keys`, in `prev`'s index space).
///
/// Unlike [`maglev_table`] this is not a pure function of `reals`: it
/// depends on `prev`. In exchange:
///
/// - every slot whose previous owner is still present (same key, weight
///   above zero) and not above its new quota keeps that owner, so **removing a real
///   moves only that real's slots**, and adding one moves only the slots the
///   newcomer receives;
/// - each real ends with exactly its quota, `m · weight / Σweight` rounded
///   by largest remainder (ties to the lower key), so equal weights get
///   `floor(m/N)` or `ceil(m/N)` slots;
/// - freed slots are handed out Maglev-style: reals short of their quota take
///   turns, each claiming the next free slot in its own permutation. A real
///   above its quota (after an addition or weight change) releases the slots
///   that come last in its permutation.
///
/// Several LBs that start from the same table and apply the same changes get
/// the same tables. An LB that restarts should rebuild with [`maglev_table`]
/// from the same real list and then follow updates, or fetch the table
/// from a peer. When `prev.len() != m` (or `prev` is empty) this falls back to
/// [`maglev_table`].
///
/// # Errors
///
/// As [`maglev_table`].
pub fn maglev_table_update(
    prev: &[u32],
    prev_keys: &[u64],
    reals: &[(u64, u32)],
    m: usize,
) -> Result<Vec<u32>, SchedError> {
    let mut walks = walks(reals, m)?;
    if walks.is_empty() {
        return Ok(Vec::new());
    }
    if prev.len() != m {
        return maglev_table(reals, m);
    }
    let m64 = m as u64;
    let quota = quotas(&walks, m);
    // Map previous owners into the new walk list by stable key.
    let mut by_key: HashMap<u64, usize> = HashMap::with_capacity(walks.len());
    for (j, w) in walks.iter().enumerate() {
        by_key.entry(reals[w.idx as usize].0).or_insert(j);
    }
    // `owner` holds walk positions (not real indices) while we work.
    let mut owner: Vec<u32> = prev
        .iter()
        .map(|&old| {
            prev_keys
                .get(old as usize)
                .and_then(|k| by_key.get(k))
                .map_or(EMPTY, |&j| j as u32)
        })
        .collect();
    let mut count = vec![0usize; walks.len()];
    for &o in &owner {
        if o != EMPTY {
            count[o as usize] += 1;
        }
    }
    // Reals above quota release the slots that come last in their own
    // permutation (the ones a fresh Maglev fill would least likely give them).
    for (j, w) in walks.iter().enumerate() {
        if count[j] <= quota[j] {
            continue;
        }
        let mut excess = count[j] - quota[j];
        // Walk the permutation backwards: start one step before the offset.
        let back = m64 - w.skip;
        let mut s = (w.cur + back) % m64;
        for _ in 0..m {
            if excess == 0 {
                break;
            }
            if owner[s as usize] == j as u32 {
                owner[s as usize] = EMPTY;
                excess -= 1;
            }
            s = (s + back) % m64;
        }
        count[j] = quota[j];
    }
    // Fill the free slots: one slot per short real per round.
    let mut free = owner.iter().filter(|&&o| o == EMPTY).count();
    while free > 0 {
        let mut progressed = false;
        for (j, w) in walks.iter_mut().enumerate() {
            if count[j] >= quota[j] {
                continue;
            }
            // Free slots only get taken during this loop, so each walk
            // passes every slot at most once: bounded by m steps.
            let mut steps = 0;
            while owner[w.cur as usize] != EMPTY && steps < m {
                w.cur = (w.cur + w.skip) % m64;
                steps += 1;
            }
            if owner[w.cur as usize] != EMPTY {
                continue;
            }
            owner[w.cur as usize] = j as u32;
            w.cur = (w.cur + w.skip) % m64;
            count[j] += 1;
            free -= 1;
            progressed = true;
            if free == 0 {
                break;
            }
        }
        if !progressed {
            // Sum of quotas is m, so some real is short while a slot is free;
            // never reached. Fail safe: rebuild from scratch.
            return maglev_table(reals, m);
        }
    }
    Ok(owner.into_iter().map(|j| walks[j as usize].idx).collect())
}

/// One real's walk through its permutation while a table is being filled.
struct Walk {
    /// Index into the caller's reals.
    idx: u32,
    /// Stable key (orders the turns).
    key: u64,
    /// Weight (> 0).
    weight: u64,
    /// Next slot in the permutation (starts at the offset).
    cur: u64,
    /// Permutation stride, `1..m`.
    skip: u64,
}

/// Validates `m` and builds the permutation walks of the reals with a
/// weight above 0, in ascending key order (the canonical order of turns:
/// the caller's order may reflect its history).
fn walks(reals: &[(u64, u32)], m: usize) -> Result<Vec<Walk>, SchedError> {
    if !(MIN_TABLE_SIZE..=MAX_TABLE_SIZE).contains(&m) {
        return Err(SchedError::TableSizeOutOfRange {
            size: m,
            min: MIN_TABLE_SIZE,
            max: MAX_TABLE_SIZE,
        });
    }
    if !is_prime(m) {
        return Err(SchedError::TableSizeNotPrime(m));
    }
    let m64 = m as u64;
    let mut walks = Vec::new();
    for (i, &(key, w)) in reals.iter().enumerate() {
        // The EMPTY marker must never be a valid index.
        let Ok(idx) = u32::try_from(i) else { break };
        if w == 0 || idx == EMPTY {
            continue;
        }
        walks.push(Walk {
            idx,
            key,
            weight: u64::from(w),
            cur: hash_u64(key, SEED_OFFSET) % m64,
            skip: hash_u64(key, SEED_SKIP) % (m64 - 1) + 1,
        });
    }
    // Equal keys (the same real twice) are ordered by weight; beyond that
    // they are interchangeable, as their permutations are equal.
    walks.sort_by_key(|w| (w.key, w.weight));
    if walks.len() > m {
        return Err(SchedError::TooManyReals {
            reals: walks.len(),
            size: m,
        });
    }
    Ok(walks)
}

/// The real for a flow hash: `table[hash % table.len()]`, `None` for an
/// empty table.
pub fn maglev_lookup(table: &[u32], hash: u64) -> Option<u32> {
    if table.is_empty() {
        return None;
    }
    table.get((hash % table.len() as u64) as usize).copied()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn counts(table: &[u32], n: usize) -> Vec<usize> {
        let mut c = vec![0; n];
        for &e in table {
            c[e as usize] += 1;
        }
        c
    }

    #[test]
    fn primes() {
        let small: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, vec![2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65_537));
        assert!(!is_prime(65_535));
        assert_eq!(next_prime(0), 2);
        assert_eq!(next_prime(14), 17);
        assert_eq!(next_prime(17), 17);
        assert_eq!(min_table_size(1), 251);
        assert_eq!(min_table_size(2), 251);
        assert_eq!(min_table_size(3), 307);
        assert_eq!(min_table_size(10), 1009);
    }

    #[test]
    fn rejects_bad_sizes_and_handles_empty() {
        assert_eq!(
            maglev_table(&[(1, 1)], 100),
            Err(SchedError::TableSizeNotPrime(100))
        );
        assert!(matches!(
            maglev_table(&[(1, 1)], 1),
            Err(SchedError::TableSizeOutOfRange { .. })
        ));
        assert!(matches!(
            maglev_table(&[(1, 1)], MAX_TABLE_SIZE + 1),
            Err(SchedError::TableSizeOutOfRange { .. })
        ));
        let many: Vec<(u64, u32)> = (0..5).map(|k| (k, 1)).collect();
        assert_eq!(
            maglev_table(&many, 3),
            Err(SchedError::TooManyReals { reals: 5, size: 3 })
        );
        assert!(maglev_table(&[(1, 0), (2, 0)], 7).unwrap().is_empty());
        assert_eq!(maglev_lookup(&[], 5), None);
    }

    #[test]
    fn single_real_owns_everything_and_weight_zero_owns_nothing() {
        let t = maglev_table(&[(7, 0), (9, 3), (11, 0)], 251).unwrap();
        assert_eq!(t.len(), 251);
        assert!(t.iter().all(|&e| e == 1));
    }

    #[test]
    fn deterministic() {
        let reals: Vec<(u64, u32)> = (0..10).map(|k| (k * 1000 + 3, 1)).collect();
        assert_eq!(
            maglev_table(&reals, 1009).unwrap(),
            maglev_table(&reals, 1009).unwrap()
        );
    }

    #[test]
    fn weights_are_proportional() {
        // Weights 3:2:1 over 6007 slots -> 3003.5 / 2002.3 / 1001.2 ideal.
        let reals = [(11, 3), (22, 2), (33, 1)];
        let c = counts(&maglev_table(&reals, 6007).unwrap(), 3);
        let total: usize = c.iter().sum();
        assert_eq!(total, 6007);
        // Largest-remainder quotas: 3003 + 1 (remainder 0.5), 2002, 1001.
        assert_eq!(c, vec![3004, 2002, 1001]);
    }

    fn keyed(n: usize, seed: u64) -> Vec<(u64, u32)> {
        (0..n as u64)
            .map(|k| (crate::hash::mix64(k ^ seed), 1))
            .collect()
    }

    /// Slots whose real, resolved to its key, differs between two tables
    /// of the same size (each indexing its own list of reals).
    fn moved(
        before: &[u32],
        b_reals: &[(u64, u32)],
        after: &[u32],
        a_reals: &[(u64, u32)],
    ) -> usize {
        before
            .iter()
            .zip(after)
            .filter(|&(&b, &a)| b_reals[b as usize].0 != a_reals[a as usize].0)
            .count()
    }

    /// Churn of a fixed sweep: for N reals and each seed, the slots that
    /// change real between the table of N reals and the table without one
    /// of them, as a share of all slots, divided by 1/N (the removed real's
    /// fair share: the least any consistent hash must move). Removal and
    /// addition compare the same two tables, so one figure covers both.
    /// Returns (mean, max).
    fn churn(ns: &[usize], seeds: u64, size: impl Fn(usize) -> usize) -> (f64, f64) {
        let (mut sum, mut cases, mut max) = (0.0, 0u32, 0.0f64);
        for &n in ns {
            for seed in 0..seeds {
                let reals = keyed(n, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ n as u64);
                let m = size(n);
                let with = maglev_table(&reals, m).unwrap();
                let mut without = reals.clone();
                without.remove((seed as usize * 7) % n);
                let after = maglev_table(&without, m).unwrap();
                let r = moved(&with, &reals, &after, &without) as f64 * n as f64 / m as f64;
                sum += r;
                cases += 1;
                max = max.max(r);
            }
        }
        (sum / f64::from(cases), max)
    }

    /// The disruption figures of the module doc, measured; the bounds are a
    /// regression guard a little above them (a fixed, deterministic sweep,
    /// so it cannot flake). Print them with
    /// `cargo test -p sluice-core churn_against_one_over_n -- --nocapture`.
    #[test]
    fn churn_against_one_over_n() {
        let all: Vec<usize> = (2..=64).collect();
        let (min_mean, min_max) = churn(&all, 20, min_table_size);
        println!(
            "m = min_table_size(N), 2 <= N <= 64, 20 key sets each: moved share / (1/N): mean {min_mean:.3}, max {min_max:.3}"
        );
        let some: Vec<usize> = (2..=64).step_by(2).collect();
        let (def_mean, def_max) = churn(&some, 4, |_| KATRAN_TABLE_SIZE);
        println!(
            "m = 65537, N = 2, 4, ..., 64, 4 key sets each: moved share / (1/N): mean {def_mean:.3}, max {def_max:.3}"
        );
        // Nothing can move less than the removed real's own share.
        assert!(min_mean >= 0.99 && def_mean >= 0.99);
        // Measured 1.361 / 1.770 and 1.079 / 1.213; the paper's fill,
        // 1.696 / 2.750 and 1.137 / 1.329, fails every bound.
        assert!(min_mean < 1.45, "mean {min_mean}");
        assert!(min_max < 2.0, "max {min_max}");
        assert!(def_mean < 1.11, "mean {def_mean}");
        assert!(def_max < 1.27, "max {def_max}");
    }

    /// Build time of the largest table the L4 plane writes (65 537 slots,
    /// 8 and 64 reals): the control plane rebuilds it on every change of
    /// the service's reals, weights or health. A measurement, not a check:
    /// `cargo test --release -p sluice-core maglev_build_time -- --ignored
    /// --nocapture` (BENCHMARKS.md, "Maglev").
    #[test]
    #[ignore = "a timing measurement; run in release"]
    fn maglev_build_time() {
        for n in [8, 64] {
            let reals = keyed(n, 5);
            let mut runs: Vec<f64> = (0..5)
                .map(|_| {
                    let t = std::time::Instant::now();
                    for _ in 0..20 {
                        std::hint::black_box(maglev_table(&reals, KATRAN_TABLE_SIZE).unwrap());
                    }
                    t.elapsed().as_secs_f64() * 1e3 / 20.0
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            println!(
                "m = 65537, N = {n}: median of 5 runs (20 builds each) {:.2} ms per table (min {:.2}, max {:.2})",
                runs[2], runs[0], runs[4]
            );
        }
    }

    #[test]
    fn update_with_same_reals_is_identity_and_size_change_rebuilds() {
        let reals = keyed(7, 42);
        let keys: Vec<u64> = reals.iter().map(|r| r.0).collect();
        let t = maglev_table(&reals, 701).unwrap();
        assert_eq!(maglev_table_update(&t, &keys, &reals, 701).unwrap(), t);
        assert_eq!(
            maglev_table_update(&t, &keys, &reals, 709).unwrap(),
            maglev_table(&reals, 709).unwrap()
        );
        assert_eq!(maglev_table_update(&[], &[], &reals, 701).unwrap(), t);
    }

    #[test]
    fn update_drain_to_zero_weight_acts_as_removal() {
        let mut reals = keyed(5, 9);
        let keys: Vec<u64> = reals.iter().map(|r| r.0).collect();
        let t = maglev_table(&reals, 503).unwrap();
        reals[2].1 = 0;
        let u = maglev_table_update(&t, &keys, &reals, 503).unwrap();
        for (&b, &a) in t.iter().zip(&u) {
            assert_ne!(a, 2);
            if b != 2 {
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn update_weight_change_moves_only_the_gainers_slots() {
        let mut reals = keyed(6, 77);
        let keys: Vec<u64> = reals.iter().map(|r| r.0).collect();
        let m = 1009;
        let t = maglev_table(&reals, m).unwrap();
        // Weight 1 -> 2. Quotas: 1009·1/7 = 144 rem 1/7 for five reals,
        // 1009·2/7 = 288 rem 2/7 for real 4; the one leftover slot goes to the
        // largest remainder, real 4.
        reals[4].1 = 2;
        let u = maglev_table_update(&t, &keys, &reals, m).unwrap();
        for (&b, &a) in t.iter().zip(&u) {
            assert!(a == b || a == 4, "only real 4 gains slots");
        }
        let c = counts(&u, 6);
        assert_eq!(c[4], 289);
        assert!(
            c.iter().enumerate().all(|(i, &x)| i == 4 || x == 144),
            "{c:?}"
        );
    }

    /// Slots that changed owner, not counting those the removed real owned.
    fn foreign_moves(before: &[u32], after: &[u32], removed: u32) -> usize {
        before
            .iter()
            .zip(after)
            .filter(|&(&b, &a)| {
                // `after` indexes the list without `removed`: map back.
                let a = if a >= removed { a + 1 } else { a };
                b != removed && a != b
            })
            .count()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// (a) equal weights, M >= 100·N: every share within 1 % of M/N
        /// (in fact floor/ceil of M/N).
        #[test]
        fn equal_weights_balance(n in 2usize..50, seed in any::<u64>()) {
            let reals: Vec<(u64, u32)> = (0..n as u64).map(|k| (crate::hash::mix64(k ^ seed), 1)).collect();
            let m = min_table_size(n);
            prop_assert!(m >= 100 * n);
            let c = counts(&maglev_table(&reals, m).unwrap(), n);
            let ideal = m as f64 / n as f64;
            for &x in &c {
                prop_assert!(x == m / n || x == m.div_ceil(n), "{:?}", c);
                prop_assert!((x as f64 - ideal).abs() / ideal <= 0.01);
            }
        }

        /// The table is a pure function of the set of (key, weight) pairs:
        /// another order of the same reals, with weight-0 reals (drained,
        /// health-down) passed or left out, gives the same table resolved
        /// to keys. This is what lets LBs with different histories agree.
        #[test]
        fn same_set_in_any_order_gives_the_same_table(
            n in 1usize..64,
            seed in any::<u64>(),
            weights in prop::collection::vec(0u32..4, 64),
            zeros in prop::collection::vec(any::<u64>(), 0..4),
            shuffle in any::<u64>(),
        ) {
            let reals: Vec<(u64, u32)> = keyed(n, seed)
                .into_iter()
                .zip(&weights)
                .map(|((k, _), &w)| (k, w))
                .collect();
            let m = min_table_size(n + zeros.len());
            let a = maglev_table(&reals, m).unwrap();
            // The same reals, shuffled, plus the weight-0 extras.
            let mut other = reals.clone();
            other.extend(zeros.iter().map(|&k| (k, 0)));
            let mut rng = shuffle;
            for i in (1..other.len()).rev() {
                rng = crate::hash::mix64(rng);
                other.swap(i, (rng % (i as u64 + 1)) as usize);
            }
            let b = maglev_table(&other, m).unwrap();
            let ka: Vec<u64> = a.iter().map(|&i| reals[i as usize].0).collect();
            let kb: Vec<u64> = b.iter().map(|&i| other[i as usize].0).collect();
            prop_assert_eq!(ka, kb);
        }

        /// (b) with [`maglev_table_update`], removing one real moves only
        /// that real's slots, and the survivors end exactly at their quotas.
        #[test]
        fn update_removal_moves_only_the_removed_reals_slots(
            n in 2usize..50,
            victim in any::<prop::sample::Index>(),
            seed in any::<u64>(),
        ) {
            let reals = keyed(n, seed);
            let keys: Vec<u64> = reals.iter().map(|r| r.0).collect();
            let m = min_table_size(n);
            let before = maglev_table(&reals, m).unwrap();
            let v = victim.index(n);
            let mut fewer = reals.clone();
            fewer.remove(v);
            let after = maglev_table_update(&before, &keys, &fewer, m).unwrap();
            prop_assert_eq!(foreign_moves(&before, &after, v as u32), 0);
            for (&b, &a) in before.iter().zip(&after) {
                let a_old = if a as usize >= v { a + 1 } else { a };
                prop_assert!(a_old as usize != v);
                if b as usize != v {
                    prop_assert_eq!(a_old, b);
                }
            }
            let c = counts(&after, n - 1);
            for &x in &c {
                prop_assert!(x == m / (n - 1) || x == m.div_ceil(n - 1), "{:?}", c);
            }
        }

        /// Adding a real with the update moves only the slots it receives,
        /// and it receives its fair share.
        #[test]
        fn update_addition_moves_only_the_newcomers_slots(n in 1usize..40, seed in any::<u64>()) {
            let reals = keyed(n + 1, seed);
            let m = min_table_size(n + 1);
            let before = maglev_table(&reals[..n], m).unwrap();
            let keys: Vec<u64> = reals[..n].iter().map(|r| r.0).collect();
            let after = maglev_table_update(&before, &keys, &reals, m).unwrap();
            for (&b, &a) in before.iter().zip(&after) {
                prop_assert!(a == b || a as usize == n);
            }
            let c = counts(&after, n + 1);
            prop_assert!(c[n] == m / (n + 1) || c[n] == m.div_ceil(n + 1), "{:?}", c);
        }
    }
}
