//! Sans-IO load-balancing logic: schedulers (incl. Maglev), health state machine, connection policy.
#![forbid(unsafe_code)]
