//! The policy's tables: every rule with the requests that exercise it.
#![allow(clippy::unwrap_used)]

use super::*;

fn check(raw: &str) -> Result<Request, Violation> {
    let mut headers = header_space();
    parse_request_head(raw.as_bytes(), 16 * 1024, &mut headers).map(|r| r.unwrap().request)
}

#[test]
fn framing_table() {
    let ok = |raw: &str, body: RequestBody| {
        let r = check(raw).unwrap_or_else(|e| panic!("{raw:?}: {e:?}"));
        assert_eq!(r.body, body, "{raw:?}");
    };
    ok("GET / HTTP/1.1\r\nHost: a\r\n\r\n", RequestBody::None);
    ok(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
        RequestBody::Length(5),
    );
    ok(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 005\r\n\r\n",
        RequestBody::Length(5),
    );
    ok(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 05\r\n\r\n",
        RequestBody::Length(5),
    );
    ok(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n",
        RequestBody::Chunked,
    );
    ok("GET / HTTP/1.0\r\n\r\n", RequestBody::None);
    let bad = |raw: &str, v: Violation| {
        assert_eq!(check(raw), Err(v), "{raw:?}");
    };
    use Violation as V;
    for cl in [
        "+5",
        "-5",
        "5 5",
        "0x5",
        "",
        "5,6",
        "99999999999999999999999",
        "5;",
    ] {
        bad(
            &format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\n"),
            V::BadContentLength,
        );
    }
    bad(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        V::BadContentLength,
    );
    bad(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        V::LengthAndChunked,
    );
    for te in [
        "gzip, chunked",
        "chunked, chunked",
        "chunked, gzip",
        "xchunked",
        "chunked;q=1",
        "",
    ] {
        bad(
            &format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n"),
            V::BadTransferEncoding,
        );
    }
    bad(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        V::BadTransferEncoding,
    );
    bad(
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        V::TransferEncodingInHttp10,
    );
    bad("GET / HTTP/1.1\r\n\r\n", V::MissingHost);
    bad("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", V::BadHost);
    bad("GET / HTTP/1.1\r\nHost: \r\n\r\n", V::BadHost);
    bad("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", V::BadHost);
    bad("GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", V::BadHost);
    bad(
        "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
        V::BadHead,
    );
    bad("GET / HTTP/1.1\r\nHost : a\r\n\r\n", V::BadHead);
    bad("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", V::BadHead);
    bad("GET / HTTP/1.1\r\nHost: a\x00\r\n\r\n", V::BadHead);
    bad("GET / HTTP/2.0\r\nHost: a\r\n\r\n", V::BadHead);
    bad("CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", V::Connect);
    bad("GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", V::BadTarget);
    bad("GET ftp://a/ HTTP/1.1\r\nHost: a\r\n\r\n", V::BadTarget);
    bad("GET * HTTP/1.1\r\nHost: a\r\n\r\n", V::BadTarget);
    let many = "a,".repeat(MAX_CONNECTION_OPTIONS + 1);
    bad(
        &format!("GET / HTTP/1.1\r\nHost: a\r\nConnection: {many}\r\n\r\n"),
        V::TooManyConnectionOptions,
    );
    let lines = "X: 1\r\n".repeat(MAX_HEADERS + 1);
    bad(
        &format!("GET / HTTP/1.1\r\nHost: a\r\n{lines}\r\n"),
        V::TooManyHeaders,
    );
    let mut headers = header_space();
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
        "y".repeat(2000)
    );
    assert_eq!(
        parse_request_head(big.as_bytes(), 1024, &mut headers).err(),
        Some(V::HeadTooLarge)
    );
    let mut headers = header_space();
    assert_eq!(
        parse_request_head(&big.as_bytes()[..1500], 1024, &mut headers).err(),
        Some(V::HeadTooLarge)
    );
}

#[test]
fn violations_round_trip_through_a_byte() {
    for (i, v) in Violation::ALL.iter().enumerate() {
        assert_eq!(usize::from(v.to_u8()), i);
        assert_eq!(Violation::from_u8(v.to_u8()), Some(*v));
    }
    assert_eq!(Violation::from_u8(200), None);
}

