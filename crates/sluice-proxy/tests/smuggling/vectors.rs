//! The corpus: raw request vectors, each with the requests a strict RFC 9112
//! reading of its bytes defines.
//!
//! How `expect` is decided:
//!
//! - It lists the requests up to, not including, the first one whose
//!   framing is ambiguous or invalid, or that comes after a request that
//!   closes the connection (`Connection: close`, HTTP/1.0 without
//!   keep-alive: RFC 9112 section 9.6, the server must not process further
//!   requests). Such a vector has a `tail`: the proxy must answer 4xx (or
//!   nothing) and close there.
//! - Where the RFC lets a recipient either reject an element or repair it
//!   (obs-fold unfolded to SP, a bare CR or a NUL in a field value replaced
//!   by SP, a bare LF taken as a line end, whitespace-delimited request
//!   lines, empty list elements), `expect` holds the repaired reading: a
//!   proxy may reject (a prefix and a 4xx), or forward that one reading,
//!   normalised — the recording backend is strict, so forwarding the bytes
//!   as they came shows up as garbage. Each such vector says so in `note`.
//! - `Content-Length` with `Transfer-Encoding` is ambiguous (RFC 9112
//!   section 6.1). The RFC also lets a server process such a request by
//!   `Transfer-Encoding` alone if it then closes the connection: `alt`
//!   holds that reading, which the verdict reports apart.
//! - `Host` is part of the expectation: a request's host is its
//!   absolute-form authority if any, else its one `Host` field (RFC 9112
//!   section 3.2.2); several `Host` fields make it invalid (section 3.2).
//!   A request with no host at all (HTTP/1.0, or HTTP/1.1 without `Host`,
//!   which RFC 9112 says to reject but which is no framing or routing
//!   ambiguity) expects none.

use std::fmt;

/// The host every request names unless the vector is about `Host`.
pub(crate) const HOST: &str = "h.test";

/// A body that is no request: prefixed to a request line it makes an
/// invalid method (`=` is not a token character), so whatever part of it a
/// proxy takes for a request is garbage.
const BODY: &str = "q=abc";

/// Vectors must reach this many (issue 14).
pub(crate) const MIN_VECTORS: usize = 200;

/// Families, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Family {
    ContentLength,
    ClTe,
    TeObfuscation,
    Chunked,
    HeaderSyntax,
    RequestLine,
    Host,
    Expect,
    Close,
    Pipelining,
    Connection,
}

impl Family {
    pub(crate) const ALL: [Family; 11] = [
        Family::ContentLength,
        Family::ClTe,
        Family::TeObfuscation,
        Family::Chunked,
        Family::HeaderSyntax,
        Family::RequestLine,
        Family::Host,
        Family::Expect,
        Family::Close,
        Family::Pipelining,
        Family::Connection,
    ];

    /// Short name, the prefix of every vector name of the family.
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Family::ContentLength => "cl",
            Family::ClTe => "clte",
            Family::TeObfuscation => "te",
            Family::Chunked => "chunk",
            Family::HeaderSyntax => "hdr",
            Family::RequestLine => "line",
            Family::Host => "host",
            Family::Expect => "expect",
            Family::Close => "close",
            Family::Pipelining => "pipe",
            Family::Connection => "conn-opt",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Family::ContentLength => {
                "Content-Length values (signs, spaces, lists, leading zeros, overflow, duplicates, names) as the first and the second request"
            }
            Family::ClTe => {
                "Content-Length with Transfer-Encoding (CL.TE, TE.CL), plain and obfuscated"
            }
            Family::TeObfuscation => {
                "Transfer-Encoding obfuscations without Content-Length (TE.TE)"
            }
            Family::Chunked => {
                "chunk sizes (overflow, signs, whitespace), extensions, bare CR/LF, trailers"
            }
            Family::HeaderSyntax => {
                "obs-fold, bare CR and LF, NUL and control bytes, bad field names"
            }
            Family::RequestLine => "request-line whitespace, versions, methods, targets",
            Family::Host => "absolute-form targets with another Host, duplicate and malformed Host",
            Family::Expect => "Expect: 100-continue and others, with bodies",
            Family::Close => "HTTP/1.0 keep-alive and Connection: close with pipelined requests",
            Family::Pipelining => {
                "pipelined requests, bodies that look like requests, junk after a request"
            }
            Family::Connection => {
                "every header a Connection option could name, x no body / Content-Length / chunked, x HTTP/1.1 / HTTP/1.0 keep-alive"
            }
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.tag())
    }
}

/// A request the backend should see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expected {
    pub(crate) method: String,
    /// Origin-form (a proxy may forward absolute-form; compared by path).
    pub(crate) target: String,
    /// The host the request names; `None`: it names none.
    pub(crate) host: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// One raw vector.
#[derive(Debug, Clone)]
pub(crate) struct Vector {
    pub(crate) name: String,
    pub(crate) family: Family,
    /// Its targets all contain this (`/v042`).
    pub(crate) prefix: String,
    pub(crate) raw: Vec<u8>,
    pub(crate) expect: Vec<Expected>,
    /// More bytes follow `expect` that must not reach the backend.
    pub(crate) tail: bool,
    /// The reading by Transfer-Encoding alone (then close), tolerated for
    /// Content-Length with Transfer-Encoding.
    pub(crate) alt: Option<Vec<Expected>>,
    /// Why the expectation is what it is, when not obvious.
    pub(crate) note: &'static str,
}

/// What a family generator returns for one vector.
struct Spec {
    raw: Vec<u8>,
    expect: Vec<Expected>,
    tail: bool,
    alt: Option<Vec<Expected>>,
    note: &'static str,
}

impl Spec {
    /// Every request in `raw` is valid and kept alive (or the last closes).
    fn all(raw: impl Into<Vec<u8>>, expect: Vec<Expected>) -> Self {
        Self {
            raw: raw.into(),
            expect,
            tail: false,
            alt: None,
            note: "",
        }
    }

    /// `expect`, then bytes that must be rejected (or not processed).
    fn until(raw: impl Into<Vec<u8>>, expect: Vec<Expected>) -> Self {
        Self {
            tail: true,
            ..Self::all(raw, expect)
        }
    }

    fn alt(mut self, alt: Vec<Expected>) -> Self {
        self.alt = Some(alt);
        self
    }

    fn note(mut self, note: &'static str) -> Self {
        self.note = note;
        self
    }
}

/// The target prefix of the vector being built.
struct Ctx {
    p: String,
}

impl Ctx {
    /// Target `name` of this vector.
    fn t(&self, name: &str) -> String {
        format!("{}/{name}", self.p)
    }

    /// `GET t(name)` with the usual Host.
    fn get(&self, name: &str) -> String {
        head("GET", &self.t(name), "HTTP/1.1", &[H])
    }

    /// A complete request, used as a body: it must never reach the backend
    /// as a request (its target `s` is in no expectation).
    fn smuggle(&self) -> String {
        self.get("s")
    }

    /// Expected `GET t(name)`.
    fn eget(&self, name: &str) -> Expected {
        exp("GET", &self.t(name), "")
    }

    /// Expected `method t(name)` with `body`.
    fn e(&self, method: &str, name: &str, body: &str) -> Expected {
        exp(method, &self.t(name), body)
    }
}

/// The usual Host line.
const H: &str = "Host: h.test";

fn exp(method: &str, target: &str, body: &str) -> Expected {
    Expected {
        method: method.to_owned(),
        target: target.to_owned(),
        host: Some(HOST.to_owned()),
        body: body.as_bytes().to_vec(),
    }
}

fn with_host(mut e: Expected, host: Option<&str>) -> Expected {
    e.host = host.map(str::to_owned);
    e
}

/// A head with CRLF line ends.
fn head(method: &str, target: &str, version: &str, headers: &[&str]) -> String {
    let mut s = format!("{method} {target} {version}\r\n");
    for h in headers {
        s.push_str(h);
        s.push_str("\r\n");
    }
    s.push_str("\r\n");
    s
}

/// One chunk with `data`, then the last chunk.
fn chunked(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n0\r\n\r\n", data.len())
}

/// Concatenate byte pieces.
fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The corpus under construction.
struct Corpus(Vec<Vector>);

impl Corpus {
    fn add(&mut self, family: Family, name: &str, build: impl FnOnce(&Ctx) -> Spec) {
        let c = Ctx {
            p: format!("/v{:03}", self.0.len()),
        };
        let s = build(&c);
        self.0.push(Vector {
            name: format!("{}/{name}", family.tag()),
            family,
            prefix: c.p,
            raw: s.raw,
            expect: s.expect,
            tail: s.tail,
            alt: s.alt,
            note: s.note,
        });
    }
}

