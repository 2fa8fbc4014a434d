//! Processes the lab started: identified by PID *and* start time, so a PID
//! reused by an unrelated process after ours exited is never signalled.

use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How long a process gets between SIGTERM and SIGKILL, in milliseconds.
pub const TERM_GRACE_MS: u64 = 2_000;

/// How long to wait for a process to vanish after SIGKILL, in milliseconds.
const KILL_WAIT_MS: u64 = 2_000;

/// Poll interval while waiting for a process to exit, in milliseconds.
const POLL_MS: u64 = 10;

/// A process the lab started: enough to find it again from another process
/// (the CLI's `lab down`) and to be sure it is still the same process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// Process id.
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/PID/stat` field 22).
    pub start_time: u64,
    /// The namespace it runs in.
    pub netns: String,
    /// What it is, e.g. `web rs1` or `nginx rs2`.
    pub what: String,
}

impl ProcessRecord {
    /// Records a just-started process. `None` if it already vanished.
    #[must_use]
    pub fn new(pid: u32, netns: &str, what: &str) -> Option<Self> {
        let pid = i32::try_from(pid).ok()?;
        Some(ProcessRecord {
            pid,
            start_time: start_time(pid)?,
            netns: netns.to_owned(),
            what: what.to_owned(),
        })
    }

    /// Whether this very process (same PID and start time) is still running
    /// (zombies count as gone).
    #[must_use]
    pub fn is_running(&self) -> bool {
        stat(self.pid).is_some_and(|(state, start)| start == self.start_time && !is_dead(state))
    }

    /// Stops the process: SIGTERM, up to [`TERM_GRACE_MS`], then SIGKILL.
    /// Reaps it if it is our child. Returns whether it was running.
    pub fn stop(&self) -> bool {
        if !self.is_running() {
            reap(&[self.pid]);
            return false;
        }
        signal(self.pid, Signal::SIGTERM);
        if !self.wait_gone(Duration::from_millis(TERM_GRACE_MS)) {
            tracing::warn!(pid = self.pid, what = %self.what, "no exit after SIGTERM, sending SIGKILL");
            if self.is_running() {
                signal(self.pid, Signal::SIGKILL);
            }
            self.wait_gone(Duration::from_millis(KILL_WAIT_MS));
        }
        true
    }

    fn wait_gone(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            reap(&[self.pid]);
            if !self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
}

/// Sends a signal, ignoring "no such process".
pub(crate) fn signal(pid: i32, sig: Signal) {
    if pid <= 1 {
        return;
    }
    if let Err(err) = signal::kill(Pid::from_raw(pid), sig) {
        tracing::debug!(pid, %err, "kill failed");
    }
}

/// Reaps any of `pids` that are exited children of this process; others
/// (ECHILD) are ignored.
pub(crate) fn reap(pids: &[i32]) {
    for &pid in pids {
        let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
    }
}

/// Whether the PID exists and is not a zombie.
pub(crate) fn running(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| !is_dead(state))
}

fn is_dead(state: char) -> bool {
    matches!(state, 'Z' | 'X' | 'x')
}

fn start_time(pid: i32) -> Option<u64> {
    stat(pid).map(|(_, start)| start)
}

/// State letter and start time from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the *last* `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), start time is field 22: 19 fields further on.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stat_parsing_survives_odd_names() {
        let line = "1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 987654 19 20";
        assert_eq!(parse_stat(line), Some(('S', 987_654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn stop_terminates_and_reaps_a_child() {
        let child = Command::new("sleep").arg("30").spawn().unwrap();
        let rec = ProcessRecord::new(child.id(), "none", "sleep").unwrap();
        assert!(rec.is_running());
        assert!(rec.stop());
        assert!(!rec.is_running());
        // Reaped: the PID no longer exists at all.
        assert!(stat(rec.pid).is_none());
        assert!(!rec.stop(), "second stop is a no-op");
        drop(child);
    }

    #[test]
    fn a_different_start_time_is_not_our_process() {
        let me = ProcessRecord::new(std::process::id(), "none", "me").unwrap();
        assert!(me.is_running());
        let other = ProcessRecord {
            start_time: me.start_time + 1,
            ..me
        };
        assert!(!other.is_running());
        assert!(
            !other.stop(),
            "must not signal a process with another start time"
        );
    }
}
