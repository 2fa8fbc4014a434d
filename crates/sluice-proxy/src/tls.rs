//! TLS termination: PEM loading and certificate choice by SNI.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::config::{Mode, TlsConfig};
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
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_pem)
            .and_then(|it| it.collect::<Result<_, _>>())
            .map_err(|e| err(format!("reading {}: {e}", c.cert_pem.display())))?;
        if certs.is_empty() {
            return Err(err(format!("no certificate in {}", c.cert_pem.display())));
        }
        let key = PrivateKeyDer::from_pem_file(&c.key_pem)
            .map_err(|e| err(format!("reading {}: {e}", c.key_pem.display())))?;
        let ck = Arc::new(CertifiedKey::from_der(certs, key, &provider).map_err(|e| {
            err(format!(
                "{} / {}: {e}",
                c.cert_pem.display(),
                c.key_pem.display()
            ))
        })?);
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