/// Every vector, in a stable order.
pub(crate) fn corpus() -> Vec<Vector> {
    let mut c = Corpus(Vec::new());
    content_length(&mut c);
    cl_te(&mut c);
    te_obfuscation(&mut c);
    chunked_bodies(&mut c);
    header_syntax(&mut c);
    request_line(&mut c);
    host(&mut c);
    expect(&mut c);
    connection_close(&mut c);
    pipelining(&mut c);
    connection_options(&mut c);
    c.0
}

/// What a `Content-Length` variant means: the body bytes it takes of
/// [`BODY`], or `None` when the request is invalid.
type ClMeaning = Option<usize>;

fn content_length(c: &mut Corpus) {
    const N: ClMeaning = None;
    let full = Some(BODY.len());
    let cases: &[(&str, &[&str], ClMeaning, &'static str)] = &[
        ("plain", &["Content-Length: 5"], full, ""),
        ("lowercase-name", &["content-length: 5"], full, ""),
        ("uppercase-name", &["CONTENT-LENGTH: 5"], full, ""),
        ("no-space", &["Content-Length:5"], full, ""),
        (
            "leading-zero",
            &["Content-Length: 05"],
            full,
            "1*DIGIT allows leading zeros",
        ),
        (
            "twenty-digits-leading-zeros",
            &["Content-Length: 00000000000000000005"],
            full,
            "1*DIGIT; a proxy may refuse long values",
        ),
        ("plus-sign", &["Content-Length: +5"], N, ""),
        ("minus-sign", &["Content-Length: -5"], N, ""),
        (
            "extra-leading-spaces",
            &["Content-Length:    5"],
            full,
            "OWS",
        ),
        ("trailing-spaces", &["Content-Length: 5   "], full, "OWS"),
        ("tabs", &["Content-Length:\t5\t"], full, "OWS"),
        (
            "list-same",
            &["Content-Length: 5, 5"],
            full,
            "RFC 9112 6.3: a list of one value repeated is that value (normalise before forwarding)",
        ),
        (
            "list-same-no-space",
            &["Content-Length: 5,5"],
            full,
            "RFC 9112 6.3",
        ),
        ("list-differ", &["Content-Length: 5, 6"], N, ""),
        ("list-differ-reversed", &["Content-Length: 6, 5"], N, ""),
        (
            "list-trailing-comma",
            &["Content-Length: 5,"],
            full,
            "empty list elements are ignored (RFC 9110 5.6.1)",
        ),
        (
            "list-leading-comma",
            &["Content-Length: ,5"],
            full,
            "empty list elements are ignored (RFC 9110 5.6.1)",
        ),
        ("empty", &["Content-Length: "], N, ""),
        ("inner-space", &["Content-Length: 5 5"], N, ""),
        ("hex", &["Content-Length: 0x5"], N, ""),
        ("decimal-point", &["Content-Length: 5.0"], N, ""),
        ("exponent", &["Content-Length: 5e0"], N, ""),
        ("trailing-letter", &["Content-Length: 5a"], N, ""),
        ("quoted", &["Content-Length: \"5\""], N, ""),
        ("parameter", &["Content-Length: 5;q=1"], N, ""),
        (
            "overflow",
            &["Content-Length: 99999999999999999999999"],
            N,
            "",
        ),
        (
            "wraps-u64-to-5",
            &["Content-Length: 18446744073709551621"],
            N,
            "2^64 + 5",
        ),
        ("fullwidth-digit", &["Content-Length: \u{ff15}"], N, ""),
        (
            "duplicate-same",
            &["Content-Length: 5", "Content-Length: 5"],
            full,
            "RFC 9112 6.3: repeated equal values are one (normalise before forwarding)",
        ),
        (
            "duplicate-leading-zero",
            &["Content-Length: 5", "Content-Length: 05"],
            full,
            "the same decimal value",
        ),
        (
            "duplicate-differ",
            &["Content-Length: 5", "Content-Length: 6"],
            N,
            "",
        ),
        (
            "duplicate-smaller-first",
            &["Content-Length: 1", "Content-Length: 5"],
            N,
            "",
        ),
        (
            "space-before-colon",
            &["Content-Length : 5"],
            N,
            "RFC 9112 5.1: must be rejected",
        ),
        (
            "tab-before-colon",
            &["Content-Length\t: 5"],
            N,
            "RFC 9112 5.1: must be rejected",
        ),
        (
            "underscore-name",
            &["Content_Length: 5"],
            Some(0),
            "another field: no body, the body bytes are junk",
        ),
        (
            "prefixed-name",
            &["X-Content-Length: 5"],
            Some(0),
            "another field",
        ),
        ("absent", &[], Some(0), "no framing: no body"),
        (
            "zero-with-body",
            &["Content-Length: 0"],
            Some(0),
            "CL.0: the body bytes are junk",
        ),
        (
            "shorter-than-body",
            &["Content-Length: 1"],
            Some(1),
            "the rest is junk",
        ),
        (
            "nul-after-value",
            &["Content-Length: 5\0"],
            full,
            "NUL may be replaced by SP (RFC 9110 5.5)",
        ),
        (
            "vertical-tab",
            &["Content-Length: \x0b5"],
            N,
            "CTL other than HTAB",
        ),
        (
            "bare-cr-inside",
            &["Content-Length: 5\r6"],
            N,
            "bare CR read as SP: `5 6`",
        ),
        (
            "obs-fold-value",
            &["Content-Length:", " 5"],
            full,
            "obs-fold may be unfolded to SP (RFC 9112 5.2)",
        ),
        (
            "obs-fold-second-value",
            &["Content-Length: 5", " 6"],
            N,
            "unfolded: `5 6`",
        ),
    ];
    for &(name, lines, meaning, note) in cases {
        // First request of the connection.
        c.add(Family::ContentLength, &format!("first/{name}"), |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = head("POST", &c.t("a"), "HTTP/1.1", &hs) + BODY + &c.get("b");
            match meaning {
                Some(n) if n == BODY.len() => {
                    Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
                }
                Some(n) => Spec::until(raw, vec![c.e("POST", "a", &BODY[..n])]),
                None => Spec::until(raw, vec![]),
            }
            .note(note)
        });
        // Second request, after a plain one.
        c.add(Family::ContentLength, &format!("second/{name}"), |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = c.get("a") + &head("POST", &c.t("b"), "HTTP/1.1", &hs) + BODY + &c.get("c");
            match meaning {
                Some(n) if n == BODY.len() => {
                    Spec::all(raw, vec![c.eget("a"), c.e("POST", "b", BODY), c.eget("c")])
                }
                Some(n) => Spec::until(raw, vec![c.eget("a"), c.e("POST", "b", &BODY[..n])]),
                None => Spec::until(raw, vec![c.eget("a")]),
            }
            .note(note)
        });
    }
    c.add(Family::ContentLength, "body-is-a-request", |c| {
        let s = c.smuggle();
        let cl = format!("Content-Length: {}", s.len());
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H, &cl]) + &s + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", &s), c.eget("b")])
    });
}

