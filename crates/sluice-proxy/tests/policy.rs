//! The header policy's table, run through both HTTP/1 engines: every case
//! is sent to a proxy with the fast path and to one with hyper's path
//! only (`h1_fast_path = false`), both in front of a raw recording server.
//! Each engine must forward exactly the header lines the table says (or
//! answer the status it says), and the two must agree line for line: the
//! engines differ in transport, never in policy.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use sluice_proxy::{ProxyHandle, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Longest a case waits for its answer.
const CASE_TIMEOUT: Duration = Duration::from_secs(5);

/// A request as the recording server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The request line.
    line: String,
    /// Header lines, names lowercased, sorted (order is not policy).
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// A server that records every request's head and `Content-Length` body
/// (chunked bodies are decoded by the test's own small reader) and answers
/// `200 ok`.
async fn recording_server() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                return;
            };
            let seen = seen2.clone();
            tokio::spawn(async move { record(s, seen).await });
        }
    });
    (addr, seen)
}

async fn record(mut s: TcpStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = fill_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n").map(|i| i + 4)).await
        else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or("").to_owned();
        let mut headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or((l, ""));
                (n.to_ascii_lowercase(), v.trim().to_owned())
            })
            .collect();
        headers.sort();
        let value = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let body = if let Some(n) = value("content-length") {
            let n: usize = n.parse().unwrap();
            if fill_until(&mut s, &mut buf, |b| (b.len() >= n).then_some(n))
                .await
                .is_none()
            {
                return;
            }
            buf.drain(..n).collect()
        } else if value("transfer-encoding").is_some() {
            let mut body = Vec::new();
            loop {
                let Some(e) =
                    fill_until(&mut s, &mut buf, |b| find(b, b"\r\n").map(|i| i + 2)).await
                else {
                    return;
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&buf[..e - 2])
                        .split(';')
                        .next()
                        .unwrap()
                        .trim(),
                    16,
                )
                .unwrap();
                buf.drain(..e);
                let need = size + 2;
                if fill_until(&mut s, &mut buf, |b| (b.len() >= need).then_some(need))
                    .await
                    .is_none()
                {
                    return;
                }
                body.extend_from_slice(&buf[..size]);
                buf.drain(..need);
                if size == 0 {
                    break;
                }
            }
            body
        } else {
            Vec::new()
        };
        seen.lock().unwrap().push(Seen {
            line,
            headers,
            body,
        });
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Read into `buf` until `done` finds what it needs; `None` at the end.
async fn fill_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    loop {
        if let Some(n) = done(buf) {
            return Some(n);
        }
        let mut b = [0u8; 4096];
        match s.read(&mut b).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What a case expects.
enum Expect {
    /// Forwarded with this request line, exactly these header lines
    /// (lowercase names, in any order) and this body.
    Forwarded {
        line: &'static str,
        headers: &'static [(&'static str, &'static str)],
        body: &'static str,
    },
    /// Refused with this status; nothing reaches the server.
    Status(u16),
}

/// Headers sluice adds to every request of the test frontend (forwardfor
/// and via on, client 127.0.0.1 over plain HTTP).
const XFF: (&str, &str) = ("x-forwarded-for", "127.0.0.1");
const XFP: (&str, &str) = ("x-forwarded-proto", "http");
const VIA: (&str, &str) = ("via", "1.1 sluice");

fn cases() -> Vec<(&'static str, String, Expect)> {
    use Expect::{Forwarded, Status};
    let many_headers: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    vec![
        (
            "plain GET",
            "GET /a?b HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n".into(),
            Forwarded {
                line: "GET /a?b HTTP/1.1",
                headers: &[("accept", "*/*"), ("host", "h"), VIA, XFF, XFP],
                body: "",
            },
        ),
        (
            "forwarding lists are extended, the client's proto replaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\r\n".into(),
            Forwarded {
                line: "GET / HTTP/1.1",
                headers: &[
                    ("host", "h"),
                    ("via", "1.0 edge, 1.1 sluice"),
                    ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 127.0.0.1"),
                    XFP,
                ],
                body: "",
            },
        ),
        (
            "hop-by-hop lines never cross",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: x\r\nUpgrade: h2c\r\n\r\n".into(),
            Forwarded {
                line: "GET / HTTP/1.1",
                headers: &[("host", "h"), VIA, XFF, XFP],
                body: "",
            },
        ),
        (
            "a Connection option removes the line it names",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Secret, x-other\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n".into(),
            Forwarded {
                line: "GET / HTTP/1.1",
                headers: &[("host", "h"), VIA, XFF, ("x-kept", "3"), XFP],
                body: "",
            },
        ),
        (
            "Connection: content-length keeps the length (was smuggling)",
            "POST /p HTTP/1.1\r\nHost: h\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\nhello".into(),
            Forwarded {
                line: "POST /p HTTP/1.1",
                headers: &[("content-length", "5"), ("host", "h"), VIA, XFF, XFP],
                body: "hello",
            },
        ),
        (
            "HTTP/1.0 Connection: keep-alive, content-length keeps the length",
            "POST /p HTTP/1.0\r\nHost: h\r\nConnection: keep-alive, content-length\r\nContent-Length: 5\r\n\r\nhello".into(),
            Forwarded {
                line: "POST /p HTTP/1.1",
                headers: &[("content-length", "5"), ("host", "h"), ("via", "1.0 sluice"), XFF, XFP],
                body: "hello",
            },
        ),
        (
            "Connection: host keeps Host",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: host\r\n\r\n".into(),
            Forwarded {
                line: "GET / HTTP/1.1",
                headers: &[("host", "h"), VIA, XFF, XFP],
                body: "",
            },
        ),
        (
            "Connection cannot strip sluice's own lines",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: x-forwarded-for, x-forwarded-proto, via\r\nX-Forwarded-For: 10.0.0.9\r\n\r\n".into(),
            Forwarded {
                line: "GET / HTTP/1.1",
                headers: &[("host", "h"), VIA, ("x-forwarded-for", "10.0.0.9, 127.0.0.1"), XFP],
                body: "",
            },
        ),
        (
            "a Content-Length becomes one canonical line",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 003\r\nContent-Length: 3\r\n\r\nabc".into(),
            Forwarded {
                line: "POST / HTTP/1.1",
                headers: &[("content-length", "3"), ("host", "h"), VIA, XFF, XFP],
                body: "abc",
            },
        ),
        (
            "absolute-form: origin-form with the target's Host",
            "GET http://b.example:8080/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n".into(),
            Forwarded {
                line: "GET /x?y HTTP/1.1",
                headers: &[("host", "b.example:8080"), VIA, XFF, XFP],
                body: "",
            },
        ),
        (
            "a chunked body is forwarded (hyper's path on both)",
            "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n".into(),
            Forwarded {
                line: "POST /c HTTP/1.1",
                headers: &[("host", "h"), ("transfer-encoding", "chunked"), VIA, XFF, XFP],
                body: "abcde",
            },
        ),
        (
            "Content-Length with Transfer-Encoding",
            "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
            Status(400),
        ),
        ("a signed length", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +3\r\n\r\nabc".into(), Status(400)),
        ("a length list in one line", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3, 3\r\n\r\nabc".into(), Status(400)),
        ("differing lengths", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd".into(), Status(400)),
        ("a coding list", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n".into(), Status(400)),
        ("two Host lines", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), Status(400)),
        ("no Host in HTTP/1.1", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n".into(), Status(400)),
        ("a folded line", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n".into(), Status(400)),
        ("space before a colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A : 1\r\n\r\n".into(), Status(400)),
        ("CONNECT", "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n".into(), Status(405)),
        ("too many lines", format!("GET / HTTP/1.1\r\nHost: h\r\n{many_headers}\r\n"), Status(431)),
    ]
}

/// A proxy in front of `server`, with forwardfor and via, on the fast
/// path or not.
async fn proxy(server: SocketAddr, fast: bool) -> ProxyHandle {
    let (mut fe, be) = simple_config(vec![ServerConfig::new("rec", server)]);
    fe.forwardfor = true;
    fe.via = true;
    fe.h1_fast_path = fast;
    start(fe, be).await
}

/// Send one case on a new connection; the status of the first answer
/// (read through its `content-length` body, so kept-alive connections do
/// not wait for a close).
async fn run(addr: SocketAddr, raw: &str) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let end = fill_until(&mut s, &mut buf, |b| find(b, b"\r\n\r\n").map(|i| i + 4)).await?;
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let len: usize = head
            .split("\r\n")
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap_or(0));
        fill_until(&mut s, &mut buf, |b| (b.len() >= end + len).then_some(0)).await?;
        head.get(9..12).and_then(|c| c.parse().ok())
    };
    tokio::time::timeout(CASE_TIMEOUT, read)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "no complete answer to {raw:?}: {:?}",
                String::from_utf8_lossy(&buf)
            )
        })
}

