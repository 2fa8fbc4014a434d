//! The fast path's heads, sans-IO: a request or response head parsed in
//! place (httparse), checked with [`crate::policy`], and the head to send
//! on written in wire format. Policy decides; this module only writes.

use http::Method;

use crate::policy::{
    self, Additions, Disposition, MAX_HEADERS, RequestBody, ResponseBody, Version, Violation,
    fields,
};

/// The result of parsing a head from a buffer.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Parsed<T> {
    /// More bytes are needed.
    Partial,
    Complete(T),
    /// A request the policy accepts but this engine does not relay itself
    /// (a chunked body, `Upgrade`, `Expect`): hyper's path takes it.
    Handoff,
    /// Refused by the policy: a request is answered with the violation's
    /// status, a response is a 502.
    Refuse(Violation),
}

/// A request head the fast path takes.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RequestHead {
    /// Bytes of the head in the buffer.
    pub(super) head_len: usize,
    pub(super) method: Method,
    /// The origin-form target, for the log and `balance uri`.
    pub(super) target: String,
    /// `Content-Length` (0 without one).
    pub(super) body_len: u64,
    /// The client asked to close after this exchange (HTTP/1.0: did not
    /// ask to keep the connection).
    pub(super) close: bool,
    /// An HTTP/1.0 client: no chunked coding and no interim responses for
    /// it (RFC 9112 section 6.1, RFC 9110 section 15.2).
    pub(super) http10: bool,
}

/// What the response head depends on in the request.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Ask {
    /// A HEAD request: the response has no body.
    pub(super) head: bool,
    /// The client connection closes after this response.
    pub(super) close: bool,
    /// The client speaks HTTP/1.0.
    pub(super) http10: bool,
}

/// A response head from a server.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ResponseHead {
    pub(super) head_len: usize,
    pub(super) status: u16,
    pub(super) framing: ResponseBody,
    /// The server closes the connection after this response.
    pub(super) server_close: bool,
    /// The client connection must close after it (its framing ends at the
    /// close, or the client asked).
    pub(super) client_close: bool,
    /// A chunked body relayed without its chunk framing (to an HTTP/1.0
    /// client; the close then ends it).
    pub(super) dechunk: bool,
}

fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn put_length(out: &mut Vec<u8>, n: u64) {
    let digits = itoa_buf(n);
    put_header(out, b"content-length", digits.as_bytes());
}

/// `n` in decimal, without allocating.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

