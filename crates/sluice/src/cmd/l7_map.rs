//! Maps the configuration's `[[frontend]]` / `[[backend]]` onto
//! sluice-proxy's own config types (the balance keyword by name onto
//! sluice-core's algorithm), and checks the files they name as the proxy
//! loads them.

use sluice_config::{self as model, Config};
use sluice_core::sched::l7::L7Algorithm;
use sluice_proxy::{
    BackendConfig, FrontendConfig, Mode, ProxyConfig, SendProxy, ServerConfig, Splice,
    TlsCertConfig, TlsConfig,
};

use super::l4_map::by_name;
use super::plan::Problem;

/// The proxy's config, or `None` when no frontend is configured.
pub(crate) fn proxy_config(cfg: &Config) -> Option<ProxyConfig> {
    if cfg.frontends.is_empty() {
        return None;
    }
    let mode = |m: model::Mode| match m {
        model::Mode::Http => Mode::Http,
        model::Mode::Tcp => Mode::Tcp,
    };
    let frontends = cfg
        .frontends
        .iter()
        .filter_map(|f| {
            let first = *f.bind.first()?;
            let mut fe = FrontendConfig::new(f.name.clone(), first, f.default_backend.clone());
            fe.bind = f.bind.clone();
            fe.mode = mode(f.mode);
            fe.maxconn = f.maxconn as usize;
            fe.rate_limit_sessions = f.rate_limit_sessions.unwrap_or(0);
            fe.accept_proxy = f.accept_proxy;
            fe.forwardfor = f.forwardfor;
            fe.max_header_size = f.max_header_size as usize;
            fe.timeout_client = f.timeout_client;
            fe.timeout_http_request = f.timeout_http_request;
            fe.timeout_http_keep_alive = f.timeout_http_keep_alive;
            fe.h1_fast_path = f.h1_fast_path;
            fe.splice = match f.splice {
                model::Splice::Auto => Splice::Auto,
                model::Splice::Always => Splice::Always,
                model::Splice::Never => Splice::Never,
            };
            fe.tls = (!f.tls.is_empty()).then(|| TlsConfig {
                certs: f
                    .tls
                    .iter()
                    .map(|t| TlsCertConfig {
                        cert_pem: t.cert.clone().into(),
                        key_pem: t.key.clone().into(),
                        sni_names: t.sni.clone(),
                    })
                    .collect(),
            });
            Some(fe)
        })
        .collect();
    let backends = cfg
        .backends
        .iter()
        .map(|b| {
            let servers = b
                .servers
                .iter()
                .filter(|s| !s.disabled)
                .map(|s| {
                    let mut sc = ServerConfig::new(s.name.clone(), s.address);
                    sc.weight = u32::from(s.weight);
                    sc.maxconn = s.maxconn.unwrap_or(0) as usize;
                    sc.backup = s.backup;
                    sc.sni = s.sni.clone();
                    sc
                })
                .collect();
            let mut be = BackendConfig::new(b.name.clone(), servers);
            // The config crate's keywords and core's names agree (tested).
            be.balance = by_name::<L7Algorithm, _>(b.balance).unwrap_or(L7Algorithm::RoundRobin);
            be.retries = b.retries;
            be.redispatch = b.redispatch;
            be.timeout_connect = b.timeout_connect;
            be.timeout_server = b.timeout_server;
            be.timeout_queue = b.timeout_queue;
            be.timeout_tunnel = b.timeout_tunnel;
            be.send_proxy = match b.send_proxy {
                model::SendProxy::None => SendProxy::None,
                model::SendProxy::V1 => SendProxy::V1,
                model::SendProxy::V2 => SendProxy::V2,
            };
            be.pool_max_idle_per_server = b.pool_idle as usize;
            be.tls = b.tls;
            be.tls_verify = b.tls_verify;
            be.tls_ca = b.tls_ca.clone().map(Into::into);
            be
        })
        .collect();
    let mut pc = ProxyConfig::new(frontends, backends);
    pc.shutdown_grace = cfg.global.hard_stop_after;
    Some(pc)
}

/// The TLS files of frontends and backends, loaded as the proxy loads them
/// at start-up: unreadable, empty or mismatched ones are problems at their
/// keys.
pub(crate) fn check_files(cfg: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    for (i, f) in cfg.frontends.iter().enumerate() {
        for (j, t) in f.tls.iter().enumerate() {
            let c = TlsCertConfig {
                cert_pem: t.cert.clone().into(),
                key_pem: t.key.clone().into(),
                sni_names: t.sni.clone(),
            };
            if let Err(e) = sluice_proxy::check_certificate(&c) {
                out.push(Problem::new(
                    format!("frontend[{i}].tls[{j}].cert"),
                    format!("{e}, expected a readable PEM certificate chain and its private key"),
                ));
            }
        }
    }
    let Some(pc) = proxy_config(cfg) else {
        return out;
    };
    for (i, b) in pc.backends.iter().enumerate() {
        if b.tls
            && let Err(e) = sluice_proxy::check_backend_tls(b)
        {
            let key = if b.tls_ca.is_some() {
                "tls_ca"
            } else {
                "tls_verify"
            };
            out.push(Problem::new(format!("backend[{i}].{key}"), e));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice_config::Keyword as _;

    #[test]
    fn every_balance_keyword_names_a_core_algorithm() {
        for (kw, k) in model::Balance::ALL {
            let a: L7Algorithm = by_name(*k).unwrap();
            assert_eq!(a.name(), *kw);
        }
    }
}
