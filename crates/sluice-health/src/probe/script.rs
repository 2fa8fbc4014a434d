//! `script` (keepalived `MISC_CHECK`): run an executable; exit status 0 is
//! up, anything else (or no exit within the timeout) is down.
//!
//! The program runs directly (argv, no shell) in its own process group,
//! with stdin, stdout and stderr on /dev/null and the target in the
//! environment (`SLUICE_CHECK_ADDR`, `SLUICE_CHECK_PORT`). When it exits,
//! times out, or the probe is dropped, the **whole group** gets SIGKILL, so
//! neither the script nor anything it started outlives the check; the
//! script itself is always waited for (no zombie).

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use sluice_core::health::FailureReason;
use tokio::process::Command;
use tokio::time::Instant;

use super::{ProbeFailure, fmt_duration, since};

/// Environment variable holding the target's IP address.
pub const ENV_ADDR: &str = "SLUICE_CHECK_ADDR";
/// Environment variable holding the target's port.
pub const ENV_PORT: &str = "SLUICE_CHECK_PORT";

/// SIGKILLs a process group when dropped.
#[derive(Debug)]
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // ESRCH (group already empty) is the common, harmless case.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) async fn probe(
    argv: &[String],
    target: SocketAddr,
    timeout: Duration,
) -> Result<Duration, ProbeFailure> {
    let Some((program, args)) = argv.split_first() else {
        return Err(ProbeFailure::other("script: empty command"));
    };
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .env(ENV_ADDR, target.ip().to_string())
        .env(ENV_PORT, target.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProbeFailure::other(format!("cannot run {program}: {e}")))?;
    // The child leads its own group: pgid = pid.
    let mut group = GroupGuard(
        child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    );

    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(ProbeFailure::other(format!("waiting for {program}: {e}"))),
        Err(_) => {
            group.kill();
            // Reap the script (SIGKILLed with its group just now).
            let _ = child.kill().await;
            return Err(ProbeFailure::new(
                FailureReason::Timeout,
                format!("script timeout after {} (killed)", fmt_duration(timeout)),
            ));
        }
    };
    let latency = since(start);
    // Anything the script left running goes with it.
    group.kill();
    if status.success() {
        Ok(latency)
    } else if let Some(code) = status.code() {
        Err(ProbeFailure::new(
            FailureReason::ScriptExit(code),
            format!("script exited with status {code}"),
        ))
    } else {
        let signal = status.signal().unwrap_or(0);
        Err(ProbeFailure::other(format!(
            "script killed by signal {signal}"
        )))
    }
}
