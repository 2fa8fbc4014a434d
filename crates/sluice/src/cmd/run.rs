//! `sluice run -c FILE`: the daemon. Loads the L4 XDP data plane on the
//! configured interface, applies the services, serves the admin endpoint
//! (used by `sluice ctl`), and on SIGINT/SIGTERM detaches and exits.

use std::{
    net::{IpAddr, SocketAddr},
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method as HttpMethod, Request, Response, StatusCode, body::Bytes};
use sluice_config::{self as model, Config};
use sluice_l4::{
    AttachMode, ControlError, Dataplane, DataplaneParams, L4Plane, Method, RealSpec, Scheduler,
    ServiceSpec, neigh::KernelNeighbours,
};

/// Period of the control loop: connection-count reconciliation and
/// neighbour refresh.
const CONTROL_PERIOD: Duration = Duration::from_secs(1);
/// Every this many control rounds, every real's MAC is re-resolved (not
/// only the unknown ones).
const NEIGH_FULL_REFRESH_ROUNDS: u64 = 10;
/// Largest admin request body accepted (bytes).
const MAX_ADMIN_BODY: usize = 64 * 1024;

/// Arguments of `sluice run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Configuration file.
    #[arg(short = 'c', long = "config")]
    pub(crate) config: std::path::PathBuf,
    /// Write the proxy's access log (one line per request or TCP session,
    /// with HAProxy's Tq/Tw/Tc/Tr/Tt timers) to standard error. Other
    /// diagnostics follow `SLUICE_LOG` (default `info`).
    #[arg(long)]
    pub(crate) access_log: bool,
}

