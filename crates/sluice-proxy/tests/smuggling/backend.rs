//! The recording backend: raw TCP on 127.0.0.1, with a strict HTTP/1.1
//! request parser of its own (not httparse, not hyper), so that what it
//! records does not depend on the code under test.
//!
//! Strict means: CRLF line ends only, no obs-fold, header names are tokens,
//! header values hold no control bytes but HTAB, exactly one
//! `Content-Length` of digits only, or `Transfer-Encoding` whose last coding
//! is `chunked` (never both), chunk lines ending in CRLF. A proxy must
//! normalise whatever it accepts leniently before forwarding it; anything
//! this parser cannot read is recorded as [`Record::Garbage`] and the
//! connection is closed, as a strict server would.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longest request head (request line and header section) the parser takes;
/// the proxies under test forward at most 16 KiB.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Largest body the parser buffers; the corpus sends at most a few dozen KiB.
const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Most hex digits of a chunk size: 16 fill a `u64`. Proxies re-encode
/// chunks, so a longer size on the server side means raw forwarding.
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Bytes read per `read` call.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// How long [`RecordingBackend::take`] waits for the connections it closes
/// to finish recording.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Field lines in order, names lowercased.
pub(crate) type Fields = Vec<(String, Vec<u8>)>;

/// A request the strict parser read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedRequest {
    pub(crate) method: String,
    pub(crate) target: String,
    /// Minor version: 0 or 1.
    pub(crate) minor: u8,
    pub(crate) headers: Fields,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
    /// Trailer fields of a chunked body.
    pub(crate) trailers: Fields,
}

impl ParsedRequest {
    /// Every value of header `name` (lowercase), in order.
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    /// Whether the request asks to close the connection after its response.
    fn wants_close(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for v in self.values("connection") {
            for tok in v.split(|&b| b == b',') {
                let tok = tok.trim_ascii();
                close |= tok.eq_ignore_ascii_case(b"close");
                keep_alive |= tok.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        close || (self.minor == 0 && !keep_alive)
    }
}

/// What the backend saw, in arrival order across its connections.
#[derive(Debug, Clone)]
pub(crate) enum Record {
    /// A complete request (answered with 200).
    Request(ParsedRequest),
    /// Bytes the strict parser rejects; the connection was closed.
    Garbage {
        conn: u64,
        why: String,
        bytes: Vec<u8>,
    },
    /// Bytes of an unfinished request left when the connection closed.
    Incomplete { conn: u64, bytes: Vec<u8> },
}

/// The result of parsing the front of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    Incomplete,
    Garbage(String),
    /// A request and the bytes it used.
    Complete(ParsedRequest, usize),
}

/// RFC 9110 section 5.6.2 `tchar`.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value byte: HTAB, SP, VCHAR or obs-text (RFC 9110 section 5.5).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

/// The next CRLF-terminated line from `pos`: `Ok(None)` if it has not
/// ended yet, `Err` on a bare LF or CR.
fn line(buf: &[u8], pos: usize) -> Result<Option<(&[u8], usize)>, String> {
    let rest = &buf[pos..];
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        // A CR followed by anything but LF is already a bare CR.
        if let Some(cr) = rest.iter().position(|&b| b == b'\r')
            && cr + 1 < rest.len()
        {
            return Err("bare CR".into());
        }
        return Ok(None);
    };
    if nl == 0 || rest[nl - 1] != b'\r' {
        return Err("bare LF".into());
    }
    let content = &rest[..nl - 1];
    if content.contains(&b'\r') {
        return Err("bare CR".into());
    }
    Ok(Some((content, pos + nl + 1)))
}

/// A field line `name: value` (strict); the value trimmed of OWS.
fn field(l: &[u8]) -> Result<(String, Vec<u8>), String> {
    if l.first().is_some_and(|&b| b == b' ' || b == b'\t') {
        return Err("obs-fold".into());
    }
    let colon = l
        .iter()
        .position(|&b| b == b':')
        .ok_or("field line without a colon")?;
    let name = &l[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(format!(
            "bad field name {:?}",
            String::from_utf8_lossy(name)
        ));
    }
    let value = l[colon + 1..].trim_ascii();
    if !value.iter().all(|&b| is_field_byte(b)) {
        return Err(format!(
            "control byte in the value of {}",
            String::from_utf8_lossy(name)
        ));
    }
    Ok((
        String::from_utf8_lossy(name).to_ascii_lowercase(),
        value.to_vec(),
    ))
}

/// Field lines from `pos` up to and including the empty line.
fn fields(buf: &[u8], mut pos: usize) -> Result<Option<(Fields, usize)>, String> {
    let mut out = Vec::new();
    loop {
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(None);
        };
        if l.is_empty() {
            return Ok(Some((out, next)));
        }
        out.push(field(l)?);
        pos = next;
        if pos > MAX_HEAD_BYTES {
            return Err("head too large".into());
        }
    }
}

/// A chunked body starting at `pos` (RFC 9112 section 7.1): data, trailers
/// and the position after the body, or `Ok(None)` if incomplete.
pub(crate) type Chunked = (Vec<u8>, Fields, usize);

