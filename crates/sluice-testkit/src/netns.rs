//! Throw-away named network namespaces (`ip netns`) and veth pairs for the
//! XDP tests and benchmarks: a namespace to load a program in, or a pair
//! joined by a veth to send traffic through one.
//!
//! The names follow sluice-lab's (`sl-<label>-...` with [`unique_label`]),
//! so `sluice lab down` and a look at `ip netns list` treat them alike.
//! Unlike sluice-lab's namespaces, these never hold processes that outlive
//! a call ([`Netns::exec`] waits for its command), so dropping one only has
//! to delete it. Nothing is created in the root namespace: veth ends are
//! made directly inside their namespaces.

use std::fs::File;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;

use nix::sched::CloneFlags;

/// Where `ip netns` keeps its namespace bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// The `ip` binary of iproute2, found through `PATH`.
const IP: &str = "ip";

/// Capability bit of `CAP_NET_ADMIN` in `/proc/self/status` `CapEff`.
const CAP_NET_ADMIN_BIT: u32 = 12;
/// Capability bit of `CAP_SYS_ADMIN` (`ip netns add` bind-mounts the namespace).
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// Why a namespace step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// The process may not create namespaces and links.
    #[error("network namespaces need root: missing {missing} (run the tests as root)")]
    NotPrivileged {
        /// The missing capabilities, e.g. `CAP_NET_ADMIN and CAP_SYS_ADMIN`.
        missing: String,
    },
    /// `/proc/self/status` could not be read for the capability check.
    #[error("reading /proc/self/status: {0}")]
    Status(#[source] std::io::Error),
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it wrote to standard error.
        stderr: String,
    },
    /// A command could not be started.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The namespace could not be entered.
    #[error("entering network namespace {netns}: {source}")]
    Setns {
        /// The namespace name.
        netns: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A label unique within this machine for the life of this process:
/// `prefix`, the PID, `x`, a counter (as `sluice_lab::LabSpec::unique_label`),
/// so concurrent tests and test binaries never share a namespace.
#[must_use]
pub fn unique_label(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A named network namespace, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    ///
    /// # Errors
    /// [`NetnsError::NotPrivileged`] without root, [`NetnsError::Command`]
    /// if `ip` fails (e.g. the name is taken).
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        check_privileges()?;
        run(&[IP, "netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
        };
        // On error `ns` drops here and deletes the half-made namespace.
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name (as in `ip netns list`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n NAME ARGS...` and fails unless it succeeds.
    ///
    /// # Errors
    /// [`NetnsError::Command`] with `ip`'s stderr.
    pub fn ip(&self, args: &[&str]) -> Result<Output, NetnsError> {
        let mut argv = vec![IP, "-n", &self.name];
        argv.extend_from_slice(args);
        run(&argv)
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv...`) to
    /// completion and returns its output whatever its exit status.
    ///
    /// # Errors
    /// [`NetnsError::Spawn`] if the command cannot be started.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, NetnsError> {
        let mut full = vec![IP, "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        output(&full)
    }

    /// Runs `f` on a fresh thread that has entered this namespace with
    /// `setns(CLONE_NEWNET)`, and returns its result. Interface names and
    /// sockets inside `f` are the namespace's (this is how a program is
    /// attached to one of its interfaces). A panic in `f` is resumed on the
    /// calling thread.
    ///
    /// # Errors
    /// [`NetnsError::Setns`] if the namespace cannot be entered.
    pub fn in_netns<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let setns_err = |source| NetnsError::Setns {
            netns: self.name.clone(),
            source,
        };
        // Open on the caller's thread so a missing namespace is a plain error.
        let file = File::open(format!("{NETNS_DIR}/{}", self.name)).map_err(setns_err)?;
        thread::scope(|s| {
            let handle = s.spawn(move || {
                nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                    .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
                drop(file);
                Ok::<T, std::io::Error>(f())
            });
            match handle.join() {
                Ok(result) => result.map_err(setns_err),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes its interfaces, and with them the
        // peer ends of its veths in other namespaces.
        if let Err(e) = run(&[IP, "netns", "delete", &self.name]) {
            eprintln!(
                "sluice-testkit: could not delete namespace {}: {e}",
                self.name
            );
        }
    }
}

/// Creates a veth pair with `a_if` inside `a` and `b_if` inside `b`, and
/// sets both ends up (no address). Both ends are created directly in their
/// namespaces; the pair goes when either namespace is deleted.
///
/// # Errors
/// [`NetnsError::Command`] if `ip` fails (e.g. the name exists).
pub fn create_veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<(), NetnsError> {
    run(&[
        IP, "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns",
        &b.name,
    ])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Checks that this process may create namespaces, links and mounts.
fn check_privileges() -> Result<(), NetnsError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(NetnsError::Status)?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let missing: Vec<&str> = [
        (CAP_NET_ADMIN_BIT, "CAP_NET_ADMIN"),
        (CAP_SYS_ADMIN_BIT, "CAP_SYS_ADMIN"),
    ]
    .into_iter()
    .filter(|(bit, _)| cap_eff & (1 << bit) == 0)
    .map(|(_, name)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(NetnsError::NotPrivileged {
            missing: missing.join(" and "),
        })
    }
}

/// Runs `argv` to completion (stdin closed) and returns its output.
fn output(argv: &[&str]) -> Result<Output, NetnsError> {
    let spawn_err = |source| NetnsError::Spawn {
        command: argv.join(" "),
        source,
    };
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| spawn_err(std::io::Error::other("empty command line")))?;
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(spawn_err)
}

/// Runs `argv` and fails unless it exits successfully.
fn run(argv: &[&str]) -> Result<Output, NetnsError> {
    let out = output(argv)?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(NetnsError::Command {
            command: argv.join(" "),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_name_the_process() {
        let (a, b) = (unique_label("t"), unique_label("t"));
        assert_ne!(a, b);
        assert!(a.starts_with(&format!("t{}x", std::process::id())), "{a}");
    }

    #[test]
    fn failed_commands_report_their_stderr() {
        let err = run(&["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom") && msg.contains("sh -c"), "{msg}");
        assert!(matches!(
            run(&["/nonexistent/binary"]),
            Err(NetnsError::Spawn { .. })
        ));
        assert!(run(&["true"]).is_ok());
    }
}
