//! The client side of one vector: a new connection, the raw bytes in one
//! write, then the responses as the client's framing reads them.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::backend;

/// With fewer responses than the vector expects (or when it expects the
/// connection to close), give up after this long without a byte. Short, so
/// that hundreds of vectors per proxy stay fast; the proxies answer local
/// requests in well under a millisecond.
pub(crate) const QUIET: Duration = Duration::from_millis(300);

/// Once the expected responses are in, how long to wait for anything more
/// (a response to a request the client did not frame).
pub(crate) const SETTLE: Duration = Duration::from_millis(40);

/// Hard bound of one vector's exchange, however the peer trickles bytes.
const VECTOR_LIMIT: Duration = Duration::from_secs(3);

/// Bound on connecting and on writing the vector.
const CONNECT_LIMIT: Duration = Duration::from_secs(2);

/// Most headers of one response.
const MAX_RESPONSE_HEADERS: usize = 64;

/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A final response.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

/// What the client saw.
#[derive(Debug, Clone, Default)]
pub(crate) struct Outcome {
    /// Final responses (1xx are skipped), in order.
    pub(crate) responses: Vec<Response>,
    /// The proxy closed (or reset) the connection.
    pub(crate) closed: bool,
    /// Bytes that are not a response, or a failed connect.
    pub(crate) error: Option<String>,
}

enum Parsed {
    Incomplete,
    Bad(String),
    /// A response (`None`: interim) and the bytes it used.
    Complete(Option<Response>, usize),
}

fn parse_response(buf: &[u8], eof: bool) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(e) => return Parsed::Bad(format!("response does not parse: {e}")),
    };
    let Some(status) = resp.code else {
        return Parsed::Bad("response without status".into());
    };
    if (100..200).contains(&status) && status != 101 {
        return Parsed::Complete(None, head_len);
    }
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            match std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
            {
                Some(n) => length = Some(n),
                None => return Parsed::Bad("bad response Content-Length".into()),
            }
        }
    }
    let done = |body: Vec<u8>, used| Parsed::Complete(Some(Response { status, body }), used);
    if status == 204 || status == 304 {
        done(Vec::new(), head_len)
    } else if chunked {
        match backend::chunked(buf, head_len) {
            Ok(Some((body, _, end))) => done(body, end),
            Ok(None) => Parsed::Incomplete,
            Err(e) => Parsed::Bad(format!("bad chunked response: {e}")),
        }
    } else if let Some(n) = length {
        if buf.len() < head_len + n {
            Parsed::Incomplete
        } else {
            done(buf[head_len..head_len + n].to_vec(), head_len + n)
        }
    } else if eof {
        done(buf[head_len..].to_vec(), buf.len())
    } else {
        Parsed::Incomplete
    }
}

/// Take every complete response off the front of `buf`.
fn drain(buf: &mut Vec<u8>, eof: bool, out: &mut Outcome) {
    while !buf.is_empty() && out.error.is_none() {
        match parse_response(buf, eof) {
            Parsed::Incomplete => {
                if eof {
                    out.error = Some(format!(
                        "truncated response: {:?}",
                        String::from_utf8_lossy(&buf[..buf.len().min(60)])
                    ));
                }
                return;
            }
            Parsed::Bad(e) => out.error = Some(e),
            Parsed::Complete(r, used) => {
                buf.drain(..used);
                out.responses.extend(r);
            }
        }
    }
}

/// Send `raw` on a new connection to `addr` and read responses until the
/// connection closes, or it has been quiet for [`QUIET`] — or for
/// [`SETTLE`] once `want` responses are in, unless `wait_close`.
pub(crate) async fn exchange(
    addr: SocketAddr,
    raw: &[u8],
    want: usize,
    wait_close: bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut s = match tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        other => {
            out.error = Some(format!("connect to {addr}: {other:?}"));
            return out;
        }
    };
    let _ = s.set_nodelay(true);
    // A proxy may close before taking everything; what it answered is
    // still to be read.
    let _ = tokio::time::timeout(CONNECT_LIMIT, s.write_all(raw)).await;
    let start = Instant::now();
    let mut last = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let quiet = if !wait_close && out.responses.len() >= want {
            SETTLE
        } else {
            QUIET
        };
        let deadline = (last + quiet).min(start + VECTOR_LIMIT);
        match tokio::time::timeout_at(deadline.into(), s.read(&mut chunk)).await {
            Err(_) => break,
            Ok(Ok(0) | Err(_)) => {
                out.closed = true;
                break;
            }
            Ok(Ok(n)) => {
                last = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                drain(&mut buf, false, &mut out);
                if out.error.is_some() {
                    return out;
                }
            }
        }
    }
    if out.closed {
        drain(&mut buf, true, &mut out);
    }
    out
}
