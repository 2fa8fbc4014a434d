//! Differential HTTP request-smuggling corpus (issue 14, point 2).
//!
//! Several hundred raw request vectors (`smuggling/vectors.rs`) are sent,
//! each on a new client connection, through sluice's HTTP/1 fast path,
//! sluice's hyper path and HAProxy, each in front of its own recording
//! backend with a strict parser (`smuggling/backend.rs`). Per vector and
//! proxy the backend must see exactly the requests the client's framing
//! defines, or a prefix of them followed by a 4xx (or nothing) and a closed
//! connection; never garbage, never a request the client did not frame,
//! never one without the proxy's `X-Forwarded-For`. sluice's two engines
//! must fail none and agree with each other; HAProxy's results are recorded
//! in `target/smuggling-report.md`, not asserted.
//!
//! Run: `cargo test -p sluice-proxy --test smuggling -- --nocapture`.

#[path = "smuggling/backend.rs"]
mod backend;
#[path = "smuggling/client.rs"]
mod client;
mod common;
#[path = "smuggling/haproxy.rs"]
mod haproxy;
#[path = "smuggling/vectors.rs"]
mod vectors;

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use backend::{ParsedRequest, Record, RecordingBackend};
use haproxy::Haproxy;
use sluice_proxy::{ProxyHandle, ServerConfig};
use vectors::{Expected, Family, Vector};

/// Bound of the whole corpus run (three proxies at once).
const CORPUS_LIMIT: Duration = Duration::from_secs(240);

/// After a vector's server connections are closed, time for the proxy to
/// see the close before the next vector may want a pooled connection.
const POOL_SETTLE: Duration = Duration::from_millis(10);

/// The address every proxy sees the client at, and so the last element of
/// the `X-Forwarded-For` it sends.
const CLIENT_IP: &str = "127.0.0.1";

/// Environment variable selecting the vectors whose name contains its
/// value; the run then prints every record and writes no report.
const FILTER_ENV: &str = "SMUGGLING_VECTORS";

/// Report file name, in the target directory.
const REPORT_FILE: &str = "smuggling-report.md";

/// Longest excerpt of raw bytes shown in a verdict.
const SHOW_BYTES: usize = 72;

/// Vectors where sluice's fast path and hyper's path may give different
/// verdict classes (both still correct), and why. Empty: the fast path
/// hands every request it does not fully understand to hyper's path, so
/// the two answer alike.
const ENGINE_DIFFERENCES: &[(&str, &str)] = &[];

/// The outcome of one vector through one proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The backend saw exactly `expect`, a vector without a tail (and the
    /// client got their responses).
    Forwarded(usize),
    /// The backend saw the first `after` requests of `expect` (all of them
    /// when the vector has a tail); what came next got `status` (`None`:
    /// no answer). When `after` is short of `expect`, the connection closed.
    Rejected {
        after: usize,
        status: Option<u16>,
        closed: bool,
        /// The proxy streamed the head (and part of the body) of the
        /// rejected request, then cut the server connection: the backend
        /// never saw a complete request.
        partial: bool,
    },
    /// The backend saw the Transfer-Encoding reading (`alt`), then the
    /// connection closed.
    TeOnly(usize),
    /// Anything else: smuggling, garbage, a wrong body or host, a missing
    /// rejection.
    Fail(String),
}

impl Verdict {
    fn failed(&self) -> bool {
        matches!(self, Verdict::Fail(_))
    }

    /// What the differential comparison looks at: forwarded all, rejected
    /// at an index, TE-only, failed (not the status code).
    fn class(&self) -> (u8, usize) {
        match self {
            Verdict::Forwarded(n) => (0, *n),
            Verdict::Rejected { after, .. } => (1, *after),
            Verdict::TeOnly(n) => (2, *n),
            Verdict::Fail(_) => (3, 0),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Forwarded(n) => write!(f, "ok {n}"),
            Verdict::Rejected {
                after,
                status,
                closed,
                partial,
            } => {
                match (status, closed) {
                    (Some(s), _) => write!(f, "{s} after {after}")?,
                    (None, true) => write!(f, "closed after {after}")?,
                    (None, false) => write!(f, "no answer after {after}")?,
                }
                if *partial {
                    f.write_str(" (head streamed, then cut)")?;
                }
                Ok(())
            }
            Verdict::TeOnly(n) => write!(f, "TE-only {n}, closed"),
            Verdict::Fail(why) => write!(f, "FAIL: {why}"),
        }
    }
}

fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(SHOW_BYTES)];
    let more = if bytes.len() > SHOW_BYTES { "..." } else { "" };
    format!("\"{}{more}\"", cut.escape_ascii())
}

/// The path of a target, absolute-form or not.
fn origin_form(target: &str) -> &str {
    match target.find("://") {
        Some(i) if target[..i].bytes().all(|b| b.is_ascii_alphabetic()) => {
            let rest = &target[i + 3..];
            match rest.find(['/', '?']) {
                Some(j) => &rest[j..],
                None => "/",
            }
        }
        _ => target,
    }
}

/// The authority of an absolute-form target.
fn authority(target: &str) -> Option<&str> {
    let i = target.find("://")?;
    if !target[..i].bytes().all(|b| b.is_ascii_alphabetic()) {
        return None;
    }
    let rest = &target[i + 3..];
    Some(&rest[..rest.find(['/', '?']).unwrap_or(rest.len())])
}

/// One backend record, readable.
fn describe(r: &Record) -> String {
    let fields = |fs: &[(String, Vec<u8>)]| {
        fs.iter()
            .map(|(n, v)| format!("{n}: {}", show(v)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match r {
        Record::Request(req) => format!(
            "{} HTTP/1.{} [{}] body {} trailers [{}]",
            line_of(req),
            req.minor,
            fields(&req.headers),
            show(&req.body),
            fields(&req.trailers)
        ),
        Record::Garbage { conn, why, bytes } => {
            format!("garbage on connection {conn} ({why}): {}", show(bytes))
        }
        Record::Incomplete { conn, bytes } => {
            format!("unfinished on connection {conn}: {}", show(bytes))
        }
    }
}

fn line_of(r: &ParsedRequest) -> String {
    format!("{} {}", r.method, r.target)
}

/// Why the backend's request is not the expected one, if it is not.
fn mismatch(r: &ParsedRequest, e: &Expected) -> Option<String> {
    if r.method != e.method || origin_form(&r.target) != e.target {
        return Some(format!(
            "got {}, want {} {}",
            line_of(r),
            e.method,
            e.target
        ));
    }
    if r.body != e.body {
        return Some(format!(
            "{}: body {} ({} bytes), want {} ({} bytes)",
            line_of(r),
            show(&r.body),
            r.body.len(),
            show(&e.body),
            e.body.len()
        ));
    }
    if let Some(want) = &e.host {
        let hosts: Vec<&[u8]> = r.values("host").collect();
        let named = |h: &[u8]| h.eq_ignore_ascii_case(want.as_bytes());
        if !matches!(hosts.as_slice(), [h] if named(h)) {
            let got: Vec<String> = hosts.iter().map(|h| show(h)).collect();
            return Some(format!(
                "{}: Host [{}], want {want:?}",
                line_of(r),
                got.join(", ")
            ));
        }
        if let Some(a) = authority(&r.target)
            && !a.eq_ignore_ascii_case(want)
        {
            return Some(format!("{}: authority {a:?}, want {want:?}", line_of(r)));
        }
    }
    None
}

/// Whether `seen` is exactly `want`.
fn matches_all(seen: &[&ParsedRequest], want: &[Expected]) -> bool {
    seen.len() == want.len() && seen.iter().zip(want).all(|(r, e)| mismatch(r, e).is_none())
}

/// The last element of the X-Forwarded-For list is the proxy's own.
fn forwarded_by_proxy(r: &ParsedRequest) -> bool {
    let last = r
        .values("x-forwarded-for")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|v| !v.is_empty())
        .last();
    last == Some(CLIENT_IP.as_bytes())
}

/// The client got a 200 carrying each forwarded request's target, in order.
fn responses_match(out: &client::Outcome, seen: &[&ParsedRequest]) -> Result<(), String> {
    for (i, r) in seen.iter().enumerate() {
        match out.responses.get(i) {
            Some(resp) if resp.status == 200 && resp.body == r.target.as_bytes() => {}
            Some(resp) => {
                return Err(format!(
                    "response {i} is {} {}, want the backend's answer to {}",
                    resp.status,
                    show(&resp.body),
                    line_of(r)
                ));
            }
            None => return Err(format!("no response to {}", line_of(r))),
        }
    }
    Ok(())
}

/// Judge one vector through one proxy.
fn evaluate(v: &Vector, out: &client::Outcome, records: &[Record]) -> Verdict {
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    let mut partial = false;
    for (i, r) in records.iter().enumerate() {
        match r {
            Record::Request(req) => seen.push(req),
            Record::Garbage { conn, why, bytes } => {
                problems.push(format!(
                    "backend got garbage on server connection {conn} ({why}): {}",
                    show(bytes)
                ));
            }
            Record::Incomplete { conn, bytes } => {
                // A streamed request cut short is harmless where the proxy
                // rejects: last, and not a request smuggled out of a body.
                let smuggled = format!("GET {}/s ", v.prefix);
                if i + 1 == records.len() && !bytes.starts_with(smuggled.as_bytes()) {
                    partial = true;
                } else {
                    problems.push(format!(
                        "backend got an unfinished request on server connection {conn}: {}",
                        show(bytes)
                    ));
                }
            }
        }
    }
    let framed: HashSet<&str> = v
        .expect
        .iter()
        .chain(v.alt.iter().flatten())
        .map(|e| e.target.as_str())
        .collect();
    for r in &seen {
        let target = origin_form(&r.target);
        if target == format!("{}/s", v.prefix) {
            problems.push(format!(
                "SMUGGLED: backend got {}, a request inside a body",
                line_of(r)
            ));
        } else if target.starts_with("/v") && !target.starts_with(&v.prefix) {
            problems.push(format!(
                "backend got {} (late, from another vector)",
                line_of(r)
            ));
        } else if framed.contains(target) && !forwarded_by_proxy(r) {
            problems.push(format!(
                "{} lacks X-Forwarded-For ending in {CLIENT_IP}",
                line_of(r)
            ));
        }
    }
    if let Some(e) = &out.error {
        problems.push(format!("client: {e}"));
    }
    if !problems.is_empty() {
        return Verdict::Fail(problems.join("; "));
    }
    let k = seen.len();
    let n = v.expect.len();
    let rejected = |after: usize| Verdict::Rejected {
        after,
        status: out.responses.get(after).map(|r| r.status),
        closed: out.closed,
        partial,
    };
    if matches_all(&seen, &v.expect) {
        if let Err(e) = responses_match(out, &seen) {
            return Verdict::Fail(e);
        }
        if v.tail {
            if out.responses.len() > n + 1 {
                return Verdict::Fail(format!(
                    "{} responses to {n} framed requests and a rejected one",
                    out.responses.len()
                ));
            }
            return rejected(n);
        }
        if partial {
            return Verdict::Fail("backend got an unfinished request after the framed ones".into());
        }
        if out.responses.len() > n {
            return Verdict::Fail(format!("{} responses to {n} requests", out.responses.len()));
        }
        return Verdict::Forwarded(n);
    }
    if let Some(alt) = &v.alt
        && matches_all(&seen, alt)
    {
        if !out.closed {
            return Verdict::Fail(format!(
                "forwarded by Transfer-Encoding ({k}) but kept the connection open"
            ));
        }
        return match responses_match(out, &seen) {
            Ok(()) => Verdict::TeOnly(k),
            Err(e) => Verdict::Fail(e),
        };
    }
    if k < n && matches_all(&seen, &v.expect[..k]) {
        if let Err(e) = responses_match(out, &seen) {
            return Verdict::Fail(e);
        }
        let status = out.responses.get(k).map(|r| r.status);
        let is_4xx = status.is_none_or(|s| (400..500).contains(&s));
        if is_4xx && out.responses.len() <= k + 1 && out.closed {
            return rejected(k);
        }
        let then = match status {
            Some(s) => format!("answered {s}"),
            None => "no answer".into(),
        };
        let conn = if out.closed { "closed" } else { "left open" };
        return Verdict::Fail(format!(
            "forwarded {k} of {n} framed requests, then {then} ({} responses), connection {conn}",
            out.responses.len()
        ));
    }
    // Not a prefix: the first request that differs.
    for (i, r) in seen.iter().enumerate() {
        match v.expect.get(i) {
            Some(e) => {
                if let Some(why) = mismatch(r, e) {
                    return Verdict::Fail(why);
                }
            }
            None => {
                let why = if v.expect.is_empty() {
                    "the vector's first request is invalid".to_owned()
                } else {
                    format!("only {n} framed, then an invalid request or a close")
                };
                return Verdict::Fail(format!("forwarded {} ({why})", line_of(r)));
            }
        }
    }
    Verdict::Fail(format!("backend got {k} of {n} requests"))
}

/// Send every vector through one proxy, in order. With `dump`, print what
/// the client and the backend saw (for a filtered run).
async fn run_proxy(
    proxy: &str,
    addr: SocketAddr,
    backend: &RecordingBackend,
    vectors: &[Vector],
    dump: bool,
) -> Vec<Verdict> {
    // Anything recorded before the first vector is not its.
    drop(backend.take().await);
    let mut verdicts = Vec::with_capacity(vectors.len());
    for v in vectors {
        let out = client::exchange(addr, &v.raw, v.expect.len(), v.tail).await;
        let records = backend.take().await;
        tokio::time::sleep(POOL_SETTLE).await;
        if dump {
            let answers: Vec<String> = out
                .responses
                .iter()
                .map(|r| format!("{} {}", r.status, show(&r.body)))
                .collect();
            println!(
                "== {} via {proxy}: client got [{}], closed {}, error {:?}",
                v.name,
                answers.join(", "),
                out.closed,
                out.error
            );
            for r in &records {
                println!("   {}", describe(r));
            }
        }
        verdicts.push(evaluate(v, &out, &records));
    }
    verdicts
}

async fn start_sluice(server: SocketAddr, fast_path: bool) -> ProxyHandle {
    let (mut fe, be) = common::simple_config(vec![ServerConfig::new("rec", server)]);
    fe.forwardfor = true;
    fe.h1_fast_path = fast_path;
    common::start(fe, be).await
}

/// The target directory: the test binary is `<target>/<profile>/deps/<name>`.
fn report_path() -> PathBuf {
    if let Ok(exe) = std::env::current_exe()
        && let Some(deps) = exe.parent()
        && deps.file_name() == Some("deps".as_ref())
        && let Some(target) = deps.parent().and_then(Path::parent)
    {
        return target.join(REPORT_FILE);
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        )
        .join(REPORT_FILE)
}

/// A markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Sanity of the corpus itself, before any traffic.
fn check_corpus(vs: &[Vector]) {
    assert!(
        vs.len() >= vectors::MIN_VECTORS,
        "only {} vectors",
        vs.len()
    );
    let mut names = HashSet::new();
    for v in vs {
        assert!(names.insert(&v.name), "duplicate vector name {}", v.name);
        let mut targets = HashSet::new();
        for e in &v.expect {
            // `*` is the one target that cannot carry the prefix.
            assert!(
                e.target.contains(&v.prefix[1..]) || e.target == "*",
                "{}: target {} outside the vector's prefix",
                v.name,
                e.target
            );
            assert!(
                targets.insert(&e.target),
                "{}: target {} twice",
                v.name,
                e.target
            );
        }
        // Where the strict parser reads the raw bytes, it agrees with the
        // expectation (catches typos in bodies and targets).
        let mut rest: &[u8] = &v.raw;
        let mut parsed = Vec::new();
        while let backend::Parse::Complete(r, used) = backend::parse(rest) {
            parsed.push(r);
            rest = &rest[used..];
        }
        for (r, e) in parsed.iter().zip(&v.expect) {
            assert_eq!(
                (r.method.as_str(), origin_form(&r.target), r.body.as_slice()),
                (e.method.as_str(), e.target.as_str(), e.body.as_slice()),
                "{}: the strict reading differs from the expectation",
                v.name
            );
        }
    }
}

#[test]
fn the_corpus_is_consistent() {
    let vs = vectors::corpus();
    check_corpus(&vs);
    for f in Family::ALL {
        assert!(vs.iter().any(|v| v.family == f), "family {f} is empty");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_corpus_through_sluice_and_haproxy() {
    let mut vectors = vectors::corpus();
    check_corpus(&vectors);
    // A subset, with every record printed: for working on one failure.
    let filter = std::env::var(FILTER_ENV).ok();
    if let Some(f) = &filter {
        vectors.retain(|v| v.name.contains(f.as_str()));
        println!("{FILTER_ENV}={f}: {} vectors", vectors.len());
    }
    let dump = filter.is_some();
    let started = Instant::now();

    let backends = [
        RecordingBackend::start().await,
        RecordingBackend::start().await,
        RecordingBackend::start().await,
    ];
    let fast = start_sluice(backends[0].addr, true).await;
    let hyper = start_sluice(backends[1].addr, false).await;
    let ha_server = backends[2].addr;
    // Killed when dropped, also if anything below panics.
    let haproxy = tokio::task::block_in_place(|| Haproxy::start(ha_server));
    let fast_addr = fast.local_addr("fe").expect("fast path address");
    let hyper_addr = hyper.local_addr("fe").expect("hyper path address");

    let (fast_v, hyper_v, ha_v) = tokio::time::timeout(CORPUS_LIMIT, async {
        tokio::join!(
            run_proxy("fast path", fast_addr, &backends[0], &vectors, dump),
            run_proxy("hyper path", hyper_addr, &backends[1], &vectors, dump),
            run_proxy("HAProxy", haproxy.addr, &backends[2], &vectors, dump),
        )
    })
    .await
    .expect("the corpus run timed out");
    let wall = started.elapsed();
    let ha_version = haproxy.version.clone();
    drop(haproxy);

    // Differences between sluice's engines.
    let allowed: HashSet<&str> = ENGINE_DIFFERENCES.iter().map(|(n, _)| *n).collect();
    let mut failures = Vec::new();
    let mut engine_diffs = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        for (engine, verdict) in [("fast path", &fast_v[i]), ("hyper path", &hyper_v[i])] {
            if verdict.failed() {
                failures.push(format!("{} [{engine}]: {verdict}", v.name));
            }
        }
        let (f, h) = (&fast_v[i], &hyper_v[i]);
        if !f.failed() && !h.failed() && f.class() != h.class() {
            engine_diffs.push(format!("{}: fast path {f}, hyper path {h}", v.name));
            if !allowed.contains(v.name.as_str()) {
                failures.push(format!(
                    "{}: the engines disagree (fast path {f}, hyper path {h})",
                    v.name
                ));
            }
        }
    }

    let path = report_path();
    if filter.is_none() {
        let report = render_report(
            &vectors,
            &fast_v,
            &hyper_v,
            &ha_v,
            &ha_version,
            wall,
            &engine_diffs,
        );
        match std::fs::write(&path, &report) {
            Ok(()) => println!("report written to {}", path.display()),
            Err(e) => println!("cannot write {}: {e}", path.display()),
        }
    }
    print_table(&vectors, &fast_v, &hyper_v, &ha_v);
    println!(
        "{} vectors x 3 proxies in {:.1} s; sluice failures: {}",
        vectors.len(),
        wall.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} sluice failures (full table in {}):\n{}",
        failures.len(),
        path.display(),
        failures.join("\n")
    );
}

/// Fixed-width text table for `--nocapture`.
fn print_table(vectors: &[Vector], fast: &[Verdict], hyper: &[Verdict], ha: &[Verdict]) {
    const W: usize = 30;
    let clip = |v: &Verdict| {
        let s = v.to_string();
        if s.chars().count() > W {
            format!("{}…", s.chars().take(W - 1).collect::<String>())
        } else {
            s
        }
    };
    println!(
        "{:<52} {:<W$} {:<W$} {:<W$}",
        "vector", "fast path", "hyper path", "HAProxy"
    );
    for (i, v) in vectors.iter().enumerate() {
        println!(
            "{:<52} {:<W$} {:<W$} {:<W$}",
            v.name,
            clip(&fast[i]),
            clip(&hyper[i]),
            clip(&ha[i])
        );
    }
}

fn render_report(
    vectors: &[Vector],
    fast: &[Verdict],
    hyper: &[Verdict],
    ha: &[Verdict],
    ha_version: &str,
    wall: Duration,
    engine_diffs: &[String],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Request-smuggling corpus: sluice vs HAProxy\n");
    let _ = writeln!(
        md,
        "Generated by `cargo test -p sluice-proxy --test smuggling -- --nocapture` \
         ({} vectors, three proxies side by side in {:.1} s). Reference: {ha_version}.\n",
        vectors.len(),
        wall.as_secs_f64()
    );
    let _ = writeln!(
        md,
        "Verdicts: `ok N` the backend saw exactly the N requests the client framed; \
         `4xx after K` / `closed after K` it saw the first K, the next got a 4xx (or no \
         answer) and the connection closed; `TE-only N, closed` Content-Length with \
         Transfer-Encoding processed by Transfer-Encoding alone, then closed (RFC 9112 \
         section 6.1 allows it); `FAIL` anything else. Only sluice's FAILs fail the test.\n"
    );
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "| family | vectors | fast path FAIL | hyper path FAIL | HAProxy FAIL | HAProxy verdict differs from sluice's hyper path |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|");
    for f in Family::ALL {
        let idx: Vec<usize> = (0..vectors.len())
            .filter(|&i| vectors[i].family == f)
            .collect();
        let count = |vs: &[Verdict]| idx.iter().filter(|&&i| vs[i].failed()).count();
        let differ = idx
            .iter()
            .filter(|&&i| ha[i].class() != hyper[i].class())
            .count();
        let _ = writeln!(
            md,
            "| `{f}`: {} | {} | {} | {} | {} | {differ} |",
            f.describe(),
            idx.len(),
            count(fast),
            count(hyper),
            count(ha)
        );
    }
    let _ = writeln!(md, "\n## sluice failures\n");
    let mut any = false;
    for (i, v) in vectors.iter().enumerate() {
        for (engine, verdict) in [("fast path", &fast[i]), ("hyper path", &hyper[i])] {
            if verdict.failed() {
                any = true;
                let _ = writeln!(
                    md,
                    "- `{}` ({engine}): {}",
                    v.name,
                    cell(&verdict.to_string())
                );
            }
        }
    }
    if !any {
        let _ = writeln!(md, "None.");
    }
    let _ = writeln!(md, "\n## Fast path vs hyper path\n");
    if engine_diffs.is_empty() {
        let _ = writeln!(md, "Same verdict class on every vector both pass.");
    }
    for d in engine_diffs {
        let _ = writeln!(md, "- {}", cell(d));
    }
    for (name, why) in ENGINE_DIFFERENCES {
        let _ = writeln!(md, "- allowed: `{name}`: {why}");
    }
    let _ = writeln!(md, "\n## Where HAProxy differs from sluice\n");
    let _ = writeln!(md, "| vector | fast path | hyper path | HAProxy |");
    let _ = writeln!(md, "|---|---|---|---|");
    for (i, v) in vectors.iter().enumerate() {
        // A row where only the fast path fails (HAProxy agreeing with
        // hyper's path) is in the failure list, not here.
        let differs = |s: &Verdict| !s.failed() && ha[i].class() != s.class();
        let ha_only_fails = ha[i].failed() && !(fast[i].failed() && hyper[i].failed());
        if differs(&fast[i]) || differs(&hyper[i]) || ha_only_fails {
            let _ = writeln!(
                md,
                "| `{}` | {} | {} | {} |",
                v.name,
                cell(&fast[i].to_string()),
                cell(&hyper[i].to_string()),
                cell(&ha[i].to_string())
            );
        }
    }
    let _ = writeln!(md, "\n## Every vector\n");
    let _ = writeln!(
        md,
        "| vector | fast path | hyper path | HAProxy | expectation |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|");
    for (i, v) in vectors.iter().enumerate() {
        let mut exp = format!("{} request(s)", v.expect.len());
        if v.tail {
            exp.push_str(", then reject/close");
        }
        if v.alt.is_some() {
            exp.push_str(" (or TE-only)");
        }
        if !v.note.is_empty() {
            let _ = write!(exp, "; {}", v.note);
        }
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {} |",
            v.name,
            cell(&fast[i].to_string()),
            cell(&hyper[i].to_string()),
            cell(&ha[i].to_string()),
            cell(&exp)
        );
    }
    md
}