type Plane = Arc<Mutex<L4Plane<KernelNeighbours>>>;

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = match super::check::load(&args.config)? {
        Ok(c) => c,
        Err(d) => {
            eprintln!("{d}");
            bail!("{}: invalid configuration", args.config.display());
        }
    };
    // One runtime for everything: the proxy's workers (`global.threads`,
    // pinned per `global.cpu_map`), health checks and the admin endpoint.
    let threads = usize::from(cfg.global.threads.unwrap_or(0));
    let cpus: Vec<usize> = cfg.global.cpu_map.iter().map(|c| usize::from(*c)).collect();
    let rt = sluice_proxy::build_runtime(threads, &cpus).context("starting the runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> anyhow::Result<ExitCode> {
    let plane = if cfg.l4_services.is_empty() {
        None
    } else {
        Some(Arc::new(Mutex::new(start_l4(&cfg)?)))
    };
    // L7: every frontend bound before anything is served; bind errors end
    // start-up with the address in the message.
    let proxy = match super::l7_map::proxy_config(&cfg) {
        Some(pc) => {
            let h = sluice_proxy::Proxy::start(pc)
                .await
                .context("starting the L7 proxy")?;
            for (name, addr) in h.local_addrs() {
                eprintln!("sluice: frontend {name} listening on {addr}");
            }
            Some(Arc::new(h))
        }
        None => None,
    };
    let l7_checks = match proxy.clone() {
        Some(p) => start_l7_health(&cfg, p)?.map(Arc::new),
        None => None,
    };
    let admin = tokio::net::TcpListener::bind(cfg.global.admin)
        .await
        .with_context(|| format!("binding the admin endpoint {}", cfg.global.admin))?;
    eprintln!(
        "sluice: running; admin endpoint http://{}",
        admin.local_addr().unwrap_or(cfg.global.admin)
    );

    // Health checks of L4 reals; the handle keeps the checks running.
    let (checks, _via_vip_routes) = match plane.clone() {
        Some(p) => match start_l4_health(&cfg, p)? {
            Some((h, routes)) => (Some(Arc::new(h)), Some(routes)),
            None => (None, None),
        },
        None => (None, None),
    };

    if let Some(p) = plane.clone() {
        std::thread::Builder::new()
            .name("sluice-l4-control".into())
            .spawn(move || control_loop(&p))
            .context("starting the control thread")?;
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let state = AdminState {
        plane: plane.clone(),
        l4_checks: checks.clone(),
        l7_checks,
        proxy: proxy.clone(),
    };
    tokio::select! {
        r = admin_loop(admin, state) => r?,
        _ = tokio::signal::ctrl_c() => eprintln!("sluice: SIGINT, shutting down"),
        _ = term.recv() => eprintln!("sluice: SIGTERM, shutting down"),
    }
    if let Some(p) = plane {
        let mut g = p
            .lock()
            .map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?;
        g.dataplane_mut()
            .detach()
            .context("detaching the XDP program")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn control_loop(p: &Plane) {
    for round in 1u64.. {
        std::thread::sleep(CONTROL_PERIOD);
        let Ok(mut g) = p.lock() else { return };
        if let Err(e) = g.reconcile_conns() {
            tracing::warn!(error = %e, "reconciling connection counters");
        }
        // Unknown MACs every round; every MAC only every few rounds (each
        // lookup runs `ip`, and the answer rarely changes).
        let all = round % NEIGH_FULL_REFRESH_ROUNDS == 0;
        match g.refresh_neighbours(all) {
            Ok(0) => {}
            Ok(n) => eprintln!("sluice: neighbour change rewrote {n} service(s)"),
            Err(e) => tracing::warn!(error = %e, "refreshing neighbours"),
        }
    }
}

/// Starts one check per (L4 service with a health check, real) and applies
/// every transition to the control plane.
fn start_l4_health(
    cfg: &Config,
    plane: Plane,
) -> anyhow::Result<Option<(sluice_health::CheckerHandle, ViaVipRoutes)>> {
    let mut targets = Vec::new();
    let mut routes = ViaVipRoutes::default();
    for (si, s) in cfg.l4_services.iter().enumerate() {
        let Some(check) = s.health_check.as_deref().and_then(|n| cfg.health_check(n)) else {
            continue;
        };
        let port = if s.port == 0 { 80 } else { s.port };
        for (ri, r) in s.reals.iter().enumerate() {
            let mut spec = super::health_map::check_spec(check);
            let mut addr = r.address;
            if check.via_vip {
                // Through the data path: the probe goes to the VIP, and a
                // policy route for its mark sends it to this real's MAC,
                // so a real that answers on its own address but not on
                // the VIP is caught.
                let mark = VIA_VIP_MARK_BASE + (si as u32) * 64 + ri as u32;
                routes.add(mark, s.vip, r.address, &s.interface)?;
                spec.fwmark = Some(mark);
                addr = s.vip;
            }
            targets.push(sluice_health::Target {
                id: format!("{}/{}", s.name, r.address),
                addr,
                port: r.port.unwrap_or(port),
                spec,
            });
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let n = targets.len();
    let (handle, mut events) =
        sluice_health::Checker::start(targets).context("starting health checks")?;
    eprintln!("sluice: {n} L4 health check(s) running");
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "health events lagged");
                    continue;
                }
                Err(_) => return,
            };
            let Some((svc, real)) = ev.id.split_once('/') else {
                continue;
            };
            // The id names the real (a via_vip check probes the VIP).
            let Ok(real) = real.parse::<IpAddr>() else {
                continue;
            };
            let up = ev.to == sluice_core::health::Health::Up;
            eprintln!(
                "sluice: health {} {} -> {:?}{}{}",
                ev.id,
                format!("{:?}", ev.from).to_lowercase(),
                ev.to,
                ev.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                ev.latency
                    .map(|l| format!(" latency {l:?}"))
                    .unwrap_or_default(),
            );
            let p = plane.clone();
            let svc = svc.to_owned();
            let addr = real;
            let res = tokio::task::spawn_blocking(move || {
                let mut g = p
                    .lock()
                    .map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?;
                g.set_health(&svc, addr, up).map_err(anyhow::Error::from)
            })
            .await;
            match res {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "applying a health transition"),
                Err(e) => tracing::warn!(error = %e, "health task"),
            }
        }
    });
    Ok(Some((handle, routes)))
}

/// First routing mark (and policy table) used by `via_vip` checks; one per
/// (service, real) above it.
const VIA_VIP_MARK_BASE: u32 = 0x5100_0000;

/// Policy routes of `via_vip` checks: `ip rule fwmark M lookup M` and, in
/// table M, the VIP via the real. Removed again on drop.
#[derive(Debug, Default)]
struct ViaVipRoutes {
    marks: Vec<(u32, bool)>,
}

