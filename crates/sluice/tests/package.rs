//! The Debian package end to end: scripts/package.sh builds it with
//! cargo-deb from the binary under test (the dev profile, so the suite
//! needs no release build), `dpkg -i` installs it on this machine, the
//! installed `sluice --version` and `sluice check -c /etc/sluice/sluice.toml`
//! work, `systemd-analyze verify` accepts the installed unit, the man
//! pages and completions are in place, and `dpkg --purge` removes it all.
//! Needs root, cargo-deb and systemd-analyze (scripts/setup.sh).
#![allow(missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary under test (target/debug/sluice).
const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");
/// The package's name.
const PACKAGE: &str = "sluice";
/// Paths the package installs (besides the docs).
const INSTALLED: [&str; 8] = [
    "/usr/bin/sluice",
    "/lib/systemd/system/sluice.service",
    "/etc/sluice/sluice.toml",
    "/usr/share/man/man1/sluice.1",
    "/usr/share/man/man1/sluice-run.1",
    "/usr/share/bash-completion/completions/sluice",
    "/usr/share/zsh/vendor-completions/_sluice",
    "/usr/share/fish/vendor_completions.d/sluice.fish",
];

fn run(argv: &[&str]) -> Output {
    Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn ok(argv: &[&str]) -> String {
    let out = run(argv);
    assert!(
        out.status.success(),
        "{argv:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    run(&["dpkg-query", "-W", "-f=${Status}", PACKAGE])
        .status
        .success()
        && ok(&["dpkg-query", "-W", "-f=${Status}", PACKAGE]).contains("ok installed")
}

/// Purges the package when dropped, so a failing test leaves nothing.
struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = run(&["dpkg", "--purge", PACKAGE]);
    }
}

/// A man page, plain or gzipped (cargo-deb may compress them).
fn man_page(path: &str) -> Option<PathBuf> {
    [PathBuf::from(path), PathBuf::from(format!("{path}.gz"))]
        .into_iter()
        .find(|p| p.exists())
}

#[test]
fn the_debian_package_installs_checks_and_purges() {
    assert!(
        !installed(),
        "a {PACKAGE} package is already installed on this machine and this test would \
         remove it: `dpkg --purge {PACKAGE}` first"
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // target/debug/sluice -> target
    let target = Path::new(SLUICE).parent().unwrap().parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let built = Command::new("bash")
        .arg(root.join("scripts/package.sh"))
        .args(["--profile", "dev", "--no-build", "--fast", "--output"])
        .arg(out.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "scripts/package.sh: {}\n{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .expect("a .deb in the output directory");
    let fields = ok(&["dpkg-deb", "-f", deb.to_str().unwrap()]);
    assert!(
        fields.contains(&format!("Package: {PACKAGE}\n")),
        "{fields}"
    );
    assert!(
        fields.contains(&format!("Version: {}", env!("CARGO_PKG_VERSION"))),
        "{fields}"
    );

    let _purge = Purge;
    ok(&["dpkg", "-i", deb.to_str().unwrap()]);
    for p in INSTALLED {
        let exists = if p.contains("/man1/") {
            man_page(p).is_some()
        } else {
            Path::new(p).exists()
        };
        assert!(exists, "{p} is installed");
    }
    let conffiles = ok(&["dpkg-query", "-W", "-f=${Conffiles}", PACKAGE]);
    assert!(conffiles.contains("/etc/sluice/sluice.toml"), "{conffiles}");

    let version = ok(&["/usr/bin/sluice", "--version"]);
    assert_eq!(
        version.trim(),
        format!("sluice {}", env!("CARGO_PKG_VERSION"))
    );
    let check = ok(&["/usr/bin/sluice", "check", "-c", "/etc/sluice/sluice.toml"]);
    assert!(
        check.starts_with("/etc/sluice/sluice.toml: ok: "),
        "{check}"
    );

    // The unit: systemd's own checker, on the installed file (it also
    // checks that ExecStart's binary exists).
    let verify = run(&[
        "systemd-analyze",
        "verify",
        "/lib/systemd/system/sluice.service",
    ]);
    let said = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && !said.contains("sluice.service"),
        "systemd-analyze verify: {said}"
    );

    // The man page of `run` comes from the CLI definition.
    let run_page = man_page("/usr/share/man/man1/sluice-run.1").unwrap();
    let text = ok(&["zcat", "-f", run_page.to_str().unwrap()]);
    assert!(text.contains("access\\-log"), "{text}");
    let bash = std::fs::read_to_string("/usr/share/bash-completion/completions/sluice").unwrap();
    assert!(bash.contains("realserver"), "{bash}");

    ok(&["dpkg", "--purge", PACKAGE]);
    assert!(!installed(), "{PACKAGE} is purged");
    for p in INSTALLED {
        assert!(!Path::new(p).exists(), "{p} is removed");
    }
}

/// How long `sluice run` may take to come up or stop: a bound on the
/// wait, not a measurement.
const NOTIFY_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);

/// Kills the daemon if the test ends early.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `Type=notify`: `sluice run` sends `READY=1` to `$NOTIFY_SOCKET` once
/// it serves, and `STOPPING=1` on SIGTERM (a proxy on loopback only).
#[test]
fn run_notifies_systemd_when_ready_and_when_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sluice.toml");
    std::fs::write(
        &cfg,
        "[global]\nadmin = \"127.0.0.1:0\"\n\n[[frontend]]\nname = \"www\"\n\
         bind = [\"127.0.0.1:0\"]\nmode = \"http\"\ndefault_backend = \"app\"\n\n\
         [[backend]]\nname = \"app\"\nmode = \"http\"\n\n[[backend.server]]\n\
         name = \"s1\"\naddress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let sock = dir.path().join("notify");
    let rx = UnixDatagram::bind(&sock).unwrap();
    rx.set_read_timeout(Some(NOTIFY_WITHIN)).unwrap();
    let log = dir.path().join("run.log");
    let logf = std::fs::File::create(&log).unwrap();
    let child = Command::new(SLUICE)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("NOTIFY_SOCKET", &sock)
        .stdout(logf.try_clone().unwrap())
        .stderr(logf)
        .spawn()
        .unwrap();
    let mut daemon = Kill(child);
    let mut buf = [0u8; 64];
    let recv = |buf: &mut [u8]| -> String {
        let n = rx.recv(buf).unwrap_or_else(|e| {
            panic!(
                "no message: {e}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(recv(&mut buf), "READY=1");
    // Ready means serving: the log already names the admin endpoint.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("sluice: running; admin endpoint"), "{text}");

    let pid = nix::unistd::Pid::from_raw(daemon.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(recv(&mut buf), "STOPPING=1");
    let status = daemon.0.wait().unwrap();
    assert!(status.success(), "{status}");
}