fn cl_te(c: &mut Corpus) {
    // CL.TE: Content-Length covers a last chunk and a smuggled request;
    // by Transfer-Encoding the body ends at the last chunk.
    let clte = |c: &Ctx, te: &[&str], cl_first: bool| {
        let body = format!("0\r\n\r\n{}", c.smuggle());
        let cl = format!("Content-Length: {}", body.len());
        let mut hs = vec![H];
        if cl_first {
            hs.push(&cl);
            hs.extend_from_slice(te);
        } else {
            hs.extend_from_slice(te);
            hs.push(&cl);
        }
        (
            head("POST", &c.t("a"), "HTTP/1.1", &hs) + &body + &c.get("b"),
            body,
        )
    };
    // TE.CL: by Transfer-Encoding the body is a chunk holding a request;
    // by Content-Length it ends after 3 bytes.
    let tecl = |c: &Ctx, te: &[&str], cl_first: bool| {
        let s = c.smuggle();
        let body = chunked(&s);
        let mut hs = vec![H];
        if cl_first {
            hs.push("Content-Length: 3");
            hs.extend_from_slice(te);
        } else {
            hs.extend_from_slice(te);
            hs.push("Content-Length: 3");
        }
        (
            head("POST", &c.t("a"), "HTTP/1.1", &hs) + &body + &c.get("b"),
            s,
        )
    };
    const TE: &[&str] = &["Transfer-Encoding: chunked"];
    for (name, cl_first) in [("cl-first", true), ("te-first", false)] {
        c.add(Family::ClTe, &format!("cl.te/{name}"), |c| {
            let (raw, _) = clte(c, TE, cl_first);
            Spec::until(raw, vec![]).alt(vec![c.e("POST", "a", "")])
        });
        c.add(Family::ClTe, &format!("te.cl/{name}"), |c| {
            let (raw, s) = tecl(c, TE, cl_first);
            Spec::until(raw, vec![]).alt(vec![c.e("POST", "a", &s)])
        });
    }
    // Transfer-Encoding values a proxy may or may not take for chunked,
    // with Content-Length: `true` when the value is chunked-final (then the
    // Transfer-Encoding reading is tolerated), `false` when the request
    // must be rejected (RFC 9112 6.1: chunked not final is a 400).
    let values: &[(&str, &[&str], bool)] = &[
        ("lowercase", &["transfer-encoding: chunked"], true),
        ("upper-value", &["Transfer-Encoding: CHUNKED"], true),
        ("gzip-chunked", &["Transfer-Encoding: gzip, chunked"], true),
        (
            "chunked-identity",
            &["Transfer-Encoding: chunked, identity"],
            false,
        ),
        ("xchunked", &["Transfer-Encoding: xchunked"], false),
        ("identity", &["Transfer-Encoding: identity"], false),
        (
            "space-before-colon",
            &["Transfer-Encoding : chunked"],
            false,
        ),
        ("obs-fold-value", &["Transfer-Encoding:", " chunked"], true),
        ("vertical-tab", &["Transfer-Encoding: \x0bchunked"], false),
        ("nul-after-value", &["Transfer-Encoding: chunked\0"], true),
        (
            "twice",
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            false,
        ),
    ];
    for &(name, te, chunked_final) in values {
        c.add(Family::ClTe, &format!("cl.te/{name}"), |c| {
            let (raw, _) = clte(c, te, true);
            let s = Spec::until(raw, vec![]);
            if chunked_final {
                s.alt(vec![c.e("POST", "a", "")])
            } else {
                s
            }
        });
    }
    // The Transfer-Encoding field is hidden (or another field): the
    // request is framed by Content-Length alone.
    let hidden: &[(&str, &[&str], &'static str)] = &[
        (
            "te-hidden-by-obs-fold",
            &["X-A: 1", " Transfer-Encoding: chunked"],
            "unfolded into X-A",
        ),
        (
            "te-underscore",
            &["Transfer_Encoding: chunked"],
            "another field",
        ),
        (
            "te-x-prefixed",
            &["X-Transfer-Encoding: chunked"],
            "another field",
        ),
        (
            "te-hidden-by-bare-cr",
            &["X-A: 1\rTransfer-Encoding: chunked"],
            "bare CR read as SP: part of X-A",
        ),
    ];
    for &(name, te, note) in hidden {
        c.add(Family::ClTe, &format!("cl-only/{name}"), |c| {
            let (raw, body) = clte(c, te, true);
            Spec::all(raw, vec![c.e("POST", "a", &body), c.eget("b")]).note(note)
        });
    }
    c.add(Family::ClTe, "cl.te/second-request", |c| {
        let (raw, _) = clte(c, TE, true);
        let raw = c.get("z") + &raw;
        Spec::until(raw, vec![c.eget("z")]).alt(vec![c.eget("z"), c.e("POST", "a", "")])
    });
    c.add(Family::ClTe, "cl.te/cl-zero", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Content-Length: 0", "Transfer-Encoding: chunked"],
        ) + &chunked(BODY)
            + &c.get("b");
        Spec::until(raw, vec![]).alt(vec![c.e("POST", "a", BODY)])
    });
    c.add(Family::ClTe, "cl.te/http10", |c| {
        let body = chunked(BODY);
        let cl = format!("Content-Length: {}", body.len());
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.0",
            &[
                H,
                "Connection: keep-alive",
                &cl,
                "Transfer-Encoding: chunked",
            ],
        ) + &body
            + &c.get("b");
        Spec::until(raw, vec![])
            .note("RFC 9112 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing")
    });
    c.add(Family::ClTe, "te.cl/expect", |c| {
        let (raw, _) = tecl(
            c,
            &["Expect: 100-continue", "Transfer-Encoding: chunked"],
            true,
        );
        let s = c.smuggle();
        Spec::until(raw, vec![]).alt(vec![c.e("POST", "a", &s)])
    });
}

/// What a Transfer-Encoding variant means for a chunked body.
#[derive(Clone, Copy)]
enum Te {
    /// Chunked: the body is the chunk data.
    Chunked,
    /// The request is invalid.
    Invalid,
    /// Not a Transfer-Encoding field: no body; the chunked bytes are junk.
    Ignored,
}

fn te_obfuscation(c: &mut Corpus) {
    use Te::*;
    let cases: &[(&str, &[&str], Te, &'static str)] = &[
        ("chunked", &["Transfer-Encoding: chunked"], Chunked, ""),
        (
            "lowercase-name",
            &["transfer-encoding: chunked"],
            Chunked,
            "",
        ),
        (
            "uppercase-value",
            &["Transfer-Encoding: CHUNKED"],
            Chunked,
            "",
        ),
        (
            "mixed-case-value",
            &["Transfer-Encoding: cHuNkEd"],
            Chunked,
            "",
        ),
        (
            "extra-leading-spaces",
            &["Transfer-Encoding:    chunked"],
            Chunked,
            "OWS",
        ),
        (
            "trailing-spaces",
            &["Transfer-Encoding: chunked   "],
            Chunked,
            "OWS",
        ),
        ("tab", &["Transfer-Encoding:\tchunked"], Chunked, "OWS"),
        ("no-space", &["Transfer-Encoding:chunked"], Chunked, ""),
        (
            "gzip-chunked",
            &["Transfer-Encoding: gzip, chunked"],
            Chunked,
            "",
        ),
        (
            "gzip-chunked-no-space",
            &["Transfer-Encoding: gzip,chunked"],
            Chunked,
            "",
        ),
        (
            "identity-chunked",
            &["Transfer-Encoding: identity, chunked"],
            Chunked,
            "an unknown coding before chunked: the framing is still chunked",
        ),
        (
            "empty-list-elements",
            &["Transfer-Encoding: , chunked,"],
            Chunked,
            "empty list elements are ignored",
        ),
        (
            "two-fields-gzip-chunked",
            &["Transfer-Encoding: gzip", "Transfer-Encoding: chunked"],
            Chunked,
            "fields combine to `gzip, chunked`",
        ),
        (
            "chunked-twice",
            &["Transfer-Encoding: chunked, chunked"],
            Chunked,
            "the last (outer) chunked frames the message, so there is one reading; \
             RFC 9112 7 forbids senders to apply it twice, a proxy may reject",
        ),
        (
            "two-fields-chunked",
            &["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
            Chunked,
            "as chunked-twice",
        ),
        (
            "chunked-gzip",
            &["Transfer-Encoding: chunked, gzip"],
            Invalid,
            "",
        ),
        (
            "two-fields-chunked-then-x",
            &["Transfer-Encoding: chunked", "Transfer-Encoding: x"],
            Invalid,
            "",
        ),
        (
            "chunked-identity",
            &["Transfer-Encoding: chunked, identity"],
            Invalid,
            "",
        ),
        ("gzip-only", &["Transfer-Encoding: gzip"], Invalid, ""),
        (
            "identity-only",
            &["Transfer-Encoding: identity"],
            Invalid,
            "",
        ),
        ("empty", &["Transfer-Encoding: "], Invalid, ""),
        ("xchunked", &["Transfer-Encoding: xchunked"], Invalid, ""),
        ("chunkedx", &["Transfer-Encoding: chunkedx"], Invalid, ""),
        ("chunk", &["Transfer-Encoding: chunk"], Invalid, ""),
        (
            "parameter",
            &["Transfer-Encoding: chunked;q=1"],
            Invalid,
            "",
        ),
        ("quoted", &["Transfer-Encoding: \"chunked\""], Invalid, ""),
        ("inner-space", &["Transfer-Encoding: chun ked"], Invalid, ""),
        (
            "vertical-tab",
            &["Transfer-Encoding: \x0bchunked"],
            Invalid,
            "",
        ),
        (
            "form-feed",
            &["Transfer-Encoding: chunked\x0c"],
            Invalid,
            "",
        ),
        (
            "non-ascii",
            &["Transfer-Encoding: chunk\u{e9}d"],
            Invalid,
            "",
        ),
        (
            "nul-after-value",
            &["Transfer-Encoding: chunked\0"],
            Chunked,
            "NUL may be replaced by SP",
        ),
        (
            "bare-cr-after-value",
            &["Transfer-Encoding: chunked\r"],
            Chunked,
            "bare CR may be replaced by SP (RFC 9112 2.2)",
        ),
        (
            "space-before-colon",
            &["Transfer-Encoding : chunked"],
            Invalid,
            "",
        ),
        (
            "tab-before-colon",
            &["Transfer-Encoding\t: chunked"],
            Invalid,
            "",
        ),
        (
            "underscore-name",
            &["Transfer_Encoding: chunked"],
            Ignored,
            "another field",
        ),
        (
            "x-prefixed-name",
            &["X-Transfer-Encoding: chunked"],
            Ignored,
            "another field",
        ),
        (
            "plural-name",
            &["Transfer-Encodings: chunked"],
            Ignored,
            "another field",
        ),
        (
            "obs-fold-value",
            &["Transfer-Encoding:", " chunked"],
            Chunked,
            "obs-fold may be unfolded",
        ),
        (
            "obs-fold-hidden",
            &["X-A: 1", " Transfer-Encoding: chunked"],
            Ignored,
            "unfolded into X-A",
        ),
        (
            "bare-cr-hidden",
            &["X-A: 1\rTransfer-Encoding: chunked"],
            Ignored,
            "bare CR read as SP: part of X-A",
        ),
        (
            "bare-lf-separated",
            &["X-A: 1\nTransfer-Encoding: chunked"],
            Chunked,
            "a bare LF may end a line (RFC 9112 2.2)",
        ),
    ];
    for &(name, lines, meaning, note) in cases {
        c.add(Family::TeObfuscation, name, |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = head("POST", &c.t("a"), "HTTP/1.1", &hs) + &chunked(BODY) + &c.get("b");
            match meaning {
                Chunked => Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")]),
                Invalid => Spec::until(raw, vec![]),
                Ignored => Spec::until(raw, vec![c.e("POST", "a", "")]),
            }
            .note(note)
        });
    }
    c.add(Family::TeObfuscation, "first-line-leading-space", |c| {
        // Whitespace before the first field line: RFC 9112 2.2 says reject,
        // or ignore that line.
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[" Transfer-Encoding: chunked", H],
        ) + &chunked(BODY)
            + &c.get("b");
        Spec::until(raw, vec![c.e("POST", "a", "")])
            .note("a whitespace-preceded first field line is ignored (or the request rejected)")
    });
    c.add(Family::TeObfuscation, "get-with-chunked-body", |c| {
        let raw = head(
            "GET",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Transfer-Encoding: chunked"],
        ) + &chunked(BODY)
            + &c.get("b");
        Spec::all(raw, vec![c.e("GET", "a", BODY), c.eget("b")])
    });
    c.add(Family::TeObfuscation, "http10-chunked", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.0",
            &[H, "Connection: keep-alive", "Transfer-Encoding: chunked"],
        ) + &chunked(BODY)
            + &c.get("b");
        Spec::until(raw, vec![])
            .alt(vec![c.e("POST", "a", BODY)])
            .note("RFC 9112 6.1: faulty framing; processing it then closing is tolerated")
    });
}

