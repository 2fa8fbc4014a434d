//! `sluice run`'s GSLB wiring: the authoritative DNS server, and the
//! health of its sites from one of three sources (docs/GSLB.md):
//!
//! - `health_check = NAME`: sluice-health probes each site address (one
//!   target `gslb/SITE/ADDRESS` each); transitions flip that address;
//! - `l4_service` / `backend`: the site is this node; it is up while one
//!   of the service's reals (servers) is serving, read from the L4 / L7
//!   checkers every [`LOCAL_HEALTH_POLL`] (a service without checks is up);
//! - neither: always up.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sluice_config::{Config, SiteHealthSource};
use sluice_core::health::Health;
use sluice_core::service::{Effective, OnRealDown};
use sluice_gslb::{Family, SiteHealth, Zone};
use sluice_health::CheckerHandle;

use crate::cmd::gslb_map::GslbPlan;

/// How often a site whose health is a local service's is re-read.
pub(crate) const LOCAL_HEALTH_POLL: Duration = Duration::from_millis(500);

/// The running GSLB server and what feeds its sites' health.
#[derive(Debug)]
pub(crate) struct Gslb {
    server: sluice_gslb::Server,
    /// Site checks; kept so they run.
    _checks: Option<CheckerHandle>,
    /// Each site's health source, for `ctl gslb`.
    sources: Vec<String>,
}

type Checks = Option<Arc<CheckerHandle>>;

/// Starts the site checks, the local-service poller and the server.
pub(crate) async fn start(
    cfg: &Config,
    plan: &GslbPlan,
    l4_checks: Checks,
    l7_checks: Checks,
) -> anyhow::Result<Gslb> {
    let Some(g) = &cfg.gslb else {
        anyhow::bail!("no [gslb] section");
    };
    let health = Arc::new(SiteHealth::new(&plan.zone));
    // Checks of site addresses.
    let mut targets = Vec::new();
    let mut ids: HashMap<String, (usize, usize)> = HashMap::new();
    let mut local: Vec<(usize, SiteHealthSource)> = Vec::new();
    let mut sources = Vec::new();
    for (si, s) in g.sites.iter().enumerate() {
        match &s.health {
            SiteHealthSource::Check(name) => {
                sources.push(format!("health_check {name}"));
                let Some(check) = cfg.health_check(name) else {
                    continue;
                };
                let spec = crate::cmd::health_map::check_spec(check);
                for (ai, a) in s.addresses.iter().enumerate() {
                    let id = format!("gslb/{}/{a}", s.name);
                    ids.insert(id.clone(), (si, ai));
                    targets.push(sluice_health::Target {
                        id,
                        addr: *a,
                        port: s.port,
                        spec: spec.clone(),
                        on_down: OnRealDown::Keep,
                    });
                }
            }
            SiteHealthSource::L4Service(n) => {
                sources.push(format!("l4_service {n}"));
                local.push((si, s.health.clone()));
            }
            SiteHealthSource::Backend(n) => {
                sources.push(format!("backend {n}"));
                local.push((si, s.health.clone()));
            }
            SiteHealthSource::Static => sources.push("static".into()),
        }
    }
    let checks = if targets.is_empty() {
        None
    } else {
        let n = targets.len();
        let (handle, events) =
            sluice_health::Checker::start(targets).context("starting GSLB site checks")?;
        for t in handle.snapshot() {
            if let Some(&(s, a)) = ids.get(&t.id) {
                health.set(s, a, t.health == Health::Up);
            }
        }
        eprintln!("sluice: {n} GSLB site check(s) running");
        tokio::spawn(follow_checks(events, ids, health.clone()));
        Some(handle)
    };
    if !local.is_empty() {
        apply_local(&local, &health, l4_checks.as_deref(), l7_checks.as_deref());
        let health = health.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOCAL_HEALTH_POLL);
            loop {
                tick.tick().await;
                apply_local(&local, &health, l4_checks.as_deref(), l7_checks.as_deref());
            }
        });
    }
    let zone = Zone::new(plan.zone.clone()).context("building the GSLB zone")?;
    let server = sluice_gslb::Server::start(zone, health, &plan.server)
        .await
        .context("starting the GSLB DNS server")?;
    for a in server.local_addrs() {
        eprintln!(
            "sluice: GSLB zone {} served on {a} (UDP and TCP)",
            plan.zone.apex
        );
    }
    Ok(Gslb {
        server,
        _checks: checks,
        sources,
    })
}

