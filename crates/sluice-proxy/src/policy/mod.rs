//! The HTTP/1 message policy, sans-IO: one set of rules for both HTTP/1
//! engines (the fast path [`crate::h1fast`] and hyper's path
//! [`crate::http`], whose raw head scanner [`crate::h1scan`] applies the
//! same checks before hyper parses). The engines differ only in transport
//! (how bytes are read and written); whether a message is framed well
//! enough to forward, which header lines cross the proxy and what the
//! proxy adds are decided here, once.
//!
//! Why one place: the two engines once kept their own lists of hop-by-hop
//! headers, the lists drifted, and `Connection: content-length` made one
//! engine drop a request's `Content-Length` while still relaying its body,
//! so the server read the body as a second request (request smuggling).
//!
//! # Requests (RFC 9112 sections 2-7, RFC 9110 sections 7 and 8)
//!
//! A request is refused (400, the connection closes) when its framing is
//! not one that every parser reads alike:
//! - `Transfer-Encoding` together with `Content-Length`;
//! - `Transfer-Encoding` in an HTTP/1.0 request, or any coding list other
//!   than exactly `chunked`;
//! - a `Content-Length` that is not 1*DIGIT (a list in one line included),
//!   or repeated lines whose values differ;
//! - no `Host` in HTTP/1.1, several `Host` lines, or an empty one;
//! - a target that is not origin-form, absolute-form (`http`/`https`), or
//!   `*` with `OPTIONS`;
//! - more than [`MAX_CONNECTION_OPTIONS`] `Connection` options.
//!
//! `CONNECT` gets 405. More than [`MAX_HEADERS`] header lines, or a head
//! over `max_header_size`, gets 431. Heads that do not parse (obs-fold,
//! whitespace before a colon, bare CR, control bytes) get 400.
//!
//! # Header lines forwarded
//!
//! - Hop-by-hop lines ([`HOP_BY_HOP`]) never cross; `Upgrade` does on an
//!   upgrade request, with `Connection: upgrade`.
//! - Lines named by a `Connection` option are removed (RFC 9110 section
//!   7.6.1), **except** the framing and routing lines and those sluice
//!   writes itself ([`PROTECTED`]): for those the option is ignored. Which
//!   request reaches the server, and how its body is framed, is decided by
//!   the proxy and never by an option the client sends.
//! - Framing lines describe the body on this hop: the engine that writes
//!   the body writes them (the fast path one canonical `content-length`;
//!   hyper's path the framing hyper chooses).
//! - An absolute-form target's authority replaces `Host` (RFC 9112
//!   section 3.2.2), and servers get origin-form.
//! - With `forwardfor`, `X-Forwarded-For` lines are merged into one list
//!   ending with the client's address and `X-Forwarded-Proto` is replaced;
//!   with `via`, `Via` gets sluice's entry. Without them those lines pass
//!   unchanged.
//!
//! # Responses
//!
//! The same hop-by-hop and `Connection` rules; framing as RFC 9112
//! section 6.3 (`Transfer-Encoding` wins over `Content-Length`, which is
//! then dropped; an HTTP/1.0 response with `Transfer-Encoding` or
//! differing lengths is a bad response, 502).

use http::{Method, StatusCode};

/// Most header lines of one request or response head (hyper's default;
/// HAProxy's `tune.http.maxhdr` is 101). More gets a 431 (request) or a
/// 502 (response).
pub(crate) const MAX_HEADERS: usize = 100;

/// The lowest and highest response status forwarded (RFC 9110 section
/// 15: three digits, classes 1 to 5); others are a bad response (502).
pub(crate) const MIN_STATUS: u16 = 100;
/// See [`MIN_STATUS`].
pub(crate) const MAX_STATUS: u16 = 599;

/// Most `Connection` options of one message; more is a bad message (a
/// legitimate client sends one or two).
pub(crate) const MAX_CONNECTION_OPTIONS: usize = 16;

/// Headers that describe one hop (RFC 9110 section 7.6.1), plus the
/// non-standard `Keep-Alive` and `Proxy-Connection`. `Transfer-Encoding`
/// is framing ([`Disposition::Framing`]), not in this list.
pub(crate) const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Headers a `Connection` option never removes: framing, routing, and the
/// lines sluice writes itself.
pub(crate) const PROTECTED: [&str; 6] = [
    "content-length",
    "transfer-encoding",
    "host",
    "x-forwarded-for",
    "x-forwarded-proto",
    "via",
];