/// Parse a request head at the front of `buf`; when the fast path takes
/// it, write the head to send to the server into `out`.
pub(super) fn parse_request(
    buf: &[u8],
    max_head: usize,
    add: &Additions,
    out: &mut Vec<u8>,
) -> Parsed<RequestHead> {
    let mut headers = policy::header_space();
    let (head_len, req, hs, conn) = match policy::parse_request_head(buf, max_head, &mut headers) {
        Ok(None) => return Parsed::Partial,
        Ok(Some(h)) => (h.len, h.request, h.headers, h.conn),
        Err(v) => return Parsed::Refuse(v),
    };
    // Transport: what hyper's path relays for this engine.
    if req.body == RequestBody::Chunked || req.upgrade || req.expect {
        return Parsed::Handoff;
    }
    out.clear();
    out.extend_from_slice(req.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(req.origin.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for h in hs {
        if policy::request_disposition(h.name, &conn, &req, add) == Disposition::Keep {
            put_header(out, h.name.as_bytes(), h.value);
        }
    }
    policy::request_additions(fields(hs), &req, add, out);
    let body_len = match req.body {
        RequestBody::Length(n) => {
            // One canonical length: the server frames the body as we relay it.
            put_length(out, n);
            n
        }
        RequestBody::None | RequestBody::Chunked => 0,
    };
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(RequestHead {
        head_len,
        target: req.origin,
        method: req.method,
        body_len,
        close: req.close,
        http10: req.version == Version::Http10,
    })
}

/// Parse a response head at the front of `buf` (at most `max_head` bytes)
/// and write the head to send to the client into `out`.
pub(super) fn parse_response(
    buf: &[u8],
    ask: Ask,
    max_head: usize,
    add: &Additions,
    out: &mut Vec<u8>,
) -> Parsed<ResponseHead> {
    let mut headers = policy::header_space();
    let mut resp = httparse::Response::new(&mut []);
    let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut resp,
        buf,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(n)) if n <= max_head => n,
        Ok(httparse::Status::Partial) if buf.len() <= max_head => return Parsed::Partial,
        Ok(_) => return Parsed::Refuse(Violation::HeadTooLarge),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Refuse(Violation::TooManyHeaders),
        Err(_) => return Parsed::Refuse(Violation::BadHead),
    };
    let (Some(version), Some(status)) = (resp.version.and_then(Version::from_minor), resp.code)
    else {
        return Parsed::Refuse(Violation::BadHead);
    };
    // No upgrade was asked for on this path.
    if status == 101 {
        return Parsed::Refuse(Violation::BadHead);
    }
    let hs: &[httparse::Header<'_>] = resp.headers;
    let (checked, conn) =
        match policy::check_response_options(status, version, ask.head, fields(hs)) {
            Ok(r) => r,
            Err(v) => return Parsed::Refuse(v),
        };
    let framing = checked.body;
    let dechunk = ask.http10 && framing == ResponseBody::Chunked;
    let client_close =
        (ask.close || framing == ResponseBody::UntilClose || dechunk) && status >= 200;
    let te = checked.transfer_encoding;

    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa_buf(u64::from(status)).as_bytes());
    out.push(b' ');
    out.extend_from_slice(resp.reason.unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length_written = false;
    for h in hs {
        match policy::response_disposition(h.name, &conn, add, false) {
            Disposition::Keep => put_header(out, h.name.as_bytes(), h.value),
            Disposition::Framing => {
                if h.name.eq_ignore_ascii_case(policy::name::TRANSFER_ENCODING) {
                    // The body is relayed with its codings as they came.
                    if !dechunk {
                        put_header(out, h.name.as_bytes(), h.value);
                    }
                } else if !te && !length_written {
                    // Transfer-Encoding wins: Content-Length then goes
                    // (RFC 9112 section 6.3); otherwise one canonical line.
                    if let Some(n) = policy::content_length(h.value) {
                        put_length(out, n);
                        length_written = true;
                    }
                }
            }
            Disposition::Drop | Disposition::Host | Disposition::Rewritten => {}
        }
    }
    policy::response_additions(fields(hs), version, add, false, out);
    if client_close {
        out.extend_from_slice(b"connection: close\r\n");
    } else if ask.http10 && status >= 200 {
        // An HTTP/1.0 client closes unless told otherwise.
        out.extend_from_slice(b"connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(ResponseHead {
        head_len,
        status,
        framing,
        server_close: checked.server_close,
        client_close,
        dechunk,
    })
}

/// Fuzz oracles: what the fast path forwards must parse again and frame
/// the body exactly as the relay does (see [`crate::fuzzing`]).
pub(crate) mod fuzz {
    use super::*;

    fn additions() -> Additions {
        Additions::new(true, std::net::IpAddr::from([192, 0, 2, 7]), false, true)
    }

    /// Panics when a request head the fast path forwards is not framed as
    /// it relays the body, or loses or gains a `Host`.
    pub(crate) fn fuzz_request_head(data: &[u8]) {
        let mut out = Vec::new();
        let Parsed::Complete(head) = parse_request(data, 1 << 16, &additions(), &mut out) else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
        let mut again = httparse::Request::new(&mut headers);
        match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "head ends early"),
            other => panic!("forwarded head does not parse: {other:?}"),
        }
        let fwd = fields(again.headers);
        assert!(
            !fwd.clone()
                .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding")),
            "transfer-encoding forwarded on the fast path"
        );
        let lengths: Vec<Option<u64>> = fwd
            .clone()
            .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| policy::content_length(v))
            .collect();
        let (client_hosts, client_length, absolute) = client_facts(data);
        let expect = if client_length {
            vec![Some(head.body_len)]
        } else {
            vec![]
        };
        assert_eq!(
            lengths, expect,
            "the forwarded head frames the body differently from the relay"
        );
        let hosts = fwd.filter(|(n, _)| n.eq_ignore_ascii_case("host")).count();
        let want = if absolute { 1 } else { client_hosts };
        assert_eq!(hosts, want, "Host lines added or removed");
    }

    /// The client's head: its `Host` lines, whether it had a
    /// `Content-Length`, and whether its target is absolute-form.
    fn client_facts(data: &[u8]) -> (usize, bool, bool) {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        if req.parse(data).is_err() {
            return (0, false, false);
        }
        let named = |n: &str| {
            req.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(n))
                .count()
        };
        (
            named("host"),
            named("content-length") > 0,
            !req.path.unwrap_or("/").starts_with('/') && req.path != Some("*"),
        )
    }

    /// Panics when a response head the fast path forwards makes the client
    /// read the body differently from how it is relayed.
    pub(crate) fn fuzz_response_head(data: &[u8]) {
        let Some((&flags, data)) = data.split_first() else {
            return;
        };
        let ask = Ask {
            head: flags & 1 != 0,
            close: flags & 2 != 0,
            http10: flags & 4 != 0,
        };
        let mut out = Vec::new();
        let Parsed::Complete(head) = parse_response(data, ask, 1 << 16, &additions(), &mut out)
        else {
            return;
        };
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS + 8];
        let mut again = httparse::Response::new(&mut headers);
        match again.parse(&out) {
            Ok(httparse::Status::Complete(n)) => assert_eq!(n, out.len(), "head ends early"),
            other => panic!("forwarded head does not parse: {other:?}"),
        }
        let seen = policy::check_response(
            head.status,
            Version::Http11,
            ask.head,
            fields(again.headers),
        )
        .map(|r| r.body);
        let relayed = if head.dechunk {
            ResponseBody::UntilClose
        } else {
            head.framing
        };
        if relayed == ResponseBody::UntilClose {
            assert!(
                head.client_close,
                "a body ended by the close on a kept connection"
            );
        } else {
            assert_eq!(
                seen,
                Ok(relayed),
                "the client reads the body differently from the relay"
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn add(xff: bool, via: bool) -> Additions {
        Additions::new(xff, std::net::IpAddr::from([192, 0, 2, 7]), false, via)
    }

    fn req(raw: &[u8], add: &Additions) -> (Parsed<RequestHead>, String) {
        let mut out = Vec::new();
        let p = parse_request(raw, 16 * 1024, add, &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn a_plain_request_is_rewritten_with_forwarding_headers() {
        let raw = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\r\nNEXT";
        let (p, out) = req(raw, &add(true, true));
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!(h.head_len, raw.len() - 4);
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.target, "/a?b=1");
        assert_eq!((h.body_len, h.close), (0, false));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\n\
             x-forwarded-for: 10.0.0.1, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             via: 1.0 edge, 1.1 sluice\r\n\r\n"
        );
        // Without forwardfor/via, those headers pass untouched.
        let (_, out) = req(raw, &add(false, false));
        assert_eq!(
            out,
            "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 10.0.0.1\r\n\
             X-Forwarded-Proto: https\r\nVia: 1.0 edge\r\n\r\n"
        );
    }

    #[test]
    fn connection_options_never_touch_framing_or_routing() {
        // The smuggling this policy closed: `Connection: content-length`
        // once removed the length while the body was still relayed.
        let raw = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: content-length, host, x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\n\r\nhello";
        let (p, out) = req(raw, &add(true, false));
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!(h.body_len, 5);
        assert_eq!(
            out,
            "POST /a HTTP/1.1\r\nHost: x\r\n\
             x-forwarded-for: 10.0.0.1, 192.0.2.7\r\nx-forwarded-proto: http\r\n\
             content-length: 5\r\n\r\n"
        );
        let (p, out) = req(
            b"POST / HTTP/1.0\r\nConnection: keep-alive, content-length\r\nContent-Length: 005\r\n\r\n",
            &add(false, false),
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(RequestHead {
                    body_len: 5,
                    close: false,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(out, "POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n");
    }

    #[test]
    fn absolute_form_targets_become_origin_form_with_their_host() {
        let (p, out) = req(
            b"GET http://b.example/p?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
            &add(false, false),
        );
        assert!(matches!(p, Parsed::Complete(RequestHead { .. })), "{p:?}");
        assert_eq!(out, "GET /p?q HTTP/1.1\r\nhost: b.example\r\n\r\n");
    }

    #[test]
    fn body_length_and_close_are_read() {
        let (p, _) = req(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\nConnection: close\r\n\r\n",
            &add(false, false),
        );
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert_eq!((h.body_len, h.close), (12, true));
        let (p, _) = req(b"GET / HTTP/1.1\r\nHost: x\r\n", &add(false, false));
        assert_eq!(p, Parsed::Partial);
        // HTTP/1.0: closes unless it asks to keep the connection; the
        // server is asked in HTTP/1.1.
        let (p, out) = req(b"GET / HTTP/1.0\r\n\r\n", &add(false, false));
        assert!(
            matches!(
                p,
                Parsed::Complete(RequestHead {
                    close: true,
                    http10: true,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(out, "GET / HTTP/1.1\r\n\r\n");
        let (p, _) = req(
            b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            &add(false, false),
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(RequestHead {
                    close: false,
                    http10: true,
                    ..
                })
            ),
            "{p:?}"
        );
    }

    #[test]
    fn transport_hand_offs_and_policy_refusals() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",
        ] {
            let (p, _) = req(raw, &add(false, false));
            assert_eq!(p, Parsed::Handoff, "{}", String::from_utf8_lossy(raw));
        }
        use Violation as V;
        for (raw, v) in [
            (
                &b"CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
                V::Connect,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                V::BadContentLength,
            ),
            (
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\n",
                V::BadContentLength,
            ),
            (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", V::BadHead),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n folded\r\n\r\n",
                V::BadHead,
            ),
            (b"\x00\x01 junk\r\n\r\n", V::BadHead),
            (b"GET / HTTP/1.1\r\n\r\n", V::MissingHost),
        ] {
            let (p, _) = req(raw, &add(false, false));
            assert_eq!(p, Parsed::Refuse(v), "{}", String::from_utf8_lossy(raw));
        }
    }

    fn resp(raw: &[u8], head: bool, close: bool, via: bool) -> (Parsed<ResponseHead>, String) {
        let ask = Ask {
            head,
            close,
            http10: false,
        };
        let mut out = Vec::new();
        let p = parse_response(raw, ask, 16 * 1024, &add(false, via), &mut out);
        (p, String::from_utf8(out).unwrap())
    }

    #[test]
    fn response_framing_follows_the_policy() {
        let cases: [(&[u8], bool, ResponseBody, bool); 4] = [
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                false,
                ResponseBody::Length(5),
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
                true,
                ResponseBody::Empty,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false,
                ResponseBody::Chunked,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                false,
                ResponseBody::UntilClose,
                true,
            ),
        ];
        for (raw, head, framing, server_close) in cases {
            let (p, _) = resp(raw, head, false, false);
            let Parsed::Complete(h) = p else {
                panic!("{p:?}")
            };
            assert_eq!(
                (h.framing, h.server_close),
                (framing, server_close),
                "{}",
                String::from_utf8_lossy(raw)
            );
            assert_eq!(h.client_close, framing == ResponseBody::UntilClose);
        }
        for raw in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"garbage\r\n\r\n",
        ] {
            assert!(matches!(
                resp(raw, false, false, false).0,
                Parsed::Refuse(_)
            ));
        }
    }

    #[test]
    fn response_head_is_rewritten() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nConnection: keep-alive, X-Int, transfer-encoding\r\nX-Int: 1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let (p, out) = resp(raw, false, true, true);
        let Parsed::Complete(h) = p else {
            panic!("{p:?}")
        };
        assert!(h.client_close && !h.server_close);
        assert_eq!(
            out,
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nTransfer-Encoding: chunked\r\n\
             via: 1.1 sluice\r\nconnection: close\r\n\r\n"
        );
        // A repeated length becomes one canonical line.
        let (_, out) = resp(
            b"HTTP/1.1 200 OK\r\nContent-Length: 03\r\nContent-Length: 3\r\n\r\n",
            false,
            false,
            false,
        );
        assert_eq!(out, "HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n");
        // An interim response never closes the client connection.
        let (p, out) = resp(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            false,
            true,
            false,
        );
        assert!(matches!(
            p,
            Parsed::Complete(ResponseHead {
                status: 103,
                client_close: false,
                ..
            })
        ));
        assert_eq!(out, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n");
    }

    #[test]
    fn http10_clients_get_no_chunking_and_an_explicit_keep_alive() {
        let http10 = |close| Ask {
            head: false,
            close,
            http10: true,
        };
        let mut out = Vec::new();
        let a = add(false, false);
        let p = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            http10(false),
            16 * 1024,
            &a,
            &mut out,
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(ResponseHead {
                    dechunk: true,
                    client_close: true,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(out, b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n");
        let p = parse_response(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
            http10(false),
            16 * 1024,
            &a,
            &mut out,
        );
        assert!(
            matches!(
                p,
                Parsed::Complete(ResponseHead {
                    dechunk: false,
                    client_close: false,
                    ..
                })
            ),
            "{p:?}"
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn fuzz_oracles_hold_on_the_smuggling_cases() {
        for raw in [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n"[..],
            b"POST / HTTP/1.0\r\nConnection: keep-alive, content-length\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: host\r\n\r\n",
        ] {
            fuzz::fuzz_request_head(raw);
        }
        fuzz::fuzz_response_head(
            b"\x00HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: 2\r\n\r\n",
        );
    }
}