fn chunked_bodies(c: &mut Corpus) {
    const N: Option<&str> = None;
    let ok = Some(BODY);
    let ten = "0123456789";
    let long_ext = format!("5;a={}\r\nq=abc\r\n0\r\n\r\n", "x".repeat(4000));
    let big = "b".repeat(16 * 1024);
    let big_body = chunked(&big);
    let cases: Vec<(&str, String, Option<&str>, &'static str)> = vec![
        ("one-chunk", "5\r\nq=abc\r\n0\r\n\r\n".into(), ok, ""),
        (
            "two-chunks",
            "2\r\nq=\r\n3\r\nabc\r\n0\r\n\r\n".into(),
            ok,
            "",
        ),
        ("empty-body", "0\r\n\r\n".into(), Some(""), ""),
        (
            "upper-hex",
            format!("A\r\n{ten}\r\n0\r\n\r\n"),
            Some(ten),
            "",
        ),
        (
            "lower-hex",
            format!("a\r\n{ten}\r\n0\r\n\r\n"),
            Some(ten),
            "",
        ),
        ("leading-zeros", "0005\r\nq=abc\r\n0\r\n\r\n".into(), ok, ""),
        (
            "twenty-digit-size",
            "00000000000000000005\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "1*HEXDIG; a proxy may refuse long sizes",
        ),
        (
            "last-chunk-zeros",
            "5\r\nq=abc\r\n000\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "overflow-wraps-to-5",
            "10000000000000005\r\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "2^64 + 5",
        ),
        (
            "overflow-18-digits",
            "100000000000000005\r\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "",
        ),
        ("negative", "-5\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        ("plus", "+5\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        ("hex-prefix", "0x5\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        ("empty-size", "\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        ("leading-space", " 5\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        (
            "trailing-space",
            "5 \r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "whitespace after the size: one reading (BWS)",
        ),
        (
            "trailing-tab",
            "5\t\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "whitespace after the size: one reading (BWS)",
        ),
        ("ext", "5;a=1\r\nq=abc\r\n0\r\n\r\n".into(), ok, ""),
        ("ext-no-value", "5;a\r\nq=abc\r\n0\r\n\r\n".into(), ok, ""),
        (
            "ext-quoted",
            "5;a=\"x y\"\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "ext-bws",
            "5 ; a = 1\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "BWS",
        ),
        (
            "ext-several",
            "5;a=1;b=2\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "",
        ),
        ("ext-4k", long_ext, ok, "a proxy may limit extensions"),
        (
            "ext-on-last-chunk",
            "5\r\nq=abc\r\n0;a=1\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "ext-bare-lf",
            "5;a\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "LF inside a chunk line",
        ),
        ("ext-bare-cr", "5;a\rb\r\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        (
            "ext-nul",
            "5;a=\0\r\nq=abc\r\n0\r\n\r\n".into(),
            ok,
            "a NUL in an extension does not move the line end: one reading (never forward it as is)",
        ),
        (
            "ext-quoted-crlf",
            "5;a=\"x\r\ny\"\r\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "",
        ),
        (
            "ext-lf-hides-chunk",
            // TERM.EXT: a reader that ends the size line at the LF sees a
            // 2-byte chunk `xx`; one that keeps reading the extension to
            // the CRLF sees a 0x2 chunk starting at `50`.
            "2;\nxx\r\n50\r\n0\r\n\r\n".into(),
            N,
            "",
        ),
        ("size-bare-lf", "5\nq=abc\r\n0\r\n\r\n".into(), N, ""),
        ("data-bare-lf", "5\r\nq=abc\n0\r\n\r\n".into(), N, ""),
        ("last-chunk-bare-lf", "5\r\nq=abc\r\n0\n\n".into(), N, ""),
        ("size-bare-cr", "5\rq=abc\r\n0\r\n\r\n".into(), N, ""),
        (
            "data-longer-than-size",
            "3\r\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "",
        ),
        (
            "data-shorter-than-size",
            "9\r\nq=abc\r\n0\r\n\r\n".into(),
            N,
            "",
        ),
        ("no-crlf-after-data", "5\r\nq=abc0\r\n\r\n".into(), N, ""),
        (
            "no-last-chunk",
            "5\r\nq=abc\r\n".into(),
            N,
            "the next request line is no chunk size",
        ),
        (
            "no-final-crlf",
            "5\r\nq=abc\r\n0\r\n".into(),
            N,
            "the next request line is no trailer field",
        ),
        (
            "trailer",
            "5\r\nq=abc\r\n0\r\nX-T: 1\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "trailers-two",
            "5\r\nq=abc\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "trailer-content-length",
            "5\r\nq=abc\r\n0\r\nContent-Length: 50\r\n\r\n".into(),
            ok,
            "trailer fields never frame (RFC 9110 6.5.1)",
        ),
        (
            "trailer-transfer-encoding",
            "5\r\nq=abc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n".into(),
            ok,
            "",
        ),
        (
            "trailer-host",
            "5\r\nq=abc\r\n0\r\nHost: evil.test\r\n\r\n".into(),
            ok,
            "the host stays the header section's",
        ),
        (
            "trailer-no-colon",
            "5\r\nq=abc\r\n0\r\nX-T\r\n\r\n".into(),
            N,
            "",
        ),
        (
            "trailer-space-before-colon",
            "5\r\nq=abc\r\n0\r\nX-T : 1\r\n\r\n".into(),
            N,
            "",
        ),
        (
            "trailer-obs-fold",
            "5\r\nq=abc\r\n0\r\nX-T: 1\r\n 2\r\n\r\n".into(),
            ok,
            "obs-fold may be unfolded",
        ),
        (
            "trailer-bare-lf",
            "5\r\nq=abc\r\n0\r\nX-T: 1\n\r\n".into(),
            ok,
            "a bare LF may end a field line",
        ),
        ("chunk-16k", big_body, Some(big.as_str()), ""),
    ];
    for (name, body, meaning, note) in cases {
        c.add(Family::Chunked, name, |c| {
            let raw = head(
                "POST",
                &c.t("a"),
                "HTTP/1.1",
                &[H, "Transfer-Encoding: chunked"],
            ) + &body
                + &c.get("b");
            match meaning {
                Some(data) => Spec::all(raw, vec![c.e("POST", "a", data), c.eget("b")]),
                None => Spec::until(raw, vec![]),
            }
            .note(note)
        });
    }
    c.add(Family::Chunked, "data-is-a-request", |c| {
        let s = c.smuggle();
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Transfer-Encoding: chunked"],
        ) + &chunked(&s)
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", &s), c.eget("b")])
    });
    c.add(Family::Chunked, "followed-by-request", |c| {
        // After the last chunk, a complete request is just the next one.
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Transfer-Encoding: chunked"],
        ) + "0\r\n\r\n"
            + &c.get("n")
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", ""), c.eget("n"), c.eget("b")])
    });
}

