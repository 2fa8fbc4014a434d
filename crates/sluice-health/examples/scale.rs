//! Scale check of the checker runtime: N TCP checks (default 1000) at a 1 s
//! interval against one local listener for S seconds (default 20); prints
//! the CPU time the checker used and how evenly the probes were spread.
//!
//! ```text
//! cargo run --release -p sluice-health --example scale -- [targets] [seconds] [netns ip]
//! ```
//!
//! The listener runs on its own thread (named `listener`) so that its CPU
//! time can be told apart: per-thread times come from
//! `/proc/self/task/*/stat`. By default traffic stays on 127.0.0.1; with
//! `netns ip` the listener thread moves into the named network namespace
//! (`/run/netns/NAME`, made by the caller, see `benches/health-scale.sh`)
//! and listens on `ip`, so the checks cross a veth pair like checks of lab
//! reals do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_core::health::{Health, HealthConfig};
use sluice_health::{CheckSpec, Checker, ProbeSpec, Target};

const LISTENER_THREAD: &str = "listener";
/// Width of the buckets the spread is measured in.
const BUCKET: Duration = Duration::from_millis(100);
/// Start-up time left out of the spread figures (the first round is spread
/// over the first interval on purpose).
const WARMUP: Duration = Duration::from_secs(2);

/// (thread name, utime + stime in seconds) of every thread of this process.
fn thread_cpu() -> Vec<(String, f64)> {
    let tick = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(entry.unwrap().path().join("stat")).unwrap();
        // "tid (comm) state ...": comm may contain spaces, so split at the
        // last ')'. utime and stime are fields 14 and 15 of proc(5); after
        // the ')' the fields start at 3 (state), so they sit at 11 and 12.
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_owned();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields[11].parse().unwrap();
        let stime: f64 = fields[12].parse().unwrap();
        out.push((name, (utime + stime) / tick));
    }
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let targets: usize = args.next().map_or(1000, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(20, |a| a.parse().unwrap());
    let netns: Option<String> = args.next();
    let listen_ip: std::net::IpAddr = args
        .next()
        .map_or([127, 0, 0, 1].into(), |a| a.parse().unwrap());

    // The peer: its own thread and runtime.
    let accepts = Arc::new(Mutex::new(Vec::<Instant>::with_capacity(
        targets * (seconds as usize + 1),
    )));
    let (tx, rx) = std::sync::mpsc::channel::<SocketAddr>();
    let acc = accepts.clone();
    std::thread::Builder::new()
        .name(LISTENER_THREAD.into())
        .spawn(move || {
            if let Some(name) = netns {
                // setns(2) with CLONE_NEWNET moves only this thread.
                let f = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::bind((listen_ip, 0)).await.unwrap();
                tx.send(l.local_addr().unwrap()).unwrap();
                while let Ok((s, _)) = l.accept().await {
                    acc.lock().unwrap().push(Instant::now());
                    drop(s);
                }
            });
        })
        .unwrap();
    let addr = rx.recv().unwrap();

    // One worker thread is plenty for probes (they are I/O waits) and costs
    // less CPU than a multi-thread runtime's work stealing.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cpu_before = thread_cpu();
    let start = Instant::now();
    let snapshot = rt.block_on(async {
        let spec = CheckSpec {
            probe: ProbeSpec::Tcp,
            port: None,
            timeout: Duration::from_millis(500),
            health: HealthConfig {
                rise: 2,
                fall: 3,
                interval: Duration::from_secs(1),
                down_interval: Duration::from_secs(1),
                initial: Health::Up,
            },
            jitter_percent: 10,
            fwmark: None,
        };
        let list = (0..targets)
            .map(|i| Target {
                id: format!("t{i}"),
                addr: addr.ip(),
                port: addr.port(),
                spec: spec.clone(),
                on_down: Default::default(),
            })
            .collect();
        let (checker, _rx) = Checker::start(list).unwrap();
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let snap = checker.snapshot();
        checker.shutdown().await;
        snap
    });
    let wall = start.elapsed();
    let cpu_after = thread_cpu();

    let total = |v: &[(String, f64)], listener: bool| -> f64 {
        v.iter()
            .filter(|(n, _)| (n == LISTENER_THREAD) == listener)
            .map(|(_, c)| c)
            .sum()
    };
    let checker_cpu = total(&cpu_after, false) - total(&cpu_before, false);
    let listener_cpu = total(&cpu_after, true) - total(&cpu_before, true);
    let checks: u64 = snapshot.iter().map(|s| s.checks_total).sum();
    let failures: u64 = snapshot.iter().map(|s| s.failures_total).sum();
    let up = snapshot.iter().filter(|s| s.health == Health::Up).count();

    println!("targets {targets}, interval 1s, jitter 10%, {seconds}s run ({wall:.2?} wall)");
    println!(
        "checks {checks} ({:.0}/s), failures {failures}, up at end {up}/{targets}",
        checks as f64 / wall.as_secs_f64()
    );
    println!(
        "checker CPU {checker_cpu:.2}s = {:.1}% of one core; {:.1} µs per check",
        100.0 * checker_cpu / wall.as_secs_f64(),
        1e6 * checker_cpu / checks.max(1) as f64
    );
    println!(
        "listener CPU {listener_cpu:.2}s (not counted above); process total {:.2}s",
        checker_cpu + listener_cpu
    );

    // Spread: probes per 100 ms bucket after the warm-up (ideal: targets/10).
    let times = accepts.lock().unwrap().clone();
    let end = start + Duration::from_secs(seconds);
    let buckets = ((end - start - WARMUP).as_millis() / BUCKET.as_millis()) as usize;
    let mut counts = vec![0u32; buckets];
    for t in times.iter().filter(|t| **t >= start + WARMUP && **t < end) {
        let i = ((*t - start - WARMUP).as_millis() / BUCKET.as_millis()) as usize;
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    if !counts.is_empty() {
        let mean = counts.iter().map(|&c| f64::from(c)).sum::<f64>() / counts.len() as f64;
        let var = counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / counts.len() as f64;
        println!(
            "fire-time spread: probes per 100 ms bucket over {} buckets: min {} / mean {mean:.1} / max {} / stddev {:.1} (ideal {})",
            counts.len(),
            counts.iter().min().unwrap(),
            counts.iter().max().unwrap(),
            var.sqrt(),
            targets / 10
        );
    }
}
