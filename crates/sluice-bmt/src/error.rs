//! The benchmark's error type. The messages are the ones `sluice lab bmt`
//! has always printed: a step's context first, then its cause (the binary
//! prints the whole chain, as `anyhow`'s `{:#}` does).

use std::error::Error as StdError;
use std::fmt::Write as _;

/// Why `sluice lab bmt` stopped before writing its results, or why one
/// repetition failed.
///
/// Modes that cannot run are not errors: they are reported as "not
/// measured" with a reason, and the matrix goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BmtError {
    /// The matrix asked for is out of bounds; the message names the option.
    #[error("{0}")]
    Plan(String),
    /// The lab refused (not privileged, a namespace that cannot be entered).
    #[error(transparent)]
    Lab(#[from] sluice_lab::LabError),
    /// The load generator failed.
    #[error(transparent)]
    Bench(#[from] sluice_bench::BenchError),
    /// A file, directory, runtime or thread could not be made; `context`
    /// says which.
    #[error("{context}")]
    Io {
        /// What was being done, e.g. `writing OUT/bmt.md`.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// SIGINT or SIGTERM could not be caught.
    #[error(transparent)]
    Signal(std::io::Error),
    /// `bmt.json` could not be serialised.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The chart's SVG could not be parsed for rasterising.
    #[error(transparent)]
    Svg(#[from] resvg::usvg::Error),
    /// The chart could not be rasterised or written as PNG.
    #[error("{0}")]
    Chart(String),
}

impl BmtError {
    /// An [`BmtError::Io`] with its context.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Err(BmtError::Plan(msg()))` unless `ok`: the matrix's bounds checks.
pub(crate) fn require(ok: bool, msg: impl FnOnce() -> String) -> Result<(), BmtError> {
    if ok {
        Ok(())
    } else {
        Err(BmtError::Plan(msg()))
    }
}

/// An error and its causes on one line, `outer: inner: ...`: the form the
/// "not measured" reasons have always had (`anyhow`'s `{:#}`).
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let _ = write!(s, ": {c}");
        cause = c.source();
    }
    s
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn context_comes_first_then_the_cause() {
        let e = BmtError::io(
            "starting the load generator's runtime",
            std::io::Error::other("no threads"),
        );
        assert_eq!(
            chain(&e),
            "starting the load generator's runtime: no threads"
        );
        assert_eq!(e.to_string(), "starting the load generator's runtime");
        let p = require(false, || "--reps must be 1..=20".to_owned()).unwrap_err();
        assert_eq!(chain(&p), "--reps must be 1..=20");
        assert!(require(true, || unreachable!()).is_ok());
    }
}
