//! sluice's TOML configuration model and validation with file:line:col diagnostics.
#![forbid(unsafe_code)]
