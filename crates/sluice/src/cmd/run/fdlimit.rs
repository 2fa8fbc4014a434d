//! The file-descriptor limit `sluice run` needs, raised at start (issue
//! 21, point 3): every proxied connection holds two descriptors (the
//! client's and the server's), so the frontends' `maxconn` decide the
//! count. The soft limit is raised up to the hard limit without privilege,
//! the hard limit too with CAP_SYS_RESOURCE; when neither reaches the need,
//! start-up says so plainly with what to change, instead of failing
//! `accept` with EMFILE under load later.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use sluice_config::Config;

/// Descriptors per proxied connection: the client's socket and the
/// server's.
const FDS_PER_CONNECTION: u64 = 2;
/// Descriptors besides the connections: listeners, the admin endpoint,
/// health checks, BPF maps and programs, HA and sync sockets, logs.
const FD_SLACK: u64 = 1024;

/// What start-up did with the limit.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The soft limit already covered the need.
    Enough,
    /// Raised to the need.
    Raised { from: u64, to: u64 },
    /// Raised as far as allowed, short of the need.
    Short { need: u64, limit: u64 },
}

/// Descriptors `cfg` needs (0 without frontends: no proxied connections).
pub(super) fn needed(cfg: &Config) -> u64 {
    let conns: u64 = cfg.frontends.iter().map(|f| u64::from(f.maxconn)).sum();
    if conns == 0 {
        0
    } else {
        conns * FDS_PER_CONNECTION + FD_SLACK
    }
}

/// Raises `RLIMIT_NOFILE` to `need` if it is lower, as far as allowed.
pub(super) fn raise(need: u64) -> Outcome {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return Outcome::Short { need, limit: 0 };
    };
    if soft >= need {
        return Outcome::Enough;
    }
    // Above the hard limit: only with CAP_SYS_RESOURCE (and below
    // fs.nr_open); else the soft limit goes as high as the hard one.
    if setrlimit(Resource::RLIMIT_NOFILE, need, need.max(hard)).is_ok() {
        return Outcome::Raised {
            from: soft,
            to: need,
        };
    }
    let limit = if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    Outcome::Short { need, limit }
}

/// Raises the limit for `cfg` and reports it on standard error.
pub(super) fn apply(cfg: &Config) {
    let need = needed(cfg);
    if need == 0 {
        return;
    }
    match raise(need) {
        Outcome::Enough => {}
        Outcome::Raised { from, to } => {
            eprintln!(
                "sluice: file-descriptor limit raised from {from} to {to} (frontends' maxconn)"
            );
        }
        Outcome::Short { need, limit } => eprintln!(
            "sluice: warning: the frontends' maxconn need {need} file descriptors (2 per connection \
             and {FD_SLACK} more), but the limit is {limit} and cannot be raised (hard limit; raise it \
             with LimitNOFILE= in the unit, `ulimit -Hn`, or run with CAP_SYS_RESOURCE): past about \
             {} connections, accepts will fail",
            limit.saturating_sub(FD_SLACK) / FDS_PER_CONNECTION
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_need_is_two_per_connection_of_every_frontend_and_some_slack() {
        let base = "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[backend]]\nname = \"b\"\nmode = \"tcp\"\n\
                    [[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n";
        let fe = |name: &str, port: u16, maxconn: u32| {
            format!(
                "\n[[frontend]]\nname = \"{name}\"\nbind = [\"127.0.0.1:{port}\"]\n\
                 mode = \"tcp\"\ndefault_backend = \"b\"\nmaxconn = {maxconn}\n"
            )
        };
        let c = sluice_config::parse(
            "t.toml",
            &format!("{base}{}{}", fe("a", 8080, 1000), fe("b2", 8081, 500)),
        )
        .unwrap();
        assert_eq!(needed(&c), 1500 * FDS_PER_CONNECTION + FD_SLACK);
        let l4_only = "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[l4_service]]\nname = \"web\"\n\
                       vip = \"10.99.255.1\"\nport = 80\nmethod = \"dr\"\ninterface = \"lb0\"\n\n\
                       [[l4_service.real]]\naddress = \"10.99.0.11\"\n";
        assert_eq!(needed(&sluice_config::parse("t.toml", l4_only).unwrap()), 0);
    }

    #[test]
    fn a_need_under_the_soft_limit_changes_nothing() {
        assert_eq!(raise(1), Outcome::Enough);
    }
}
