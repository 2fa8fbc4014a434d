//! The L7 proxy run by `sluice run`, driven by real clients and peers in the
//! lab (issue 4 item 7): curl and h2load over TLS with SNI and HTTP/2, a
//! WebSocket echo server behind the proxy, smuggling and oversized-header
//! attempts on a raw socket, servers that hang up or are gone, and PROXY
//! protocol accepted on the bind. Needs root.
#![allow(missing_docs, clippy::unwrap_used, unreachable_pub)]

mod common;

use std::{
    io::{BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::*;
use sluice_lab::{Lab, Node};

/// Deadline for a raw client or peer socket operation.
const IO_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a test peer keeps accepting, a backstop should its owner never
/// drop it (it normally stops when dropped).
const PEER_LIFETIME_MAX: Duration = Duration::from_secs(60);
/// The RFC 6455 GUID appended to `Sec-WebSocket-Key` before hashing.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn global() -> String {
    format!("[global]\nadmin = \"{ADMIN}\"\nthreads = 2\n")
}

/// `ctl stats --json` parsed.
fn proxy_stats(lab: &Lab) -> serde_json::Value {
    let out = sluice_in_lb(lab, &["ctl", "stats", "--json"]);
    assert!(
        out.status.success(),
        "ctl stats: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn named<'a>(list: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {list}"))
}

/// A real's web-server counters: (accepted connections, requests). Reading
/// them is itself one connection and one request.
fn real_counts(lab: &Lab, real: [u8; 4]) -> (u64, u64) {
    let addr = SocketAddr::from((real, 80));
    lab.in_netns(Node::Client, move || {
        let r = sluice_lab::http_get(addr, "/stats", IO_TIMEOUT).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        (
            v["accepted"].as_u64().unwrap(),
            v["requests"].as_u64().unwrap(),
        )
    })
    .unwrap()
}

