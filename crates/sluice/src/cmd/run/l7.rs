//! `sluice run`'s L7 wiring: the health checks of the proxy's servers.

use std::sync::Arc;

use anyhow::Context as _;
use sluice_config::Config;
use sluice_core::service::OnRealDown;

/// One check per (backend with a health check, server); transitions mark
/// the server up or down in the proxy's pool.
pub(super) fn start_health(
    cfg: &Config,
    proxy: Arc<sluice_proxy::ProxyHandle>,
) -> anyhow::Result<Option<sluice_health::CheckerHandle>> {
    let mut targets = Vec::new();
    for b in &cfg.backends {
        let Some(check) = b.health_check.as_deref().and_then(|n| cfg.health_check(n)) else {
            continue;
        };
        let spec = crate::cmd::health_map::check_spec(check);
        for s in b.servers.iter().filter(|s| !s.disabled) {
            targets.push(sluice_health::Target {
                id: format!("{}/{}", b.name, s.name),
                addr: s.address.ip(),
                port: s.address.port(),
                spec: spec.clone(),
                // The proxy keeps a down server's open sessions.
                on_down: OnRealDown::Keep,
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