fn ip_cmd(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl ViaVipRoutes {
    fn add(&mut self, mark: u32, vip: IpAddr, real: IpAddr, iface: &str) -> anyhow::Result<()> {
        let fam = if vip.is_ipv4() { "-4" } else { "-6" };
        let m = mark.to_string();
        let dst = match vip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        // A rule left by a crashed daemon would otherwise be doubled.
        let _ = ip_cmd(&[fam, "rule", "del", "fwmark", &m, "lookup", &m]);
        ip_cmd(&[fam, "rule", "add", "fwmark", &m, "lookup", &m])?;
        self.marks.push((mark, vip.is_ipv4()));
        let real = real.to_string();
        ip_cmd(&[
            fam, "route", "replace", &dst, "via", &real, "dev", iface, "table", &m,
        ])
        .with_context(|| format!("via_vip route for real {real}"))
    }
}

impl Drop for ViaVipRoutes {
    fn drop(&mut self) {
        for (mark, v4) in &self.marks {
            let fam = if *v4 { "-4" } else { "-6" };
            let m = mark.to_string();
            let _ = ip_cmd(&[fam, "rule", "del", "fwmark", &m, "lookup", &m]);
            let _ = ip_cmd(&[fam, "route", "flush", "table", &m]);
        }
    }
}

/// One check per (backend with a health check, server); transitions mark
/// the server up or down in the proxy's pool.
fn start_l7_health(
    cfg: &Config,
    proxy: Arc<sluice_proxy::ProxyHandle>,
) -> anyhow::Result<Option<sluice_health::CheckerHandle>> {
    let mut targets = Vec::new();
    for b in &cfg.backends {
        let Some(check) = b.health_check.as_deref().and_then(|n| cfg.health_check(n)) else {
            continue;
        };
        let spec = super::health_map::check_spec(check);
        for s in b.servers.iter().filter(|s| !s.disabled) {
            targets.push(sluice_health::Target {
                id: format!("{}/{}", b.name, s.name),
                addr: s.address.ip(),
                port: s.address.port(),
                spec: spec.clone(),
            });
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let n = targets.len();
    let (handle, mut events) =
        sluice_health::Checker::start(targets).context("starting L7 health checks")?;
    eprintln!("sluice: {n} L7 health check(s) running");
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            };
            let Some((backend, server)) = ev.id.split_once('/') else {
                continue;
            };
            let up = ev.to == sluice_core::health::Health::Up;
            eprintln!(
                "sluice: health {} -> {:?}{}",
                ev.id,
                ev.to,
                ev.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            );
            if let Err(e) = proxy.set_server_state(backend, server, up) {
                tracing::warn!(error = %e, "applying a health transition to the proxy");
            }
        }
    });
    Ok(Some(handle))
}