pub(crate) fn chunked(buf: &[u8], mut pos: usize) -> Result<Option<Chunked>, String> {
    let mut data = Vec::new();
    loop {
        let Some((l, next)) = line(buf, pos)? else {
            return Ok(None);
        };
        let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > MAX_CHUNK_SIZE_DIGITS {
            return Err(format!(
                "bad chunk size line {:?}",
                String::from_utf8_lossy(l)
            ));
        }
        // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): only
        // whitespace may come before the first ';', and no control bytes.
        let ext = &l[digits..];
        let ext_ok = ext.iter().all(|&b| is_field_byte(b))
            && ext
                .iter()
                .find(|&&b| b != b' ' && b != b'\t')
                .is_none_or(|&b| b == b';');
        if !ext_ok || (!ext.is_empty() && !ext.contains(&b';')) {
            return Err(format!(
                "bad chunk extension {:?}",
                String::from_utf8_lossy(ext)
            ));
        }
        let size = u64::from_str_radix(&String::from_utf8_lossy(&l[..digits]), 16)
            .map_err(|e| e.to_string())?;
        pos = next;
        if size == 0 {
            return Ok(fields(buf, pos)?.map(|(t, end)| (data, t, end)));
        }
        if data.len() as u64 + size > MAX_BODY_BYTES {
            return Err("chunked body too large".into());
        }
        let size = usize::try_from(size).map_err(|e| e.to_string())?;
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        data.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err("chunk data not followed by CRLF".into());
        }
        pos += size + 2;
    }
}

/// Parse one request at the front of `buf`, strictly.
pub(crate) fn parse(buf: &[u8]) -> Parse {
    match parse_inner(buf) {
        Ok(Some((req, used))) => Parse::Complete(req, used),
        Ok(None) if buf.len() > MAX_HEAD_BYTES + MAX_BODY_BYTES as usize => {
            Parse::Garbage("request too large".into())
        }
        Ok(None) => Parse::Incomplete,
        Err(why) => Parse::Garbage(why),
    }
}