/// Header names the policy reads.
pub(crate) mod name {
    pub(crate) const CONNECTION: &str = "connection";
    pub(crate) const CONTENT_LENGTH: &str = "content-length";
    pub(crate) const TRANSFER_ENCODING: &str = "transfer-encoding";
    pub(crate) const HOST: &str = "host";
    pub(crate) const UPGRADE: &str = "upgrade";
    pub(crate) const EXPECT: &str = "expect";
    pub(crate) const X_FORWARDED_FOR: &str = "x-forwarded-for";
    pub(crate) const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
    pub(crate) const VIA: &str = "via";
}

/// Why a message is refused. Requests get [`Violation::status`] and the
/// connection closes; a response from a server with one is a 502.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Violation {
    /// Both `Content-Length` and `Transfer-Encoding`.
    LengthAndChunked,
    /// A `Content-Length` that is not 1*DIGIT, or lines that differ.
    BadContentLength,
    /// A coding list other than exactly `chunked` (requests), or `chunked`
    /// not last or twice (responses).
    BadTransferEncoding,
    /// `Transfer-Encoding` in an HTTP/1.0 message (RFC 9112 section 6.1).
    TransferEncodingInHttp10,
    /// No `Host` in an HTTP/1.1 request.
    MissingHost,
    /// Several `Host` lines, or one that is not an authority (RFC 9112
    /// section 3.2).
    BadHost,
    /// A request target in none of the accepted forms.
    BadTarget,
    /// More `Connection` options than [`MAX_CONNECTION_OPTIONS`].
    TooManyConnectionOptions,
    /// A head that does not parse: obs-fold, whitespace before a colon,
    /// bare CR, control bytes, a bad request line or version.
    BadHead,
    /// More header lines than [`MAX_HEADERS`].
    TooManyHeaders,
    /// A head over `max_header_size`.
    HeadTooLarge,
    /// `CONNECT` (tunnels to arbitrary hosts are not a reverse proxy's job).
    Connect,
}

impl Violation {
    /// Every violation, in declaration order (`to_u8` indexes it).
    const ALL: [Violation; 12] = [
        Self::LengthAndChunked,
        Self::BadContentLength,
        Self::BadTransferEncoding,
        Self::TransferEncodingInHttp10,
        Self::MissingHost,
        Self::BadHost,
        Self::BadTarget,
        Self::TooManyConnectionOptions,
        Self::BadHead,
        Self::TooManyHeaders,
        Self::HeadTooLarge,
        Self::Connect,
    ];

    /// A byte for an atomic (see `conn::ConnWatch`).
    pub(crate) fn to_u8(self) -> u8 {
        self as u8
    }

    /// The violation [`Self::to_u8`] gave `v`.
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// The status a client gets for a request with this violation.
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::TooManyHeaders | Self::HeadTooLarge => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Self::Connect => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// One sentence for the client (the body of the error page).
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::LengthAndChunked => "Both Content-Length and Transfer-Encoding.",
            Self::BadContentLength => "Invalid or conflicting Content-Length.",
            Self::BadTransferEncoding => "Transfer-Encoding other than chunked.",
            Self::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message.",
            Self::MissingHost => "An HTTP/1.1 request needs a Host header.",
            Self::BadHost => "Several Host headers, or an invalid one.",
            Self::BadTarget => "Invalid request target.",
            Self::TooManyConnectionOptions => "Too many Connection options.",
            Self::BadHead => "The request head does not parse.",
            Self::TooManyHeaders => "Too many header lines.",
            Self::HeadTooLarge => "The request head is too large.",
            Self::Connect => "CONNECT is not supported.",
        }
    }
}

/// HTTP/1 minor version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    Http10,
    Http11,
}

impl Version {
    /// From httparse's minor version; `None` for anything but 0 and 1.
    pub(crate) fn from_minor(minor: u8) -> Option<Self> {
        match minor {
            0 => Some(Self::Http10),
            1 => Some(Self::Http11),
            _ => None,
        }
    }
}

/// How a request body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestBody {
    /// No body, and no `Content-Length` line.
    None,
    /// `Content-Length: n` (possibly 0).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// How a response body is framed (RFC 9112 section 6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResponseBody {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    Length(u64),
    /// The last coding is `chunked`.
    Chunked,
    /// Read until the server closes.
    UntilClose,
}

