//! Named network namespaces (`ip netns`), veth pairs between them, and running
//! code inside them.
//!
//! Everything here works on *named* namespaces under [`NETNS_DIR`], the same
//! ones `ip netns` manages, so a shell can inspect a lab with
//! `ip -n NAME addr` while it runs.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use nix::sys::signal::Signal;

use crate::exec::{self, IP};
use crate::{LabError, process};

/// Where `ip netns` keeps its namespace bind mounts.
pub const NETNS_DIR: &str = "/run/netns";

/// Longest namespace name accepted, in bytes (a file name under [`NETNS_DIR`];
/// kept short so names stay readable in `ip netns list`).
pub const MAX_NETNS_NAME_LEN: usize = 64;

/// Longest interface name Linux accepts, in bytes (`IFNAMSIZ` - 1).
pub const MAX_IFNAME_LEN: usize = 15;

/// How long teardown waits for processes left in a namespace to die after
/// SIGKILL, in milliseconds.
const NETNS_KILL_WAIT_MS: u64 = 2_000;

/// An Ethernet MAC address.
pub type MacAddr = [u8; 6];

/// Formats a MAC address as `02:99:00:00:00:0b`.
#[must_use]
pub fn format_mac(mac: &MacAddr) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

// === impl Netns ===

/// A named network namespace that is deleted when dropped.
///
/// Deleting the namespace destroys every interface in it, and with them the
/// peer ends of veth pairs in other namespaces. Processes still running inside
/// would keep the namespace alive, so [`Netns::delete`] (and drop) first kills,
/// by PID, whatever `ip netns pids` reports in it: only processes this
/// namespace's owner started can be in there.
#[derive(Debug)]
pub struct Netns {
    name: String,
    deleted: bool,
}

