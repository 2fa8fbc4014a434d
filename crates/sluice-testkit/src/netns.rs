//! Throw-away named network namespaces (`ip netns`) and veth pairs for the
//! XDP tests and benchmarks: sluice-lab's, so that the tests and the lab
//! create, enter and delete namespaces the one same way (names
//! `sl-<label>-...` with [`unique_label`], so `sluice lab down` and a look
//! at `ip netns list` treat them alike). A [`Netns`] is deleted on drop,
//! after whatever still runs inside is stopped. Nothing is created in the
//! root namespace: veth ends are made directly inside their namespaces.

pub use sluice_lab::{LabError as NetnsError, Netns, VethPair, create_veth};

/// A label unique within this machine for the life of this process
/// (`prefix`, the PID, `x`, a counter), so concurrent tests and test
/// binaries never share a namespace: sluice-lab's
/// [`sluice_lab::LabSpec::unique_label`].
#[must_use]
pub fn unique_label(prefix: &str) -> String {
    sluice_lab::LabSpec::unique_label(prefix)
}
