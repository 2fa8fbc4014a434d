//! `sluice run` raises its file-descriptor limit to what the frontends'
//! `maxconn` need (2 per connection and 1024 more), and says plainly at
//! start-up when the hard limit stops it. Proxy only, on loopback; the
//! limits are set with util-linux's `prlimit`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::io::Read as _;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// How long the daemon may take to say it is running.
const START: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `sluice run` with a 3,000-connection frontend under
/// `prlimit --nofile=SOFT:HARD` (without CAP_SYS_RESOURCE when `capped`:
/// the hard limit then binds); returns its soft limit once running and
/// what it printed.
fn run_with(soft: u64, hard: u64, capped: bool) -> (u64, String) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "[global]\nadmin = \"127.0.0.1:{}\"\n\n[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:{}\"]\n\
             mode = \"tcp\"\ndefault_backend = \"b\"\nmaxconn = 3000\n\n[[backend]]\nname = \"b\"\n\
             mode = \"tcp\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:1\"\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let err = dir.path().join("err.log");
    let run = format!(
        "exec prlimit --nofile={soft}:{hard} {SLUICE} run -c {}",
        cfg.display()
    );
    // capsh and the shell exec in turn: the child's pid ends as sluice's.
    let drop = if capped {
        "--drop=cap_sys_resource"
    } else {
        "--drop="
    };
    let mut child = Command::new("capsh")
        .args([drop, "--", "-c", &run])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + START;
    let mut text = String::new();
    while !text.contains("sluice: running") {
        assert!(Instant::now() < deadline, "not running: {text}");
        assert!(child.try_wait().unwrap().is_none(), "exited: {text}");
        std::thread::sleep(Duration::from_millis(50));
        text.clear();
        std::fs::File::open(&err)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
    }
    // capsh, the shell and prlimit exec in turn: the child's pid is sluice's.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let soft_now = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap();
    (soft_now, text)
}

#[test]
fn the_limit_is_raised_to_what_maxconn_needs_or_the_shortfall_is_said() {
    // 3,000 connections: 2 × 3,000 + 1,024 descriptors. The hard limit
    // is the test's own (raising it needs CAP_SYS_RESOURCE, which a
    // container may lack).
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        hard >= 8192,
        "the test needs a hard NOFILE limit of 8192, it is {hard}"
    );
    let (soft, text) = run_with(256, hard, false);
    assert_eq!(soft, 7024, "{text}");
    assert!(text.contains("raised from 256 to 7024"), "{text}");
    // Enough already: nothing said.
    let (soft, text) = run_with(8192, hard, false);
    assert_eq!(soft, 8192, "{text}");
    assert!(!text.contains("file-descriptor"), "{text}");
    // A hard limit below the need, and no CAP_SYS_RESOURCE to lift it:
    // raised to the hard limit, and the shortfall said at start-up.
    let (soft, text) = run_with(256, 1024, true);
    assert_eq!(soft, 1024, "{text}");
    assert!(
        text.contains("need 7024 file descriptors") && text.contains("limit is 1024"),
        "{text}"
    );
}
