//! HAProxy (Debian's package) as the reference proxy: a generated config in
//! a temporary directory, run in the foreground, killed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Installed by `scripts/setup.sh` (Debian's `haproxy` package).
pub(crate) const HAPROXY_BIN: &str = "/usr/sbin/haproxy";

/// How long HAProxy may take to accept connections after it starts.
const START_LIMIT: Duration = Duration::from_secs(10);

/// Pause between attempts to connect while HAProxy starts.
const START_POLL: Duration = Duration::from_millis(20);

/// Attempts with a fresh port if the one picked was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// A running HAProxy; killed (and reaped) on drop, also when a test panics.
#[derive(Debug)]
pub(crate) struct Haproxy {
    child: Child,
    pub(crate) addr: SocketAddr,
    pub(crate) version: String,
    // Holds the config and logs until HAProxy is gone (dropped after `child`
    // is killed, see `Drop`).
    dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The configuration: one frontend, one server, the options the issue asks
/// for, timeouts short enough for a test but far above its exchanges.
fn config(listen: SocketAddr, server: SocketAddr) -> String {
    format!(
        "global\n\
         \x20   nbthread 1\n\
         defaults\n\
         \x20   mode http\n\
         \x20   option forwardfor\n\
         \x20   option http-keep-alive\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 10s\n\
         \x20   timeout server 10s\n\
         \x20   timeout http-request 5s\n\
         \x20   timeout http-keep-alive 5s\n\
         frontend fe\n\
         \x20   bind {listen}\n\
         \x20   default_backend be\n\
         backend be\n\
         \x20   server s1 {server}\n"
    )
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    l.local_addr().expect("probe port address")
}

impl Haproxy {
    /// Start HAProxy in front of `server`. Panics (the test fails) with a
    /// clear message if HAProxy is not installed or does not come up.
    pub(crate) fn start(server: SocketAddr) -> Self {
        assert!(
            Path::new(HAPROXY_BIN).exists(),
            "{HAPROXY_BIN} is missing: the smuggling corpus compares sluice with HAProxy; \
             install it with scripts/setup.sh (Debian package `haproxy`)"
        );
        let version = Command::new(HAPROXY_BIN)
            .arg("-v")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default();
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::tempdir().expect("temporary directory");
            let addr = free_port();
            let cfg = dir.path().join("haproxy.cfg");
            std::fs::write(&cfg, config(addr, server)).expect("write haproxy.cfg");
            let log = std::fs::File::create(dir.path().join("haproxy.log")).expect("log file");
            let child = Command::new(HAPROXY_BIN)
                .arg("-db")
                .arg("-f")
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("log file"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {HAPROXY_BIN}: {e}"));
            // The guard exists from here on: a panic below kills HAProxy.
            let mut h = Haproxy {
                child,
                addr,
                version: version.clone(),
                dir,
            };
            match h.wait_ready() {
                Ok(()) => return h,
                Err(e) => last_err = e,
            }
        }
        panic!("HAProxy did not start: {last_err}");
    }

    /// Wait until the port accepts connections (or HAProxy exits).
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        while start.elapsed() < START_LIMIT {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("haproxy.log"))
                    .unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            if std::net::TcpStream::connect_timeout(&self.addr, START_POLL).is_ok() {
                return Ok(());
            }
            std::thread::sleep(START_POLL);
        }
        Err(format!("{} not accepting after {START_LIMIT:?}", self.addr))
    }
}
