//! Measurement validation: `sluice bench` against the reference tools on the
//! same nginx target in the lab. ab mode (a new connection per request) is
//! compared with Debian's `ab`, keep-alive mode with `wrk`; each pair must
//! agree within ±15% in requests/s (±20% in ab mode, see
//! [`AB_MODE_TOLERANCE`]).
//!
//! What is validated is the *measurement* (counting, timing, the rate it
//! reports), so the target must be the bottleneck, not the client: when the
//! client and nginx share the two vCPUs, a cheaper client leaves more CPU to
//! nginx and "measures" a faster server. A CI run did just that (wrk ran
//! slower there and the keep-alive ratio came out at 1.29), and pinning
//! alone is not enough: on one CPU of its own, a client doing a connection
//! per request is still the bottleneck (it also runs the kernel's receive
//! path for the packets it sends). So nginx is held to
//! [`NGINX_CPU_SHARE_PCT`] of one CPU by a CPU cgroup (v1 `cpu` controller
//! or v2 `cpu.max`), its processes pinned to CPU 1 and every client, peer
//! and ours alike, to CPU 0 with one thread: each tool then has more CPU
//! than it needs and reports what the throttled nginx can serve. Where no
//! CPU cgroup can be made, the test says so and runs pinned only.
//!
//! Noise: the lab shares two vCPUs with everything else on the machine, so a
//! single short run can be off by 20% or more (see
//! ../shared/reference/platform.md). Each tool runs five times,
//! interleaved with its peer (which runs once more, so that every run of
//! ours sits between two of the peer's); each run is compared with the mean
//! of the peer's runs around it, and the **median of those ratios** is
//! compared: they see the same machine conditions, a steady drift cancels,
//! and the median ignores a spoiled run.
//!
//! The load generator is compared as an optimised build: a debug build of
//! `sluice` spends two to three times the CPU per request and would measure
//! itself, not the target. The test builds (or reuses, when fresh)
//! `target/release/sluice` with cargo. Needs root, ab and wrk.
#![allow(missing_docs, clippy::unwrap_used)]

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use sluice_lab::{CpuCap, Lab, LabError, LabSpec, LbForwarding, Node, RealBackend};

/// Allowed deviation of sluice bench from wrk (keep-alive).
const TOLERANCE: f64 = 0.15;
/// Allowed deviation of sluice bench from ab (a connection per request).
/// Wider because the two do not load nginx alike: nginx spends about 10–20 %
/// more CPU per request on sluice bench's HTTP/1.1 `Connection: close`
/// exchange than on ab's (2026-12-03, `ab` and `sluice bench -n 10000 -c 20`
/// against one uncapped nginx: 32–37 vs 38–40 CPU ticks per 10k requests),
/// so with nginx as the bottleneck the paired ratio sits at 0.82–0.87, a
/// difference in the workload rather than in the measurement.
const AB_MODE_TOLERANCE: f64 = 0.20;
/// Runs of each tool (paired with the peer's; the median ratio is compared).
const RUNS: usize = 5;
/// Requests per ab-mode run, of ab and of `sluice bench` alike.
const AB_REQUESTS: &str = "3000";
/// The share of one CPU nginx may use, in percent: low enough that either
/// client, on a CPU of its own, outruns it.
const NGINX_CPU_SHARE_PCT: u32 = 20;
/// The release `sluice`, built by cargo if missing or stale.
fn release_sluice() -> PathBuf {
    let debug_bin = PathBuf::from(env!("CARGO_BIN_EXE_sluice"));
    // .../target/debug/sluice -> .../target
    let target_dir = debug_bin
        .parent()
        .and_then(|p| p.parent())
        .unwrap()
        .to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "sluice",
            "--bin",
            "sluice",
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release failed");
    target_dir.join("release").join("sluice")
}

fn lab() -> Lab {
    let mut spec = LabSpec::new(&LabSpec::unique_label("val"));
    spec.reals = 1;
    spec.vip6 = None;
    spec.lb_forwarding = LbForwarding::None;
    spec.backend = RealBackend::Nginx;
    let lab = match Lab::up(spec) {
        Ok(lab) => lab,
        Err(e @ LabError::NotPrivileged { .. }) => panic!("bench validation needs root: {e}"),
        Err(e) => panic!("lab up failed: {e}"),
    };
    // As `sluice lab bmt` does: a connection per request needs ports.
    for kv in [
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.ipv4.tcp_tw_reuse=1",
    ] {
        let o = lab.exec(Node::Client, &["sysctl", "-q", "-w", kv]).unwrap();
        assert!(o.status.success());
    }
    lab
}

/// The CPU the clients run on and the one nginx runs on, when the machine
/// has two CPUs or more (`None`: no pinning).
fn cpus() -> Option<(&'static str, &'static str)> {
    let n = std::thread::available_parallelism().map_or(1, usize::from);
    (n >= 2).then_some(("0", "1"))
}

/// Pins nginx's master and its workers (children) to `cpu` and puts them
/// into `cap` when there is one.
fn pin_nginx(lab: &Lab, cpu: Option<&str>, cap: Option<&CpuCap>) {
    let records = lab.real_processes();
    assert!(!records.is_empty(), "the lab started no real server");
    for rec in records {
        let pid = rec.pid.to_string();
        let children = Command::new("pgrep").args(["-P", &pid]).output().unwrap();
        let children = String::from_utf8_lossy(&children.stdout).into_owned();
        assert!(
            !children.trim().is_empty(),
            "{} (pid {pid}) has no worker",
            rec.what
        );
        for p in std::iter::once(pid.as_str()).chain(children.split_whitespace()) {
            if let Some(cpu) = cpu {
                let out = Command::new("taskset")
                    .args(["-a", "-p", "-c", cpu, p])
                    .output()
                    .unwrap();
                assert!(out.status.success(), "taskset {p}: {out:?}");
            }
            if let Some(cap) = cap {
                let pid: u32 = p.parse().unwrap();
                cap.add(pid).unwrap();
            }
        }
    }
}