#[tokio::test]
async fn both_engines_apply_the_policy_table_alike() {
    let (fast_srv, fast_seen) = recording_server().await;
    let (hyper_srv, hyper_seen) = recording_server().await;
    let fast = proxy(fast_srv, true).await;
    let hyper = proxy(hyper_srv, false).await;
    let mut failures = Vec::new();
    for (name, raw, expect) in cases() {
        let mut got = Vec::new();
        for (engine, p, seen) in [("fast", &fast, &fast_seen), ("hyper", &hyper, &hyper_seen)] {
            seen.lock().unwrap().clear();
            let status = run(p.local_addr("fe").unwrap(), &raw).await;
            let requests = std::mem::take(&mut *seen.lock().unwrap());
            match &expect {
                Expect::Status(want) => {
                    if status != *want || !requests.is_empty() {
                        failures.push(format!(
                            "{name} [{engine}]: want {want} and nothing forwarded, got {status} and {requests:?}"
                        ));
                    }
                }
                Expect::Forwarded {
                    line,
                    headers,
                    body,
                } => {
                    let mut want: Vec<(String, String)> = headers
                        .iter()
                        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                        .collect();
                    want.sort();
                    let ok = status == 200
                        && requests.len() == 1
                        && requests[0].line == *line
                        && requests[0].headers == want
                        && requests[0].body == body.as_bytes();
                    if !ok {
                        failures.push(format!(
                            "{name} [{engine}]: status {status}, forwarded {requests:#?}"
                        ));
                    }
                }
            }
            got.push((status, requests));
        }
        if got[0] != got[1] {
            failures.push(format!("{name}: the engines differ: {got:#?}"));
        }
    }
    fast.shutdown().await;
    hyper.shutdown().await;
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
