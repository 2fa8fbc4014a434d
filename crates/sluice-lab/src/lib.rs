//! Network-namespace testbeds for sluice: client, one-armed LB, real servers on one bridge.
#![forbid(unsafe_code)]
