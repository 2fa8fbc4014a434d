//! What the tests and benchmarks of several sluice crates share, in one
//! dev-only crate instead of files included across crates by path:
//!
//! - [`bpffs`]: a BPF file system mounted for a test (pinned maps);
//! - [`frames`]: hand-built Ethernet frames for `BPF_PROG_TEST_RUN` (we
//!   own these bytes, so malformed variants are easy to make);
//! - [`services`]: the map contents of the data-plane benchmarks (three
//!   reals, a hash-scheduled service per VIP), as plain values;
//! - [`netns`]: throw-away named network namespaces and veth pairs for the
//!   XDP tests and benchmarks, removed on drop (sluice-lab's, re-exported).
//!
//! It is a dev-dependency of the planes, so it depends on no plane: only
//! `sluice-wire` and `sluice-lab` (which depends on no workspace crate).
//! The callers write [`services`]' values into their own
//! `sluice_l4::Dataplane`.

pub mod bpffs;
pub mod frames;
pub mod netns;
pub mod services;

/// The median of benchmark samples (the upper middle one for an even
/// count), as the benchmarks report it.
///
/// # Panics
/// On an empty `v`: a benchmark without samples has nothing to report.
#[must_use]
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_is_the_middle_sample() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 3.0);
    }
}
