//! The admin endpoint of `sluice run` (what `sluice ctl` talks to):
//! read the planes' state, change reals and weights, render `/metrics`.
//! Bad requests get a 4xx with the reason and change nothing.

use std::{net::IpAddr, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method as HttpMethod, Request, Response, StatusCode, body::Bytes};
use sluice_core::service::{OperatorState, UnknownName};
use sluice_l4::{ControlError, L4Plane, RealSpec, neigh::KernelNeighbours};

use super::run::Plane;

/// Largest admin request body accepted (bytes).
const MAX_ADMIN_BODY: usize = 64 * 1024;

type Checks = Option<Arc<sluice_health::CheckerHandle>>;

type Proxy = Option<Arc<sluice_proxy::ProxyHandle>>;

/// What the admin endpoint reads and changes; cheap to clone (handles).
#[derive(Clone)]
pub(crate) struct AdminState {
    pub(crate) plane: Option<Plane>,
    /// Checks of L4 reals (operator state changes go to these too).
    pub(crate) l4_checks: Checks,
    /// Checks of proxy servers.
    pub(crate) l7_checks: Checks,
    pub(crate) proxy: Proxy,
    /// The VRRP instances, if any.
    pub(crate) ha: Option<Arc<super::run::Ha>>,
    /// Connection sync's counts, when `[sync]` runs.
    pub(crate) sync: Option<Arc<sluice_ha::sync::SyncCounters>>,
    /// Reloads the configuration file.
    pub(crate) reloader: Arc<super::run::Reloader>,
    /// The GSLB DNS server, if `[gslb]` is configured.
    pub(crate) gslb: Option<Arc<super::run::Gslb>>,
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

pub(crate) async fn admin_loop(
    listener: tokio::net::TcpListener,
    state: AdminState,
) -> anyhow::Result<()> {
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
    let query = req.uri().query().unwrap_or_default().to_owned();
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
    if path == ["v1", "vrrp"] && method == HttpMethod::GET {
        return match &state.ha {
            Some(h) => json(
                StatusCode::OK,
                &serde_json::Value::Array(h.statuses().iter().map(vrrp_json).collect()),
            ),
            None => error(StatusCode::NOT_FOUND, "no vrrp_instance configured"),
        };
    }
    if path == ["v1", "reload"] && method == HttpMethod::POST {
        let r = state.reloader.clone();
        return match tokio::task::spawn_blocking(move || r.reload()).await {
            Ok(Ok(g)) => json(StatusCode::OK, &serde_json::json!({ "generation": g })),
            Ok(Err(super::run::Refused::Invalid(d))) => error(
                StatusCode::BAD_REQUEST,
                format!("invalid configuration, nothing changed:\n{d}"),
            ),
            Ok(Err(super::run::Refused::NeedsRestart(what))) => error(
                StatusCode::CONFLICT,
                format!(
                    "nothing changed: reload cannot apply changes to {}; restart to apply them",
                    what.join(", ")
                ),
            ),
            Ok(Err(super::run::Refused::Failed(e))) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reload failed, nothing changed: {e}"),
            ),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
    }
    if path == ["v1", "config"] && method == HttpMethod::GET {
        let g = state.reloader.generation();
        let at =
            g.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
        return json(
            StatusCode::OK,
            &serde_json::json!({
                "generation": g.generation,
                "loaded_at_unix": at,
                "path": g.path.display().to_string(),
            }),
        );
    }
    if path == ["v1", "sync"] && method == HttpMethod::GET {
        return match &state.sync {
            Some(c) => json(
                StatusCode::OK,
                &serde_json::Value::Object(
                    c.snapshot()
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v.into()))
                        .collect(),
                ),
            ),
            None => error(StatusCode::NOT_FOUND, "connection sync is not enabled"),
        };
    }
    if path == ["v1", "gslb"] && method == HttpMethod::GET {
        return gslb(&state, &query);
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

/// `GET /v1/gslb[?client=ADDR]`: the zone's sites and names, with the
/// answer `client` would get (default 127.0.0.1).
fn gslb(state: &AdminState, query: &str) -> Response<Full<Bytes>> {
    let Some(g) = &state.gslb else {
        return error(StatusCode::NOT_FOUND, "no [gslb] configured");
    };
    let mut client = IpAddr::from([127, 0, 0, 1]);
    for kv in query.split('&') {
        if let Some(v) = kv.strip_prefix("client=") {
            match v.parse() {
                Ok(a) => client = a,
                Err(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("client={v:?} is not an IP address"),
                    );
                }
            }
        }
    }
    json(StatusCode::OK, &g.view(client))
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
    if let Some(h) = &state.ha {
        super::metrics::vrrp(&mut f, &h.statuses());
    }
    if let Some(c) = &state.sync {
        super::metrics::sync(&mut f, &c.snapshot());
    }
    if let Some(g) = &state.gslb {
        super::metrics::gslb(&mut f, g.stats(), &g.zone().spec().sites);
    }
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

/// One VRRP instance, as `GET /v1/vrrp` lists it.
fn vrrp_json(s: &sluice_ha::InstanceStatus) -> serde_json::Value {
    let since = s
        .since
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let invalid: serde_json::Map<String, serde_json::Value> = sluice_wire::vrrp::Invalid::ALL
        .iter()
        .map(|r| (r.as_str().to_owned(), s.invalid[r.index()].into()))
        .collect();
    serde_json::json!({
        "name": s.spec.name,
        "interface": s.spec.interface,
        "virtual_router_id": s.spec.vrid,
        "priority": s.spec.priority,
        "advert_interval_ms": s.spec.advert_interval.as_millis() as u64,
        "virtual_addresses": s.spec.virtual_addresses.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "own_address": s.own_address.map(|a| a.to_string()),
        "state": s.state.as_str(),
        "since_unix": since,
        "transitions": s.transitions,
        "master": s.master.map(|a| a.to_string()),
        "adverts_sent": s.adverts_sent,
        "adverts_received": s.adverts_received,
        "adverts_invalid": invalid,
        "io_errors": s.io_errors,
        "silent_takeovers": s.silent_takeovers,
        "faults": s.faults,
    })
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

/// A real's optional `"port"` (`nat` port translation; 0 or absent = the
/// packet's own port). Whether the service's method may rewrite ports is
/// the L4 plane's rule (`validate_spec`), which refuses the add.
fn port_of(v: &serde_json::Value) -> Result<u16, (StatusCode, String)> {
    match v.get("port") {
        None => Ok(0),
        Some(p) => p.as_u64().and_then(|p| u16::try_from(p).ok()).ok_or((
            StatusCode::BAD_REQUEST,
            format!("port {p} out of range, expected 1..=65535"),
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
            let port = port_of(&v)?;
            g.add_real(svc, RealSpec { addr, weight, port })
                .map_err(ce)?;
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
                let op: OperatorState = state
                    .as_str()
                    .unwrap_or("")
                    .parse()
                    .map_err(|e: UnknownName| (StatusCode::BAD_REQUEST, e.to_string()))?;
                g.set_operator(svc, addr, op).map_err(ce)?;
                if let Some(c) = checks {
                    // A real without a health check has no checker entry.
                    let _ = c.set_operator_state(&format!("{svc}/{addr}"), op);
                }
                return Ok((StatusCode::OK, serde_json::json!({"address": addr.to_string(), "state": op.as_str()})));
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
        "operator": t.operator.as_str(),
        "effective": t.effective.as_str(),
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