#[test]
fn absolute_form_sets_host_and_origin() {
    let r = check("GET http://b.example:81/p?q HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(r.authority.as_deref(), Some("b.example:81"));
    assert_eq!(r.origin, "/p?q");
    let r = check("GET http://b HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        (r.authority.as_deref(), r.origin.as_str()),
        (Some("b"), "/")
    );
    assert_eq!(
        check("GET http://u:p@b/ HTTP/1.1\r\n\r\n"),
        Err(Violation::BadTarget)
    );
    assert_eq!(
        check("GET /a#f HTTP/1.1\r\nHost: a\r\n\r\n"),
        Err(Violation::BadTarget)
    );
    for host in ["h:abc", "h:99999", "[::1]x", "h:1:2"] {
        assert_eq!(
            check(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")),
            Err(Violation::BadHost),
            "{host}"
        );
    }
    for host in ["h", "h:80", "h:", "[::1]:8080", "10.0.0.1"] {
        assert!(
            check(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).is_ok(),
            "{host}"
        );
    }
    let r = check("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(r.origin, "*");
}

#[test]
fn connection_options_never_remove_protected_headers() {
    let raw = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\
               Connection: content-length, host, x-forwarded-for, x-forwarded-proto, via, transfer-encoding, x-secret, keep-alive\r\n\
               X-Secret: 1\r\nX-Forwarded-For: 10.0.0.1\r\nVia: 1.0 a\r\nKeep-Alive: 5\r\nX-Other: 2\r\n\r\n";
    let mut headers = header_space();
    let head = parse_request_head(raw.as_bytes(), 16 * 1024, &mut headers)
        .unwrap()
        .unwrap();
    let (req, hs) = (head.request, head.headers);
    let conn = ConnectionOptions::of(fields(hs)).unwrap();
    let plain = Additions::new(false, "192.0.2.1".parse().unwrap(), false, false);
    let d = |n: &str, add: &Additions| request_disposition(n, &conn, &req, add);
    assert_eq!(d("Content-Length", &plain), Disposition::Framing);
    assert_eq!(d("Host", &plain), Disposition::Keep);
    assert_eq!(d("X-Forwarded-For", &plain), Disposition::Keep);
    assert_eq!(d("Via", &plain), Disposition::Keep);
    assert_eq!(d("X-Secret", &plain), Disposition::Drop);
    assert_eq!(d("Keep-Alive", &plain), Disposition::Drop);
    assert_eq!(d("Connection", &plain), Disposition::Drop);
    assert_eq!(d("X-Other", &plain), Disposition::Keep);
    let all = Additions::new(true, "192.0.2.1".parse().unwrap(), true, true);
    assert_eq!(d("X-Forwarded-For", &all), Disposition::Rewritten);
    assert_eq!(d("x-forwarded-proto", &all), Disposition::Rewritten);
    assert_eq!(d("VIA", &all), Disposition::Rewritten);
    let mut added = Vec::new();
    request_additions(fields(hs), &req, &all, &mut added);
    assert_eq!(
        String::from_utf8(added).unwrap(),
        "x-forwarded-for: 10.0.0.1, 192.0.2.1\r\nx-forwarded-proto: https\r\nvia: 1.0 a, 1.1 sluice\r\n"
    );
    let mut map = http::HeaderMap::new();
    request_additions(fields(hs), &req, &all, &mut map);
    assert_eq!(map["x-forwarded-for"], "10.0.0.1, 192.0.2.1");
    assert_eq!(map["via"], "1.0 a, 1.1 sluice");
}

#[test]
fn upgrade_crosses_only_when_asked_in_connection() {
    let up =
        check("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .unwrap();
    assert!(up.upgrade);
    let conn = ConnectionOptions::default();
    let add = Additions::new(false, "192.0.2.1".parse().unwrap(), false, false);
    assert_eq!(
        request_disposition("upgrade", &conn, &up, &add),
        Disposition::Keep
    );
    let no = check("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!no.upgrade);
    assert_eq!(
        request_disposition("upgrade", &conn, &no, &add),
        Disposition::Drop
    );
}

#[test]
fn http10_keeps_the_connection_only_when_asked() {
    assert!(check("GET / HTTP/1.0\r\n\r\n").unwrap().close);
    assert!(
        !check("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .close
    );
    assert!(
        check("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            .unwrap()
            .close
    );
    assert!(!check("GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap().close);
}

#[test]
fn response_framing_table() {
    let resp = |status, version, head, hs: &[(&'static str, &'static str)]| {
        check_response(
            status,
            version,
            head,
            hs.iter().map(|(n, v)| (*n, v.as_bytes())),
        )
    };
    use ResponseBody as B;
    use Version::{Http10, Http11};
    type Case<'a> = (u16, Version, bool, &'a [(&'a str, &'a str)], B, bool);
    let cases: [Case<'_>; 9] = [
        (
            200,
            Http11,
            false,
            &[("content-length", "5")],
            B::Length(5),
            false,
        ),
        (
            200,
            Http11,
            true,
            &[("content-length", "5")],
            B::Empty,
            false,
        ),
        (204, Http11, false, &[], B::Empty, false),
        (
            304,
            Http11,
            false,
            &[("content-length", "9")],
            B::Empty,
            false,
        ),
        (
            200,
            Http11,
            false,
            &[("transfer-encoding", "chunked"), ("content-length", "5")],
            B::Chunked,
            false,
        ),
        (
            200,
            Http11,
            false,
            &[("transfer-encoding", "gzip")],
            B::UntilClose,
            true,
        ),
        (200, Http11, false, &[], B::UntilClose, true),
        (
            200,
            Http10,
            false,
            &[("content-length", "5")],
            B::Length(5),
            true,
        ),
        (
            200,
            Http10,
            false,
            &[("content-length", "5"), ("connection", "keep-alive")],
            B::Length(5),
            false,
        ),
    ];
    for (status, version, head, hs, body, close) in cases {
        let r = resp(status, version, head, hs).unwrap();
        assert_eq!((r.body, r.server_close), (body, close), "{status} {hs:?}");
    }
    assert!(
        resp(
            200,
            Http11,
            false,
            &[("content-length", "5"), ("content-length", "6")]
        )
        .is_err()
    );
    assert!(
        resp(
            200,
            Http11,
            false,
            &[("transfer-encoding", "chunked, gzip")]
        )
        .is_err()
    );
    assert!(
        resp(
            200,
            Http11,
            false,
            &[("transfer-encoding", "chunked, chunked")]
        )
        .is_err()
    );
    assert!(resp(200, Http10, false, &[("transfer-encoding", "chunked")]).is_err());
    for status in [0, 1, 99, 600, 999] {
        assert_eq!(
            resp(status, Http11, false, &[]),
            Err(Violation::BadHead),
            "{status}"
        );
    }
}