impl Netns {
    /// Creates the namespace `name` and brings its loopback up.
    ///
    /// # Errors
    /// [`LabError::NotPrivileged`] without root, [`LabError::AlreadyExists`] if
    /// the name is taken, [`LabError::Command`] if `ip` fails.
    pub fn create(name: &str) -> Result<Self, LabError> {
        exec::check_privileges()?;
        validate_netns_name(name)?;
        if netns_exists(name) {
            return Err(LabError::AlreadyExists(name.to_owned()));
        }
        exec::run(&[IP, "netns", "add", name])?;
        let ns = Netns {
            name: name.to_owned(),
            deleted: false,
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

    /// The namespace's bind mount, e.g. `/run/netns/NAME` (what `setns` opens).
    #[must_use]
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// Runs `ip -n NAME ARGS...` and fails unless it succeeds.
    ///
    /// # Errors
    /// [`LabError::Command`] with `ip`'s stderr.
    pub fn ip(&self, args: &[&str]) -> Result<Output, LabError> {
        ip_in(&self.name, args)
    }

    /// Runs `argv` inside the namespace (`ip netns exec NAME argv...`) and
    /// returns its output whatever its exit status.
    ///
    /// # Errors
    /// [`LabError::Spawn`] if the command cannot be started.
    pub fn exec(&self, argv: &[&str]) -> Result<Output, LabError> {
        exec_in(&self.name, argv)
    }

    /// A [`Command`] that runs `argv` inside the namespace, not yet started.
    ///
    /// # Errors
    /// [`LabError::InvalidSpec`] if `argv` is empty.
    pub fn command(&self, argv: &[&str]) -> Result<Command, LabError> {
        command_in(&self.name, argv)
    }

    /// Runs `f` on a fresh thread that has entered this namespace with
    /// `setns(CLONE_NEWNET)`, and returns its result.
    ///
    /// Sockets created and interface names resolved inside `f` belong to the
    /// namespace (this is how BPF maps holding ifindexes must be written). The
    /// file system is the caller's: `/sys/class/net` still shows the root
    /// namespace, use `if_nametoindex` or netlink instead. A panic in `f` is
    /// resumed on the calling thread.
    ///
    /// # Errors
    /// [`LabError::Setns`] if the namespace cannot be entered.
    pub fn in_netns<F, T>(&self, f: F) -> Result<T, LabError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        run_in_netns(&self.name, f)
    }

    /// Sets a sysctl inside the namespace, e.g.
    /// `("net.ipv4.ip_forward", "1")`.
    ///
    /// # Errors
    /// [`LabError::Io`] if the write fails (unknown key, bad value).
    pub fn set_sysctl(&self, key: &str, value: &str) -> Result<(), LabError> {
        set_sysctls_in(&self.name, &[(key, value)])
    }

    /// Reads a sysctl inside the namespace.
    ///
    /// # Errors
    /// [`LabError::Io`] if the key does not exist.
    pub fn sysctl(&self, key: &str) -> Result<String, LabError> {
        sysctl_in(&self.name, key)
    }

    /// Deletes the namespace now (killing processes left in it first).
    ///
    /// # Errors
    /// [`LabError::Command`] if `ip netns delete` fails on a namespace that
    /// still exists. An already deleted namespace is not an error.
    pub fn delete(mut self) -> Result<(), LabError> {
        self.deleted = true;
        delete_netns(&self.name).map(|_| ())
    }

    /// Gives up ownership: the namespace is *not* deleted on drop. Returns the
    /// name so the caller can delete it later with [`delete_netns`].
    #[must_use]
    pub fn into_name(mut self) -> String {
        self.deleted = true;
        std::mem::take(&mut self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if !self.deleted
            && let Err(err) = delete_netns(&self.name)
        {
            tracing::warn!(netns = %self.name, %err, "could not delete network namespace");
        }
    }
}

// === veth pairs ===

/// Both ends of a veth pair, as created by [`create_veth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VethPair {
    /// Namespace of the first end.
    pub a_netns: String,
    /// Interface name of the first end (inside `a_netns`).
    pub a_if: String,
    /// Namespace of the second end.
    pub b_netns: String,
    /// Interface name of the second end (inside `b_netns`).
    pub b_if: String,
}

/// Creates a veth pair with `a_if` inside `a` and `b_if` inside `b`, and sets
/// both ends up. No address is assigned.
///
/// Both ends are created directly in their namespaces, so nothing ever appears
/// in the root namespace and the names only need to be unique per namespace.
/// The pair disappears when either namespace is deleted.
///
/// # Errors
/// [`LabError::InvalidSpec`] for a bad interface name, [`LabError::Command`]
/// if `ip` fails (e.g. the name exists).
pub fn create_veth(a: &Netns, a_if: &str, b: &Netns, b_if: &str) -> Result<VethPair, LabError> {
    create_veth_in(a.name(), a_if, None, b.name(), b_if)
}

/// [`create_veth`] on namespace names, with an optional MAC for the `a` end.
pub(crate) fn create_veth_in(
    a_ns: &str,
    a_if: &str,
    a_mac: Option<&MacAddr>,
    b_ns: &str,
    b_if: &str,
) -> Result<VethPair, LabError> {
    validate_ifname(a_if)?;
    validate_ifname(b_if)?;
    let mac = a_mac.map(format_mac);
    let mut argv = vec![IP, "link", "add", a_if, "netns", a_ns];
    if let Some(mac) = &mac {
        argv.extend(["address", mac.as_str()]);
    }
    argv.extend(["type", "veth", "peer", "name", b_if, "netns", b_ns]);
    exec::run(&argv)?;
    ip_in(a_ns, &["link", "set", a_if, "up"])?;
    ip_in(b_ns, &["link", "set", b_if, "up"])?;
    Ok(VethPair {
        a_netns: a_ns.to_owned(),
        a_if: a_if.to_owned(),
        b_netns: b_ns.to_owned(),
        b_if: b_if.to_owned(),
    })
}

// === functions on namespace names ===

/// The bind mount of namespace `name`.
#[must_use]
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(NETNS_DIR).join(name)
}

/// Whether the named namespace exists.
#[must_use]
pub fn netns_exists(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && netns_path(name).exists()
}