/// Converts the config's L4 services into control-plane specs.
pub(crate) fn l4_specs(cfg: &Config) -> anyhow::Result<Vec<ServiceSpec>> {
    cfg.l4_services
        .iter()
        .map(|s| {
            let method = match s.method {
                model::ForwardingMethod::Dr => Method::Dr,
                model::ForwardingMethod::Tun => Method::Tun,
                other => bail!(
                    "l4_service {:?}: method {other:?} is not in the XDP data plane yet (dr and tun are)",
                    s.name
                ),
            };
            let scheduler = match s.scheduler {
                model::Scheduler::Rr => Scheduler::Rr,
                model::Scheduler::Wrr => Scheduler::Wrr,
                model::Scheduler::Lc => Scheduler::Lc,
                model::Scheduler::Wlc => Scheduler::Wlc,
                model::Scheduler::Sed => Scheduler::Sed,
                model::Scheduler::Nq => Scheduler::Nq,
                model::Scheduler::Sh => Scheduler::Sh,
                model::Scheduler::Dh => Scheduler::Dh,
                model::Scheduler::Mh => Scheduler::Mh,
            };
            Ok(ServiceSpec {
                name: s.name.clone(),
                vip: s.vip,
                port: s.port,
                proto: match s.protocol {
                    model::Protocol::Tcp => 6,
                    model::Protocol::Udp => 17,
                },
                method,
                scheduler,
                persistence: s.persistence,
                table_size: s.maglev_table_size,
                tun_source: s.tun_source,
                tun_vary_source: s.tun_vary_source,
                on_real_down: match s.on_real_down {
                    model::OnRealDown::Keep => sluice_l4::OnRealDown::Keep,
                    model::OnRealDown::Expire => sluice_l4::OnRealDown::Expire,
                },
                fail_open: s.fail_open,
                initially_up: s
                    .health_check
                    .as_deref()
                    .and_then(|n| cfg.health_check(n))
                    .is_none_or(|c| c.initial_state == model::InitialState::Up),
                reals: s
                    .reals
                    .iter()
                    .map(|r| RealSpec {
                        addr: r.address,
                        weight: u32::from(r.weight),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// Removes an XDP program named `sluice_xdp` left attached through netlink
/// (e.g. by a crashed older daemon); link-based attachments vanish with
/// their process by themselves. Another program is never touched.
fn remove_stale_program(iface: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "interface {iface:?} not found in this network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains(sluice_l4::PROGRAM_NAME) {
        eprintln!(
            "sluice: removing a stale {} from {iface}",
            sluice_l4::PROGRAM_NAME
        );
        for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
            let _ = std::process::Command::new("ip")
                .args(["link", "set", "dev", iface, mode, "off"])
                .status();
        }
    }
    Ok(())
}

fn start_l4(cfg: &Config) -> anyhow::Result<L4Plane<KernelNeighbours>> {
    let first = &cfg.l4_services[0];
    let iface = first.interface.clone();
    if let Some(other) = cfg.l4_services.iter().find(|s| s.interface != iface) {
        bail!(
            "l4_service {:?} uses interface {:?} but {:?} uses {:?}: one interface per daemon for now",
            other.name,
            other.interface,
            first.name,
            iface
        );
    }
    let specs = l4_specs(cfg)?;
    remove_stale_program(&iface)?;
    let mac = sluice_l4::neigh::iface_mac(&iface)
        .with_context(|| format!("reading the MAC of interface {iface:?}"))?;
    let ring_size = cfg
        .l4_services
        .iter()
        .map(|s| s.maglev_table_size)
        .max()
        .unwrap_or(sluice_l4::wire_maps::MAX_RING_SIZE);
    let session_capacity = cfg
        .l4_services
        .iter()
        .map(|s| s.session_capacity)
        .max()
        .unwrap_or(sluice_l4::wire_maps::DEFAULT_SESSION_CAPACITY);
    let mut dp = Dataplane::load(
        DataplaneParams {
            ring_size,
            session_capacity,
            ..Default::default()
        },
        mac,
    )
    .context("loading the XDP program (needs root: CAP_BPF and CAP_NET_ADMIN)")?;
    let mode = match first.xdp_mode {
        model::XdpMode::Native => AttachMode::Native,
        model::XdpMode::Generic => AttachMode::Generic,
    };
    dp.attach(&iface, mode)?;
    let mut plane = L4Plane::new(dp, KernelNeighbours { wait: true });
    plane.apply(specs)?;
    eprintln!(
        "sluice: XDP data plane attached to {iface} ({mode:?}), {} L4 service(s)",
        cfg.l4_services.len()
    );
    Ok(plane)
}

// === admin endpoint ===

type Checks = Option<Arc<sluice_health::CheckerHandle>>;

type Proxy = Option<Arc<sluice_proxy::ProxyHandle>>;

/// What the admin endpoint reads and changes; cheap to clone (handles).
#[derive(Clone)]
struct AdminState {
    plane: Option<Plane>,
    /// Checks of L4 reals (operator state changes go to these too).
    l4_checks: Checks,
    /// Checks of proxy servers.
    l7_checks: Checks,
    proxy: Proxy,
}

impl AdminState {
    /// Every health-check target, L4 reals first, then proxy servers.
    fn check_targets(&self) -> Vec<sluice_health::TargetStatus> {
        [&self.l4_checks, &self.l7_checks]
            .into_iter()
            .flatten()
            .flat_map(|c| c.snapshot())
            .collect()
    }
}

async fn admin_loop(listener: tokio::net::TcpListener, state: AdminState) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await.context("admin accept")?;
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(admin(req, state).await) }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await
            {
                tracing::debug!(error = %e, "admin connection");
            }
        });
    }
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": msg.to_string() }))
}

