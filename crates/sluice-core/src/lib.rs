//! Sans-IO load-balancing logic for sluice: schedulers (IPVS's and
//! HAProxy's, Maglev included), the health state machine and the L4
//! connection policy.
//!
//! # Contracts
//!
//! - **No I/O, no clock, no RNG.** Time comes in as a [`std::time::Duration`]
//!   since an epoch the caller picks (its monotonic clock, or a virtual clock
//!   in tests); randomness comes in as caller-supplied `u64`s. Every function
//!   is deterministic in its inputs, so tests drive everything in virtual
//!   time and several load balancers given the same inputs agree.
//! - **No panics on runtime input.** Connection counts, weights, addresses,
//!   paths and check results never panic (ratios use cross-multiplication in
//!   wide integers). Configuration mistakes (non-prime table sizes, absurd
//!   WRR cycles, `rise = 0`) are typed errors raised when a table or state is
//!   built, never per flow.
//! - **Bounded.** Every table has a named size limit
//!   ([`sched::maglev::MAX_TABLE_SIZE`], [`sched::rr::MAX_WRR_CYCLE_LEN`],
//!   [`sched::persist::MAX_PERSISTENCE_ENTRIES`]); candidate iterators yield
//!   each server at most once.
//! - **Reals are indices.** Schedulers take a slice of reals and return an
//!   index into it; weight 0 or "unavailable" means no new flows; ties go
//!   to the lowest index unless documented otherwise.
//!
//! # Map
//!
//! - [`sched`]: `rr`/`wrr` ([`sched::rr`]), `lc`/`wlc`/`sed`/`nq`
//!   ([`sched::lc`]), `sh`/`dh` ([`sched::hashsched`]), Maglev `mh`
//!   ([`sched::maglev`]), client persistence ([`sched::persist`]) and the
//!   HAProxy algorithms with the failover candidate iterator ([`sched::l7`]).
//! - [`health`]: rise/fall state machine, operator state, fail-open policy,
//!   jitter.
//! - [`conn`]: IPVS session timeouts and the client-side TCP state tracker
//!   (with its DSR caveats).
//! - [`hash`]: the fixed hash functions every table uses.
//! - [`vrrp`]: the VRRPv3 state machine of one virtual router (RFC 5798),
//!   with preemption delay and a fault state.
//!
//! # Example
//!
//! ```
//! use sluice_core::sched::maglev::{maglev_lookup, maglev_table, min_table_size};
//! use sluice_core::sched::rr::wrr_sequence;
//!
//! // IPVS wrr order for weights 4, 3, 2 (a, b, c):
//! assert_eq!(wrr_sequence(&[4, 3, 2]).unwrap(), [0, 0, 1, 0, 1, 2, 0, 1, 2]);
//!
//! // A Maglev table for three reals keyed by stable ids, equal weights.
//! let reals = [(101, 1), (202, 1), (303, 1)];
//! let m = min_table_size(reals.len()); // 307, the smallest prime >= 300
//! let table = maglev_table(&reals, m).unwrap();
//! assert_eq!(table.len(), m);
//! let real = maglev_lookup(&table, 0xfeed_beef).unwrap();
//! assert!(real < 3);
//! ```
#![forbid(unsafe_code)]

pub mod conn;
pub mod hash;
pub mod health;
pub mod sched;
pub mod service;
pub mod vrrp;
