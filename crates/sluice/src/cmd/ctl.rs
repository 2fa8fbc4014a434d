//! `sluice ctl`: talks to a running daemon's admin endpoint.

use std::{net::SocketAddr, process::ExitCode};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, body::Bytes};

/// Arguments of `sluice ctl`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Admin endpoint of the daemon (`global.admin`).
    #[arg(short = 'a', long = "admin", default_value_t = super::admin::default_admin())]
    pub(crate) admin: SocketAddr,
    #[command(subcommand)]
    pub(crate) command: CtlCommand,
}

/// Arguments of `sluice reload`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReloadArgs {
    /// Admin endpoint of the daemon (`global.admin`).
    #[arg(short = 'a', long = "admin", default_value_t = super::admin::default_admin())]
    pub(crate) admin: SocketAddr,
}

impl From<ReloadArgs> for Args {
    fn from(r: ReloadArgs) -> Self {
        Args {
            admin: r.admin,
            command: CtlCommand::Reload,
        }
    }
}

/// `sluice ctl` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum CtlCommand {
    /// Services, reals, weights, connections and traffic (like `ipvsadm -Ln --stats`).
    List {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// The data plane's global counters (verdicts, drops by reason).
    Counters {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// Health-check targets: health, operator state, last result, last change.
    Checks {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// VRRP instances: state, master, priority, adverts, faults.
    Vrrp {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// GSLB: each name's policy, sites and health, and the answer a client
    /// would get now.
    Gslb {
        /// The client address answered for (topology); default 127.0.0.1.
        #[arg(long)]
        client: Option<std::net::IpAddr>,
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// Reload the daemon's configuration file (as SIGHUP): checked first,
    /// applied only if valid and reloadable, else nothing changes.
    Reload,
    /// The loaded configuration: file, generation and when it was loaded.
    Config,
    /// Connection sync's counts (sent, received, installed, skipped, lost).
    Sync {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// Everything above in Prometheus' text format (what `GET /metrics` serves).
    Metrics,
    /// L7 proxy statistics per frontend, backend and server (like HAProxy's stats).
    Stats {
        /// Print the JSON the daemon returned.
        #[arg(long)]
        json: bool,
    },
    /// Set a real's operator state: enabled, drain or maintenance.
    SetState {
        /// Service name.
        service: String,
        /// Real address.
        address: String,
        /// enabled | drain | maintenance
        state: String,
    },
    /// Add a real server to an L4 service.
    AddReal {
        /// Service name.
        service: String,
        /// Real address.
        address: String,
        /// Weight (0 = drain).
        #[arg(short, long, default_value_t = 1)]
        weight: u32,
        /// Port at the real (`nat` only: VIP:80 -> ADDRESS:PORT); default
        /// the packet's own.
        #[arg(short, long)]
        port: Option<u16>,
    },
    /// Remove a real server; its sessions move on their next packet.
    RemoveReal {
        /// Service name.
        service: String,
        /// Real address.
        address: String,
    },
    /// Change a weight; 0 drains (existing connections finish, no new ones).
    SetWeight {
        /// Service name.
        service: String,
        /// Real address.
        address: String,
        /// New weight, 0..=65535.
        weight: u32,
    },
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(ctl(args))
}

async fn request(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let (status, bytes) = request_raw(admin, method, path, body).await?;
    let v = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    Ok((status, v))
}

/// One admin request; the status and the raw response body.
async fn request_raw(
    admin: SocketAddr,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| {
            format!("connecting to the admin endpoint {admin} (is `sluice run` up?)")
        })?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .context("admin handshake")?;
    tokio::spawn(conn);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, admin.to_string())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .context("building the request")?;
    let resp = send.send_request(req).await.context("admin request")?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .context("admin response")?
        .to_bytes();
    Ok((status, bytes))
}

fn check(status: u16, v: &serde_json::Value) -> anyhow::Result<()> {
    if status >= 400 {
        let msg = v
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no reason given");
        bail!("the daemon refused ({status}): {msg}");
    }
    Ok(())
}

async fn ctl(args: Args) -> anyhow::Result<ExitCode> {
    let a = args.admin;
    match args.command {
        CtlCommand::List { json } => {
            let (s, v) = request(a, Method::GET, "/v1/l4", None).await?;
            check(s, &v)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", format_list(&v));
            }
        }
        CtlCommand::Counters { json } => {
            let (s, v) = request(a, Method::GET, "/v1/counters", None).await?;
            check(s, &v)?;
            if json {
                println!("{v}");
            } else if let Some(m) = v.as_object() {
                for (k, n) in m {
                    println!("{k:<20} {n}");
                }
            }
        }
        CtlCommand::Metrics => {
            let (s, body) = request_raw(a, Method::GET, "/metrics", None).await?;
            if s >= 400 {
                let v = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                check(s, &v)?;
            }
            print!("{}", String::from_utf8_lossy(&body));
        }
        CtlCommand::Stats { json } => {
            let (s, v) = request(a, Method::GET, "/v1/l7", None).await?;
            check(s, &v)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", format_stats(&v));
            }
        }
        CtlCommand::Vrrp { json } => {
            let (s, v) = request(a, Method::GET, "/v1/vrrp", None).await?;
            check(s, &v)?;
            if json {
                println!("{v}");
            } else {
                print!("{}", format_vrrp(&v));
            }
        }
        CtlCommand::Gslb { client, json } => {
            let path = match client {
                Some(c) => format!("/v1/gslb?client={c}"),
                None => "/v1/gslb".to_owned(),
            };
            let (s, v) = request(a, Method::GET, &path, None).await?;
            check(s, &v)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", super::gslb_map::format_view(&v));
            }
        }
        CtlCommand::Reload => {
            let (s, v) = request(a, Method::POST, "/v1/reload", None).await?;
            check(s, &v)?;
            println!("reloaded: generation {}", v["generation"]);
        }
        CtlCommand::Config => {
            let (s, v) = request(a, Method::GET, "/v1/config", None).await?;
            check(s, &v)?;
            println!("{v}");
        }
        CtlCommand::Sync { json } => {
            let (s, v) = request(a, Method::GET, "/v1/sync", None).await?;
            check(s, &v)?;
            if json {
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            for (k, n) in v.as_object().into_iter().flatten() {
                println!("{k:<22} {}", n.as_u64().unwrap_or(0));
            }
        }
        CtlCommand::Checks { json } => {
            let (s, v) = request(a, Method::GET, "/v1/checks", None).await?;
            check(s, &v)?;
            if json {
                println!("{v}");
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<28} {:<14} {:<6} {:<12} {:<10} {:>9} {:>7}  last result",
                "target", "check", "health", "operator", "effective", "latency", "checks"
            );
            for t in v.as_array().into_iter().flatten() {
                let g = |k: &str| t.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned();
                let lat = t
                    .get("last_latency_ms")
                    .and_then(serde_json::Value::as_f64)
                    .map(|l| format!("{l:.2}ms"))
                    .unwrap_or_else(|| "-".to_owned());
                let last = match t.get("last_ok").and_then(serde_json::Value::as_bool) {
                    Some(true) => "ok".to_owned(),
                    Some(false) => format!("failed: {}", g("last_reason")),
                    None => "none yet".to_owned(),
                };
                println!(
                    "{:<28} {:<14} {:<6} {:<12} {:<10} {:>9} {:>7}  {last}",
                    g("id"),
                    g("check"),
                    g("health"),
                    g("operator"),
                    g("effective"),
                    lat,
                    t.get("checks")
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0),
                );
            }
        }
        CtlCommand::SetState {
            service,
            address,
            state,
        } => {
            let (s, v) = request(
                a,
                Method::PUT,
                &format!("/v1/l4/{service}/reals/{address}"),
                Some(serde_json::json!({"state": state})),
            )
            .await?;
            check(s, &v)?;
            println!("{service} {address} state {state}");
        }
        CtlCommand::AddReal {
            service,
            address,
            weight,
            port,
        } => {
            let mut body = serde_json::json!({"address": address, "weight": weight});
            if let Some(p) = port {
                body["port"] = p.into();
            }
            let (s, v) = request(
                a,
                Method::POST,
                &format!("/v1/l4/{service}/reals"),
                Some(body),
            )
            .await?;
            check(s, &v)?;
            match port {
                Some(p) => println!("added {address}:{p} to {service} with weight {weight}"),
                None => println!("added {address} to {service} with weight {weight}"),
            }
        }
        CtlCommand::RemoveReal { service, address } => {
            let (s, v) = request(
                a,
                Method::DELETE,
                &format!("/v1/l4/{service}/reals/{address}"),
                None,
            )
            .await?;
            check(s, &v)?;
            println!("removed {address} from {service}");
        }
        CtlCommand::SetWeight {
            service,
            address,
            weight,
        } => {
            let (s, v) = request(
                a,
                Method::PUT,
                &format!("/v1/l4/{service}/reals/{address}"),
                Some(serde_json::json!({"weight": weight})),
            )
            .await?;
            check(s, &v)?;
            println!("{service} {address} weight {weight}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// HAProxy-stats-shaped text: one line per frontend, backend and server.
fn format_stats(v: &serde_json::Value) -> String {
    let mut o = format!(
        "{:<10} {:<24} {:>5} {:>6} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>12} {:>12} {:>12}\n",
        "type",
        "name",
        "status",
        "scur",
        "stot",
        "req",
        "2xx",
        "4xx",
        "5xx",
        "econ",
        "eresp",
        "retr",
        "bin",
        "bout",
        "bspliced"
    );
    let line = |o: &mut String, kind: &str, name: &str, status: &str, c: &serde_json::Value| {
        let n = |p: &[&str]| {
            let mut x = c;
            for k in p {
                x = &x[*k];
            }
            x.as_u64().unwrap_or(0)
        };
        o.push_str(&format!(
            "{:<10} {:<24} {:>5} {:>6} {:>9} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7} {:>12} {:>12} {:>12}\n",
            kind,
            name,
            status,
            n(&["sessions_current"]),
            n(&["sessions_total"]),
            n(&["requests"]),
            n(&["responses", "http_2xx"]),
            n(&["responses", "http_4xx"]),
            n(&["responses", "http_5xx"]),
            n(&["errors", "connect"]),
            n(&["errors", "response"]),
            n(&["retries"]),
            n(&["bytes_in"]),
            n(&["bytes_out"]),
            n(&["bytes_spliced"]),
        ));
    };
    for f in v["frontends"].as_array().into_iter().flatten() {
        line(
            &mut o,
            "frontend",
            f["name"].as_str().unwrap_or("?"),
            "-",
            f,
        );
    }
    for b in v["backends"].as_array().into_iter().flatten() {
        let bn = b["name"].as_str().unwrap_or("?");
        line(&mut o, "backend", bn, "-", b);
        for s in b["servers"].as_array().into_iter().flatten() {
            let st = if s["up"].as_bool().unwrap_or(false) {
                "UP"
            } else {
                "DOWN"
            };
            let name = format!("{bn}/{}", s["name"].as_str().unwrap_or("?"));
            line(&mut o, "server", &name, st, s);
        }
    }
    o
}

/// `ipvsadm -Ln --stats`-shaped text.
fn format_vrrp(v: &serde_json::Value) -> String {
    let mut out = format!(
        "{:<16} {:<10} {:>4} {:>4} {:<8} {:<24} {:>11} {:>8} {:>8} {:>7}  faults\n",
        "instance",
        "interface",
        "vrid",
        "prio",
        "state",
        "master",
        "transitions",
        "sent",
        "received",
        "invalid"
    );
    for i in v.as_array().into_iter().flatten() {
        let g = |k: &str| i.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_owned();
        let n = |k: &str| i.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let invalid: u64 = i
            .get("adverts_invalid")
            .and_then(serde_json::Value::as_object)
            .map_or(0, |m| {
                m.values().filter_map(serde_json::Value::as_u64).sum()
            });
        let faults: Vec<&str> = i
            .get("faults")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_str)
            .collect();
        out.push_str(&format!(
            "{:<16} {:<10} {:>4} {:>4} {:<8} {:<24} {:>11} {:>8} {:>8} {:>7}  {}\n",
            g("name"),
            g("interface"),
            n("virtual_router_id"),
            n("priority"),
            g("state"),
            g("master"),
            n("transitions"),
            n("adverts_sent"),
            n("adverts_received"),
            invalid,
            if faults.is_empty() {
                "-".to_owned()
            } else {
                faults.join("; ")
            },
        ));
    }
    out
}

fn format_list(v: &serde_json::Value) -> String {
    let mut o = String::new();
    o.push_str("Prot LocalAddress:Port           Scheduler Method Name\n");
    o.push_str("  -> RemoteAddress              Weight ActiveConn InActConn    Conns    InPkts   InBytes Health State\n");
    for s in v.as_array().into_iter().flatten() {
        let g = |k: &str| s.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_owned();
        let n = |k: &str| s.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let addr = g("address");
        let (a, proto) = addr.rsplit_once('/').unwrap_or((&addr, "?"));
        o.push_str(&format!(
            "{:<4} {:<28} {:<9} {:<6} {}   (conns {}, pkts {}, bytes {})\n",
            proto.to_uppercase(),
            a,
            g("scheduler"),
            g("method"),
            g("name"),
            n("sessions"),
            n("packets"),
            n("bytes"),
        ));
        // `fullnat`: each local address's port pool.
        for l in s
            .get("local_addresses")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            let ln = |k: &str| l.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let ports = l.get("ports").and_then(|p| p.as_array());
            let port = |i: usize| {
                ports
                    .and_then(|p| p.get(i))
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or(0)
            };
            o.push_str(&format!(
                "  local {} ports {}-{}: {} in use ({} per real and port)\n",
                l.get("address").and_then(|x| x.as_str()).unwrap_or("?"),
                port(0),
                port(1),
                ln("in_use"),
                ln("per_real"),
            ));
        }
        for r in s
            .get("reals")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
        {
            let rn = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let rs = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("?");
            // A `nat` real with its own port shows it, as ipvsadm does:
            // VIP:80 -> RIP:8080.
            let real = match r.get("port").and_then(serde_json::Value::as_u64) {
                Some(p) if rs("address").contains(':') => format!("[{}]:{p}", rs("address")),
                Some(p) => format!("{}:{p}", rs("address")),
                None => rs("address").to_owned(),
            };
            o.push_str(&format!(
                "  -> {:<26} {:>6} {:>10} {:>9} {:>8} {:>9} {:>9} {:<6} {}\n",
                real,
                rn("weight"),
                rn("active"),
                rn("inactive"),
                rn("sessions"),
                rn("packets"),
                rn("bytes"),
                rs("health"),
                rs("operator"),
            ));
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stats_lines_carry_the_byte_counters() {
        let v = serde_json::json!({
            "frontends": [{ "name": "tcp-in", "sessions_total": 3, "bytes_in": 1000,
                            "bytes_out": 2000, "bytes_spliced": 2500 }],
            "backends": [{ "name": "be", "sessions_total": 3, "servers": [
                { "name": "s1", "up": true, "bytes_in": 1000, "bytes_out": 2000, "bytes_spliced": 2500 }
            ]}]
        });
        let text = format_stats(&v);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].ends_with("bin         bout     bspliced"),
            "{text}"
        );
        assert!(lines[1].starts_with("frontend   tcp-in"), "{text}");
        assert!(
            lines[1].ends_with("1000         2000         2500"),
            "{text}"
        );
        assert!(
            lines[3].starts_with("server     be/s1                       UP"),
            "{text}"
        );
        assert!(lines[3].ends_with("2500"), "{text}");
    }

    #[test]
    fn list_shows_a_nat_reals_port() {
        let v = serde_json::json!([{
            "name": "web", "address": "10.99.255.1:80/tcp", "scheduler": "mh", "method": "nat",
            "reals": [
                { "address": "10.99.0.11", "port": 8080, "weight": 1, "health": "up", "operator": "enabled" },
                { "address": "fd99::11", "port": 8080, "weight": 1, "health": "up", "operator": "enabled" },
                { "address": "10.99.0.12", "port": null, "weight": 1, "health": "up", "operator": "enabled" },
            ],
        }]);
        let out = format_list(&v);
        assert!(out.contains(" nat "), "{out}");
        assert!(out.contains("-> 10.99.0.11:8080 "), "{out}");
        assert!(out.contains("-> [fd99::11]:8080 "), "{out}");
        assert!(out.contains("-> 10.99.0.12 "), "{out}");
    }
}