fn control_status(e: &ControlError) -> StatusCode {
    match e {
        ControlError::NoService(_) | ControlError::NoReal { .. } => StatusCode::NOT_FOUND,
        ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
        ControlError::Dataplane(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn admin(req: Request<hyper::body::Incoming>, state: AdminState) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect();
    let body = match http_body_util::Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => return error(StatusCode::PAYLOAD_TOO_LARGE, format!("request body: {e}")),
    };
    if path == ["v1", "health"] {
        return json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
    }
    if path == ["v1", "l7"] && method == HttpMethod::GET {
        return match &state.proxy {
            Some(p) => json(
                StatusCode::OK,
                &serde_json::to_value(p.stats()).unwrap_or_default(),
            ),
            None => error(StatusCode::NOT_FOUND, "no frontends configured"),
        };
    }
    if path == ["metrics"] && method == HttpMethod::GET {
        return metrics(state).await;
    }
    if path == ["v1", "checks"] && method == HttpMethod::GET {
        let list: Vec<serde_json::Value> = state.check_targets().iter().map(check_json).collect();
        return json(StatusCode::OK, &serde_json::Value::Array(list));
    }
    let Some(plane) = state.plane else {
        return error(StatusCode::NOT_FOUND, "no L4 services configured");
    };
    let checks = state.l4_checks;
    let result = on_plane(plane, move |g| {
        admin_l4(g, checks.as_deref(), &method, &path, &body)
    })
    .await;
    match result {
        Ok((s, v)) => json(s, &v),
        Err((s, m)) => error(s, m),
    }
}

/// Runs `f` on the locked control plane in the blocking pool (map reads and
/// writes are system calls); a poisoned lock or a failed task is a 500.
async fn on_plane<T: Send + 'static>(
    plane: Plane,
    f: impl FnOnce(&mut L4Plane<KernelNeighbours>) -> Result<T, (StatusCode, String)> + Send + 'static,
) -> Result<T, (StatusCode, String)> {
    let internal = |m: String| (StatusCode::INTERNAL_SERVER_ERROR, m);
    tokio::task::spawn_blocking(move || {
        let mut g = plane
            .lock()
            .map_err(|_| internal("control plane lock poisoned".to_owned()))?;
        f(&mut g)
    })
    .await
    .map_err(|e| internal(e.to_string()))?
}

/// `GET /metrics`: everything the other read endpoints show, in
/// Prometheus' text format. A failed read of the BPF maps fails the whole
/// scrape (500) rather than leaving the L4 families out unnoticed.
async fn metrics(state: AdminState) -> Response<Full<Bytes>> {
    let mut f = super::metrics::Families::default();
    if let Some(p) = &state.proxy {
        super::metrics::proxy(&mut f, &p.stats());
    }
    super::metrics::checks(&mut f, &state.check_targets());
    if let Some(plane) = state.plane {
        let read = on_plane(plane, |g| {
            let failed = |e: String| {
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading the L4 maps: {e}"),
                )
            };
            let services = g.list().map_err(|e| failed(e.to_string()))?;
            let counters = g
                .dataplane()
                .counters()
                .map_err(|e| failed(e.to_string()))?;
            Ok((counters, services))
        })
        .await;
        match read {
            Ok((counters, services)) => super::metrics::l4(&mut f, &counters, &services),
            Err((s, m)) => return error(s, m),
        }
    }
    let mut r = Response::new(Full::new(Bytes::from(f.render())));
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(super::metrics::CONTENT_TYPE),
    );
    r
}

type AdminResult = Result<(StatusCode, serde_json::Value), (StatusCode, String)>;

fn parse_addr(s: &str) -> Result<IpAddr, (StatusCode, String)> {
    s.parse().map_err(|_| {
        (
            StatusCode::BAD_REQUEST,
            format!("{s:?} is not an IP address"),
        )
    })
}

fn body_json(body: &[u8]) -> Result<serde_json::Value, (StatusCode, String)> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("request body is not JSON: {e}; expected e.g. {{\"address\": \"10.0.0.1\", \"weight\": 1}}"),
        )
    })
}

fn weight_of(v: &serde_json::Value, default: Option<u32>) -> Result<u32, (StatusCode, String)> {
    match v.get("weight") {
        None => default.ok_or((
            StatusCode::BAD_REQUEST,
            "missing \"weight\", expected 0..=65535".to_owned(),
        )),
        Some(w) => w
            .as_u64()
            .filter(|w| *w <= u64::from(u16::MAX))
            .map(|w| w as u32)
            .ok_or((
                StatusCode::BAD_REQUEST,
                format!("weight {w} out of range, expected 0..=65535"),
            )),
    }
}

