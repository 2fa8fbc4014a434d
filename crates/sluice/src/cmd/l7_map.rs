//! Maps the configuration's `[[frontend]]` / `[[backend]]` onto
//! sluice-proxy's own config types.

use sluice_config::{self as model, Config};
use sluice_proxy::{
    BackendConfig, Balance, FrontendConfig, Mode, ProxyConfig, SendProxy, ServerConfig, Splice,
    TlsCertConfig, TlsConfig,
};

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
            be.balance = match b.balance {
                model::Balance::RoundRobin => Balance::RoundRobin,
                model::Balance::StaticRr => Balance::StaticRr,
                model::Balance::LeastConn => Balance::LeastConn,
                model::Balance::Source => Balance::Source,
                model::Balance::Uri => Balance::Uri,
                model::Balance::Random => Balance::Random,
                model::Balance::Consistent => Balance::Consistent,
            };
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
    pc.threads = usize::from(cfg.global.threads.unwrap_or(0));
    pc.cpu_map = cfg.global.cpu_map.iter().map(|c| usize::from(*c)).collect();
    pc.shutdown_grace = cfg.global.hard_stop_after;
    Some(pc)
}
