//! Running external commands (`ip`, `ethtool`, servers) with errors that name
//! the failing command line and its stderr.

use std::fs;
use std::process::{Command, Output, Stdio};

use crate::LabError;

/// Path of the `ip` binary from iproute2. Found through `PATH`.
pub(crate) const IP: &str = "ip";

/// Renders an argument vector as one readable command line.
pub(crate) fn display(argv: &[&str]) -> String {
    argv.iter()
        .map(|a| {
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                format!("'{}'", a.replace('\'', "'\\''"))
            } else {
                (*a).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Builds a [`Command`] from an argument vector.
///
/// # Errors
/// [`LabError::InvalidSpec`] if `argv` is empty.
pub(crate) fn command(argv: &[&str]) -> Result<Command, LabError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| LabError::InvalidSpec("empty command line".to_owned()))?;
    let mut cmd = Command::new(program);
    cmd.args(args);
    Ok(cmd)
}

/// Runs a command to completion and returns its output whatever the exit status.
pub(crate) fn output(argv: &[&str]) -> Result<Output, LabError> {
    let mut cmd = command(argv)?;
    cmd.stdin(Stdio::null());
    cmd.output().map_err(|source| LabError::Spawn {
        command: display(argv),
        source,
    })
}

/// Runs a command and fails unless it exits successfully.
pub(crate) fn run(argv: &[&str]) -> Result<Output, LabError> {
    let out = output(argv)?;
    check(argv, out)
}

/// Turns an unsuccessful [`Output`] into [`LabError::Command`].
pub(crate) fn check(argv: &[&str], out: Output) -> Result<Output, LabError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: display(argv),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// Capability bit of `CAP_NET_ADMIN` in `/proc/self/status` `CapEff`.
const CAP_NET_ADMIN_BIT: u32 = 12;
/// Capability bit of `CAP_SYS_ADMIN` (`ip netns add` bind-mounts the namespace).
const CAP_SYS_ADMIN_BIT: u32 = 21;

/// Checks that this process may create namespaces, links and mounts.
///
/// # Errors
/// [`LabError::NotPrivileged`] naming the missing capabilities.
pub fn check_privileges() -> Result<(), LabError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| LabError::io("reading /proc/self/status", e))?;
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0);
    let mut missing = Vec::new();
    if cap_eff & (1 << CAP_NET_ADMIN_BIT) == 0 {
        missing.push("CAP_NET_ADMIN");
    }
    if cap_eff & (1 << CAP_SYS_ADMIN_BIT) == 0 {
        missing.push("CAP_SYS_ADMIN");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(LabError::NotPrivileged {
            missing: missing.join(" and "),
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_needs_it() {
        assert_eq!(display(&["ip", "-n", "x", "link"]), "ip -n x link");
        assert_eq!(display(&["sh", "-c", "a b", ""]), "sh -c 'a b' ''");
    }

    #[test]
    fn failed_command_reports_stderr() {
        let err = run(&["sh", "-c", "echo boom >&2; exit 3"]).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
        assert!(run(&["true"]).is_ok());
        assert!(matches!(
            run(&["/nonexistent/binary"]),
            Err(LabError::Spawn { .. })
        ));
    }
}
