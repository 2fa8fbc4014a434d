//! `http` and `http-content`: one HTTP/1.1 request on a fresh connection
//! (optionally TLS), status checked against the accepted ranges, and for
//! `http-content` the body (read up to a limit) checked for a string and/or
//! a regular expression.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, USER_AGENT};
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sluice_core::health::FailureReason;
use sluice_tls::NoCertVerification;
use tokio::io::{AsyncRead, AsyncWrite};

use tokio::time::Instant;

use super::{ProbeFailure, since};
use crate::SpecError;
use crate::spec::{ContentSpec, DEFAULT_EXPECT_STATUS, HttpMethod, HttpSpec, StatusRange, TlsSpec};

/// `User-Agent` of health-check requests, so reals can exclude them from
/// access logs.
const USER_AGENT_VALUE: &str = concat!("sluice-health/", env!("CARGO_PKG_VERSION"));
/// Bytes of body quoted in a mismatch reason, at most.
const REASON_SNIPPET_BYTES: usize = 64;

/// A prepared HTTP check.
#[derive(Debug)]
pub(crate) struct HttpProbe {
    method: Method,
    path: PathAndQuery,
    host: Option<HeaderValue>,
    expect: Vec<StatusRange>,
    tls: Option<Tls>,
    content: Option<Content>,
}

struct Tls {
    connector: tokio_rustls::TlsConnector,
    /// Fixed SNI/verification name; `None`: the target IP address.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Content {
    contains: Option<String>,
    regex: Option<regex::bytes::Regex>,
    max_body: usize,
}

// === impl HttpProbe ===

impl HttpProbe {
    pub(crate) fn new(spec: &HttpSpec, content: Option<&ContentSpec>) -> Result<Self, SpecError> {
        let path = spec
            .path
            .parse::<PathAndQuery>()
            .ok()
            .filter(|p| p.as_str().starts_with('/'))
            .ok_or_else(|| SpecError::Path(spec.path.clone()))?;
        let host = spec
            .host
            .as_deref()
            .map(|h| HeaderValue::from_str(h).map_err(|_| SpecError::Host(h.to_owned())))
            .transpose()?;
        let expect = if spec.expect_status.is_empty() {
            vec![DEFAULT_EXPECT_STATUS]
        } else {
            spec.expect_status.clone()
        };
        if let Some(r) = expect.iter().find(|r| r.min > r.max || r.max > 999) {
            return Err(SpecError::StatusRange(r.min, r.max));
        }
        let content = content
            .map(|c| -> Result<Content, SpecError> {
                if c.body_contains.is_none() && c.body_regex.is_none() {
                    return Err(SpecError::NoContentMatch);
                }
                let regex = c
                    .body_regex
                    .as_deref()
                    .map(|r| {
                        regex::bytes::Regex::new(r).map_err(|e| SpecError::Regex(e.to_string()))
                    })
                    .transpose()?;
                Ok(Content {
                    contains: c.body_contains.clone(),
                    regex,
                    max_body: c.max_body_bytes,
                })
            })
            .transpose()?;
        let tls = spec
            .tls
            .as_ref()
            .map(|t| tls_config(t, spec.host.as_deref()))
            .transpose()?;
        Ok(Self {
            method: match spec.method {
                HttpMethod::Get => Method::GET,
                HttpMethod::Head => Method::HEAD,
            },
            path,
            host,
            expect,
            tls,
            content,
        })
    }

    pub(crate) async fn probe(
        &self,
        target: SocketAddr,
        mark: Option<u32>,
    ) -> Result<Duration, ProbeFailure> {
        let start = Instant::now();
        let tcp = super::tcp::connect(target, mark)
            .await
            .map_err(|e| ProbeFailure::io("connect", &e))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => self.exchange(tcp, target, start).await,
            Some(tls) => {
                let name = tls
                    .server_name
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(target.ip().into()));
                let stream = tls.connector.connect(name, tcp).await.map_err(|e| {
                    ProbeFailure::new(
                        FailureReason::Other(format!("tls: {e}")),
                        format!("TLS handshake: {e}"),
                    )
                })?;
                self.exchange(stream, target, start).await
            }
        }
    }

    async fn exchange<IO>(
        &self,
        io: IO,
        target: SocketAddr,
        start: Instant,
    ) -> Result<Duration, ProbeFailure>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http_err = |what: &str, e: hyper::Error| http_failure(what, &e);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| http_err("handshake", e))?;
        // The connection task ends when the request is answered and the
        // response dropped; the guard also ends it when this probe is
        // dropped (timeout) while the real stays silent.
        let _conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));

        let host = self.host.clone().unwrap_or_else(|| {
            HeaderValue::from_str(&target.to_string())
                .unwrap_or_else(|_| HeaderValue::from_static("localhost"))
        });
        let request = Request::builder()
            .method(self.method.clone())
            .uri(self.path.clone())
            .header(HOST, host)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| ProbeFailure::other(format!("building request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_err("request", e))?;

        let status = response.status().as_u16();
        if !self.expect.iter().any(|r| r.contains(status)) {
            return Err(ProbeFailure::new(
                FailureReason::BadStatus(status),
                format!("status {status} not in {}", fmt_ranges(&self.expect)),
            ));
        }
        let Some(content) = &self.content else {
            return Ok(since(start));
        };

        let too_big = || {
            ProbeFailure::new(
                FailureReason::ContentMismatch,
                format!("body larger than {} bytes", content.max_body),
            )
        };
        let declared = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > content.max_body as u64) {
            return Err(too_big());
        }
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| http_err("reading body", e))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > content.max_body {
                    return Err(too_big());
                }
                buf.extend_from_slice(&data);
            }
        }
        content.check(&buf)?;
        Ok(since(start))
    }
}

