//! A BPF file system (bpffs) mounted on a fresh directory for a test, so
//! that `sluice realserver toa` can pin its map there: this machine has no
//! bpffs on `/sys/fs/bpf`, and `ip netns exec` remounts `/sys` anyway
//! (../shared/reference/platform.md), while a mount elsewhere is seen from
//! every namespace the test enters. Unmounted and removed on drop, also
//! when an assertion fails.

use std::path::{Path, PathBuf};

/// A mounted bpffs; see the module documentation.
#[derive(Debug)]
pub struct Bpffs(PathBuf);

impl Bpffs {
    /// Mounts a bpffs on a new directory named after `label` (make it
    /// unique per test) in the temporary directory.
    ///
    /// # Errors
    /// What failed, as text (creating the directory, or the mount: it
    /// needs root).
    pub fn mount(label: &str) -> Result<Self, String> {
        let dir = std::env::temp_dir().join(format!("sluice-{label}-bpffs"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if let Err(e) = nix::mount::mount(
            Some("bpf"),
            &dir,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        ) {
            let _ = std::fs::remove_dir(&dir);
            return Err(format!(
                "mounting bpffs on {} (needs root): {e}",
                dir.display()
            ));
        }
        Ok(Self(dir))
    }

    /// The mount point.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
    }
}
