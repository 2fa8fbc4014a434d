//! CPU cgroups that cap what a process may use: benchmarks put a load
//! balancer (or a real server) under a fixed CPU budget so that *it*, not
//! the load generator sharing the machine, is the bottleneck, and its
//! throughput measures its efficiency.
//!
//! The v1 `cpu` controller is used when it is mounted at
//! `/sys/fs/cgroup/cpu` (this machine), else the v2 unified hierarchy's
//! `cpu.max`. A [`CpuCap`] is a drop guard: dropping it moves whatever is
//! still inside back to the parent cgroup and removes the directory.

use std::path::PathBuf;

use crate::LabError;

/// The cgroup's accounting period, in microseconds: short, so that the
/// throttling evens out within a benchmark of a few seconds (and a throttled
/// process waits at most this long).
pub const CPU_CAP_PERIOD_US: u64 = 10_000;

/// The smallest budget accepted, in percent of one CPU.
pub const MIN_CPU_CAP_PCT: u32 = 1;

/// The largest budget accepted, in percent of one CPU (64 CPUs).
pub const MAX_CPU_CAP_PCT: u32 = 6_400;

/// Where cgroup v1's `cpu` controller is mounted.
const V1_CPU_ROOT: &str = "/sys/fs/cgroup/cpu";

/// Where the cgroup v2 hierarchy is mounted.
const V2_ROOT: &str = "/sys/fs/cgroup";

/// A CPU cgroup with a quota of `pct` percent of one CPU (all of its
/// processes' threads together); removed on drop.
#[derive(Debug)]
pub struct CpuCap {
    dir: PathBuf,
    /// Where processes go back to on drop: the parent's process list.
    parent_procs: PathBuf,
}

impl CpuCap {
    /// Makes the cgroup `name` (one path component, e.g. `sluice-bmt-123`)
    /// with a budget of `pct` percent of one CPU.
    pub fn new(name: &str, pct: u32) -> Result<Self, LabError> {
        if !(MIN_CPU_CAP_PCT..=MAX_CPU_CAP_PCT).contains(&pct) {
            return Err(LabError::InvalidSpec(format!(
                "CPU cap {pct}%: expected {MIN_CPU_CAP_PCT}..={MAX_CPU_CAP_PCT} percent of one CPU"
            )));
        }
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(LabError::InvalidSpec(format!(
                "CPU cgroup name {name:?}: expected one path component"
            )));
        }
        let quota_us = CPU_CAP_PERIOD_US * u64::from(pct) / 100;
        let v1 = PathBuf::from(V1_CPU_ROOT);
        let v2 = PathBuf::from(V2_ROOT);
        let (root, files) = if v1.join("cpu.cfs_quota_us").exists() {
            (
                v1,
                vec![
                    ("cpu.cfs_period_us", CPU_CAP_PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us", quota_us.to_string()),
                ],
            )
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            (
                v2,
                vec![("cpu.max", format!("{quota_us} {CPU_CAP_PERIOD_US}"))],
            )
        } else {
            return Err(LabError::InvalidSpec(format!(
                "no CPU cgroup controller: neither {V1_CPU_ROOT}/cpu.cfs_quota_us (v1) nor \
                 \"cpu\" in {V2_ROOT}/cgroup.subtree_control (v2)"
            )));
        };
        let dir = root.join(name);
        std::fs::create_dir(&dir)
            .map_err(|e| LabError::io(format!("creating the cgroup {}", dir.display()), e))?;
        // From here on, a failure removes the directory again (drop).
        let cap = CpuCap {
            parent_procs: root.join("cgroup.procs"),
            dir,
        };
        for (file, value) in files {
            let path = cap.dir.join(file);
            std::fs::write(&path, &value)
                .map_err(|e| LabError::io(format!("writing {value} to {}", path.display()), e))?;
        }
        Ok(cap)
    }

    /// Moves process `pid` (all its threads; children it forks later follow
    /// it) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), LabError> {
        let procs = self.dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string())
            .map_err(|e| LabError::io(format!("moving process {pid} into {}", procs.display()), e))
    }
}

/// Removes the cgroups named `PREFIX<pid>` that a killed run left behind:
/// those whose process `pid` no longer exists and that hold no process
/// (the kernel refuses to remove a cgroup that does). A cap is named after
/// the process it was made for, so a live run's caps are never touched.
/// Returns the paths removed; what cannot be removed stays, silently, for
/// the caller's own leftover check to report.
pub fn sweep_stale_caps(prefix: &str) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for root in [V1_CPU_ROOT, V2_ROOT] {
        let Ok(entries) = std::fs::read_dir(root) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(prefix))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if std::path::Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            if std::fs::remove_dir(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
    }
    removed
}

impl Drop for CpuCap {
    fn drop(&mut self) {
        // Anything still inside goes back to the parent; then the (empty)
        // cgroup can be removed.
        if let Ok(procs) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in procs.split_whitespace() {
                let _ = std::fs::write(&self.parent_procs, pid);
            }
        }
        if let Err(e) = std::fs::remove_dir(&self.dir) {
            eprintln!("removing the cgroup {}: {e}", self.dir.display());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_budgets_and_bad_names_are_refused_before_touching_anything() {
        for pct in [0, MAX_CPU_CAP_PCT + 1] {
            let e = CpuCap::new("sluice-cap-test", pct).unwrap_err().to_string();
            assert!(e.contains("expected 1..=6400"), "{e}");
        }
        for name in ["", "a/b", "..", ".hidden"] {
            let e = CpuCap::new(name, 10).unwrap_err().to_string();
            assert!(e.contains("one path component"), "{e}");
        }
    }

    /// Needs root (cgroups), as the lab tests do.
    #[test]
    fn the_sweep_removes_the_caps_of_dead_processes_only() {
        let root = if std::path::Path::new(V1_CPU_ROOT)
            .join("cpu.cfs_quota_us")
            .exists()
        {
            PathBuf::from(V1_CPU_ROOT)
        } else {
            PathBuf::from(V2_ROOT)
        };
        let prefix = format!("sluice-sweep-test-{}-", std::process::id());
        // Above the largest pid_max Linux allows (2^22): never a live PID.
        let dead = root.join(format!("{prefix}4194305"));
        let live = root.join(format!("{prefix}{}", std::process::id()));
        std::fs::create_dir(&dead).unwrap();
        std::fs::create_dir(&live).unwrap();
        let removed = sweep_stale_caps(&prefix);
        let live_left = live.exists();
        let _ = std::fs::remove_dir(&live);
        let _ = std::fs::remove_dir(&dead);
        assert_eq!(removed, vec![dead.clone()]);
        assert!(!dead.exists());
        assert!(live_left, "the cap of a live process was removed");
    }
}