// === impl Content ===

impl Content {
    fn check(&self, body: &[u8]) -> Result<(), ProbeFailure> {
        let mismatch = |what: String| {
            let mut detail = what;
            let end = body.len().min(REASON_SNIPPET_BYTES);
            let _ = write!(
                detail,
                " (body starts {:?})",
                String::from_utf8_lossy(&body[..end])
            );
            Err(ProbeFailure::new(FailureReason::ContentMismatch, detail))
        };
        if let Some(needle) = &self.contains
            && !contains(body, needle.as_bytes())
        {
            return mismatch(format!("body does not contain {needle:?}"));
        }
        if let Some(re) = &self.regex
            && !re.is_match(body)
        {
            return mismatch(format!("body does not match /{}/", re.as_str()));
        }
        Ok(())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `"200-399"`, `"200, 204, 300-302"`.
fn fmt_ranges(ranges: &[StatusRange]) -> String {
    ranges
        .iter()
        .map(|r| {
            if r.min == r.max {
                r.min.to_string()
            } else {
                format!("{}-{}", r.min, r.max)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn http_failure(what: &str, e: &hyper::Error) -> ProbeFailure {
    // hyper hides the io::Error; walk the source chain for it.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return ProbeFailure::io(what, io);
        }
        source = s.source();
    }
    if e.is_incomplete_message() || e.is_closed() {
        return ProbeFailure::new(
            FailureReason::Reset,
            format!("{what}: connection closed before a complete response"),
        );
    }
    ProbeFailure::other(format!("{what}: {e}"))
}

/// Aborts a spawned task when dropped.
#[derive(Debug)]
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The TLS connector of a check (see [`TlsSpec`] for the verification
/// default).
fn tls_config(spec: &TlsSpec, host: Option<&str>) -> Result<Tls, SpecError> {
    // Named explicitly so that feature unification elsewhere in the
    // workspace (another provider enabled) cannot make the choice ambiguous.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| SpecError::Tls(e.to_string()))?;
    let mut config = match &spec.verify {
        Some(v) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(v.ca_pem.as_bytes()) {
                let cert = cert.map_err(|e| SpecError::Tls(format!("CA bundle: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| SpecError::Tls(format!("CA bundle: {e}")))?;
            }
            if roots.is_empty() {
                return Err(SpecError::Tls("CA bundle holds no certificate".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertVerification::new(provider)))
            .with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // The name: explicit, else the Host header without a port, else the IP.
    let name = spec.server_name.as_deref().or_else(|| {
        host.map(|h| match h.rsplit_once(':') {
            Some((name, port)) if !name.contains(':') && port.parse::<u16>().is_ok() => name,
            _ => h,
        })
    });
    let server_name = name
        .map(|n| {
            ServerName::try_from(n.to_owned()).map_err(|_| SpecError::ServerName(n.to_owned()))
        })
        .transpose()?;
    Ok(Tls {
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        server_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_read_well() {
        assert_eq!(fmt_ranges(&[DEFAULT_EXPECT_STATUS]), "200-399");
        assert_eq!(
            fmt_ranges(&[StatusRange::single(204), StatusRange { min: 300, max: 302 }]),
            "204, 300-302"
        );
    }

    #[test]
    fn substring_search() {
        assert!(contains(b"status: ok\n", b"ok"));
        assert!(!contains(b"status: o k", b"ok"));
        assert!(!contains(b"o", b"ok"));
        assert!(contains(b"", b""));
    }

    #[test]
    fn bad_specs_are_rejected() {
        let bad_path = HttpSpec {
            path: "no-slash".into(),
            ..HttpSpec::default()
        };
        assert!(matches!(
            HttpProbe::new(&bad_path, None),
            Err(SpecError::Path(_))
        ));
        let bad_range = HttpSpec {
            expect_status: vec![StatusRange { min: 400, max: 200 }],
            ..HttpSpec::default()
        };
        assert!(matches!(
            HttpProbe::new(&bad_range, None),
            Err(SpecError::StatusRange(400, 200))
        ));
        let bad_regex = ContentSpec {
            body_regex: Some("(".into()),
            ..ContentSpec::default()
        };
        assert!(matches!(
            HttpProbe::new(&HttpSpec::default(), Some(&bad_regex)),
            Err(SpecError::Regex(_))
        ));
        assert!(matches!(
            HttpProbe::new(&HttpSpec::default(), Some(&ContentSpec::default())),
            Err(SpecError::NoContentMatch)
        ));
    }
}
