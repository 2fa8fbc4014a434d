//! One module per subcommand. Each exposes `Args` (or a subcommand enum) and
//! `run(..) -> anyhow::Result<ExitCode>`.

pub(crate) mod bench;
pub(crate) mod check;
pub(crate) mod ctl;
pub(crate) mod doctor;
pub(crate) mod health_map;
pub(crate) mod l7_map;
pub(crate) mod lab;
pub(crate) mod metrics;
pub(crate) mod realserver;
pub(crate) mod run;
