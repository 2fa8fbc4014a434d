//! The watchdog: what takes a node out of the VRRP election when it could
//! not serve the virtual addresses (RFC 5798 leaves this to the
//! implementation; keepalived's `track_interface` and `track_script`).
//! Its verdict is a list of reasons, empty when healthy, published on a
//! watch channel that each instance reads as its fault input.
//!
//! - a tracked interface down (not up, or no carrier);
//! - the node's XDP program detached from an interface it runs on;
//! - a proxy frontend not accepting TCP connections (the proxy runs in
//!   this process, so a dead process needs no watchdog: its adverts stop);
//! - a tracked script failing (non-zero exit or no exit within its
//!   interval), run without a shell.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::link::Netlink;

/// How often links (state, XDP attachment) are read: a link that goes
/// down takes the node out within this.
pub const LINK_POLL: Duration = Duration::from_millis(100);
/// How often the frontends are connected to, and each attempt's limit.
pub const FRONTEND_POLL: Duration = Duration::from_secs(1);

/// What to watch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrackSpec {
    /// Interfaces that must be up with carrier.
    pub interfaces: Vec<String>,
    /// Interfaces that must keep an XDP program attached.
    pub xdp: Vec<String>,
    /// Addresses that must accept TCP connections.
    pub frontends: Vec<SocketAddr>,
    /// A command (argv) that must succeed; empty: none.
    pub script: Vec<String>,
    /// Time between its runs, and each run's limit.
    pub script_interval: Duration,
}

/// A running watchdog; dropping it stops it.
#[derive(Debug)]
pub struct Tracker {
    verdict: watch::Receiver<Vec<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Tracker {
    /// Starts watching on the current runtime. The first verdict is
    /// known when this returns (no instance starts on an unchecked node).
    pub async fn start(spec: TrackSpec, nl: Netlink) -> Self {
        // Three independent sources, each with its own period; the
        // verdict is their union.
        let (links_tx, links_rx) = watch::channel(Vec::new());
        let (front_tx, front_rx) = watch::channel(Vec::new());
        let (script_tx, script_rx) = watch::channel(Vec::new());
        links_tx.send_replace(check_links(&spec, &nl).await);
        front_tx.send_replace(check_frontends(&spec.frontends).await);
        if !spec.script.is_empty() {
            script_tx.send_replace(check_script(&spec.script, spec.script_interval).await);
        }
        let (verdict_tx, verdict) = watch::channel(union(&[&links_rx, &front_rx, &script_rx]));
        let mut tasks = Vec::new();
        {
            let spec = spec.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LINK_POLL).await;
                    let v = check_links(&spec, &nl).await;
                    links_tx.send_if_modified(|old| replace(old, v));
                }
            }));
        }
        if !spec.frontends.is_empty() {
            let fronts = spec.frontends.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FRONTEND_POLL).await;
                    let v = check_frontends(&fronts).await;
                    front_tx.send_if_modified(|old| replace(old, v));
                }
            }));
        }
        if !spec.script.is_empty() {
            let (argv, every) = (spec.script.clone(), spec.script_interval);
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    let v = check_script(&argv, every).await;
                    script_tx.send_if_modified(|old| replace(old, v));
                }
            }));
        }
        let sources = [links_rx, front_rx, script_rx];
        tasks.push(tokio::spawn(async move {
            let mut sources = sources;
            loop {
                let [a, b, c] = &mut sources;
                let alive = tokio::select! {
                    r = a.changed() => r.is_ok(),
                    r = b.changed() => r.is_ok(),
                    r = c.changed() => r.is_ok(),
                };
                if !alive {
                    // A source without a task (none configured) closes at
                    // once; the others keep the verdict current.
                    tokio::time::sleep(LINK_POLL).await;
                }
                let v = union(&[&sources[0], &sources[1], &sources[2]]);
                verdict_tx.send_if_modified(|old| replace(old, v));
            }
        }));
        Self { verdict, tasks }
    }

    /// The verdict, watched (empty: healthy).
    pub fn verdict(&self) -> watch::Receiver<Vec<String>> {
        self.verdict.clone()
    }
}

fn replace(old: &mut Vec<String>, new: Vec<String>) -> bool {
    if *old == new {
        return false;
    }
    *old = new;
    true
}

fn union(sources: &[&watch::Receiver<Vec<String>>]) -> Vec<String> {
    sources.iter().flat_map(|s| s.borrow().clone()).collect()
}

async fn check_links(spec: &TrackSpec, nl: &Netlink) -> Vec<String> {
    let mut out = Vec::new();
    for name in &spec.interfaces {
        match nl.link(name).await {
            Ok(l) if l.up => {}
            Ok(_) => out.push(format!("interface {name} is down")),
            Err(e) => out.push(e.to_string()),
        }
    }
    for name in &spec.xdp {
        match nl.link(name).await {
            Ok(l) if l.xdp_attached => {}
            Ok(_) => out.push(format!("the XDP program is no longer attached to {name}")),
            Err(e) => out.push(e.to_string()),
        }
    }
    out
}

async fn check_frontends(fronts: &[SocketAddr]) -> Vec<String> {
    let mut out = Vec::new();
    for a in fronts {
        // A wildcard listener is reached on loopback.
        let to = if a.ip().is_unspecified() {
            let lo: std::net::IpAddr = if a.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            };
            SocketAddr::new(lo, a.port())
        } else {
            *a
        };
        match tokio::time::timeout(FRONTEND_POLL, tokio::net::TcpStream::connect(to)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => out.push(format!("frontend {a} does not accept connections: {e}")),
            Err(_) => out.push(format!(
                "frontend {a} did not accept within {FRONTEND_POLL:?}"
            )),
        }
    }
    out
}

async fn check_script(argv: &[String], limit: Duration) -> Vec<String> {
    let Some((prog, args)) = argv.split_first() else {
        return Vec::new();
    };
    let child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    match tokio::time::timeout(limit, child).await {
        Ok(Ok(s)) if s.success() => Vec::new(),
        Ok(Ok(s)) => vec![format!("track_script {prog} failed ({s})")],
        Ok(Err(e)) => vec![format!("track_script {prog} could not run: {e}")],
        Err(_) => vec![format!(
            "track_script {prog} did not finish within {limit:?}"
        )],
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frontend_that_accepts_passes_and_a_closed_one_is_a_fault() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let open = l.local_addr().unwrap();
        let closed = {
            let c = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            c.local_addr().unwrap()
        };
        assert!(check_frontends(&[open]).await.is_empty());
        let v = check_frontends(&[open, closed]).await;
        assert_eq!(v.len(), 1, "{v:?}");
        assert!(v[0].contains(&closed.to_string()), "{v:?}");
        // A wildcard listener is checked on loopback.
        let wild = SocketAddr::new([0, 0, 0, 0].into(), open.port());
        assert!(check_frontends(&[wild]).await.is_empty());
    }

    #[tokio::test]
    async fn a_script_fails_by_exit_status_by_time_and_by_not_running() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let limit = Duration::from_millis(500);
        assert!(check_script(&argv(&["true"]), limit).await.is_empty());
        let v = check_script(&argv(&["false"]), limit).await;
        assert!(v[0].contains("failed"), "{v:?}");
        let v = check_script(&argv(&["sleep", "5"]), limit).await;
        assert!(v[0].contains("did not finish"), "{v:?}");
        let v = check_script(&argv(&["/nonexistent/check"]), limit).await;
        assert!(v[0].contains("could not run"), "{v:?}");
    }
}