/// Names of all named namespaces (empty if `ip netns` was never used).
///
/// # Errors
/// [`LabError::Io`] if [`NETNS_DIR`] exists but cannot be read.
pub fn list_netns() -> Result<Vec<String>, LabError> {
    let dir = match std::fs::read_dir(NETNS_DIR) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LabError::io(format!("reading {NETNS_DIR}"), e)),
    };
    let mut names: Vec<String> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// PIDs of the processes running in the named namespace (`ip netns pids`).
///
/// # Errors
/// [`LabError::Command`] if `ip` fails.
pub fn netns_pids(name: &str) -> Result<Vec<i32>, LabError> {
    let out = exec::run(&[IP, "netns", "pids", name])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

/// Deletes the named namespace, first killing (SIGKILL, by PID) any process
/// still inside it. Returns whether it existed. Idempotent.
///
/// The name disappears at once; the kernel dismantles the namespace (its
/// interfaces, and with them the peer ends of its veths in other namespaces)
/// asynchronously, usually within milliseconds.
///
/// # Errors
/// [`LabError::Command`] if `ip netns delete` fails and the namespace is still
/// there afterwards.
pub fn delete_netns(name: &str) -> Result<bool, LabError> {
    if !netns_exists(name) {
        return Ok(false);
    }
    kill_netns_processes(name);
    match exec::run(&[IP, "netns", "delete", name]) {
        Ok(_) => Ok(true),
        Err(_) if !netns_exists(name) => Ok(true),
        Err(e) => Err(e),
    }
}

/// SIGKILLs every process in the namespace and waits (bounded) until they are gone.
fn kill_netns_processes(name: &str) {
    let Ok(pids) = netns_pids(name) else { return };
    if pids.is_empty() {
        return;
    }
    let own = std::process::id();
    let pids: Vec<i32> = pids
        .into_iter()
        .filter(|&p| u32::try_from(p).is_ok_and(|p| p != own) && p > 1)
        .collect();
    for &pid in &pids {
        tracing::debug!(netns = name, pid, "killing process left in namespace");
        process::signal(pid, Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_millis(NETNS_KILL_WAIT_MS);
    while Instant::now() < deadline && pids.iter().any(|&p| process::running(p)) {
        process::reap(&pids);
        thread::sleep(Duration::from_millis(10));
    }
}

/// The index of interface `name` *in the calling thread's namespace* (call it
/// inside [`Netns::in_netns`] for a namespace's interface). `None` if there is
/// no such interface.
#[must_use]
pub fn if_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// `ip -n NAME args...`, checked.
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<Output, LabError> {
    let mut argv = vec![IP, "-n", ns];
    argv.extend_from_slice(args);
    exec::run(&argv)
}

/// `ip netns exec NAME argv...`, unchecked.
pub(crate) fn exec_in(ns: &str, argv: &[&str]) -> Result<Output, LabError> {
    let mut cmd = command_in(ns, argv)?;
    cmd.stdin(Stdio::null());
    cmd.output().map_err(|source| LabError::Spawn {
        command: exec_display(ns, argv),
        source,
    })
}

/// A not-yet-started `ip netns exec NAME argv...`.
///
/// `ip netns exec` execs the program in place (no fork), so the child's PID is
/// the program's PID.
pub(crate) fn command_in(ns: &str, argv: &[&str]) -> Result<Command, LabError> {
    if argv.is_empty() {
        return Err(LabError::InvalidSpec("empty command line".to_owned()));
    }
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "exec", ns]).args(argv);
    Ok(cmd)
}

pub(crate) fn exec_display(ns: &str, argv: &[&str]) -> String {
    let mut full = vec![IP, "netns", "exec", ns];
    full.extend_from_slice(argv);
    exec::display(&full)
}

/// Runs `f` on a new thread inside the named namespace. See [`Netns::in_netns`].
///
/// # Errors
/// [`LabError::Setns`] if the namespace cannot be opened or entered.
pub fn run_in_netns<F, T>(name: &str, f: F) -> Result<T, LabError>
where
    F: FnOnce() -> T + Send,
    T: Send,
{
    let path = netns_path(name);
    let setns_err = |source| LabError::Setns {
        netns: name.to_owned(),
        source,
    };
    // Open on the caller's thread so a missing namespace is a plain error.
    let file = File::open(&path).map_err(setns_err)?;
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

/// `/proc/sys` path of a dotted sysctl key.
fn sysctl_path(key: &str) -> Result<PathBuf, LabError> {
    if key.is_empty() || key.contains("..") || key.contains('/') {
        return Err(LabError::InvalidSpec(format!("bad sysctl key {key:?}")));
    }
    Ok(PathBuf::from("/proc/sys").join(key.replace('.', "/")))
}

/// Writes several sysctls from one thread inside the namespace.
///
/// `/proc/sys/net` resolves against the *writing thread's* namespace, so this
/// touches only `ns`, never the root namespace.
pub(crate) fn set_sysctls_in(ns: &str, kv: &[(&str, &str)]) -> Result<(), LabError> {
    let paths = kv
        .iter()
        .map(|(k, v)| Ok((sysctl_path(k)?, *k, *v)))
        .collect::<Result<Vec<_>, LabError>>()?;
    run_in_netns(ns, || {
        for (path, key, value) in &paths {
            std::fs::write(path, value)
                .map_err(|e| LabError::io(format!("setting sysctl {key}={value} in {ns}"), e))?;
        }
        Ok(())
    })?
}

/// Reads a sysctl inside the namespace.
pub(crate) fn sysctl_in(ns: &str, key: &str) -> Result<String, LabError> {
    let path = sysctl_path(key)?;
    run_in_netns(ns, || {
        std::fs::read_to_string(&path)
            .map(|s| s.trim().to_owned())
            .map_err(|e| LabError::io(format!("reading sysctl {key} in {ns}"), e))
    })?
}

/// Checks a namespace name: non-empty, short, no path separators or spaces.
pub(crate) fn validate_netns_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NETNS_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !name.starts_with('.')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidSpec(format!(
            "bad namespace name {name:?} (1-{MAX_NETNS_NAME_LEN} of [A-Za-z0-9._-])"
        )))
    }
}