/// A TCP connection made from the client namespace.
fn client_connect(lab: &Lab, addr: SocketAddr) -> TcpStream {
    let s = lab
        .in_netns(Node::Client, move || {
            TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Sends `request` on a new connection from the client namespace and returns
/// everything read until the peer closes (or the read timeout).
fn raw_exchange(lab: &Lab, addr: SocketAddr, request: &[u8]) -> String {
    let mut s = client_connect(lab, addr);
    // The proxy may answer and close before it has read all of a request it
    // refuses; the answer is still there to read.
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while let Ok(n) = s.read(&mut chunk) {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn daemon_log(d: &Daemon) -> String {
    read_all(&d.log)
}

// ---------------------------------------------------------------------------
// Test peers: tiny TCP servers bound inside a real's namespace.

/// A TCP server on a real that hands each accepted connection to a handler,
/// one at a time, on its own thread. Dropping it stops the thread.
struct Peer {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl Peer {
    fn start<F>(lab: &Lab, node: Node, addr: SocketAddr, handler: F) -> Self
    where
        F: Fn(TcpStream) + Send + 'static,
    {
        let listener = lab
            .in_netns(node, move || TcpListener::bind(addr))
            .unwrap()
            .unwrap_or_else(|e| panic!("bind {addr} in {node}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (st, acc) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + PEER_LIFETIME_MAX;
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => {
                        acc.fetch_add(1, Ordering::Relaxed);
                        s.set_nonblocking(false).unwrap();
                        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                        handler(s);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads a request or response head (through the blank line) as lines.
fn read_head(r: &mut impl std::io::BufRead) -> std::io::Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l)? == 0 {
            return Err(std::io::Error::other(format!(
                "closed inside the head after {lines:?}"
            )));
        }
        let l = l.trim_end().to_owned();
        if l.is_empty() {
            return Ok(lines);
        }
        lines.push(l);
    }
}

fn header<'a>(head: &'a [String], name: &str) -> Option<&'a str> {
    head.iter().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// ---------------------------------------------------------------------------
// SHA-1 and base64, enough for the WebSocket handshake (no such crate is in
// the lock file). Checked against FIPS 180 and RFC 6455 vectors below.

fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().unwrap());
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (o, x) in out.chunks_exact_mut(4).zip(h) {
        o.copy_from_slice(&x.to_be_bytes());
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn ws_accept(key: &str) -> String {
    base64(&sha1(format!("{key}{WS_GUID}").as_bytes()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn sha1_and_websocket_accept_match_the_standard_vectors() {
    assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    assert_eq!(
        hex(&sha1(b"abc")),
        "a9993e364706816aba3e25717850c26c9cd0d89d"
    );
    // 56 bytes: the length no longer fits in the first block.
    assert_eq!(
        hex(&sha1(
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
        )),
        "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
    );
    assert_eq!(base64(b"f"), "Zg==");
    assert_eq!(base64(b"fo"), "Zm8=");
    assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    // RFC 6455 section 1.3.
    assert_eq!(
        ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

// ---------------------------------------------------------------------------
// RFC 6455 frames.

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// Largest frame payload the test peers accept.
const WS_MAX_PAYLOAD_BYTES: u64 = 1 << 20;

/// Writes one final frame; `mask` is set on client-to-server frames.
fn ws_write(w: &mut impl Write, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    let mut f = vec![0x80 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => f.push(m | n as u8),
        n @ 126..=0xFFFF => {
            f.push(m | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(m | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            f.extend_from_slice(&k);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => f.extend_from_slice(payload),
    }
    w.write_all(&f).unwrap();
}

/// Reads one frame: (fin, opcode, masked, unmasked payload).
fn ws_read(r: &mut impl Read) -> std::io::Result<(bool, u8, bool, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h)?;
    let fin = h[0] & 0x80 != 0;
    let opcode = h[0] & 0x0F;
    let masked = h[1] & 0x80 != 0;
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    if len > WS_MAX_PAYLOAD_BYTES {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut key = [0u8; 4];
    if masked {
        r.read_exact(&mut key)?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload)?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok((fin, opcode, masked, payload))
}

/// What the WebSocket echo peer saw on one connection.
#[derive(Debug)]
struct WsSession {
    request_head: Vec<String>,
    echoed: usize,
    closed_cleanly: bool,
    error: Option<String>,
}

/// The echo peer: RFC 6455 handshake, then echoes data frames (which must
/// arrive masked, as the client sent them), answers pings, and returns the
/// close frame.
fn ws_echo(stream: TcpStream) -> WsSession {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut sess = WsSession {
        request_head: Vec::new(),
        echoed: 0,
        closed_cleanly: false,
        error: None,
    };
    let head = match read_head(&mut r) {
        Ok(h) => h,
        Err(e) => {
            sess.error = Some(e.to_string());
            return sess;
        }
    };
    sess.request_head = head.clone();
    let upgrade = header(&head, "upgrade").unwrap_or("");
    let connection = header(&head, "connection")
        .unwrap_or("")
        .to_ascii_lowercase();
    let (Some(key), true, true, Some("13")) = (
        header(&head, "sec-websocket-key"),
        upgrade.eq_ignore_ascii_case("websocket"),
        connection.split(',').any(|t| t.trim() == "upgrade"),
        header(&head, "sec-websocket-version"),
    ) else {
        let _ = w.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        sess.error = Some(format!("not a WebSocket handshake: {head:?}"));
        return sess;
    };
    let resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        ws_accept(key)
    );
    w.write_all(resp.as_bytes()).unwrap();
    loop {
        match ws_read(&mut r) {
            Ok((_, op, masked, payload)) => {
                if !masked {
                    sess.error = Some("unmasked client frame".into());
                    return sess;
                }
                match op {
                    OP_TEXT | OP_BINARY => {
                        ws_write(&mut w, op, &payload, None);
                        sess.echoed += 1;
                    }
                    OP_PING => ws_write(&mut w, OP_PONG, &payload, None),
                    OP_CLOSE => {
                        ws_write(&mut w, OP_CLOSE, &payload, None);
                        sess.closed_cleanly = true;
                        return sess;
                    }
                    other => {
                        sess.error = Some(format!("opcode {other:#x}"));
                        return sess;
                    }
                }
            }
            Err(e) => {
                sess.error = Some(e.to_string());
                return sess;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// 1. TLS with SNI, HTTP/2, curl and h2load.

struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// A CA and one leaf per name, each valid only for that name, written as
    /// `ca.pem`, `NAME.pem` and `NAME.key`.
    fn new(names: &[&str]) -> Self {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
            KeyUsagePurpose,
        };
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "sluice lab test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        for name in names {
            let mut p = CertificateParams::new(vec![(*name).to_owned()]).unwrap();
            p.distinguished_name = DistinguishedName::new();
            p.distinguished_name.push(DnType::CommonName, *name);
            let key = KeyPair::generate().unwrap();
            let cert = p.signed_by(&key, &issuer).unwrap();
            std::fs::write(dir.path().join(format!("{name}.pem")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_owned()
    }
}

/// curl over TLS to `https://NAME:8443/` pinned to the LB, verifying against
/// the test CA: (exit ok, "code verify version" from -w, verbose stderr).
fn curl_tls(lab: &Lab, pki: &TestPki, name: &str, extra: &[&str]) -> (bool, String, String) {
    let resolve = format!("{name}:8443:10.99.0.1");
    let url = format!("https://{name}:8443/");
    let ca = pki.path("ca.pem");
    let mut argv = vec![
        "curl",
        "-sS",
        "-v",
        "--max-time",
        "5",
        "--cacert",
        &ca,
        "--resolve",
        &resolve,
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{ssl_verify_result} %{http_version}",
    ];
    argv.extend_from_slice(extra);
    argv.push(&url);
    let out = lab.exec(Node::Client, &argv).unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_sni_and_http2_with_curl_and_h2load() {
    let lab = l4_lab("l7tls", 3);
    let pki = TestPki::new(&["a.test", "b.test"]);
    let cfg = format!(
        r#"{g}
[[frontend]]
name = "tls"
bind = ["10.99.0.1:8443"]
mode = "http"
default_backend = "web"

[[frontend.tls]]
cert = "{a_cert}"
key = "{a_key}"
sni = ["a.test"]

[[frontend.tls]]
cert = "{b_cert}"
key = "{b_key}"
sni = ["b.test"]

[[backend]]
name = "web"
mode = "http"

[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
[[backend.server]]
name = "rs2"
address = "10.99.0.12:80"
[[backend.server]]
name = "rs3"
address = "10.99.0.13:80"
"#,
        g = global(),
        a_cert = pki.path("a.test.pem"),
        a_key = pki.path("a.test.key"),
        b_cert = pki.path("b.test.pem"),
        b_key = pki.path("b.test.key"),
    );
    let d = start_daemon(&lab, &cfg);

    // Each name gets its own certificate: it verifies against the CA for
    // that name only, and its subject is that name.
    for name in ["a.test", "b.test"] {
        let (ok, w, verbose) = curl_tls(&lab, &pki, name, &["--http2"]);
        assert!(ok, "curl {name}: {w} {verbose}\n{}", daemon_log(&d));
        assert_eq!(
            w, "200 0 2",
            "curl {name} (code verify version):\n{verbose}"
        );
        assert!(
            verbose.contains(&format!("subject: CN={name}")),
            "{name}: {verbose}"
        );
        assert!(verbose.contains("ALPN: server accepted h2"), "{verbose}");
    }
    // HTTP/1.1 through ALPN still works.
    let (ok, w, verbose) = curl_tls(&lab, &pki, "a.test", &["--http1.1"]);
    assert!(ok, "{verbose}");
    assert_eq!(w, "200 0 1.1", "{verbose}");
    // An unknown name gets the default (first) certificate, which is not
    // valid for it: verification is real and fails.
    let (ok, _, verbose) = curl_tls(&lab, &pki, "c.test", &[]);
    assert!(!ok, "c.test verified with someone else's certificate");
    assert!(verbose.contains("subject: CN=a.test"), "{verbose}");

    // h2load: 200 requests over 4 connections, 4 streams each, SNI b.test.
    let out = lab
        .exec(
            Node::Client,
            &[
                "h2load",
                "-n",
                "200",
                "-c",
                "4",
                "-m",
                "4",
                "--connect-to=10.99.0.1:8443",
                "https://b.test:8443/",
            ],
        )
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "h2load: {report}");
    assert!(report.contains("Application protocol: h2"), "{report}");
    assert!(
        report.contains("200 succeeded, 0 failed, 0 errored, 0 timeout"),
        "{report}"
    );
    assert!(report.contains("status codes: 200 2xx"), "{report}");
    // The frontend counted them: 2 + 1 + 200 requests answered 2xx.
    let stats = proxy_stats(&lab);
    let fe = named(&stats["frontends"], "tls");
    assert!(fe["requests"].as_u64().unwrap() >= 203, "{fe}");
    assert!(fe["responses"]["http_2xx"].as_u64().unwrap() >= 203, "{fe}");
    // ...and the reals served them over HTTP/1.1.
    let served: u64 = [11, 12, 13]
        .into_iter()
        .map(|h| real_counts(&lab, [10, 99, 0, h]).1 - 1)
        .sum();
    assert!(served >= 203, "reals served {served}");
}

// ---------------------------------------------------------------------------
// 2. WebSocket through the proxy.

#[test]
fn websocket_upgrade_passes_through_to_a_real_echo_server() {
    let lab = l4_lab("l7ws", 1);
    let (tx, rx) = std::sync::mpsc::channel::<WsSession>();
    let _peer = Peer::start(
        &lab,
        Node::Real(1),
        "10.99.0.11:9000".parse().unwrap(),
        move |s| {
            let _ = tx.send(ws_echo(s));
        },
    );
    let cfg = format!(
        r#"{g}
[[frontend]]
name = "ws"
bind = ["10.99.0.1:8080"]
mode = "http"
default_backend = "ws"

[[backend]]
name = "ws"
mode = "http"

[[backend.server]]
name = "echo"
address = "10.99.0.11:9000"
"#,
        g = global()
    );
    let d = start_daemon(&lab, &cfg);

    let key = base64(&sha1(format!("{:?}", Instant::now()).as_bytes())[..16]);
    let s = client_connect(&lab, "10.99.0.1:8080".parse().unwrap());
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let req = format!(
        "GET /chat?room=1 HTTP/1.1\r\nHost: echo.test\r\nUpgrade: websocket\r\n\
         Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    w.write_all(req.as_bytes()).unwrap();
    let head = read_head(&mut r).unwrap_or_else(|e| panic!("{e}\n{}", daemon_log(&d)));
    assert!(head[0].starts_with("HTTP/1.1 101"), "{head:?}");
    assert_eq!(
        header(&head, "sec-websocket-accept"),
        Some(ws_accept(&key).as_str())
    );
    assert!(
        header(&head, "upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")),
        "{head:?}"
    );

    // Text and binary messages in all three length encodings, plus a ping.
    let messages: Vec<(u8, Vec<u8>)> = vec![
        (OP_TEXT, b"hello".to_vec()),
        (OP_TEXT, "x".repeat(300).into_bytes()),
        (OP_BINARY, (0..70_000u32).map(|i| (i * 7) as u8).collect()),
        (OP_TEXT, "héllo wörld".as_bytes().to_vec()),
    ];
    for (i, (op, payload)) in messages.iter().enumerate() {
        ws_write(&mut w, *op, payload, Some([1, 2, 3, i as u8]));
        let (fin, rop, masked, echo) = ws_read(&mut r).unwrap();
        assert!(fin && !masked, "frame {i}");
        assert_eq!(rop, *op, "frame {i}");
        assert!(echo == *payload, "frame {i}: {} bytes back", echo.len());
    }
    ws_write(&mut w, OP_PING, b"are you there", Some([9, 9, 9, 9]));
    let (_, op, _, pong) = ws_read(&mut r).unwrap();
    assert_eq!((op, pong.as_slice()), (OP_PONG, &b"are you there"[..]));
    ws_write(&mut w, OP_CLOSE, &1000u16.to_be_bytes(), Some([4, 3, 2, 1]));
    let (_, op, _, body) = ws_read(&mut r).unwrap();
    assert_eq!(
        (op, body.as_slice()),
        (OP_CLOSE, &1000u16.to_be_bytes()[..])
    );

    let sess = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(sess.error, None, "{sess:?}");
    assert!(
        sess.closed_cleanly && sess.echoed == messages.len(),
        "{sess:?}"
    );
    // The server got the request line and the proxy's added headers.
    assert_eq!(sess.request_head[0], "GET /chat?room=1 HTTP/1.1");
    assert_eq!(
        header(&sess.request_head, "x-forwarded-for"),
        Some("10.99.0.2"),
        "{sess:?}"
    );
    // After the close the tunnel ends: the proxy closes the client side.
    let mut rest = Vec::new();
    let n = r.read_to_end(&mut rest);
    assert!(matches!(n, Ok(0)), "after close: {n:?} {rest:?}");
}

// ---------------------------------------------------------------------------
// 3. Request smuggling and oversized heads never reach a server.

#[test]
fn smuggling_and_oversized_headers_are_refused_before_the_backend() {
    let lab = l4_lab("l7smug", 1);
    let cfg = format!(
        r#"{g}
[[frontend]]
name = "www"
bind = ["10.99.0.1:8080"]
mode = "http"
default_backend = "web"
max_header_size = 16384

[[backend]]
name = "web"
mode = "http"

[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
"#,
        g = global()
    );
    let d = start_daemon(&lab, &cfg);
    let fe: SocketAddr = "10.99.0.1:8080".parse().unwrap();
    let rs1 = [10, 99, 0, 11];
    let before = real_counts(&lab, rs1);

    // CL.TE: both framings at once.
    let resp = raw_exchange(
        &lab,
        fe,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
    );
    assert!(
        resp.starts_with("HTTP/1.1 400"),
        "CL+TE: {resp:?}\n{}",
        daemon_log(&d)
    );
    // Two different Content-Lengths.
    let resp = raw_exchange(
        &lab,
        fe,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde",
    );
    assert!(resp.starts_with("HTTP/1.1 400"), "CL+CL: {resp:?}");
    // A 64 KiB header against max_header_size = 16384.
    let mut big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let resp = raw_exchange(&lab, fe, &big);
    assert!(resp.starts_with("HTTP/1.1 431"), "64 KiB header: {resp:?}");
    // curl, a real client, gets the same.
    let hdr = format!("X-Big: {}", "b".repeat(64 * 1024));
    let (status, _, _) = curl(&lab, &["-H", &hdr], "http://10.99.0.1:8080/").unwrap();
    assert_eq!(status, 431);

    // Not one of them reached rs1: its counters moved only by our own
    // /stats read (one connection, one request).
    let after = real_counts(&lab, rs1);
    assert_eq!(after, (before.0 + 1, before.1 + 1), "rs1 was contacted");
    // A proper request with a 12 KiB header still goes through.
    let hdr = format!("X-Ok: {}", "c".repeat(12 * 1024));
    let (status, len, who) = curl(&lab, &["-H", &hdr], "http://10.99.0.1:8080/").unwrap();
    assert_eq!((status, len, who.as_str()), (200, 5120, "rs1"));
    let last = real_counts(&lab, rs1);
    assert_eq!(last.1, after.1 + 2, "the control request did not reach rs1");

    let stats = proxy_stats(&lab);
    let fe = named(&stats["frontends"], "www");
    // The CL+TE request reached the proxy's handler and is counted. The
    // conflicting Content-Length and the 431s are answered by hyper before
    // the handler runs and are not counted (yet): hence no exact totals.
    assert!(fe["responses"]["http_4xx"].as_u64().unwrap() >= 1, "{fe}");
    assert!(fe["errors"]["request"].as_u64().unwrap() >= 1, "{fe}");
    let be = named(&stats["backends"], "web");
    assert_eq!(be["sessions_total"], 1, "{be}");
}

// ---------------------------------------------------------------------------
// 4. Servers that hang up, and no server at all.

#[test]
fn a_server_that_hangs_up_is_502_and_no_server_is_503_after_retries() {
    let lab = l4_lab("l7down", 2);
    // Reads the request, then closes without a word.
    let mute = Peer::start(
        &lab,
        Node::Real(1),
        "10.99.0.11:9001".parse().unwrap(),
        |s| {
            let _ = read_head(&mut BufReader::new(&s));
        },
    );
    // Starts a response, then closes in the middle of its headers.
    let half = Peer::start(
        &lab,
        Node::Real(1),
        "10.99.0.11:9002".parse().unwrap(),
        |mut s| {
            if read_head(&mut BufReader::new(&s)).is_ok() {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Le");
            }
        },
    );
    // Nothing listens on port 9 of either real: connects are refused.
    let cfg = format!(
        r#"{g}
[[frontend]]
name = "mute"
bind = ["10.99.0.1:8081"]
mode = "http"
default_backend = "mute"

[[frontend]]
name = "half"
bind = ["10.99.0.1:8082"]
mode = "http"
default_backend = "half"

[[frontend]]
name = "gone"
bind = ["10.99.0.1:8083"]
mode = "http"
default_backend = "gone"

[[backend]]
name = "mute"
mode = "http"
[[backend.server]]
name = "mute"
address = "10.99.0.11:9001"

[[backend]]
name = "half"
mode = "http"
[[backend.server]]
name = "half"
address = "10.99.0.11:9002"

[[backend]]
name = "gone"
mode = "http"
retries = 3
timeout_connect = "1s"
[[backend.server]]
name = "g1"
address = "10.99.0.11:9"
[[backend.server]]
name = "g2"
address = "10.99.0.12:9"
"#,
        g = global()
    );
    let d = start_daemon(&lab, &cfg);

    let (status, _, _) = curl(&lab, &[], "http://10.99.0.1:8081/")
        .unwrap_or_else(|e| panic!("{e}\n{}", daemon_log(&d)));
    assert_eq!(status, 502);
    // The request was not replayed after the server had it.
    assert_eq!(mute.accepted(), 1);
    let (status, _, _) = curl(&lab, &[], "http://10.99.0.1:8082/").unwrap();
    assert_eq!(status, 502);
    assert_eq!(half.accepted(), 1);

    let t = Instant::now();
    let (status, _, _) = curl(&lab, &[], "http://10.99.0.1:8083/").unwrap();
    assert_eq!(status, 503);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    let stats = proxy_stats(&lab);
    let mute_be = named(&stats["backends"], "mute");
    assert_eq!(mute_be["errors"]["response"], 1, "{mute_be}");
    assert_eq!(mute_be["responses"]["http_5xx"], 1, "{mute_be}");
    let half_be = named(&stats["backends"], "half");
    assert_eq!(half_be["errors"]["response"], 1, "{half_be}");
    let gone = named(&stats["backends"], "gone");
    // First attempt plus 3 retries, spread over both servers.
    assert_eq!(gone["retries"], 3, "{gone}");
    assert_eq!(gone["errors"]["connect"], 4, "{gone}");
    assert!(gone["redispatches"].as_u64().unwrap() > 0, "{gone}");
    for s in gone["servers"].as_array().unwrap() {
        assert!(s["errors"]["connect"].as_u64().unwrap() >= 1, "{s}");
    }
    assert_eq!(gone["responses"]["http_5xx"], 1, "{gone}");
}

// ---------------------------------------------------------------------------
// 5. PROXY protocol accepted on the bind, into X-Forwarded-For.

/// A PROXY v2 header for TCP over IPv4.
fn proxy_v2(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\x00\r\nQUIT\n".to_vec();
    h.push(0x21); // version 2, PROXY command
    h.push(0x11); // AF_INET, STREAM
    h.extend_from_slice(&12u16.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h
}

fn body_of(resp: &str) -> String {
    resp.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_ascii_lowercase())
        .unwrap_or_default()
}

#[test]
fn proxy_protocol_on_the_bind_becomes_x_forwarded_for() {
    let lab = l4_lab("l7accpp", 1);
    let cfg = format!(
        r#"{g}
[[frontend]]
name = "pp"
bind = ["10.99.0.1:8081"]
mode = "http"
default_backend = "web"
accept_proxy = true

[[backend]]
name = "web"
mode = "http"

[[backend.server]]
name = "rs1"
address = "10.99.0.11:80"
"#,
        g = global()
    );
    let d = start_daemon(&lab, &cfg);
    let fe: SocketAddr = "10.99.0.1:8081".parse().unwrap();
    let get = b"GET /headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    // v1.
    let mut req = b"PROXY TCP4 192.0.2.7 10.99.0.1 5555 8081\r\n".to_vec();
    req.extend_from_slice(get);
    let resp = raw_exchange(&lab, fe, &req);
    assert!(
        resp.starts_with("HTTP/1.1 200"),
        "{resp:?}\n{}",
        daemon_log(&d)
    );
    let body = body_of(&resp);
    assert!(body.contains("x-forwarded-for: 192.0.2.7\n"), "{body}");
    assert!(!body.contains("10.99.0.2"), "{body}");

    // v2, with a client-supplied X-Forwarded-For kept in front.
    let mut req = proxy_v2([198, 51, 100, 9], [10, 99, 0, 1], 4444, 8081);
    req.extend_from_slice(
        b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.5\r\n\
          Connection: close\r\n\r\n",
    );
    let resp = raw_exchange(&lab, fe, &req);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp:?}");
    let body = body_of(&resp);
    assert!(
        body.contains("x-forwarded-for: 203.0.113.5, 198.51.100.9\n"),
        "{body}"
    );

    // Without the header the connection is refused, and counted.
    let before = real_counts(&lab, [10, 99, 0, 11]);
    let resp = raw_exchange(&lab, fe, get);
    assert!(!resp.contains("200 OK"), "{resp:?}");
    let after = real_counts(&lab, [10, 99, 0, 11]);
    assert_eq!(after.1, before.1 + 1, "a request without PROXY reached rs1");
    let stats = proxy_stats(&lab);
    let fe = named(&stats["frontends"], "pp");
    assert!(fe["denied"].as_u64().unwrap() >= 1, "{fe}");
    assert_eq!(fe["responses"]["http_2xx"], 2, "{fe}");
}