/// `Connection` options of one message.
#[derive(Debug, Default)]
pub(crate) struct ConnectionOptions<'a> {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// Other options: names of header lines to remove (protected names are
    /// not kept here: their option is ignored).
    listed: [&'a [u8]; MAX_CONNECTION_OPTIONS],
    n: usize,
}

impl<'a> ConnectionOptions<'a> {
    /// Read the options of every `Connection` line in `fields`.
    pub(crate) fn of<I>(fields: I) -> Result<Self, Violation>
    where
        I: IntoIterator<Item = (&'a str, &'a [u8])>,
    {
        let mut o = Self::default();
        let mut total = 0usize;
        for (n, v) in fields {
            if !n.eq_ignore_ascii_case(name::CONNECTION) {
                continue;
            }
            for tok in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if tok.is_empty() {
                    continue;
                }
                total += 1;
                if total > MAX_CONNECTION_OPTIONS {
                    return Err(Violation::TooManyConnectionOptions);
                }
                if tok.eq_ignore_ascii_case(b"close") {
                    o.close = true;
                } else if tok.eq_ignore_ascii_case(b"keep-alive") {
                    o.keep_alive = true;
                } else if tok.eq_ignore_ascii_case(b"upgrade") {
                    o.upgrade = true;
                } else if !PROTECTED
                    .iter()
                    .any(|p| tok.eq_ignore_ascii_case(p.as_bytes()))
                {
                    // Bounded by MAX_CONNECTION_OPTIONS above.
                    if let Some(slot) = o.listed.get_mut(o.n) {
                        *slot = tok;
                        o.n += 1;
                    }
                }
            }
        }
        Ok(o)
    }

    /// Whether a `Connection` option names `header` (so it is removed).
    fn lists(&self, header: &str) -> bool {
        self.listed[..self.n]
            .iter()
            .any(|l| l.eq_ignore_ascii_case(header.as_bytes()))
    }
}

/// What the proxy does with one header line of a message it forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Forward unchanged.
    Keep,
    /// Hop-by-hop, or named by a `Connection` option: not forwarded.
    Drop,
    /// `Content-Length` / `Transfer-Encoding`: written by the engine for
    /// the body as it sends it.
    Framing,
    /// `Host`, replaced by an absolute-form target's authority.
    Host,
    /// Merged into sluice's own line (`X-Forwarded-For`, `Via`) or
    /// replaced by it (`X-Forwarded-Proto`).
    Rewritten,
}

/// What the proxy adds to the messages of one client connection.
#[derive(Debug, Clone)]
pub(crate) struct Additions {
    /// The client's address for `X-Forwarded-For` (with `forwardfor`).
    pub(crate) forwarded_for: Option<String>,
    /// `X-Forwarded-Proto` value (with `forwardfor`).
    pub(crate) forwarded_proto: &'static str,
    /// Add sluice's `Via` entry.
    pub(crate) via: bool,
}

impl Additions {
    /// The additions for a client at `client_ip` (already canonical),
    /// over TLS when `https`.
    pub(crate) fn new(
        forwardfor: bool,
        client_ip: std::net::IpAddr,
        https: bool,
        via: bool,
    ) -> Self {
        Self {
            forwarded_for: forwardfor.then(|| client_ip.to_canonical().to_string()),
            forwarded_proto: if https { "https" } else { "http" },
            via,
        }
    }
}

/// What the policy decided about a request head it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) body: RequestBody,
    /// The client connection closes after this exchange (HTTP/1.0 keeps it
    /// only when asked, RFC 9112 section 9.3).
    pub(crate) close: bool,
    /// An upgrade is asked for (`Upgrade` with `Connection: upgrade`).
    pub(crate) upgrade: bool,
    /// `Expect` is present (hyper's path answers `100-continue`).
    pub(crate) expect: bool,
    /// The authority of an absolute-form target: the `Host` to send.
    pub(crate) authority: Option<String>,
    /// The target the server gets (origin-form, or `*`).
    pub(crate) origin: String,
}

/// Check an HTTP/1 request head: the request line's parts and its header
/// lines. `fields` is iterated more than once.
pub(crate) fn check_request<'a, I>(
    method: &str,
    target: &str,
    version: Version,
    fields: I,
) -> Result<Request, Violation>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    check_request_options(method, target, version, fields).map(|(r, _)| r)
}

