//! Health-check probe runners (ICMP, TCP, half-open, HTTP, script) feeding sluice-core's state machine.
#![forbid(unsafe_code)]
