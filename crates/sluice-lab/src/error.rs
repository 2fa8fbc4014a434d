//! The lab's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while building, using or tearing down a lab.
///
/// Command failures carry the command line and its stderr, so a failed
/// `Lab::up` says exactly which step broke.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The process lacks the privileges to create namespaces and links.
    #[error(
        "the network-namespace lab needs root: missing {missing} \
         (run the lab and its tests as root, e.g. `sudo -E cargo test`)"
    )]
    NotPrivileged {
        /// The missing capabilities, e.g. `CAP_NET_ADMIN`.
        missing: String,
    },
    /// The lab specification is not usable.
    #[error("invalid lab spec: {0}")]
    InvalidSpec(String),
    /// A namespace the lab wants to create already exists.
    #[error(
        "network namespace {0} already exists (is a lab with this label still up? \
         `sluice lab down --label ...` removes it)"
    )]
    AlreadyExists(String),
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, shell-quoted for reading.
        command: String,
        /// The exit status as printed by the standard library.
        status: String,
        /// The command's standard error, trimmed.
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not be started.
        #[source]
        source: io::Error,
    },
    /// Entering a namespace with `setns(2)` failed.
    #[error("entering network namespace {netns}: {source}")]
    Setns {
        /// The namespace name.
        netns: String,
        /// The error from `open` or `setns`.
        #[source]
        source: io::Error,
    },
    /// A file-system or other I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A real server did not answer its health check in time.
    #[error("real server {name} did not become ready within {waited_ms} ms: {last_error}")]
    NotReady {
        /// The real's name (`rs1`, ...).
        name: String,
        /// How long the lab waited, in milliseconds.
        waited_ms: u128,
        /// The last probe error, or the server's log tail if it exited.
        last_error: String,
    },
    /// The node does not exist in this lab (e.g. `Real(4)` in a 3-real lab).
    #[error("no node {0} in this lab")]
    NoSuchNode(String),
    /// Set-up was interrupted (SIGINT/SIGTERM); everything created was torn down.
    #[error("lab set-up interrupted; everything created so far was torn down")]
    Cancelled,
    /// A state file could not be read or parsed.
    #[error("lab state file {path}: {reason}")]
    State {
        /// The state file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}