/// [`check_request`], with the message's `Connection` options (read once,
/// for the dispositions that follow).
pub(crate) fn check_request_options<'a, I>(
    method: &str,
    target: &str,
    version: Version,
    fields: I,
) -> Result<(Request, ConnectionOptions<'a>), Violation>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| Violation::BadHead)?;
    if method == Method::CONNECT {
        return Err(Violation::Connect);
    }
    let (origin, authority) = request_target(&method, target)?;
    let conn = ConnectionOptions::of(fields.clone())?;
    let mut hosts = 0usize;
    let mut length: Option<u64> = None;
    let mut te = false;
    let mut upgrade_header = false;
    let mut expect = false;
    for (n, v) in fields {
        if n.eq_ignore_ascii_case(name::CONTENT_LENGTH) {
            merge_length(&mut length, v)?;
        } else if n.eq_ignore_ascii_case(name::TRANSFER_ENCODING) {
            // Requests: exactly one coding, `chunked` (a list, a repeated
            // line or any other coding is refused).
            if te || !v.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(Violation::BadTransferEncoding);
            }
            te = true;
        } else if n.eq_ignore_ascii_case(name::HOST) {
            hosts += 1;
            if authority.is_none() && !valid_host(v) {
                return Err(Violation::BadHost);
            }
        } else if n.eq_ignore_ascii_case(name::UPGRADE) {
            upgrade_header = true;
        } else if n.eq_ignore_ascii_case(name::EXPECT) {
            expect = true;
        }
    }
    if hosts > 1 {
        return Err(Violation::BadHost);
    }
    if hosts == 0 && version == Version::Http11 && authority.is_none() {
        return Err(Violation::MissingHost);
    }
    let body = match (te, length) {
        (true, Some(_)) => return Err(Violation::LengthAndChunked),
        (true, None) if version == Version::Http10 => {
            return Err(Violation::TransferEncodingInHttp10);
        }
        (true, None) => RequestBody::Chunked,
        (false, Some(n)) => RequestBody::Length(n),
        (false, None) => RequestBody::None,
    };
    let close = match version {
        Version::Http10 => conn.close || !conn.keep_alive,
        Version::Http11 => conn.close,
    };
    let upgrade = upgrade_header && conn.upgrade;
    Ok((
        Request {
            method,
            version,
            body,
            close,
            upgrade,
            expect,
            authority,
            origin,
        },
        conn,
    ))
}

/// The origin-form target to send and, for an absolute-form target, its
/// authority (RFC 9112 section 3.2).
fn request_target(method: &Method, target: &str) -> Result<(String, Option<String>), Violation> {
    // A fragment is never part of a request target (RFC 9112 section 3.2);
    // forwarding it would let two parsers disagree on the path.
    if target.contains('#') {
        return Err(Violation::BadTarget);
    }
    if target.starts_with('/') {
        return Ok((target.to_owned(), None));
    }
    if target == "*" && method == Method::OPTIONS {
        return Ok((target.to_owned(), None));
    }
    let uri: http::Uri = target.parse().map_err(|_| Violation::BadTarget)?;
    let scheme_ok = uri
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    match (scheme_ok, uri.authority()) {
        // User info is refused (RFC 9110 section 4.2.4).
        (true, Some(a)) if valid_host(a.as_str().as_bytes()) => {
            let origin = uri.path_and_query().map_or("/", |p| p.as_str());
            // `http://h?q` has the path empty: origin-form needs "/".
            let origin = if origin.starts_with('/') {
                origin.to_owned()
            } else {
                format!("/{origin}")
            };
            Ok((origin, Some(a.as_str().to_owned())))
        }
        _ => Err(Violation::BadTarget),
    }
}

/// A `Host` value: an authority without user info (RFC 9110 section 7.2,
/// RFC 3986 section 3.2): a bracketed IPv6 literal or a reg-name / IPv4
/// address, then an optional `:port` of digits up to 65535. Checked by
/// hand, byte by byte: this runs on every request of the fast path.
fn valid_host(v: &[u8]) -> bool {
    let v = v.trim_ascii();
    let (host_ok, rest) = match v.first() {
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) => (
                end > 1
                    && v[1..end]
                        .iter()
                        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                &v[end + 1..],
            ),
            None => return false,
        },
        Some(_) => {
            let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            (
                end > 0 && v[..end].iter().all(|&b| is_reg_name(b)),
                &v[end..],
            )
        }
        None => return false,
    };
    host_ok
        && match rest {
            [] => true,
            [b':', port @ ..] => {
                port.len() <= 5
                    && port.iter().all(u8::is_ascii_digit)
                    && digits_value(port).is_none_or(|p| p <= u64::from(u16::MAX))
            }
            _ => false,
        }
}

