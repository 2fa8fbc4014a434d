//! TLS termination (SNI certificate choice, ALPN h2 and http/1.1, via curl)
//! and TLS to backends (rustls client, verification on and off).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use common::*;
use sluice_proxy::{Proxy, ProxyConfig, ProxyError, ServerConfig, TlsCertConfig, TlsConfig};

fn write_cert(dir: &Path, name: &str) -> TlsCertConfig {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    let cert_pem = dir.join(format!("{name}.crt"));
    let key_pem = dir.join(format!("{name}.key"));
    std::fs::write(&cert_pem, ck.cert.pem()).unwrap();
    std::fs::write(&key_pem, ck.signing_key.serialize_pem()).unwrap();
    TlsCertConfig {
        cert_pem,
        key_pem,
        sni_names: vec![name.to_owned()],
    }
}

async fn curl(args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "5"])
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn tls_termination_with_sni_and_alpn() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let a_cert = write_cert(dir.path(), "a.test");
        let b_cert = write_cert(dir.path(), "b.test");
        let a_ca: PathBuf = a_cert.cert_pem.clone();
        let b_ca: PathBuf = b_cert.cert_pem.clone();
        let backend = Backend::start("s").await;
        let (mut fe, be) = simple_config(servers(&[&backend]));
        fe.forwardfor = true;
        fe.tls = Some(TlsConfig {
            certs: vec![a_cert, b_cert],
        });
        let proxy = start(fe, be).await;
        let port = proxy.local_addr("fe").unwrap().port();
        for (host, ca, version, flag) in [
            ("a.test", &a_ca, "2", "--http2"),
            ("b.test", &b_ca, "1.1", "--http1.1"),
        ] {
            let resolve = format!("{host}:{port}:127.0.0.1");
            let url = format!("https://{host}:{port}/");
            let (ok, out) = curl(&[
                flag,
                "--resolve",
                &resolve,
                "--cacert",
                ca.to_str().unwrap(),
                "-w",
                "|%{http_version}",
                &url,
            ])
            .await;
            assert!(ok, "{host}: {out}");
            assert_eq!(out, format!("s|{version}"), "{host}");
            let h = backend.last_headers.lock().unwrap().clone().unwrap();
            assert_eq!(h["x-forwarded-proto"], "https");
            assert_eq!(h["host"], format!("{host}:{port}"));
        }
        // The wrong CA for the name fails verification: the certificate really is chosen by SNI.
        let resolve = format!("a.test:{port}:127.0.0.1");
        let (ok, out) = curl(&[
            "--resolve",
            &resolve,
            "--cacert",
            b_ca.to_str().unwrap(),
            &format!("https://a.test:{port}/"),
        ])
        .await;
        assert!(!ok, "{out}");
        proxy.shutdown().await;
    })
    .await
    .unwrap();
}

/// A CA, and a server certificate it signed for `names` (DNS names or IPs).
struct TestPki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(names: &[&str]) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// An HTTPS backend answering "tls:<sni>" (SNI "-" when none was sent).
async fn tls_backend(cert_pem: &str, key_pem: &str) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let hs = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let hs = hs.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                hs.fetch_add(1, SeqCst);
                let sni = tls.get_ref().1.server_name().unwrap_or("-").to_owned();
                let svc = hyper::service::service_fn(move |_req| {
                    let body = format!("tls:{sni}");
                    async move { Ok::<_, std::convert::Infallible>(text(&body)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, handshakes)
}

/// (tls_verify, tls_ca, sni, expected status, expected body)
type Case<'a> = (bool, Option<PathBuf>, Option<&'a str>, u16, &'a str);

#[tokio::test]
async fn tls_to_backends_with_and_without_verification() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki(&["backend.test", "127.0.0.1"]);
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &pki.ca_pem).unwrap();
        let (addr, handshakes) = tls_backend(&pki.cert_pem, &pki.key_pem).await;

        let cases: [Case<'_>; 5] = [
            // No verification: any certificate; no SNI for an IP address.
            (false, None, None, 200, "tls:-"),
            // Verified against the test CA, by name (sent as SNI) ...
            (
                true,
                Some(ca_path.clone()),
                Some("backend.test"),
                200,
                "tls:backend.test",
            ),
            // ... and by IP address SAN.
            (true, Some(ca_path.clone()), None, 200, "tls:-"),
            // The wrong name fails verification: 503 after the retries.
            (true, Some(ca_path.clone()), Some("other.test"), 503, ""),
            // The system bundle does not know the test CA.
            (true, None, Some("backend.test"), 503, ""),
        ];
        for (verify, ca, sni, status, body) in cases {
            let mut server = ServerConfig::new("s", addr);
            server.sni = sni.map(str::to_owned);
            let (fe, mut be) = simple_config(vec![server]);
            be.tls = true;
            be.tls_verify = verify;
            be.tls_ca = ca.clone();
            be.retries = 1;
            let proxy = match Proxy::start(ProxyConfig::new(vec![fe], vec![be])).await {
                Ok(p) => p,
                // No system bundle on this machine: the case is a start error instead.
                Err(e @ ProxyError::BackendTls { .. }) if verify && ca.is_none() => {
                    eprintln!("{e}");
                    continue;
                }
                Err(e) => panic!("{e}"),
            };
            let r = get(proxy.local_addr("fe").unwrap(), "/").await;
            assert_eq!(r.status, status, "{verify} {ca:?} {sni:?}: {}", r.body);
            if status == 200 {
                assert_eq!(r.body, body);
            } else {
                let st = proxy.stats();
                assert_eq!(st.backend("be").unwrap().counters.errors.connect, 2);
            }
            proxy.shutdown().await;
        }
        assert_eq!(
            handshakes.load(SeqCst),
            3,
            "failed verifications never completed"
        );

        // Config errors: a bad CA path, an invalid SNI.
        let (fe, mut be) = simple_config(vec![ServerConfig::new("s", addr)]);
        be.tls = true;
        be.tls_ca = Some(dir.path().join("missing.pem"));
        let err = Proxy::start(ProxyConfig::new(vec![fe.clone()], vec![be.clone()]))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::BackendTls { .. }), "{err}");
        be.tls_ca = Some(ca_path.clone());
        be.servers[0].sni = Some("not a name".into());
        let err = Proxy::start(ProxyConfig::new(vec![fe], vec![be]))
            .await
            .unwrap_err();
        assert!(matches!(err, ProxyError::Config(_)), "{err}");
    })
    .await
    .unwrap();
}
