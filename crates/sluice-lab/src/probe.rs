//! A minimal blocking HTTP/1.1 GET for health probes and tests: one request
//! per connection (`Connection: close`), bounded in time and size.
//!
//! Run it inside a lab namespace with [`crate::Lab::in_netns`] (or
//! [`crate::run_in_netns`]) so the connection starts from that node.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Largest response [`http_get`] reads, in bytes.
pub const MAX_PROBE_RESPONSE_BYTES: usize = 1024 * 1024;

/// Largest response head (status line + headers) accepted, in bytes.
pub const MAX_PROBE_HEAD_BYTES: usize = 16 * 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// Connecting, writing or reading failed (including timeouts).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The whole exchange took longer than the timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// The bytes received are not a complete HTTP/1.x response.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// More data than needed so far; keep reading.
    #[error("incomplete HTTP response")]
    Incomplete,
    /// The response exceeded [`MAX_PROBE_RESPONSE_BYTES`].
    #[error("response larger than {MAX_PROBE_RESPONSE_BYTES} bytes")]
    TooLarge,
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Headers in order received; names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (exactly `Content-Length` bytes when that header is present).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` from `addr` on a new connection, with `timeout` bounding the
/// whole exchange (connect included).
///
/// # Errors
/// [`ProbeError`] on connection failure, timeout or a malformed response.
pub fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<HttpResponse, ProbeError> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    let host = match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: sluice-lab-probe\r\nConnection: close\r\n\r\n"
    );
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(request.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ProbeError::Timeout(timeout));
        }
        stream.set_read_timeout(Some(left))?;
        let n = stream.read(&mut chunk)?;
        buf.extend_from_slice(&chunk[..n]);
        match parse_response(&buf, n == 0) {
            Err(ProbeError::Incomplete) if n == 0 => {
                return Err(ProbeError::Malformed(
                    "connection closed mid-response".to_owned(),
                ));
            }
            Err(ProbeError::Incomplete) if buf.len() > MAX_PROBE_RESPONSE_BYTES => {
                return Err(ProbeError::TooLarge);
            }
            Err(ProbeError::Incomplete) => {}
            other => return other,
        }
    }
}

/// Parses a response from `buf`. Without `Content-Length`, the body runs to
/// the end of the connection, so it is complete only when `at_eof`.
///
/// # Errors
/// [`ProbeError::Incomplete`] if more bytes are needed,
/// [`ProbeError::Malformed`] if the bytes are not HTTP/1.x.
pub fn parse_response(buf: &[u8], at_eof: bool) -> Result<HttpResponse, ProbeError> {
    let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > MAX_PROBE_HEAD_BYTES {
            return Err(ProbeError::Malformed("response head too large".to_owned()));
        }
        return Err(ProbeError::Incomplete);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| ProbeError::Malformed("response head is not UTF-8".to_owned()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(ProbeError::Malformed(format!(
            "status line {status_line:?}"
        )));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::Malformed(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| ProbeError::Malformed(format!("header line {line:?}")))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        return Err(ProbeError::Malformed(
            "chunked bodies are not supported".to_owned(),
        ));
    }
    let rest = &buf[head_end + 4..];
    match resp.header("content-length") {
        Some(cl) => {
            let len: usize = cl
                .parse()
                .map_err(|_| ProbeError::Malformed(format!("content-length {cl:?}")))?;
            if rest.len() < len {
                return Err(ProbeError::Incomplete);
            }
            resp.body = rest[..len].to_vec();
        }
        None if at_eof => resp.body = rest.to_vec(),
        None => return Err(ProbeError::Incomplete),
    }
    Ok(resp)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_bodies() {
        let raw = b"HTTP/1.1 200 OK\r\nX-Served-By: rs2\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        let r = parse_response(raw, false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-served-by"), Some("rs2"));
        assert_eq!(r.body, b"abc");
        assert!(matches!(
            parse_response(&raw[..raw.len() - 7], false),
            Err(ProbeError::Incomplete)
        ));
    }

    #[test]
    fn body_without_length_needs_eof() {
        let raw = b"HTTP/1.0 404 Not Found\r\n\r\nbye";
        assert!(matches!(
            parse_response(raw, false),
            Err(ProbeError::Incomplete)
        ));
        assert_eq!(parse_response(raw, true).unwrap().body, b"bye");
    }

    #[test]
    fn rejects_garbage() {
        for raw in [
            &b"SSH-2.0\r\n\r\n"[..],
            b"HTTP/1.1 abc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
        ] {
            assert!(
                matches!(parse_response(raw, true), Err(ProbeError::Malformed(_))),
                "{raw:?}"
            );
        }
        assert!(matches!(
            parse_response(b"HTTP/1.1 20", false),
            Err(ProbeError::Incomplete)
        ));
    }

    #[test]
    fn connection_refused_is_an_io_error() {
        // Bind then drop to get a local port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let err = http_get(port, "/", Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ProbeError::Io(_)), "{err}");
    }
}