fn header_syntax(c: &mut Corpus) {
    // A GET with extra field lines, then GET b: (name, lines, valid, note).
    let get_cases: &[(&str, &[&str], bool, &'static str)] = &[
        (
            "obs-fold",
            &["X-A: 1", " 2"],
            true,
            "obs-fold may be unfolded",
        ),
        (
            "obs-fold-tab",
            &["X-A: 1", "\t2"],
            true,
            "obs-fold may be unfolded",
        ),
        (
            "bare-cr-in-value",
            &["X-A: 1\r2"],
            true,
            "bare CR may be replaced by SP",
        ),
        ("bare-cr-in-name", &["X\rA: 1"], false, ""),
        (
            "nul-in-value",
            &["X-A: a\0b"],
            true,
            "NUL may be replaced by SP",
        ),
        ("nul-in-name", &["X-\0A: 1"], false, ""),
        ("soh-in-value", &["X-A: a\x01b"], false, "CTL in a value"),
        (
            "backspace-in-value",
            &["X-A: a\x08b"],
            false,
            "CTL in a value",
        ),
        (
            "vertical-tab-in-value",
            &["X-A: a\x0bb"],
            false,
            "CTL in a value",
        ),
        (
            "form-feed-in-value",
            &["X-A: a\x0cb"],
            false,
            "CTL in a value",
        ),
        ("escape-in-value", &["X-A: a\x1bb"], false, "CTL in a value"),
        ("del-in-value", &["X-A: a\x7fb"], false, "CTL in a value"),
        ("del-in-name", &["X-A\x7f: 1"], false, ""),
        (
            "obs-text-value",
            &["X-A: caf\u{e9}"],
            true,
            "obs-text is allowed",
        ),
        ("non-ascii-name", &["X-\u{e9}: 1"], false, ""),
        ("empty-name", &[": 1"], false, ""),
        ("no-colon", &["X-A 1"], false, ""),
        ("space-in-name", &["X A: 1"], false, ""),
        ("at-in-name", &["X@A: 1"], false, ""),
        ("empty-value", &["X-A:"], true, ""),
        ("spaces-only-value", &["X-A:    "], true, ""),
    ];
    for &(name, lines, valid, note) in get_cases {
        c.add(Family::HeaderSyntax, name, |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = head("GET", &c.t("a"), "HTTP/1.1", &hs) + &c.get("b");
            if valid {
                Spec::all(raw, vec![c.eget("a"), c.eget("b")])
            } else {
                Spec::until(raw, vec![])
            }
            .note(note)
        });
    }
    c.add(Family::HeaderSyntax, "obs-text-raw-byte", |c| {
        let raw = cat(&[
            format!("GET {} HTTP/1.1\r\n{H}\r\nX-A: a", c.t("a")).as_bytes(),
            &[0xff, 0xfe],
            b"\r\n\r\n",
            c.get("b").as_bytes(),
        ]);
        Spec::all(raw, vec![c.eget("a"), c.eget("b")]).note("obs-text is allowed")
    });
    // A POST whose Content-Length is hidden or shown by line syntax:
    // (name, lines, Content-Length seen, note).
    let post_cases: &[(&str, &[&str], bool, &'static str)] = &[
        (
            "obs-fold-hides-cl",
            &["X-A: 1", " Content-Length: 5"],
            false,
            "unfolded into X-A",
        ),
        (
            "bare-cr-hides-cl",
            &["X-A: 1\rContent-Length: 5"],
            false,
            "bare CR read as SP: part of X-A",
        ),
        (
            "bare-cr-starts-cl-line",
            &["X-A: 1", "\rContent-Length: 5"],
            false,
            "bare CR read as SP: an obs-fold into X-A",
        ),
        (
            "bare-lf-before-cl",
            &["X-A: 1\nContent-Length: 5"],
            true,
            "a bare LF may end a line",
        ),
        (
            "nul-before-cl-value",
            &["Content-Length: \x005"],
            true,
            "NUL may be replaced by SP",
        ),
    ];
    for &(name, lines, seen, note) in post_cases {
        c.add(Family::HeaderSyntax, name, |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = head("POST", &c.t("a"), "HTTP/1.1", &hs) + BODY + &c.get("b");
            if seen {
                Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
            } else {
                Spec::until(raw, vec![c.e("POST", "a", "")])
            }
            .note(note)
        });
    }
    c.add(Family::HeaderSyntax, "obs-fold-first-line", |c| {
        let raw = head("GET", &c.t("a"), "HTTP/1.1", &[" X-A: 1", H]) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")])
            .note("a whitespace-preceded first field line is ignored (or the request rejected)")
    });
    c.add(Family::HeaderSyntax, "bare-lf-head", |c| {
        let raw = format!("GET {} HTTP/1.1\n{H}\n\n", c.t("a")) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")]).note("a bare LF may end a line")
    });
    c.add(Family::HeaderSyntax, "bare-lf-empty-line", |c| {
        let raw = format!("GET {} HTTP/1.1\r\n{H}\r\n\n", c.t("a")) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")]).note("a bare LF may end a line")
    });
    c.add(Family::HeaderSyntax, "bare-lf-post", |c| {
        let raw = format!(
            "POST {} HTTP/1.1\n{H}\nContent-Length: 5\n\n{BODY}",
            c.t("a")
        ) + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")]).note("a bare LF may end a line")
    });
    c.add(Family::HeaderSyntax, "long-value-8k", |c| {
        let v = format!("X-A: {}", "a".repeat(8000));
        let raw = head("GET", &c.t("a"), "HTTP/1.1", &[H, &v]) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")])
    });
    c.add(Family::HeaderSyntax, "eighty-fields", |c| {
        let lines: Vec<String> = (0..80).map(|i| format!("X-H{i}: {i}")).collect();
        let mut hs = vec![H];
        hs.extend(lines.iter().map(String::as_str));
        let raw = head("GET", &c.t("a"), "HTTP/1.1", &hs) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")])
    });
}

