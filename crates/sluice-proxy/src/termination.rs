//! How a request or session ended: HAProxy's two-letter termination state
//! (first letter: who ended it, `C`lient, `S`erver, `P`roxy, `K`illed,
//! lower case for a timeout; second: the phase, `R`equest, `Q`ueue,
//! `C`onnect, `H`eaders, `D`ata), the error counter it increments and the
//! status a client gets when the proxy answers itself. The access log,
//! the counters and `/metrics` all read from here.

use http::StatusCode;

use crate::policy::Violation;
use crate::stats::Counters;

/// Why a request or session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// `--`: it ended normally.
    Normal,
    /// `CD`: the client went away or failed during the exchange.
    ClientAborted,
    /// `cD`: the client stalled mid-body for `timeout_client` (408).
    ClientBodyTimeout,
    /// `PR`: the proxy refused the request (the policy's status).
    Rejected(Violation),
    /// `SC`: no server could be reached (503).
    NoServer,
    /// `sQ`: no server slot within `timeout_queue`, or the queue was full (503).
    QueueTimeout,
    /// `sH`: the server sent no response head within `timeout_server` (504).
    ServerTimeout,
    /// `SH`: the server's response head was invalid or cut short (502).
    BadResponse,
    /// `SD`: the server broke off in the middle of the response body.
    ServerAborted,
    /// `sD`: the server stalled mid-body for `timeout_server`.
    ServerDataTimeout,
    /// `cD`: a `mode tcp` session or tunnel was idle past its timeouts.
    IdleTimeout,
    /// `KD`: cut by the shutdown after `hard_stop_after`.
    Killed,
}

impl Termination {
    /// HAProxy's two-letter code, for the access log.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Normal => "--",
            Self::ClientAborted => "CD",
            Self::ClientBodyTimeout | Self::IdleTimeout => "cD",
            Self::Rejected(_) => "PR",
            Self::NoServer => "SC",
            Self::QueueTimeout => "sQ",
            Self::ServerTimeout => "sH",
            Self::BadResponse => "SH",
            Self::ServerAborted => "SD",
            Self::ServerDataTimeout => "sD",
            Self::Killed => "KD",
        }
    }

    /// The status of the proxy's own answer, when it ends a request before
    /// a response head was sent.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Rejected(v) => v.status(),
            Self::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::NoServer | Self::QueueTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Self::ServerTimeout => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::BAD_GATEWAY,
        }
    }

    /// One sentence for the proxy's own answer.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Self::Rejected(v) => v.reason(),
            Self::ClientBodyTimeout => "The client did not send the request body in time.",
            Self::NoServer => "No server is available to handle this request.",
            Self::QueueTimeout => "Timed out waiting for a free server.",
            Self::ServerTimeout => "The server didn't respond in time.",
            _ => "The server returned an invalid or incomplete response.",
        }
    }

    /// Whether the proxy's own answer closes the client connection: after
    /// a refused or broken exchange the connection's state is suspect; a
    /// request that merely found no server leaves it clean.
    pub(crate) fn closes(self) -> bool {
        !matches!(self, Self::NoServer | Self::QueueTimeout)
    }

    /// Increment the error counter of this ending. Per-attempt counters
    /// (failed connects, retries, queue refusals) are counted where the
    /// attempt fails, not here.
    pub(crate) fn count(self, fe: &Counters, be: &Counters, server: Option<&Counters>) {
        let both = |f: fn(&Counters) -> &std::sync::atomic::AtomicU64| {
            Counters::inc(f(be));
            if let Some(s) = server {
                Counters::inc(f(s));
            }
        };
        match self {
            Self::Rejected(_) | Self::ClientBodyTimeout => Counters::inc(&fe.err_request),
            Self::ServerTimeout | Self::ServerDataTimeout | Self::IdleTimeout => {
                both(|c| &c.err_timeout);
            }
            Self::BadResponse | Self::ServerAborted => both(|c| &c.err_response),
            Self::Normal
            | Self::ClientAborted
            | Self::NoServer
            | Self::QueueTimeout
            | Self::Killed => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn codes_statuses_and_counters() {
        let all = [
            (Termination::Normal, "--"),
            (Termination::ClientAborted, "CD"),
            (Termination::ClientBodyTimeout, "cD"),
            (Termination::Rejected(Violation::BadHost), "PR"),
            (Termination::NoServer, "SC"),
            (Termination::QueueTimeout, "sQ"),
            (Termination::ServerTimeout, "sH"),
            (Termination::BadResponse, "SH"),
            (Termination::ServerAborted, "SD"),
            (Termination::ServerDataTimeout, "sD"),
            (Termination::IdleTimeout, "cD"),
            (Termination::Killed, "KD"),
        ];
        for (t, code) in all {
            assert_eq!(t.code(), code);
        }
        assert_eq!(
            Termination::ClientBodyTimeout.status(),
            StatusCode::REQUEST_TIMEOUT
        );
        assert_eq!(
            Termination::Rejected(Violation::TooManyHeaders).status(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            Termination::ServerTimeout.status(),
            StatusCode::GATEWAY_TIMEOUT
        );
        assert!(!Termination::NoServer.closes() && Termination::BadResponse.closes());
        let (fe, be, srv) = (
            Counters::default(),
            Counters::default(),
            Counters::default(),
        );
        Termination::ServerTimeout.count(&fe, &be, Some(&srv));
        Termination::Rejected(Violation::BadHead).count(&fe, &be, Some(&srv));
        Termination::ServerAborted.count(&fe, &be, None);
        assert_eq!(be.err_timeout.load(Relaxed), 1);
        assert_eq!(srv.err_timeout.load(Relaxed), 1);
        assert_eq!(fe.err_request.load(Relaxed), 1);
        assert_eq!(
            (
                be.err_response.load(Relaxed),
                srv.err_response.load(Relaxed)
            ),
            (1, 0)
        );
    }
}