fn admin_l4(
    g: &mut L4Plane<KernelNeighbours>,
    checks: Option<&sluice_health::CheckerHandle>,
    method: &HttpMethod,
    p: &[String],
    body: &[u8],
) -> AdminResult {
    let ce = |e: ControlError| (control_status(&e), e.to_string());
    let p: Vec<&str> = p.iter().map(String::as_str).collect();
    match (method, p.as_slice()) {
        (&HttpMethod::GET, ["v1", "l4"]) => {
            let list = g.list().map_err(ce)?;
            Ok((StatusCode::OK, serde_json::to_value(list).unwrap_or_default()))
        }
        (&HttpMethod::GET, ["v1", "counters"]) => {
            let c = g.dataplane().counters().map_err(|e| ce(e.into()))?;
            let m: serde_json::Map<String, serde_json::Value> =
                c.into_iter().map(|(k, v)| (k.name().to_owned(), v.into())).collect();
            Ok((StatusCode::OK, serde_json::Value::Object(m)))
        }
        (&HttpMethod::POST, ["v1", "l4", svc, "reals"]) => {
            let v = body_json(body)?;
            let addr = v
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or((StatusCode::BAD_REQUEST, "missing \"address\" (an IP address)".to_owned()))?;
            let addr = parse_addr(addr)?;
            let weight = weight_of(&v, Some(1))?;
            g.add_real(svc, RealSpec { addr, weight }).map_err(ce)?;
            Ok((StatusCode::CREATED, serde_json::json!({"added": addr.to_string()})))
        }
        (&HttpMethod::DELETE, ["v1", "l4", svc, "reals", addr]) => {
            let addr = parse_addr(addr)?;
            g.remove_real(svc, addr).map_err(ce)?;
            Ok((StatusCode::OK, serde_json::json!({"removed": addr.to_string()})))
        }
        (&HttpMethod::PUT, ["v1", "l4", svc, "reals", addr]) => {
            let addr = parse_addr(addr)?;
            let v = body_json(body)?;
            if let Some(state) = v.get("state") {
                let op: sluice_l4::Operator = state
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e: String| (StatusCode::BAD_REQUEST, e))?;
                g.set_operator(svc, addr, op).map_err(ce)?;
                if let Some(c) = checks {
                    let st = match op {
                        sluice_l4::Operator::Enabled => sluice_core::health::OperatorState::Enabled,
                        sluice_l4::Operator::Drain => sluice_core::health::OperatorState::Drain,
                        sluice_l4::Operator::Maintenance => sluice_core::health::OperatorState::Maintenance,
                    };
                    // A real without a health check has no checker entry.
                    let _ = c.set_operator_state(&format!("{svc}/{addr}"), st);
                }
                return Ok((StatusCode::OK, serde_json::json!({"address": addr.to_string(), "state": op})));
            }
            let weight = weight_of(&v, None)?;
            g.set_weight(svc, addr, weight).map_err(ce)?;
            Ok((StatusCode::OK, serde_json::json!({"address": addr.to_string(), "weight": weight})))
        }
        _ => Err((
            StatusCode::NOT_FOUND,
            "unknown endpoint; see docs/ADMIN.md (GET /v1/l4, GET /v1/counters, POST /v1/l4/SVC/reals, PUT|DELETE /v1/l4/SVC/reals/ADDR)".to_owned(),
        )),
    }
}

/// One health-check target as JSON for `sluice ctl checks`.
fn check_json(t: &sluice_health::TargetStatus) -> serde_json::Value {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    serde_json::json!({
        "id": t.id,
        "check": t.check,
        "health": format!("{:?}", t.health).to_lowercase(),
        "operator": format!("{:?}", t.operator).to_lowercase(),
        "effective": format!("{:?}", t.effective).to_lowercase(),
        "last_ok": t.last.as_ref().map(|l| l.reason.is_none()),
        "last_reason": t.last.as_ref().and_then(|l| l.reason.clone()),
        "last_latency_ms": t.last_latency.map(ms),
        "last_change_s_ago": t.last_change.zip(t.last.as_ref()).map(|(c, l)| (l.at.saturating_sub(c)).as_secs_f64()),
        "successes": t.consecutive_successes,
        "failures": t.consecutive_failures,
        "checks": t.checks_total,
        "failed": t.failures_total,
        "transitions": t.transitions_total,
    })
}

/// The default admin address when none is given to `sluice ctl`.
pub(crate) fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9900))
}