/// A byte of an RFC 3986 reg-name: unreserved, sub-delims or `%` of a
/// pct-encoding.
fn is_reg_name(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b'%'
        )
}

/// The value of 1*DIGIT, `None` when empty, not all digits, or over `u64`.
fn digits_value(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// A `Content-Length` value: 1*DIGIT (RFC 9110 section 8.6), leading
/// zeros allowed; `None` otherwise. A list in one line (`5, 5`) is
/// refused: hyper's parser refuses it, and one policy for both engines
/// means the stricter rule. Repeated lines with one value are accepted.
pub(crate) fn content_length(v: &[u8]) -> Option<u64> {
    digits_value(v.trim_ascii())
}

/// Add a `Content-Length` line to the length seen so far: repeated lines
/// must agree.
fn merge_length(length: &mut Option<u64>, v: &[u8]) -> Result<(), Violation> {
    let l = content_length(v).ok_or(Violation::BadContentLength)?;
    if length.is_some_and(|prev| prev != l) {
        return Err(Violation::BadContentLength);
    }
    *length = Some(l);
    Ok(())
}

/// What the proxy does with a request header line named `header`.
pub(crate) fn request_disposition(
    header: &str,
    conn: &ConnectionOptions<'_>,
    req: &Request,
    add: &Additions,
) -> Disposition {
    if header.eq_ignore_ascii_case(name::CONTENT_LENGTH)
        || header.eq_ignore_ascii_case(name::TRANSFER_ENCODING)
    {
        return Disposition::Framing;
    }
    if header.eq_ignore_ascii_case(name::HOST) {
        return if req.authority.is_some() {
            Disposition::Host
        } else {
            Disposition::Keep
        };
    }
    if req.upgrade && header.eq_ignore_ascii_case(name::UPGRADE) {
        return Disposition::Keep;
    }
    hop_disposition(header, conn, rewritten_in_request(header, add))
}

/// What the proxy does with a response header line named `header`;
/// `upgrading`: the response is a `101` to an upgrade request.
pub(crate) fn response_disposition(
    header: &str,
    conn: &ConnectionOptions<'_>,
    add: &Additions,
    upgrading: bool,
) -> Disposition {
    if header.eq_ignore_ascii_case(name::CONTENT_LENGTH)
        || header.eq_ignore_ascii_case(name::TRANSFER_ENCODING)
    {
        return Disposition::Framing;
    }
    if upgrading && header.eq_ignore_ascii_case(name::UPGRADE) {
        return Disposition::Keep;
    }
    // X-Forwarded-* are request headers: a response's pass unchanged.
    hop_disposition(
        header,
        conn,
        add.via && header.eq_ignore_ascii_case(name::VIA),
    )
}

/// The lines sluice rewrites in a request: the forwarding headers (with
/// `forwardfor`) and `Via` (with `via`).
fn rewritten_in_request(header: &str, add: &Additions) -> bool {
    (add.forwarded_for.is_some()
        && (header.eq_ignore_ascii_case(name::X_FORWARDED_FOR)
            || header.eq_ignore_ascii_case(name::X_FORWARDED_PROTO)))
        || (add.via && header.eq_ignore_ascii_case(name::VIA))
}

/// Rewritten lines first, then hop-by-hop and `Connection`-named ones.
fn hop_disposition(header: &str, conn: &ConnectionOptions<'_>, rewritten: bool) -> Disposition {
    if rewritten {
        Disposition::Rewritten
    } else if is_hop_by_hop(header) || conn.lists(header) {
        Disposition::Drop
    } else {
        Disposition::Keep
    }
}

fn is_hop_by_hop(header: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| header.eq_ignore_ascii_case(h))
}

