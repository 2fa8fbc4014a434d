//! TLS termination: SNI certificate choice, ALPN h2 and http/1.1, via curl.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::path::{Path, PathBuf};

use common::*;
use sluice_proxy::{TlsCertConfig, TlsConfig};

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
