//! Request/response cost of the `mode tcp` relay: one connection, a
//! 100-byte request and a 5 KiB answer at a time (the shape of the seed
//! benchmark's keep-alive load), with `splice = "never"` (tokio's
//! bidirectional copy) and `"auto"` (sluice's own relay, which stays in
//! copy mode for this traffic). Prints the proxy thread's CPU per exchange.
//!
//! ```text
//! cargo run --release -p sluice-proxy --example tcp_rr -- [exchanges] [rounds]
//! ```
//!
//! The two modes alternate `rounds` times (default 5) with `exchanges`
//! (default 20000) each; the median per mode is reported, and the median of
//! the paired ratios. Bounded by the counts. 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use sluice_proxy::{BackendConfig, FrontendConfig, Mode, Proxy, ProxyConfig, ServerConfig, Splice};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::{median, thread_cpu};

const PROXY_THREAD: &str = "sluice-proxy";
const REQUEST_BYTES: usize = 100;
const ANSWER_BYTES: usize = 5 * 1024;

fn main() {
    let mut args = std::env::args().skip(1);
    let exchanges: usize = args.next().map_or(20_000, |a| a.parse().unwrap());
    let rounds: usize = args.next().map_or(5, |a| a.parse().unwrap());

    // The server: answers every 100-byte request with 5 KiB.
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let server_addr = server.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in server.incoming() {
            let Ok(mut s) = conn else { continue };
            let _ = s.set_nodelay(true);
            std::thread::spawn(move || {
                let answer = vec![0x42_u8; ANSWER_BYTES];
                let mut req = [0u8; REQUEST_BYTES];
                while s.read_exact(&mut req).is_ok() {
                    if s.write_all(&answer).is_err() {
                        return;
                    }
                }
            });
        }
    });

    let rt = cpu::one_thread_runtime();
    let mut addrs = Vec::new();
    let mut proxies = Vec::new();
    for (name, mode) in [("never", Splice::Never), ("auto", Splice::Auto)] {
        let mut fe = FrontendConfig::new(name, "127.0.0.1:0".parse().unwrap(), "be");
        fe.mode = Mode::Tcp;
        fe.splice = mode;
        let be = BackendConfig::new("be", vec![ServerConfig::new("s", server_addr)]);
        let proxy = rt
            .block_on(Proxy::start(ProxyConfig::new(vec![fe], vec![be])))
            .unwrap();
        addrs.push((name, proxy.local_addr(name).unwrap()));
        proxies.push(proxy);
    }
    let mut per = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, (_, addr)) in addrs.iter().enumerate() {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_nodelay(true).unwrap();
            let req = [0x41_u8; REQUEST_BYTES];
            let mut answer = vec![0u8; ANSWER_BYTES];
            let cpu0 = thread_cpu(PROXY_THREAD);
            for _ in 0..exchanges {
                c.write_all(&req).unwrap();
                c.read_exact(&mut answer).unwrap();
            }
            let cpu = thread_cpu(PROXY_THREAD) - cpu0;
            per[i].push(cpu * 1e6 / exchanges as f64);
        }
    }
    let ratios: Vec<f64> = per[1].iter().zip(&per[0]).map(|(a, n)| a / n).collect();
    println!(
        "mode tcp relay, {exchanges} exchanges ({REQUEST_BYTES} B up, {ANSWER_BYTES} B down) per round, {rounds} rounds"
    );
    println!(
        "splice=never  {:.2} µs proxy CPU per exchange (median)",
        median(per[0].clone())
    );
    println!(
        "splice=auto   {:.2} µs proxy CPU per exchange (median)",
        median(per[1].clone())
    );
    println!(
        "auto / never  {:.3} (median of paired ratios)",
        median(ratios)
    );
    for p in proxies {
        rt.block_on(p.shutdown());
    }
}