/// Where the policy writes the header lines sluice adds: the fast path's
/// wire-format buffer, or hyper's header map.
pub(crate) trait HeaderOut {
    /// Add the line `name: value`, the value given in pieces.
    fn put(&mut self, name: &'static str, value: &mut dyn Iterator<Item = &[u8]>);
}

impl HeaderOut for Vec<u8> {
    fn put(&mut self, name: &'static str, value: &mut dyn Iterator<Item = &[u8]>) {
        self.extend_from_slice(name.as_bytes());
        self.extend_from_slice(b": ");
        for piece in value {
            self.extend_from_slice(piece);
        }
        self.extend_from_slice(b"\r\n");
    }
}

impl HeaderOut for http::HeaderMap {
    fn put(&mut self, name: &'static str, value: &mut dyn Iterator<Item = &[u8]>) {
        let bytes: Vec<u8> = value.flat_map(|p| p.iter().copied()).collect();
        // The pieces come from values that parsed, and sluice's own text.
        if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
            self.insert(http::HeaderName::from_static(name), v);
        }
    }
}

/// Write the header lines sluice adds to a request, after the lines
/// kept. `fields` are the client's lines (for the lists sluice extends).
pub(crate) fn request_additions<'a, I>(
    fields: I,
    req: &Request,
    add: &Additions,
    out: &mut impl HeaderOut,
) where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    if let Some(host) = &req.authority {
        out.put(name::HOST, &mut std::iter::once(host.as_bytes()));
    }
    if let Some(ip) = &add.forwarded_for {
        // Several X-Forwarded-For lines are one list (RFC 9110 section 5.3).
        out.put(
            name::X_FORWARDED_FOR,
            &mut extend_list(fields.clone(), name::X_FORWARDED_FOR, ip.as_bytes()),
        );
        out.put(
            name::X_FORWARDED_PROTO,
            &mut std::iter::once(add.forwarded_proto.as_bytes()),
        );
    }
    if add.via {
        out.put(
            name::VIA,
            &mut extend_list(fields, name::VIA, via_entry(req.version).as_bytes()),
        );
    }
    if req.upgrade {
        out.put(name::CONNECTION, &mut std::iter::once(&b"upgrade"[..]));
    }
}

/// Write the header lines sluice adds to a response from a server
/// speaking `version`; `upgrading` as in [`response_disposition`].
pub(crate) fn response_additions<'a, I>(
    fields: I,
    version: Version,
    add: &Additions,
    upgrading: bool,
    out: &mut impl HeaderOut,
) where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    if add.via {
        out.put(
            name::VIA,
            &mut extend_list(fields, name::VIA, via_entry(version).as_bytes()),
        );
    }
    if upgrading {
        out.put(name::CONNECTION, &mut std::iter::once(&b"upgrade"[..]));
    }
}

/// sluice's `Via` entry (RFC 9110 section 7.6.3: the version the message
/// was received in, and sluice's pseudonym).
pub(crate) fn via_entry(version: Version) -> &'static str {
    match version {
        Version::Http10 => "1.0 sluice",
        Version::Http11 => "1.1 sluice",
    }
}

/// `v1, v2, ..., last` from every non-empty line named `header`, then
/// `last`, as pieces.
fn extend_list<'a: 'b, 'b, I>(
    fields: I,
    header: &'static str,
    last: &'b [u8],
) -> impl Iterator<Item = &'b [u8]>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])>,
{
    fields
        .into_iter()
        .filter(move |(n, v)| n.eq_ignore_ascii_case(header) && !v.trim_ascii().is_empty())
        .flat_map(|(_, v)| [v.trim_ascii(), &b", "[..]])
        .chain(std::iter::once(last))
}

/// What the policy decided about a response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) version: Version,
    pub(crate) body: ResponseBody,
    /// The server closes the connection after this response.
    pub(crate) server_close: bool,
    /// It has a `Transfer-Encoding` (its `Content-Length`, if any, is then
    /// not forwarded).
    pub(crate) transfer_encoding: bool,
}

/// Check a response head from a server to a request that was a `HEAD`
/// when `head`.
pub(crate) fn check_response<'a, I>(
    status: u16,
    version: Version,
    head: bool,
    fields: I,
) -> Result<Response, Violation>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    check_response_options(status, version, head, fields).map(|(r, _)| r)
}