async fn follow_checks(
    mut events: tokio::sync::broadcast::Receiver<sluice_health::HealthEvent>,
    ids: HashMap<String, (usize, usize)>,
    health: Arc<SiteHealth>,
) {
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(lost = n, "GSLB health events lagged");
                continue;
            }
            Err(_) => return,
        };
        if let Some(&(s, a)) = ids.get(&ev.id) {
            let up = ev.to == Health::Up;
            eprintln!("sluice: gslb health {} -> {:?}", ev.id, ev.to);
            health.set(s, a, up);
        }
    }
}

/// Sets each local-service site from its service's checks: up while one
/// target is serving, or when the service has no checks.
fn apply_local(
    local: &[(usize, SiteHealthSource)],
    health: &SiteHealth,
    l4: Option<&CheckerHandle>,
    l7: Option<&CheckerHandle>,
) {
    let l4 = l4.map(CheckerHandle::snapshot).unwrap_or_default();
    let l7 = l7.map(CheckerHandle::snapshot).unwrap_or_default();
    for (site, src) in local {
        let (targets, name) = match src {
            SiteHealthSource::L4Service(n) => (&l4, n),
            SiteHealthSource::Backend(n) => (&l7, n),
            _ => continue,
        };
        let prefix = format!("{name}/");
        let mut any = false;
        let mut serving = false;
        for t in targets.iter().filter(|t| t.id.starts_with(&prefix)) {
            any = true;
            serving |= t.effective == Effective::Serving;
        }
        health.set_site(*site, serving || !any);
    }
}

impl Gslb {
    /// The server's counters.
    pub(crate) fn stats(&self) -> &sluice_gslb::Stats {
        self.server.stats()
    }

    /// The zone served.
    pub(crate) fn zone(&self) -> &Zone {
        self.server.zone()
    }

    /// `GET /v1/gslb`: sites with their health, names with their policy
    /// and the addresses `client` would get now (A and AAAA).
    pub(crate) fn view(&self, client: IpAddr) -> serde_json::Value {
        use sluice_gslb::HealthView as _;
        let zone = self.server.zone();
        let spec = zone.spec();
        let health = self.server.health();
        let sites: Vec<serde_json::Value> = spec
            .sites
            .iter()
            .enumerate()
            .map(|(si, s)| {
                serde_json::json!({
                    "name": s.name,
                    "health_source": self.sources.get(si).cloned().unwrap_or_default(),
                    "addresses": s.addresses.iter().enumerate().map(|(ai, a)| serde_json::json!({
                        "address": a.to_string(),
                        "up": health.is_up(si, ai),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let names: Vec<serde_json::Value> = spec
            .names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let fqdn = zone.fqdn(i).map(ToString::to_string).unwrap_or_default();
                let mut v = serde_json::json!({ "name": fqdn, "ttl": n.ttl });
                match &n.answer {
                    sluice_gslb::AnswerSpec::Cname(t) => {
                        v["cname"] = serde_json::json!(t);
                    }
                    sluice_gslb::AnswerSpec::Sites(p) => {
                        v["policy"] = serde_json::json!(format!("{:?}", p.kind).to_lowercase());
                        v["sites"] = serde_json::json!(
                            p.sites
                                .iter()
                                .filter_map(|&s| spec.sites.get(s).map(|s| s.name.clone()))
                                .collect::<Vec<_>>()
                        );
                        for (key, fam) in [("a", Family::V4), ("aaaa", Family::V6)] {
                            if let Some(c) = zone.choose(i, health, fam, client, 0) {
                                v[key] = serde_json::json!(
                                    c.addresses
                                        .iter()
                                        .map(|(s, a)| serde_json::json!({
                                            "site": spec.sites.get(*s).map(|s| s.name.clone()),
                                            "address": a.to_string(),
                                        }))
                                        .collect::<Vec<_>>()
                                );
                                if c.fail_open {
                                    v[format!("{key}_fail_open")] = serde_json::json!(true);
                                }
                            }
                        }
                    }
                }
                v
            })
            .collect();
        serde_json::json!({
            "zone": spec.apex,
            "listen": self.server.local_addrs().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "client": client.to_string(),
            "sites": sites,
            "names": names,
        })
    }
}
