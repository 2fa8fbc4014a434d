//! HTTP load generator with HDR latency percentiles (ab- and wrk-style).
#![forbid(unsafe_code)]