fn request_line(c: &mut Corpus) {
    // (name, request line for target a, Some(method) if valid, note).
    type Line = fn(&str) -> String;
    let cases: &[(&str, Line, Option<&str>, &'static str)] = &[
        (
            "double-space",
            |t| format!("GET  {t} HTTP/1.1"),
            Some("GET"),
            "whitespace-delimited parsing (RFC 9112 3)",
        ),
        (
            "tab-separators",
            |t| format!("GET\t{t}\tHTTP/1.1"),
            Some("GET"),
            "whitespace-delimited parsing",
        ),
        (
            "trailing-space",
            |t| format!("GET {t} HTTP/1.1 "),
            Some("GET"),
            "whitespace-delimited parsing",
        ),
        (
            "leading-space",
            |t| format!(" GET {t} HTTP/1.1"),
            Some("GET"),
            "whitespace-delimited parsing",
        ),
        (
            "bare-cr-separator",
            |t| format!("GET {t}\rHTTP/1.1"),
            Some("GET"),
            "bare CR is whitespace in lenient parsing",
        ),
        (
            "space-in-target",
            |t| format!("GET {t} x HTTP/1.1"),
            None,
            "",
        ),
        (
            "http-1.2",
            |t| format!("GET {t} HTTP/1.2"),
            Some("GET"),
            "a higher minor version is processed as 1.1 (or 505)",
        ),
        ("http-2.0", |t| format!("GET {t} HTTP/2.0"), None, ""),
        ("http-1", |t| format!("GET {t} HTTP/1"), None, ""),
        (
            "lowercase-version",
            |t| format!("GET {t} http/1.1"),
            None,
            "",
        ),
        ("version-suffix", |t| format!("GET {t} HTTP/1.1x"), None, ""),
        (
            "version-leading-zero",
            |t| format!("GET {t} HTTP/01.1"),
            None,
            "",
        ),
        (
            "version-two-digit-minor",
            |t| format!("GET {t} HTTP/1.10"),
            None,
            "",
        ),
        ("http-0.9", |t| format!("GET {t}"), None, ""),
        (
            "lowercase-method",
            |t| format!("get {t} HTTP/1.1"),
            Some("get"),
            "methods are case-sensitive tokens",
        ),
        (
            "unknown-method",
            |t| format!("FOO {t} HTTP/1.1"),
            Some("FOO"),
            "",
        ),
        (
            "method-with-dash",
            |t| format!("M-SEARCH {t} HTTP/1.1"),
            Some("M-SEARCH"),
            "",
        ),
        (
            "method-invalid-char",
            |t| format!("G=T {t} HTTP/1.1"),
            None,
            "",
        ),
        ("method-nul", |t| format!("GE\0T {t} HTTP/1.1"), None, ""),
        (
            "nul-before-request",
            |t| format!("\0GET {t} HTTP/1.1"),
            None,
            "",
        ),
        (
            "leading-crlf",
            |t| format!("\r\nGET {t} HTTP/1.1"),
            Some("GET"),
            "RFC 9112 2.2: empty lines before a request",
        ),
        (
            "leading-crlfs",
            |t| format!("\r\n\r\n\r\nGET {t} HTTP/1.1"),
            Some("GET"),
            "empty lines before a request",
        ),
        (
            "leading-bare-lf",
            |t| format!("\nGET {t} HTTP/1.1"),
            Some("GET"),
            "a bare LF may end a line",
        ),
        (
            "target-fragment",
            |t| format!("GET {t}#frag HTTP/1.1"),
            None,
            "no fragment in a request-target",
        ),
        ("target-nul", |t| format!("GET {t}\0x HTTP/1.1"), None, ""),
        (
            "target-no-slash",
            |t| format!("GET {} HTTP/1.1", &t[1..]),
            None,
            "",
        ),
    ];
    for &(name, line, method, note) in cases {
        c.add(Family::RequestLine, name, |c| {
            let raw = format!("{}\r\n{H}\r\n\r\n", line(&c.t("a"))) + &c.get("b");
            match method {
                Some(m) => Spec::all(raw, vec![c.e(m, "a", ""), c.eget("b")]),
                None => Spec::until(raw, vec![]),
            }
            .note(note)
        });
    }
    c.add(Family::RequestLine, "target-query", |c| {
        let t = format!("{}?x=1&y=%20", c.t("a"));
        let raw = head("GET", &t, "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![exp("GET", &t, ""), c.eget("b")])
    });
    c.add(Family::RequestLine, "target-raw-byte", |c| {
        let raw = cat(&[
            format!("GET {}", c.t("a")).as_bytes(),
            &[0xff],
            format!(" HTTP/1.1\r\n{H}\r\n\r\n").as_bytes(),
            c.get("b").as_bytes(),
        ]);
        Spec::until(raw, vec![])
    });
    c.add(Family::RequestLine, "target-backslash", |c| {
        let t = format!("{}\\x", c.t("a"));
        let raw = head("GET", &t, "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![exp("GET", &t, ""), c.eget("b")]).note(
            "not URI syntax (RFC 9112 3: SHOULD 400), but no framing question: tolerated as is",
        )
    });
    c.add(Family::RequestLine, "asterisk-get", |c| {
        let raw = head("GET", "*", "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![exp("GET", "*", ""), c.eget("b")])
            .note("asterisk-form is meant for OPTIONS; no framing question: tolerated as is")
    });
    c.add(Family::RequestLine, "asterisk-options", |c| {
        let raw = head("OPTIONS", "*", "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![exp("OPTIONS", "*", ""), c.eget("b")])
    });
    c.add(Family::RequestLine, "post-without-length", |c| {
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", ""), c.eget("b")])
    });
    c.add(Family::RequestLine, "get-with-body", |c| {
        let raw =
            head("GET", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 5"]) + BODY + &c.get("b");
        Spec::all(raw, vec![c.e("GET", "a", BODY), c.eget("b")])
    });
}

fn host(c: &mut Corpus) {
    // Absolute-form targets: (name, scheme://authority, host expected, valid).
    let abs: &[(&str, &str, &str, bool)] = &[
        ("absolute-same-host", "http://h.test", HOST, true),
        (
            "absolute-other-host",
            "http://other.test",
            "other.test",
            true,
        ),
        (
            "absolute-other-port",
            "http://other.test:8080",
            "other.test:8080",
            true,
        ),
        ("absolute-https", "https://other.test", "other.test", true),
        (
            "absolute-uppercase",
            "HTTP://OTHER.TEST",
            "OTHER.TEST",
            true,
        ),
        ("absolute-empty-authority", "http://", "", false),
        ("absolute-userinfo", "http://u:p@other.test", "", false),
    ];
    for &(name, base, host, valid) in abs {
        c.add(Family::Host, name, |c| {
            let raw = head("GET", &format!("{base}{}", c.t("a")), "HTTP/1.1", &[H]) + &c.get("b");
            if valid {
                let a = with_host(c.eget("a"), Some(host));
                Spec::all(raw, vec![a, c.eget("b")])
                    .note("RFC 9112 3.2.2: the target's authority is the host; a proxy forwarding origin-form must send it as Host")
            } else {
                Spec::until(raw, vec![])
            }
        });
    }
    c.add(Family::Host, "absolute-without-host-field", |c| {
        let raw = head(
            "GET",
            &format!("http://other.test{}", c.t("a")),
            "HTTP/1.1",
            &[],
        ) + &c.get("b");
        let a = with_host(c.eget("a"), Some("other.test"));
        Spec::all(raw, vec![a, c.eget("b")])
            .note("no Host field (RFC 9112 says reject), but the host is not ambiguous")
    });
    c.add(Family::Host, "absolute-no-path", |c| {
        let q = format!("/?{}", &c.p[1..]);
        let raw = head("GET", &format!("http://other.test{q}"), "HTTP/1.1", &[H]) + &c.get("b");
        let a = with_host(exp("GET", &q, ""), Some("other.test"));
        Spec::all(raw, vec![a, c.eget("b")])
    });
    c.add(Family::Host, "absolute-post", |c| {
        let raw = head(
            "POST",
            &format!("http://other.test{}", c.t("a")),
            "HTTP/1.1",
            &[H, "Content-Length: 5"],
        ) + BODY
            + &c.get("b");
        let a = with_host(c.e("POST", "a", BODY), Some("other.test"));
        Spec::all(raw, vec![a, c.eget("b")])
    });
    c.add(Family::Host, "absolute-duplicate-host", |c| {
        let raw = head(
            "GET",
            &format!("http://other.test{}", c.t("a")),
            "HTTP/1.1",
            &[H, "Host: evil.test"],
        ) + &c.get("b");
        Spec::until(raw, vec![])
    });
    c.add(Family::Host, "network-path-target", |c| {
        let t = format!("//other.test{}", c.t("a"));
        let raw = head("GET", &t, "HTTP/1.1", &[H]) + &c.get("b");
        Spec::all(raw, vec![exp("GET", &t, ""), c.eget("b")])
            .note("an origin-form path starting with `//`, not an authority")
    });
    // Host fields: (name, lines, Some(host) if valid).
    // The host a valid request names (`None`: none), or `None` if invalid.
    type HostCase = (
        &'static str,
        &'static [&'static str],
        Option<Option<&'static str>>,
        &'static str,
    );
    let fields: &[HostCase] = &[
        (
            "duplicate-same",
            &[H, H],
            None,
            "RFC 9112 3.2: more than one Host is a 400",
        ),
        ("duplicate-differ", &[H, "Host: evil.test"], None, ""),
        ("duplicate-differ-case", &[H, "host: evil.test"], None, ""),
        ("list", &["Host: h.test, evil.test"], None, ""),
        ("space-inside", &["Host: h .test"], None, ""),
        ("bad-port", &["Host: h.test:abc"], None, ""),
        ("userinfo", &["Host: u@h.test"], None, ""),
        ("space-before-colon", &["Host : h.test"], None, ""),
        (
            "nul-inside",
            &["Host: h.te\0st"],
            None,
            "NUL read as SP: `h.te st`",
        ),
        (
            "empty",
            &["Host:"],
            Some(Some("")),
            "an empty Host is valid syntax",
        ),
        ("port", &["Host: h.test:80"], Some(Some("h.test:80")), ""),
        ("ipv6", &["Host: [::1]:8080"], Some(Some("[::1]:8080")), ""),
        (
            "trailing-dot",
            &["Host: h.test."],
            Some(Some("h.test.")),
            "",
        ),
        ("lowercase-name", &["host: h.test"], Some(Some(HOST)), ""),
        (
            "obs-fold",
            &["Host:", " h.test"],
            Some(Some(HOST)),
            "obs-fold may be unfolded",
        ),
        (
            "missing",
            &[],
            Some(None),
            "HTTP/1.1 without Host (RFC 9112 says reject; no ambiguity)",
        ),
    ];
    for &(name, lines, valid, note) in fields {
        c.add(Family::Host, &format!("field/{name}"), |c| {
            let raw = head("GET", &c.t("a"), "HTTP/1.1", lines) + &c.get("b");
            match valid {
                Some(h) => Spec::all(raw, vec![with_host(c.eget("a"), h), c.eget("b")]),
                None => Spec::until(raw, vec![]),
            }
            .note(note)
        });
    }
    c.add(Family::Host, "field/duplicate-in-second-request", |c| {
        let raw =
            c.get("a") + &head("GET", &c.t("b"), "HTTP/1.1", &[H, "Host: evil.test"]) + &c.get("c");
        Spec::until(raw, vec![c.eget("a")])
    });
}

fn expect(c: &mut Corpus) {
    let post = |c: &Ctx, version: &str, lines: &[&str], body: &str| {
        let cl = format!("Content-Length: {}", body.len());
        let mut hs = vec![H];
        hs.extend_from_slice(lines);
        hs.push(&cl);
        head("POST", &c.t("a"), version, &hs) + body + &c.get("b")
    };
    let cases: &[(&str, &[&str])] = &[
        ("100-continue", &["Expect: 100-continue"]),
        ("100-continue-case", &["Expect: 100-Continue"]),
        ("unknown-expectation", &["Expect: foo"]),
        ("empty", &["Expect:"]),
        ("twice", &["Expect: 100-continue", "Expect: 100-continue"]),
    ];
    for &(name, lines) in cases {
        c.add(Family::Expect, name, |c| {
            Spec::all(
                post(c, "HTTP/1.1", lines, BODY),
                vec![c.e("POST", "a", BODY), c.eget("b")],
            )
            .note("the body follows at once; a 417 is allowed for unknown expectations")
        });
    }
    c.add(Family::Expect, "100-continue-zero-length", |c| {
        Spec::all(
            post(c, "HTTP/1.1", &["Expect: 100-continue"], ""),
            vec![c.e("POST", "a", ""), c.eget("b")],
        )
    });
    c.add(Family::Expect, "100-continue-body-is-a-request", |c| {
        let s = c.smuggle();
        Spec::all(
            post(c, "HTTP/1.1", &["Expect: 100-continue"], &s),
            vec![c.e("POST", "a", &s), c.eget("b")],
        )
    });
    c.add(Family::Expect, "100-continue-http10", |c| {
        Spec::all(
            post(
                c,
                "HTTP/1.0",
                &["Connection: keep-alive", "Expect: 100-continue"],
                BODY,
            ),
            vec![c.e("POST", "a", BODY), c.eget("b")],
        )
        .note("HTTP/1.0: the expectation is ignored")
    });
    c.add(Family::Expect, "100-continue-chunked", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Expect: 100-continue", "Transfer-Encoding: chunked"],
        ) + &chunked(BODY)
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
    });
    c.add(Family::Expect, "100-continue-get", |c| {
        let raw = head("GET", &c.t("a"), "HTTP/1.1", &[H, "Expect: 100-continue"]) + &c.get("b");
        Spec::all(raw, vec![c.eget("a"), c.eget("b")])
    });
}

fn connection_close(c: &mut Corpus) {
    let req10 = |c: &Ctx, name: &str, lines: &[&str]| {
        let mut hs = vec![H];
        hs.extend_from_slice(lines);
        head("GET", &c.t(name), "HTTP/1.0", &hs)
    };
    c.add(Family::Close, "http10-without-keep-alive", |c| {
        Spec::until(req10(c, "a", &[]) + &c.get("b"), vec![c.eget("a")])
            .note("HTTP/1.0 closes after the response unless keep-alive")
    });
    c.add(Family::Close, "http10-keep-alive-chain", |c| {
        let raw = req10(c, "a", &["Connection: keep-alive"])
            + &req10(c, "b", &["Connection: keep-alive"])
            + &req10(c, "c", &[]);
        Spec::all(raw, vec![c.eget("a"), c.eget("b"), c.eget("c")])
    });
    c.add(Family::Close, "http10-keep-alive-case", |c| {
        Spec::all(
            req10(c, "a", &["Connection: Keep-Alive"]) + &c.get("b"),
            vec![c.eget("a"), c.eget("b")],
        )
    });
    c.add(Family::Close, "http10-keep-alive-and-close", |c| {
        Spec::until(
            req10(c, "a", &["Connection: keep-alive, close"]) + &c.get("b"),
            vec![c.eget("a")],
        )
    });
    c.add(Family::Close, "http10-keep-alive-header", |c| {
        Spec::all(
            req10(
                c,
                "a",
                &["Connection: keep-alive", "Keep-Alive: timeout=5, max=10"],
            ) + &c.get("b"),
            vec![c.eget("a"), c.eget("b")],
        )
    });
    c.add(Family::Close, "http10-proxy-connection", |c| {
        Spec::until(
            req10(c, "a", &["Proxy-Connection: keep-alive"]) + &c.get("b"),
            vec![c.eget("a")],
        )
        .note("Proxy-Connection is not Connection: HTTP/1.0 closes")
    });
    c.add(Family::Close, "http10-no-host-keep-alive", |c| {
        let raw = head("GET", &c.t("a"), "HTTP/1.0", &["Connection: keep-alive"]) + &c.get("b");
        Spec::all(raw, vec![with_host(c.eget("a"), None), c.eget("b")])
    });
    c.add(Family::Close, "http10-post-keep-alive", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.0",
            &[H, "Connection: keep-alive", "Content-Length: 5"],
        ) + BODY
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
    });
    c.add(Family::Close, "http10-post-without-keep-alive", |c| {
        let raw =
            head("POST", &c.t("a"), "HTTP/1.0", &[H, "Content-Length: 5"]) + BODY + &c.get("b");
        Spec::until(raw, vec![c.e("POST", "a", BODY)])
    });
    let close11: &[(&str, &[&str])] = &[
        ("http11-close", &["Connection: close"]),
        ("http11-close-uppercase", &["Connection: CLOSE"]),
        ("http11-close-in-list", &["Connection: keep-alive, close"]),
        (
            "http11-close-second-field",
            &["Connection: keep-alive", "Connection: close"],
        ),
    ];
    for &(name, lines) in close11 {
        c.add(Family::Close, name, |c| {
            let mut hs = vec![H];
            hs.extend_from_slice(lines);
            let raw = head("GET", &c.t("a"), "HTTP/1.1", &hs) + &c.get("b");
            Spec::until(raw, vec![c.eget("a")])
        });
    }
    c.add(Family::Close, "http11-close-in-second-request", |c| {
        let raw = c.get("a")
            + &head("GET", &c.t("b"), "HTTP/1.1", &[H, "Connection: close"])
            + &c.get("c");
        Spec::until(raw, vec![c.eget("a"), c.eget("b")])
    });
    c.add(Family::Close, "http11-close-post", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Connection: close", "Content-Length: 5"],
        ) + BODY
            + &c.get("b");
        Spec::until(raw, vec![c.e("POST", "a", BODY)])
    });
}

