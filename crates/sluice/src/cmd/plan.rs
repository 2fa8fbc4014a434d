//! What `sluice run` would do with a configuration that parses, decided
//! before anything starts: the L4 data plane, the proxy's configuration,
//! and every rule a plane refuses the file for, each with the key at
//! fault. `sluice check` and `sluice run` both call [`plan`], so a file
//! that `check` passes is one `run` accepts, and what `run` refuses
//! `check` refuses first with `FILE:LINE:COL`.

use sluice_config::{Config, Diagnostics};
use sluice_proxy::ProxyConfig;

use super::gslb_map::{self, GslbPlan};
use super::l4_map::{self, L4Plan};
use super::l7_map;

/// A rule a configuration breaks, and the key at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// Key path, as in the config crate's diagnostics (`l4_service[1].interface`).
    pub(crate) path: String,
    /// What is wrong, then what was expected.
    pub(crate) message: String,
}

impl Problem {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Everything `sluice run` starts.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) l4: Option<L4Plan>,
    pub(crate) proxy: Option<ProxyConfig>,
    pub(crate) gslb: Option<GslbPlan>,
}

/// The plan for `cfg`, or every problem found (all planes are checked).
pub(crate) fn plan(cfg: &Config) -> Result<Plan, Vec<Problem>> {
    let mut problems = idle_sections(cfg);
    let l4 = l4_map::plan(cfg).unwrap_or_else(|p| {
        problems.extend(p);
        None
    });
    problems.extend(l7_map::check_files(cfg));
    let gslb = gslb_map::plan(cfg).unwrap_or_else(|p| {
        problems.extend(p);
        None
    });
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Plan {
        l4,
        proxy: l7_map::proxy_config(cfg),
        gslb,
    })
}

/// Sections that parse but that no plane runs (yet, or in this
/// configuration): refused rather than silently ignored.
fn idle_sections(cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    // Sync carries the L4 plane's sessions: with none, it would run idle.
    if cfg.sync.enabled && cfg.l4_services.is_empty() {
        out.push(Problem::new(
            "sync",
            "connection sync carries L4 sessions, and there is no [[l4_service]]: expected an L4 service or enabled = false",
        ));
    }
    out
}

/// Problems as positioned diagnostics of `file` (whose text is `text`).
pub(crate) fn diagnostics(file: &str, text: &str, problems: &[Problem]) -> Diagnostics {
    let mut d: Vec<_> = problems
        .iter()
        .map(|p| sluice_config::locate(file, text, &p.path, p.message.clone()))
        .collect();
    d.sort_by_key(|d| (d.line, d.col));
    Diagnostics(d)
}
