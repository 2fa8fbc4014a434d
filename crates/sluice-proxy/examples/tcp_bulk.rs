//! Bulk throughput of the `mode tcp` relay and the proxy's CPU per GiB,
//! with `splice = "never"` (copy through a buffer), `"auto"` and
//! `"always"`, on 127.0.0.1.
//!
//! ```text
//! cargo run --release -p sluice-proxy --example tcp_bulk -- [MiB per run] [runs]
//! ```
//!
//! A server thread writes `MiB` (default 2048) into every connection it
//! accepts and closes; a client thread reads to the end. The proxy runs on
//! its own one-thread runtime (`one_thread_runtime()`, thread name
//! `sluice-proxy`), so its CPU (utime + stime from
//! `/proc/self/task/*/stat`) is told apart from the two peers'. Median of
//! `runs` (default 3) per mode. Bounded: one transfer per run.
//!
//! If `haproxy` is installed (`scripts/setup.sh` installs it), the same
//! transfers run through HAProxy `mode tcp` (`nbthread 1`) without and
//! with `option splice-auto`, as the peer measured in the same run; its CPU
//! is its process's utime + stime.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use sluice_proxy::{BackendConfig, FrontendConfig, Mode, Proxy, ProxyConfig, ServerConfig, Splice};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{median, process_cpu, thread_cpu};

const PROXY_THREAD: &str = "sluice-proxy";
const CHUNK: usize = 256 * 1024;

/// Reads one transfer through `addr`; returns (Gbit/s, seconds).
fn transfer(addr: std::net::SocketAddr, bytes: usize) -> f64 {
    let t = Instant::now();
    let mut c = TcpStream::connect(addr).unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0usize;
    loop {
        let n = c.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, bytes, "short transfer");
    t.elapsed().as_secs_f64()
}

/// Runs the transfers through HAProxy `mode tcp`; (Gbit/s, CPU s/GiB).
fn haproxy(
    server: std::net::SocketAddr,
    splice: bool,
    bytes: usize,
    runs: usize,
) -> Option<(f64, f64)> {
    let port = TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = tempfile::tempdir().ok()?;
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n{}\nfrontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\nbackend be\n  server s {server}\n",
            if splice { "  option splice-auto" } else { "" }
        ),
    )
    .ok()?;
    let mut child = std::process::Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().ok()?;
    let up = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        TcpStream::connect(addr).is_ok()
    });
    let mut rates = Vec::new();
    let mut cpus = Vec::new();
    if up {
        for _ in 0..runs {
            let cpu0 = process_cpu(child.id());
            let secs = transfer(addr, bytes);
            let cpu = process_cpu(child.id()) - cpu0;
            rates.push(bytes as f64 * 8.0 / secs / 1e9);
            cpus.push(cpu / (bytes as f64 / f64::from(1u32 << 30)));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    up.then(|| (median(rates), median(cpus)))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(2048, |a| a.parse().unwrap());
    let runs: usize = args.next().map_or(3, |a| a.parse().unwrap());
    let bytes = mib << 20;

    // The server: MiB into every connection, then close.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![0x5a_u8; CHUNK];
        for conn in server.incoming() {
            let Ok(mut s) = conn else { continue };
            std::thread::spawn({
                let chunk = chunk.clone();
                move || {
                    let mut left = bytes;
                    while left > 0 {
                        let n = left.min(chunk.len());
                        if s.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                        left -= n;
                    }
                }
            });
        }
    });

    println!(
        "mode tcp relay, {mib} MiB per run from server to client on 127.0.0.1, median of {runs}"
    );
    println!(
        "{:<20} {:>10} {:>16} {:>12}",
        "proxy", "Gbit/s", "proxy CPU s/GiB", "vs never"
    );
    let mut never_cpu = None;
    for mode in [Splice::Never, Splice::Auto, Splice::Always] {
        let rt = cpu::one_thread_runtime();
        let mut fe = FrontendConfig::new("fe", "127.0.0.1:0".parse().unwrap(), "be");
        fe.mode = Mode::Tcp;
        fe.splice = mode;
        let be = BackendConfig::new("be", vec![ServerConfig::new("s", server_addr)]);
        let proxy = rt
            .block_on(Proxy::start(ProxyConfig::new(vec![fe], vec![be])))
            .unwrap();
        let addr = proxy.local_addr("fe").unwrap();
        let mut rates = Vec::new();
        let mut cpus = Vec::new();
        for _ in 0..runs {
            let cpu0 = thread_cpu(PROXY_THREAD);
            let secs = transfer(addr, bytes);
            let cpu = thread_cpu(PROXY_THREAD) - cpu0;
            rates.push(bytes as f64 * 8.0 / secs / 1e9);
            cpus.push(cpu / (bytes as f64 / f64::from(1u32 << 30)));
        }
        rt.block_on(proxy.shutdown());
        drop(rt);
        let (rate, cpu) = (median(rates), median(cpus));
        let base = *never_cpu.get_or_insert(cpu);
        println!(
            "{:<20} {rate:>10.2} {cpu:>16.3} {:>11.2}x",
            format!("sluice splice={}", format!("{mode:?}").to_lowercase()),
            cpu / base
        );
    }
    for (name, splice) in [("haproxy", false), ("haproxy splice-auto", true)] {
        match haproxy(server_addr, splice, bytes, runs) {
            Some((rate, cpu)) => println!(
                "{name:<20} {rate:>10.2} {cpu:>16.3} {:>11.2}x",
                cpu / never_cpu.unwrap_or(cpu)
            ),
            None => println!("{name}: not run (haproxy missing or did not start)"),
        }
    }
}