fn pipelining(c: &mut Corpus) {
    for n in [2usize, 3, 8] {
        c.add(Family::Pipelining, &format!("{n}-gets"), |c| {
            let names: Vec<String> = (0..n).map(|i| format!("r{i}")).collect();
            let raw: String = names.iter().map(|r| c.get(r)).collect();
            Spec::all(raw, names.iter().map(|r| c.eget(r)).collect())
        });
    }
    c.add(Family::Pipelining, "post-get", |c| {
        let raw =
            head("POST", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 5"]) + BODY + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
    });
    c.add(Family::Pipelining, "get-post-get", |c| {
        let raw = c.get("a")
            + &head("POST", &c.t("b"), "HTTP/1.1", &[H, "Content-Length: 5"])
            + BODY
            + &c.get("c");
        Spec::all(raw, vec![c.eget("a"), c.e("POST", "b", BODY), c.eget("c")])
    });
    c.add(Family::Pipelining, "chunked-get-post", |c| {
        let raw = head(
            "POST",
            &c.t("a"),
            "HTTP/1.1",
            &[H, "Transfer-Encoding: chunked"],
        ) + &chunked(BODY)
            + &c.get("b")
            + &head("POST", &c.t("c"), "HTTP/1.1", &[H, "Content-Length: 5"])
            + BODY;
        Spec::all(
            raw,
            vec![c.e("POST", "a", BODY), c.eget("b"), c.e("POST", "c", BODY)],
        )
    });
    c.add(Family::Pipelining, "zero-length-get", |c| {
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 0"]) + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", ""), c.eget("b")])
    });
    c.add(Family::Pipelining, "crlf-between", |c| {
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 5"])
            + BODY
            + "\r\n"
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", BODY), c.eget("b")])
            .note("an empty line before a request line is ignored (RFC 9112 2.2)")
    });
    c.add(Family::Pipelining, "large-body", |c| {
        let body = "d".repeat(20_000);
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 20000"])
            + &body
            + &c.get("b");
        Spec::all(raw, vec![c.e("POST", "a", &body), c.eget("b")])
    });
    c.add(Family::Pipelining, "invalid-in-the-middle", |c| {
        let raw = c.get("a")
            + &head("POST", &c.t("b"), "HTTP/1.1", &[H, "Content-Length : 5"])
            + BODY
            + &c.get("c");
        Spec::until(raw, vec![c.eget("a")])
    });
    c.add(Family::Pipelining, "tls-hello-after", |c| {
        let raw = cat(&[
            c.get("a").as_bytes(),
            &[
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
            ],
            b"\r\n\r\n",
        ]);
        Spec::until(raw, vec![c.eget("a")])
    });
    c.add(Family::Pipelining, "h2-preface-after", |c| {
        let raw = c.get("a") + "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        Spec::until(raw, vec![c.eget("a")])
    });
    c.add(Family::Pipelining, "trailing-partial-head", |c| {
        // The partial head may wait for its end; it must never be forwarded.
        let raw = c.get("a") + &format!("GET {} HTTP/1.1\r\nHost", c.t("b"));
        Spec::all(raw, vec![c.eget("a")])
    });
    c.add(Family::Pipelining, "mixed-versions", |c| {
        let raw = c.get("a")
            + &head("GET", &c.t("b"), "HTTP/1.0", &[H, "Connection: keep-alive"])
            + &c.get("c");
        Spec::all(raw, vec![c.eget("a"), c.eget("b"), c.eget("c")])
    });
    c.add(Family::Pipelining, "junk-after-post", |c| {
        let raw = head("POST", &c.t("a"), "HTTP/1.1", &[H, "Content-Length: 5"])
            + BODY
            + BODY
            + &c.get("b");
        Spec::until(raw, vec![c.e("POST", "a", BODY)])
    });
}