/// Checks an interface name: 1-15 bytes, no `/`, `:` or whitespace.
pub(crate) fn validate_ifname(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if ok {
        Ok(())
    } else {
        Err(LabError::InvalidSpec(format!(
            "bad interface name {name:?} (1-{MAX_IFNAME_LEN} bytes, no '/', ':' or spaces)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_netns_name("sl-lab-rs1").is_ok());
        assert!(validate_netns_name("").is_err());
        assert!(validate_netns_name("../etc").is_err());
        assert!(validate_netns_name("a b").is_err());
        assert!(validate_ifname("p-rs25").is_ok());
        assert!(validate_ifname("sixteen-chars-xx").is_err());
        assert!(validate_ifname("a:b").is_err());
    }

    #[test]
    fn sysctl_keys_map_to_proc_sys() {
        assert_eq!(
            sysctl_path("net.ipv4.conf.all.arp_ignore").ok(),
            Some(PathBuf::from("/proc/sys/net/ipv4/conf/all/arp_ignore"))
        );
        assert!(sysctl_path("net/../../etc").is_err());
    }

    #[test]
    fn macs_format_lowercase_hex() {
        assert_eq!(format_mac(&[2, 0x99, 0, 0, 0, 0x0b]), "02:99:00:00:00:0b");
    }

    #[test]
    fn missing_namespace_is_a_plain_error() {
        assert!(!netns_exists("sluice-lab-unit-test-no-such-ns"));
        assert!(matches!(
            run_in_netns("sluice-lab-unit-test-no-such-ns", || ()),
            Err(LabError::Setns { .. })
        ));
        // Deleting what does not exist is not an error (and needs no root).
        assert!(matches!(
            delete_netns("sluice-lab-unit-test-no-such-ns"),
            Ok(false)
        ));
    }
}