/// [`check_response`], with the message's `Connection` options and whether
/// it has a `Transfer-Encoding` (read once, for the dispositions).
pub(crate) fn check_response_options<'a, I>(
    status: u16,
    version: Version,
    head: bool,
    fields: I,
) -> Result<(Response, ConnectionOptions<'a>), Violation>
where
    I: IntoIterator<Item = (&'a str, &'a [u8])> + Clone,
{
    // A status is three digits, 100 to 599 (RFC 9110 section 15); httparse
    // also reads `001` as 1, which would be written back as `1`.
    if !(MIN_STATUS..=MAX_STATUS).contains(&status) {
        return Err(Violation::BadHead);
    }
    let conn = ConnectionOptions::of(fields.clone())?;
    let mut length: Option<u64> = None;
    let mut te = false;
    let mut chunked_last = false;
    let mut chunked_seen = false;
    for (n, v) in fields {
        if n.eq_ignore_ascii_case(name::CONTENT_LENGTH) {
            merge_length(&mut length, v)?;
        } else if n.eq_ignore_ascii_case(name::TRANSFER_ENCODING) {
            te = true;
            for coding in v.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue;
                }
                let chunked = coding.eq_ignore_ascii_case(b"chunked");
                if chunked && chunked_seen {
                    // Chunked applied twice (RFC 9112 section 6.1).
                    return Err(Violation::BadTransferEncoding);
                }
                chunked_seen |= chunked;
                chunked_last = chunked;
            }
        }
    }
    if te && version == Version::Http10 {
        return Err(Violation::TransferEncodingInHttp10);
    }
    if chunked_seen && !chunked_last {
        return Err(Violation::BadTransferEncoding);
    }
    let body = if head || status < 200 || status == 204 || status == 304 {
        ResponseBody::Empty
    } else if te {
        if chunked_last {
            ResponseBody::Chunked
        } else {
            ResponseBody::UntilClose
        }
    } else if let Some(n) = length {
        ResponseBody::Length(n)
    } else {
        ResponseBody::UntilClose
    };
    let server_close = conn.close
        || body == ResponseBody::UntilClose
        || (version == Version::Http10 && !conn.keep_alive);
    Ok((
        Response {
            status,
            version,
            body,
            server_close,
            transfer_encoding: te,
        },
        conn,
    ))
}

/// The parts of a head parsed with httparse, as the policy reads them.
pub(crate) fn fields<'h, 'b>(
    headers: &'h [httparse::Header<'b>],
) -> impl Iterator<Item = (&'b str, &'b [u8])> + Clone + 'h {
    headers.iter().map(|h| (h.name, h.value))
}

/// A complete request head the policy accepts.
#[derive(Debug)]
pub(crate) struct AcceptedHead<'h, 'b> {
    /// Bytes of the head in the buffer.
    pub(crate) len: usize,
    pub(crate) request: Request,
    /// Its header lines, in the caller's array.
    pub(crate) headers: &'h [httparse::Header<'b>],
    /// Its `Connection` options.
    pub(crate) conn: ConnectionOptions<'b>,
}

/// Header storage for one parse: left uninitialised (httparse writes what
/// it parses), so a parse does not first clear [`MAX_HEADERS`] entries.
pub(crate) type HeaderSpace<'b> = [std::mem::MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// Fresh [`HeaderSpace`].
pub(crate) fn header_space<'b>() -> HeaderSpace<'b> {
    [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS]
}

/// A request head parsed with httparse (as both engines' raw readers do):
/// `Ok(None)` while incomplete, the head and the policy's verdict when
/// complete. Over `max_head` bytes or [`MAX_HEADERS`] lines is a 431.
pub(crate) fn parse_request_head<'h, 'b: 'h>(
    buf: &'b [u8],
    max_head: usize,
    headers: &'h mut HeaderSpace<'b>,
) -> Result<Option<AcceptedHead<'h, 'b>>, Violation> {
    let mut req = httparse::Request::new(&mut []);
    let status = req.parse_with_uninit_headers(buf, headers);
    let head_len = match status {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > max_head => {
            return Err(Violation::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Violation::TooManyHeaders),
        Err(_) => return Err(Violation::BadHead),
    };
    if head_len > max_head {
        return Err(Violation::HeadTooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(Violation::BadHead);
    };
    let version = Version::from_minor(minor).ok_or(Violation::BadHead)?;
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let (request, conn) = check_request_options(method, target, version, fields(headers))?;
    Ok(Some(AcceptedHead {
        len: head_len,
        request,
        headers,
        conn,
    }))
}

#[cfg(test)]
mod tests;