/// How the request naming a header in `Connection` carries a body.
#[derive(Clone, Copy)]
enum BodyKind {
    None,
    ContentLength,
    Chunked,
}

fn connection_options(c: &mut Corpus) {
    // Every header a Connection option could name, with a line that sets it
    // when the request does not already have it for its framing.
    let names: &[(&str, Option<&str>)] = &[
        ("content-length", None),
        ("transfer-encoding", None),
        ("host", None),
        ("x-forwarded-for", Some("X-Forwarded-For: 10.9.9.9")),
        ("x-forwarded-proto", Some("X-Forwarded-Proto: https")),
        ("via", Some("Via: 1.1 edge")),
        ("te", Some("TE: trailers")),
        ("trailer", Some("Trailer: X-T")),
        ("upgrade", Some("Upgrade: websocket")),
        ("expect", Some("Expect: 100-continue")),
        ("cookie", Some("Cookie: a=1")),
        ("authorization", Some("Authorization: Basic eDp5")),
        ("content-type", Some("Content-Type: text/plain")),
        ("forwarded", Some("Forwarded: for=10.9.9.9")),
        ("x-real-ip", Some("X-Real-IP: 10.9.9.9")),
        ("proxy-connection", Some("Proxy-Connection: keep-alive")),
        ("keep-alive", Some("Keep-Alive: timeout=5")),
        ("x-custom", Some("X-Custom: 1")),
    ];
    let kinds = [
        ("no-body", BodyKind::None),
        ("cl-body", BodyKind::ContentLength),
        ("chunked-body", BodyKind::Chunked),
    ];
    // The request, its expected record: the body is a complete request, so
    // a proxy that drops the framing shows a smuggled one.
    let build = |c: &Ctx, version: &str, conn: &[&str], extra: Option<&str>, kind: BodyKind| {
        let s = c.smuggle();
        let cl = format!("Content-Length: {}", s.len());
        let mut hs = vec![H];
        hs.extend_from_slice(conn);
        hs.extend(extra);
        let (method, body, raw_body) = match kind {
            BodyKind::None => ("GET", String::new(), String::new()),
            BodyKind::ContentLength => {
                hs.push(&cl);
                ("POST", s.clone(), s.clone())
            }
            BodyKind::Chunked => {
                hs.push("Transfer-Encoding: chunked");
                ("POST", s.clone(), chunked(&s))
            }
        };
        let raw = head(method, &c.t("a"), version, &hs) + &raw_body + &c.get("b");
        (raw, c.e(method, "a", &body))
    };
    for &(name, extra) in names {
        for (kind_name, kind) in kinds {
            c.add(Family::Connection, &format!("{name}/{kind_name}"), |c| {
                let conn = format!("Connection: {name}");
                let (raw, a) = build(c, "HTTP/1.1", &[&conn], extra, kind);
                Spec::all(raw, vec![a, c.eget("b")])
                    .note("the listed header goes, the framing and the host stay")
            });
            // Transfer-Encoding in HTTP/1.0 is faulty framing on its own.
            if matches!(kind, BodyKind::Chunked) {
                continue;
            }
            c.add(
                Family::Connection,
                &format!("{name}/{kind_name}/http10"),
                |c| {
                    let conn = format!("Connection: keep-alive, {name}");
                    let (raw, a) = build(c, "HTTP/1.0", &[&conn], extra, kind);
                    Spec::all(raw, vec![a, c.eget("b")])
                        .note("the listed header goes, the framing and the host stay")
                },
            );
        }
    }
    let special: &[(&str, &[&str])] = &[
        ("mixed-case", &["Connection: Content-Length"]),
        ("padded-list", &["Connection:  content-length ,keep-alive"]),
        (
            "second-field",
            &["Connection: keep-alive", "Connection: content-length"],
        ),
        ("with-host", &["Connection: content-length, host"]),
        (
            "nine-tokens",
            &["Connection: o1, o2, o3, o4, o5, o6, o7, o8, content-length"],
        ),
    ];
    for &(name, conn) in special {
        c.add(Family::Connection, &format!("content-length/{name}"), |c| {
            let (raw, a) = build(c, "HTTP/1.1", conn, None, BodyKind::ContentLength);
            Spec::all(raw, vec![a, c.eget("b")])
        });
    }
    c.add(Family::Connection, "content-length/with-close", |c| {
        let (raw, a) = build(
            c,
            "HTTP/1.1",
            &["Connection: close, content-length"],
            None,
            BodyKind::ContentLength,
        );
        Spec::until(raw, vec![a])
    });
    c.add(
        Family::Connection,
        "content-length/http10-without-keep-alive",
        |c| {
            let (raw, a) = build(
                c,
                "HTTP/1.0",
                &["Connection: content-length"],
                None,
                BodyKind::ContentLength,
            );
            Spec::until(raw, vec![a])
        },
    );
}