/// Runs a client in the client namespace, pinned to the client CPU when
/// there is one.
fn run(lab: &Lab, argv: &[&str]) -> String {
    let mut full: Vec<&str> = match cpus() {
        Some((client, _)) => vec!["taskset", "-c", client],
        None => vec![],
    };
    full.extend_from_slice(argv);
    let argv = &full[..];
    let out = lab.exec(Node::Client, argv).unwrap();
    assert!(
        out.status.success(),
        "{argv:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sluice bench` with `load` (a request count or a duration) at the
/// validation's concurrency, one client thread (ab is single-threaded; wrk
/// runs with `-t 1`), JSON output.
fn run_ours(lab: &Lab, sluice: &str, load: [&str; 2], url: &str) -> String {
    let argv = [
        sluice,
        "bench",
        load[0],
        load[1],
        "-c",
        "20",
        "--threads",
        "1",
        "--json",
        url,
    ];
    run(lab, &argv)
}

/// The number after `label` on the first line that has it.
fn number_after(text: &str, label: &str) -> f64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"))
}

fn sluice_rps(json: &str) -> (f64, u64, u64) {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    (
        v["requests_per_sec"].as_f64().unwrap(),
        v["ok"].as_u64().unwrap(),
        v["requests"].as_u64().unwrap(),
    )
}

/// The median of the per-run ratios. Each run of sluice bench sits between
/// two runs of the peer (`theirs` has one run more than `ours`) and is
/// compared with their mean, so a machine that slows down or speeds up
/// steadily during the test does not favour whichever tool runs second (a
/// CI run saw the rate fall by a third over the test, every pair against
/// sluice bench). The median ignores a run that an unrelated burst of load
/// spoiled.
fn median_ratio(ours: &[f64], theirs: &[f64]) -> f64 {
    assert_eq!(theirs.len(), ours.len() + 1, "the peer brackets every run");
    let mut r: Vec<f64> = ours
        .iter()
        .zip(theirs.windows(2))
        .map(|(a, b)| a / ((b[0] + b[1]) / 2.0))
        .collect();
    r.sort_by(f64::total_cmp);
    r[r.len() / 2]
}

fn check(
    name: &str,
    peer: &str,
    tolerance: f64,
    ours: &[f64],
    theirs: &[f64],
) -> Result<(), String> {
    let ratio = median_ratio(ours, theirs);
    eprintln!(
        "{name}: sluice bench {ours:.0?} vs {peer} {theirs:.0?}: median paired ratio {ratio:.3}"
    );
    if (1.0 - tolerance..=1.0 + tolerance).contains(&ratio) {
        Ok(())
    } else {
        Err(format!(
            "{name}: sluice bench / {peer} median paired ratio {ratio:.3} outside ±{:.0}% \
             (sluice bench {ours:.0?}, {peer} {theirs:.0?})",
            tolerance * 100.0
        ))
    }
}

#[test]
fn sluice_bench_agrees_with_ab_and_wrk() {
    let sluice = release_sluice();
    let sluice = sluice.to_str().unwrap();
    // Declared before the lab so that it is dropped after it (the lab's
    // teardown stops nginx; the cgroup can then be removed).
    let cap = match CpuCap::new(
        &format!("sluice-val-{}", std::process::id()),
        NGINX_CPU_SHARE_PCT,
    ) {
        Ok(cap) => Some(cap),
        Err(e) => {
            eprintln!("nginx runs without a CPU cap: {e}");
            None
        }
    };
    let lab = lab();
    let real: Ipv4Addr = lab.topology().reals[0].ipv4;
    let url = format!("http://{real}/");
    pin_nginx(&lab, cpus().map(|(_, server)| server), cap.as_ref());

    let (mut ab, mut ours_ab, mut wrk, mut ours_ka) = (vec![], vec![], vec![], vec![]);
    let run_ab = |ab: &mut Vec<f64>| {
        let out = run(&lab, &["ab", "-q", "-n", AB_REQUESTS, "-c", "20", &url]);
        assert_eq!(number_after(&out, "Failed requests:"), 0.0, "{out}");
        ab.push(number_after(&out, "Requests per second:"));
    };
    // One client thread each: the clients share one CPU.
    let run_wrk = |wrk: &mut Vec<f64>| {
        let out = run(&lab, &["wrk", "-t", "1", "-c", "20", "-d", "3s", &url]);
        assert!(!out.contains("Non-2xx"), "{out}");
        wrk.push(number_after(&out, "Requests/sec:"));
    };
    // Peer, ours, peer, ours, ..., peer: every run of ours is bracketed.
    run_ab(&mut ab);
    run_wrk(&mut wrk);
    for _ in 0..RUNS {
        let out = run_ours(&lab, sluice, ["-n", AB_REQUESTS], &url);
        let (rps, ok, n) = sluice_rps(&out);
        let want: u64 = AB_REQUESTS.parse().unwrap();
        assert_eq!((ok, n), (want, want), "{out}");
        ours_ab.push(rps);
        run_ab(&mut ab);

        let out = run_ours(&lab, sluice, ["-d", "3s"], &url);
        let (rps, ok, n) = sluice_rps(&out);
        assert!(ok > 0 && ok == n, "{out}");
        ours_ka.push(rps);
        run_wrk(&mut wrk);
    }
    let results = [
        check("ab mode", "ab", AB_MODE_TOLERANCE, &ours_ab, &ab),
        check("keep-alive", "wrk", TOLERANCE, &ours_ka, &wrk),
    ];
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "{failures:#?}");
}