fn parse_inner(buf: &[u8]) -> Result<Option<(ParsedRequest, usize)>, String> {
    let Some((l, pos)) = line(buf, 0)? else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err("request line too long".into());
        }
        return Ok(None);
    };
    let parts: Vec<&[u8]> = l.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Err(format!("bad request line {:?}", String::from_utf8_lossy(l)));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err("bad method".into());
    }
    if target.is_empty() || !target.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
        return Err("bad request target".into());
    }
    let minor = match *version {
        b"HTTP/1.1" => 1,
        b"HTTP/1.0" => 0,
        _ => return Err("bad version".into()),
    };
    let Some((headers, mut pos)) = fields(buf, pos)? else {
        return Ok(None);
    };
    fn named<'a>(
        headers: &'a [(String, Vec<u8>)],
        n: &'a str,
    ) -> impl Iterator<Item = &'a (String, Vec<u8>)> + 'a {
        headers.iter().filter(move |(k, _)| k == n)
    }
    let te: Vec<String> = named(&headers, "transfer-encoding")
        .flat_map(|(_, v)| v.split(|&b| b == b','))
        .map(|c| String::from_utf8_lossy(c.trim_ascii()).to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    let cls: Vec<&Vec<u8>> = named(&headers, "content-length").map(|(_, v)| v).collect();
    let has_te = named(&headers, "transfer-encoding").next().is_some();
    let mut req = ParsedRequest {
        method: String::from_utf8_lossy(method).into_owned(),
        target: String::from_utf8_lossy(target).into_owned(),
        minor,
        headers: headers.clone(),
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if has_te {
        if !cls.is_empty() {
            return Err("both Content-Length and Transfer-Encoding".into());
        }
        if minor == 0 {
            return Err("Transfer-Encoding in HTTP/1.0".into());
        }
        let chunked_n = te.iter().filter(|c| *c == "chunked").count();
        if te.last().map(String::as_str) != Some("chunked") || chunked_n != 1 {
            return Err(format!("unframeable Transfer-Encoding {te:?}"));
        }
        let Some((body, trailers, end)) = chunked(buf, pos)? else {
            return Ok(None);
        };
        req.body = body;
        req.trailers = trailers;
        return Ok(Some((req, end)));
    }
    match cls.as_slice() {
        [] => {}
        [v] => {
            // 1*DIGIT: leading zeros are digits like any other; only the
            // value has to fit.
            let value = v.iter().try_fold(0u64, |acc, &d| {
                d.is_ascii_digit()
                    .then(|| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
                    .flatten()
            });
            let Some(n) = value.filter(|_| !v.is_empty()) else {
                return Err(format!(
                    "bad Content-Length {:?}",
                    String::from_utf8_lossy(v)
                ));
            };
            if n > MAX_BODY_BYTES {
                return Err("body too large".into());
            }
            let n = usize::try_from(n).map_err(|e| e.to_string())?;
            if buf.len() < pos + n {
                return Ok(None);
            }
            req.body = buf[pos..pos + n].to_vec();
            pos += n;
        }
        _ => return Err("several Content-Length fields".into()),
    }
    Ok(Some((req, pos)))
}

/// Shared state of one backend.
#[derive(Debug)]
struct Shared {
    records: Mutex<Vec<Record>>,
    /// Bumped by [`RecordingBackend::take`]: every connection open then closes.
    generation: watch::Sender<u64>,
    /// Connections open now.
    open: watch::Sender<usize>,
}

impl Shared {
    fn push(&self, r: Record) {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r);
    }
}

/// A recording backend listening on 127.0.0.1; its tasks end with the
/// test's runtime.
#[derive(Debug, Clone)]
pub(crate) struct RecordingBackend {
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
}

impl RecordingBackend {
    pub(crate) async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the recording backend");
        let addr = listener.local_addr().expect("backend address");
        let shared = Arc::new(Shared {
            records: Mutex::new(Vec::new()),
            generation: watch::channel(0).0,
            open: watch::channel(0).0,
        });
        let s = shared.clone();
        tokio::spawn(async move {
            let mut next_conn = 0u64;
            while let Ok((stream, _)) = listener.accept().await {
                next_conn += 1;
                s.open.send_modify(|n| *n += 1);
                // Subscribed at accept: closes at the next `take`.
                let generation = s.generation.subscribe();
                let s2 = s.clone();
                tokio::spawn(async move {
                    serve(&s2, stream, next_conn, generation).await;
                    s2.open.send_modify(|n| *n -= 1);
                });
            }
        });
        Self { addr, shared }
    }

    /// The records since the last call; every connection open now is
    /// closed first (its unfinished bytes recorded), so that the next
    /// vector starts on new server connections.
    pub(crate) async fn take(&self) -> Vec<Record> {
        self.shared.generation.send_modify(|g| *g += 1);
        let mut open = self.shared.open.subscribe();
        // A connection accepted after the bump stays open until the next
        // call; its records then show up there (with a foreign target).
        let _ = tokio::time::timeout(CLOSE_WAIT, open.wait_for(|&n| n == 0)).await;
        std::mem::take(
            &mut *self
                .shared
                .records
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }
}

/// Serve one connection: parse, record, answer 200 with the target as the
/// body, until garbage, the peer's close, or a `take`.
async fn serve(
    shared: &Shared,
    mut stream: TcpStream,
    conn: u64,
    mut generation: watch::Receiver<u64>,
) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    loop {
        // Every complete request in the buffer first.
        loop {
            match parse(&buf) {
                Parse::Incomplete => break,
                Parse::Garbage(why) => {
                    shared.push(Record::Garbage {
                        conn,
                        why,
                        bytes: std::mem::take(&mut buf),
                    });
                    return;
                }
                Parse::Complete(req, used) => {
                    buf.drain(..used);
                    let close = req.wants_close();
                    let body = req.target.clone();
                    shared.push(Record::Request(req));
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).await.is_err() || close {
                        return;
                    }
                }
            }
        }
        let read = tokio::select! {
            biased;
            r = stream.read(&mut chunk) => r,
            _ = generation.changed() => Ok(0),
        };
        match read {
            Ok(0) | Err(_) => {
                if !buf.is_empty() {
                    shared.push(Record::Incomplete { conn, bytes: buf });
                }
                return;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(raw: &[u8]) -> ParsedRequest {
        match parse(raw) {
            Parse::Complete(r, used) => {
                assert_eq!(used, raw.len(), "{}", String::from_utf8_lossy(raw));
                r
            }
            other => panic!("{other:?}: {}", String::from_utf8_lossy(raw)),
        }
    }

    fn garbage(raw: &[u8]) {
        assert!(
            matches!(parse(raw), Parse::Garbage(_)),
            "accepted: {}",
            String::from_utf8_lossy(raw)
        );
    }

    #[test]
    fn the_strict_parser_reads_what_proxies_should_send() {
        let r = complete(b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc");
        assert_eq!((r.method.as_str(), r.target.as_str()), ("POST", "/a"));
        assert_eq!(r.body, b"abc");
        let r = complete(
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
              2;x=1\r\nab\r\n1\r\nc\r\n0\r\nX-T: 1\r\n\r\n",
        );
        assert_eq!(r.body, b"abc");
        assert_eq!(r.trailers, vec![("x-t".to_owned(), b"1".to_vec())]);
        assert_eq!(parse(b"GET /a HTTP/1.1\r\nHost: h\r\n"), Parse::Incomplete);
        assert_eq!(
            parse(b"POST /a HTTP/1.1\r\nContent-Length: 3\r\n\r\nab"),
            Parse::Incomplete
        );
    }

    #[test]
    fn the_strict_parser_rejects_what_proxies_must_not_send() {
        for raw in [
            &b"GET /a HTTP/1.1\nHost: h\r\n\r\n"[..],
            b"GET /a HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX: 1\r\n 2\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX : 1\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            b"GET /a HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET  /a HTTP/1.1\r\n\r\n",
            b"GET /a HTTP/1.2\r\n\r\n",
            b"POST /a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            b"POST /a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            b"POST /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5x\r\nhello\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n",
            b"POST /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX0\r\n\r\n",
        ] {
            garbage(raw);
        }
    }
}
