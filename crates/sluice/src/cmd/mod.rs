//! One module per subcommand. Each exposes `Args` (or a subcommand enum) and
//! `run(..) -> anyhow::Result<ExitCode>`. The `*_map` modules convert the
//! configuration's keywords into the planes' types, once, by name; `plan`
//! gathers every rule `sluice run` would refuse a file for, so that
//! `sluice check` refuses it first, with positions.

pub(crate) mod admin;
pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod ctl;
pub(crate) mod doctor;
pub(crate) mod gslb_map;
pub(crate) mod health_map;
pub(crate) mod l4_map;
pub(crate) mod l7_map;
pub(crate) mod lab;
pub(crate) mod manual;
pub(crate) mod metrics;
pub(crate) mod plan;
pub(crate) mod realserver;
pub(crate) mod run;
pub(crate) mod runtime;
