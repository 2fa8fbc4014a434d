//! TLS termination (PEM loading, certificate choice by SNI) and TLS to
//! backend servers.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sluice_tls::NoCertVerification;

use crate::config::{BackendConfig, Mode, ServerConfig, TlsCertConfig, TlsConfig};
use crate::error::ProxyError;

/// Picks the certificate whose SNI names contain the client's server name,
/// or the first configured one.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let chosen = hello
            .server_name()
            .and_then(|n| self.by_name.get(&n.to_ascii_lowercase()))
            .unwrap_or(&self.default);
        Some(chosen.clone())
    }
}

/// Build an acceptor. HTTP frontends offer ALPN `h2` and `http/1.1`; TCP
/// frontends offer no ALPN (the payload is opaque to us).
pub(crate) fn acceptor(
    frontend: &str,
    cfg: &TlsConfig,
    mode: Mode,
) -> Result<Arc<rustls::ServerConfig>, ProxyError> {
    // Named explicitly so that feature unification elsewhere in the
    // workspace (another provider enabled) cannot make the choice ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let err = |what: String| ProxyError::Tls {
        frontend: frontend.to_owned(),
        what,
    };
    let mut by_name = HashMap::new();
    let mut default = None;
    for c in &cfg.certs {
        let ck = Arc::new(certified_key(c, &provider).map_err(err)?);
        for name in &c.sni_names {
            by_name
                .entry(name.to_ascii_lowercase())
                .or_insert_with(|| ck.clone());
        }
        default.get_or_insert(ck);
    }
    let default = default.ok_or_else(|| err("no certificate configured".into()))?;
    let resolver = SniResolver { by_name, default };
    let mut config =
        rustls::ServerConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
    if mode == Mode::Http {
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    }
    Ok(Arc::new(config))
}

/// Load one certificate chain and its key, and check that they match.
fn certified_key(
    c: &TlsCertConfig,
    provider: &Arc<CryptoProvider>,
) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_pem)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| format!("reading {}: {e}", c.cert_pem.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", c.cert_pem.display()));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key_pem)
        .map_err(|e| format!("reading {}: {e}", c.key_pem.display()))?;
    CertifiedKey::from_der(certs, key, provider)
        .map_err(|e| format!("{} / {}: {e}", c.cert_pem.display(), c.key_pem.display()))
}

/// Check a frontend certificate as [`crate::Proxy::start`] loads it: both
/// files readable, a chain in the one, a key in the other, and the key the
/// chain's. `sluice check` runs it so that it refuses what `sluice run`
/// would.
///
/// # Errors
///
/// What is wrong, with the file names.
pub fn check_certificate(c: &TlsCertConfig) -> Result<(), String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    certified_key(c, &provider).map(|_| ())
}

/// Check a backend's TLS client settings (its `tls_ca` file, or a system
/// bundle when it verifies without one) as [`crate::Proxy::start`] loads
/// them.
///
/// # Errors
///
/// What is wrong, with the file name.
pub fn check_backend_tls(cfg: &BackendConfig) -> Result<(), String> {
    client_config(cfg).map(|_| ()).map_err(|e| match e {
        ProxyError::BackendTls { what, .. } => what,
        other => other.to_string(),
    })
}

/// CA bundles tried, in order, when a backend verifies its servers without
/// `tls_ca` (Debian/Ubuntu, RHEL/Fedora, Alpine/macOS-style, SUSE).
pub const SYSTEM_CA_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// Build the TLS client configuration of a backend with `tls = true`:
/// verification against `tls_ca` (or the system bundle) unless `tls_verify`
/// is off. No ALPN is offered: servers then speak HTTP/1.1, which is what the
/// proxy's server side uses.
pub(crate) fn client_config(cfg: &BackendConfig) -> Result<Arc<rustls::ClientConfig>, ProxyError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let err = |what: String| ProxyError::BackendTls {
        backend: cfg.name.clone(),
        what,
    };
    let builder =
        rustls::ClientConfig::builder_with_provider(provider.clone() as Arc<CryptoProvider>)
            .with_safe_default_protocol_versions()
            .map_err(|e| err(e.to_string()))?;
    let config = if cfg.tls_verify {
        let mut roots = RootCertStore::empty();
        match &cfg.tls_ca {
            Some(path) => {
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<Result<_, _>>())
                    .map_err(|e| err(format!("reading {}: {e}", path.display())))?;
                for c in certs {
                    roots
                        .add(c)
                        .map_err(|e| err(format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                for path in SYSTEM_CA_BUNDLES {
                    let Ok(it) = CertificateDer::pem_file_iter(path) else {
                        continue;
                    };
                    // A bundle may hold certificates this verifier cannot use; skip those.
                    roots.add_parsable_certificates(it.filter_map(Result::ok));
                    if !roots.is_empty() {
                        break;
                    }
                }
            }
        }
        if roots.is_empty() {
            return Err(err(
                "no CA certificate to verify servers with: set tls_ca, or turn tls_verify off"
                    .into(),
            ));
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertVerification::new(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The name a server's certificate is checked against and sent as SNI: the
/// server's `sni` if set (validated by [`check_sni`]), else its IP address
/// (checked against the certificate's IP SANs; rustls sends no SNI for it).
pub(crate) fn server_name(server: &ServerConfig) -> ServerName<'static> {
    server
        .sni
        .as_deref()
        .and_then(|n| ServerName::try_from(n.to_owned()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(server.addr.ip().into()))
}

/// Reject an `sni` that is neither a DNS name nor an IP address.
pub(crate) fn check_sni(backend: &str, server: &ServerConfig) -> Result<(), ProxyError> {
    match &server.sni {
        Some(n) if ServerName::try_from(n.as_str()).is_err() => Err(ProxyError::Config(format!(
            "backend {backend:?} server {:?}: sni {n:?} is not a DNS name or IP address",
            server.name
        ))),
        _ => Ok(()),
    }
}
