//! Builds the typed [`Config`] from the spanned TOML tree, section by
//! section, then runs the cross-section checks (names, references, overlaps).
//!
//! Every problem is recorded in the [`Ctx`] and the walk goes on with a
//! placeholder value, so one run reports everything it can find. The
//! placeholders never escape: any diagnostic makes [`crate::parse`] fail.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use toml::de::DeTable;

use crate::duration::format_duration;
use crate::model::*;
use crate::value::{
    Ctx, Tbl, Val, as_table, at, boolean, duration, int_in, interface, ip, keyword, list,
    non_empty, non_empty_list, peer_socket, port_range, socket, string, tables, unknown_message,
};

/// Top-level sections.
const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "l4_service",
    "frontend",
    "backend",
    "health_check",
    "vrrp_instance",
    "sync",
    "gslb",
];

const GLOBAL_KEYS: &[&str] = &[
    "admin",
    "log_level",
    "log_format",
    "threads",
    "cpu_map",
    "hard_stop_after",
];
const DEFAULTS_KEYS: &[&str] = &[
    "timeout_connect",
    "timeout_client",
    "timeout_server",
    "timeout_http_request",
    "timeout_http_keep_alive",
    "timeout_queue",
    "timeout_tunnel",
    "retries",
    "maxconn",
];
const L4_KEYS: &[&str] = &[
    "name",
    "vip",
    "port",
    "protocol",
    "method",
    "scheduler",
    "persistence",
    "interface",
    "real_interface",
    "xdp_mode",
    "session_capacity",
    "maglev_table_size",
    "tun_source",
    "tun_vary_source",
    "local_addresses",
    "local_port_range",
    "toa",
    "health_check",
    "on_real_down",
    "fail_open",
    "real",
];
const REAL_KEYS: &[&str] = &["address", "port", "weight"];
const FRONTEND_KEYS: &[&str] = &[
    "name",
    "bind",
    "mode",
    "default_backend",
    "maxconn",
    "rate_limit_sessions",
    "timeout_client",
    "timeout_http_request",
    "timeout_http_keep_alive",
    "max_header_size",
    "accept_proxy",
    "forwardfor",
    "tls",
    "alpn",
    "splice",
    "h1_fast_path",
];
const TLS_KEYS: &[&str] = &["cert", "key", "sni"];
const BACKEND_KEYS: &[&str] = &[
    "name",
    "mode",
    "balance",
    "timeout_connect",
    "timeout_server",
    "timeout_queue",
    "timeout_tunnel",
    "retries",
    "redispatch",
    "health_check",
    "pool_idle",
    "tls",
    "tls_verify",
    "tls_ca",
    "send_proxy",
    "server",
];
const SERVER_KEYS: &[&str] = &[
    "name", "address", "weight", "maxconn", "backup", "disabled", "sni",
];
/// Keys every health check type accepts (`port` is removed for icmp).
const CHECK_COMMON_KEYS: &[&str] = &[
    "type",
    "port",
    "interval",
    "timeout",
    "rise",
    "fall",
    "down_interval",
    "initial_state",
    "jitter",
    "via_vip",
];
const CHECK_HTTP_KEYS: &[&str] = &["path", "method", "host", "expect_status", "tls"];
const CHECK_CONTENT_KEYS: &[&str] = &["body_contains", "body_regex", "max_body"];
const CHECK_SCRIPT_KEYS: &[&str] = &["command"];
const VRRP_KEYS: &[&str] = &[
    "name",
    "interface",
    "virtual_router_id",
    "priority",
    "advert_interval",
    "virtual_addresses",
    "preempt",
    "unicast_peers",
    "preempt_delay",
    "garp_repeat",
    "garp_interval",
    "track_interfaces",
    "track_script",
    "track_script_interval",
    "track_data_plane",
];
const SYNC_KEYS: &[&str] = &["enabled", "listen", "peers", "interval"];

/// Lowest and highest HTTP status code an `expect_status` may name.
const MIN_HTTP_STATUS: u16 = 100;
const MAX_HTTP_STATUS: u16 = 599;

/// What the cross-section checks need to know, gathered while building.
#[derive(Debug, Default)]
struct Records {
    /// (section kind, name, offset, key path) of every named item.
    names: Vec<(&'static str, String, usize, String)>,
    /// Health check name -> via_vip.
    checks: HashMap<String, bool>,
    /// References to health checks.
    check_refs: Vec<CheckRef>,
    /// (vip, port, protocol, service name, offset, key path) of L4 services.
    l4_endpoints: Vec<(IpAddr, u16, Protocol, String, usize, String)>,
    /// Backend name -> mode (None when the mode was invalid).
    backend_modes: HashMap<String, Option<Mode>>,
    /// (backend name, frontend name, frontend mode, offset, key path).
    backend_refs: Vec<(String, String, Option<Mode>, usize, String)>,
    /// (address, frontend name, offset, key path) of every bind.
    binds: Vec<(SocketAddr, String, usize, String)>,
    /// (interface, virtual router id, instance name, offset, key path).
    vrids: Vec<(String, u8, String, usize, String)>,
}

/// A reference to a `[health_check.NAME]`.
#[derive(Debug)]
struct CheckRef {
    name: String,
    at: usize,
    path: String,
    /// True when the user is an L4 service with method `dr` (the only user
    /// for which `via_vip` makes sense).
    dr_service: bool,
}

/// Builds the model from the document root.
pub(crate) fn build(cx: &mut Ctx<'_>, root: &DeTable<'_>) -> Config {
    let root = Tbl {
        table: root,
        path: String::new(),
        at: 0,
    };
    cx.check_keys(&root, SECTIONS);
    let mut rec = Records::default();

    let global = global(cx, &root);
    let defaults = defaults(cx, &root);
    let health_checks = health_checks(cx, &root, &mut rec);
    let l4_services: Vec<L4Service> = tables(cx, &root, "l4_service")
        .iter()
        .map(|t| l4_service(cx, t, &mut rec))
        .collect();
    let backends: Vec<Backend> = tables(cx, &root, "backend")
        .iter()
        .map(|t| backend(cx, t, &defaults, &mut rec))
        .collect();
    let frontends = tables(cx, &root, "frontend")
        .iter()
        .map(|t| frontend(cx, t, &defaults, &mut rec))
        .collect();
    let vrrp_instances = tables(cx, &root, "vrrp_instance")
        .iter()
        .map(|t| vrrp_instance(cx, t, &mut rec))
        .collect();
    let sync = state_sync(cx, &root);
    let gslb = {
        let l4: Vec<&str> = l4_services.iter().map(|s| s.name.as_str()).collect();
        let be: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
        let mut refs = Vec::new();
        let g = crate::gslb::gslb(cx, &root, &l4, &be, &mut refs);
        rec.check_refs
            .extend(refs.into_iter().map(|(name, at, path)| CheckRef {
                name,
                at,
                path,
                dr_service: false,
            }));
        g
    };

    let config = Config {
        global,
        defaults,
        l4_services,
        frontends,
        backends,
        health_checks,
        vrrp_instances,
        sync,
        gslb,
    };
    cross_check(cx, &rec);
    if config.l4_services.is_empty()
        && config.frontends.is_empty()
        && config.vrrp_instances.is_empty()
        && config.gslb.is_none()
    {
        cx.error(
            0,
            "",
            "the configuration defines nothing to run, expected at least one [[l4_service]], [[frontend]], [[vrrp_instance]] or [gslb]",
        );
    }
    config
}

/// A single-table section such as `[global]`, if present.
fn section<'a, 'i>(cx: &mut Ctx<'_>, root: &Tbl<'a, 'i>, key: &str) -> Option<Tbl<'a, 'i>> {
    let v = root.get(key)?;
    as_table(cx, v, key, &format!("a table ([{key}])"))
}

// === [global] and [defaults] ===

fn global(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> Global {
    let Some(t) = section(cx, root, "global") else {
        return Global {
            admin: DEFAULT_ADMIN,
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            threads: None,
            cpu_map: Vec::new(),
            hard_stop_after: DEFAULT_HARD_STOP_AFTER,
        };
    };
    cx.check_keys(&t, GLOBAL_KEYS);
    Global {
        admin: cx.opt(&t, "admin", socket).unwrap_or(DEFAULT_ADMIN),
        log_level: cx
            .opt(&t, "log_level", keyword("log_level"))
            .unwrap_or(LogLevel::Info),
        log_format: cx
            .opt(&t, "log_format", keyword("log_format"))
            .unwrap_or(LogFormat::Text),
        threads: cx.opt(&t, "threads", int_in(1, MAX_THREADS)),
        cpu_map: cx
            .opt(
                &t,
                "cpu_map",
                non_empty_list(int_in(0, MAX_CPU_ID), "CPU id"),
            )
            .unwrap_or_default(),
        hard_stop_after: cx
            .opt(&t, "hard_stop_after", duration)
            .unwrap_or(DEFAULT_HARD_STOP_AFTER),
    }
}

fn defaults(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> Defaults {
    let built_in = Defaults {
        timeout_connect: DEFAULT_TIMEOUT_CONNECT,
        timeout_client: DEFAULT_TIMEOUT_CLIENT,
        timeout_server: DEFAULT_TIMEOUT_SERVER,
        timeout_http_request: DEFAULT_TIMEOUT_HTTP_REQUEST,
        timeout_http_keep_alive: DEFAULT_TIMEOUT_HTTP_KEEP_ALIVE,
        timeout_queue: DEFAULT_TIMEOUT_QUEUE,
        timeout_tunnel: None,
        retries: DEFAULT_RETRIES,
        maxconn: DEFAULT_MAXCONN,
    };
    let Some(t) = section(cx, root, "defaults") else {
        return built_in;
    };
    cx.check_keys(&t, DEFAULTS_KEYS);
    Defaults {
        timeout_connect: cx
            .opt(&t, "timeout_connect", duration)
            .unwrap_or(built_in.timeout_connect),
        timeout_client: cx
            .opt(&t, "timeout_client", duration)
            .unwrap_or(built_in.timeout_client),
        timeout_server: cx
            .opt(&t, "timeout_server", duration)
            .unwrap_or(built_in.timeout_server),
        timeout_http_request: cx
            .opt(&t, "timeout_http_request", duration)
            .unwrap_or(built_in.timeout_http_request),
        timeout_http_keep_alive: cx
            .opt(&t, "timeout_http_keep_alive", duration)
            .unwrap_or(built_in.timeout_http_keep_alive),
        timeout_queue: cx
            .opt(&t, "timeout_queue", duration)
            .unwrap_or(built_in.timeout_queue),
        timeout_tunnel: cx.opt(&t, "timeout_tunnel", duration),
        retries: cx
            .opt(&t, "retries", int_in(0, MAX_RETRIES))
            .unwrap_or(built_in.retries),
        maxconn: cx
            .opt(&t, "maxconn", int_in(1, MAX_MAXCONN))
            .unwrap_or(built_in.maxconn),
    }
}

// === [health_check.NAME] ===

fn health_checks(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>, rec: &mut Records) -> Vec<HealthCheck> {
    let Some(v) = root.get("health_check") else {
        return Vec::new();
    };
    let Some(all) = as_table(
        cx,
        v,
        "health_check",
        "a table of named checks ([health_check.NAME])",
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in all.table.iter() {
        let name: &str = key.get_ref();
        let path = format!("health_check.{}", crate::value::path_key(name));
        if name.trim().is_empty() {
            cx.error(
                key.span().start,
                &path,
                "empty check name, expected a non-empty name",
            );
            continue;
        }
        let Some(t) = as_table(
            cx,
            value,
            &path,
            &format!("a table ([health_check.{name}])"),
        ) else {
            continue;
        };
        let check = health_check(cx, &t, name);
        rec.checks.insert(name.to_owned(), check.via_vip);
        out.push(check);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The keys a check of type `ty` accepts.
fn check_keys_for(ty: CheckType) -> Vec<&'static str> {
    let mut keys: Vec<&str> = CHECK_COMMON_KEYS.to_vec();
    match ty {
        CheckType::Icmp => keys.retain(|k| *k != "port"),
        CheckType::Tcp | CheckType::TcpHalfOpen => {}
        CheckType::Http => keys.extend(CHECK_HTTP_KEYS),
        CheckType::HttpContent => {
            keys.extend(CHECK_HTTP_KEYS);
            keys.extend(CHECK_CONTENT_KEYS);
        }
        CheckType::Script => keys.extend(CHECK_SCRIPT_KEYS),
    }
    keys
}

/// Which types a type-specific key belongs to, for "does not apply" messages.
fn check_key_owner(key: &str) -> Option<&'static str> {
    if CHECK_HTTP_KEYS.contains(&key) {
        Some("type \"http\" or \"http-content\"")
    } else if CHECK_CONTENT_KEYS.contains(&key) {
        Some("type \"http-content\"")
    } else if CHECK_SCRIPT_KEYS.contains(&key) {
        Some("type \"script\"")
    } else if key == "port" {
        Some("every type except \"icmp\"")
    } else {
        None
    }
}

fn health_check(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, name: &str) -> HealthCheck {
    let ty = cx.req(
        t,
        "type",
        "a check type",
        keyword::<CheckType>("check type"),
    );
    match ty {
        Some(ty) => {
            let allowed = check_keys_for(ty);
            for (key, _) in t.table.iter() {
                let k: &str = key.get_ref();
                if allowed.contains(&k) {
                    continue;
                }
                let message = match check_key_owner(k) {
                    Some(owner) => {
                        format!("\"{k}\" does not apply to type \"{ty}\", it is used by {owner}")
                    }
                    None => unknown_message("key", k, allowed.iter().copied()),
                };
                cx.error(key.span().start, &t.key_path(k), message);
            }
        }
        None => {
            // The type is missing or invalid: accept every key any type takes,
            // so the one real mistake is not buried under follow-on errors.
            let every: Vec<&str> = [
                CHECK_COMMON_KEYS,
                CHECK_HTTP_KEYS,
                CHECK_CONTENT_KEYS,
                CHECK_SCRIPT_KEYS,
            ]
            .concat();
            cx.check_keys(t, &every);
        }
    }

    let interval = cx.opt(t, "interval", duration);
    let timeout = cx.opt(t, "timeout", duration);
    let down_interval = cx.opt(t, "down_interval", duration);
    let interval_value = interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
    let timeout_value = timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT);
    check_timeout_below(cx, t, "interval", interval_value, timeout_value);
    if let Some(down) = down_interval {
        check_timeout_below(cx, t, "down_interval", down, timeout_value);
    }

    let probe = match ty {
        Some(CheckType::Icmp) => Probe::Icmp,
        Some(CheckType::Tcp) | None => Probe::Tcp,
        Some(CheckType::TcpHalfOpen) => Probe::TcpHalfOpen,
        Some(CheckType::Http) => Probe::Http(http_probe(cx, t, false)),
        Some(CheckType::HttpContent) => {
            let http = http_probe(cx, t, true);
            Probe::HttpContent(http, content_match(cx, t))
        }
        Some(CheckType::Script) => Probe::Script {
            command: cx
                .req(t, "command", "the command to run as a list of strings, e.g. [\"/usr/local/bin/check\", \"arg\"]", non_empty_list(non_empty, "argument (the program)"))
                .unwrap_or_default(),
        },
    };

    HealthCheck {
        name: name.to_owned(),
        probe,
        port: cx.opt(t, "port", int_in(1, u16::MAX)),
        interval: interval_value,
        timeout: timeout_value,
        rise: cx
            .opt(t, "rise", int_in(1, MAX_RISE_FALL))
            .unwrap_or(DEFAULT_RISE),
        fall: cx
            .opt(t, "fall", int_in(1, MAX_RISE_FALL))
            .unwrap_or(DEFAULT_FALL),
        down_interval: down_interval.unwrap_or(interval_value),
        initial_state: cx
            .opt(t, "initial_state", keyword("initial_state"))
            .unwrap_or(InitialState::Down),
        jitter: cx
            .opt(t, "jitter", int_in(0, MAX_JITTER_PERCENT))
            .unwrap_or(DEFAULT_JITTER_PERCENT),
        via_vip: cx.opt(t, "via_vip", boolean).unwrap_or(false),
    }
}

/// Reports a timeout that is not shorter than the interval `key`. The
/// problem is shown at `timeout` when the file sets it, else at `key`.
fn check_timeout_below(
    cx: &mut Ctx<'_>,
    t: &Tbl<'_, '_>,
    key: &str,
    interval: Duration,
    timeout: Duration,
) {
    if timeout < interval {
        return;
    }
    let (timeout_s, interval_s) = (format_duration(timeout), format_duration(interval));
    if t.get("timeout").is_some() {
        cx.error(
            t.offset_of("timeout"),
            &t.key_path("timeout"),
            format!("timeout {timeout_s} is not shorter than {key} {interval_s}, expected a timeout less than the {key}"),
        );
    } else {
        cx.error(
            t.offset_of(key),
            &t.key_path(key),
            format!("{key} {interval_s} is not longer than the default timeout {timeout_s}, expected a longer {key} or a shorter timeout"),
        );
    }
}

fn http_probe(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, needs_body: bool) -> HttpProbe {
    let path = cx
        .opt(t, "path", url_path)
        .unwrap_or_else(|| "/".to_owned());
    let method = cx
        .opt(t, "method", keyword("method"))
        .unwrap_or(HttpMethod::Get);
    if needs_body && method == HttpMethod::Head {
        cx.error(
            t.offset_of("method"),
            &t.key_path("method"),
            "method \"HEAD\" returns no body to match, expected \"GET\" for type \"http-content\"",
        );
    }
    HttpProbe {
        path,
        method,
        host: cx.opt(t, "host", non_empty),
        expect_status: cx
            .opt(t, "expect_status", expect_status)
            .unwrap_or_else(|| vec![StatusRange { min: 200, max: 399 }]),
        tls: cx.opt(t, "tls", boolean).unwrap_or(false),
    }
}

fn content_match(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>) -> ContentMatch {
    let body_contains = cx.opt(t, "body_contains", non_empty);
    let body_regex = cx.opt(t, "body_regex", regex);
    if t.get("body_contains").is_none() && t.get("body_regex").is_none() {
        cx.error(
            t.at,
            &t.key_path("body_contains"),
            "type \"http-content\" needs a body check, expected \"body_contains\" or \"body_regex\"",
        );
    }
    ContentMatch {
        body_contains,
        body_regex,
        max_body: cx
            .opt(t, "max_body", int_in(1, MAX_MAX_BODY))
            .unwrap_or(DEFAULT_MAX_BODY),
    }
}

fn url_path(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    if !s.starts_with('/') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        cx.error(v.span().start, path, format!("\"{s}\" is not a request path, expected a path starting with '/', e.g. \"/healthz\""));
        return None;
    }
    Some(s)
}

fn regex(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = non_empty(cx, v, path)?;
    if let Err(e) = regex::Regex::new(&s) {
        // A syntax error renders as several lines (the pattern, a caret, then
        // "error: why"); the last line says why, and one line per diagnostic
        // keeps the output greppable.
        let text = e.to_string();
        let last = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .unwrap_or_default();
        let reason = last.strip_prefix("error: ").unwrap_or(last);
        cx.error(
            v.span().start,
            path,
            format!("regex does not compile ({reason}), expected a valid regular expression"),
        );
        return None;
    }
    Some(s)
}

/// `"200"`, `"200-399"`, or a list of those.
fn expect_status(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<Vec<StatusRange>> {
    if let toml::de::DeValue::Array(_) = v.get_ref() {
        return non_empty_list(status_range, "status")(cx, v, path);
    }
    status_range(cx, v, path).map(|r| vec![r])
}

fn status_range(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<StatusRange> {
    let s = string(cx, v, path)?;
    let parse = |x: &str| {
        x.trim()
            .parse::<u16>()
            .ok()
            .filter(|n| (MIN_HTTP_STATUS..=MAX_HTTP_STATUS).contains(n))
    };
    let range = match s.split_once('-') {
        Some((lo, hi)) => parse(lo).zip(parse(hi)).filter(|(lo, hi)| lo <= hi),
        None => parse(&s).map(|n| (n, n)),
    };
    match range {
        Some((min, max)) => Some(StatusRange { min, max }),
        None => {
            cx.error(
                v.span().start,
                path,
                format!(
                    "\"{s}\" is not a status or status range, expected e.g. \"200\" or \"200-399\" with codes in {MIN_HTTP_STATUS}..={MAX_HTTP_STATUS}"
                ),
            );
            None
        }
    }
}

// === [[l4_service]] ===

/// An IP address that must have the same family as `like` (when known).
fn ip_like(
    like: Option<IpAddr>,
    what: &'static str,
) -> impl Fn(&mut Ctx<'_>, &Val<'_>, &str) -> Option<IpAddr> {
    move |cx, v, path| {
        let addr = ip(cx, v, path)?;
        if let Some(like) = like
            && like.is_ipv4() != addr.is_ipv4()
        {
            cx.error(
                v.span().start,
                path,
                format!(
                    "{addr} is {} but the {what} {like} is {}, expected an {} address",
                    family(addr),
                    family(like),
                    family(like)
                ),
            );
            return None;
        }
        Some(addr)
    }
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

fn l4_service(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, rec: &mut Records) -> L4Service {
    cx.check_keys(t, L4_KEYS);
    let name = cx.req(t, "name", "a unique service name", non_empty);
    if let Some(name) = &name {
        rec.names.push((
            "l4_service",
            name.clone(),
            t.offset_of("name"),
            t.key_path("name"),
        ));
    }
    let vip = cx.req(t, "vip", "the virtual IP address", ip);
    let port = cx.req(
        t,
        "port",
        "a port in 1..=65535, or 0 for every port",
        int_in(0, u16::MAX),
    );
    let protocol = cx
        .opt(t, "protocol", keyword("protocol"))
        .unwrap_or(Protocol::Tcp);
    let method = cx.req(
        t,
        "method",
        "one of: dr, tun, nat, fullnat",
        keyword::<ForwardingMethod>("method"),
    );
    let scheduler = cx
        .opt(t, "scheduler", keyword("scheduler"))
        .unwrap_or(Scheduler::Mh);
    if let (Some(vip), Some(port), Some(name)) = (vip, port, &name) {
        rec.l4_endpoints.push((
            vip,
            port,
            protocol,
            name.clone(),
            t.offset_of("vip"),
            t.key_path("vip"),
        ));
    }

    // Keys that only mean something for one method are errors elsewhere, so a
    // config never carries settings that silently do nothing.
    let only_for = |cx: &mut Ctx<'_>, key: &str, wanted: ForwardingMethod| {
        if let Some(m) = method
            && m != wanted
            && t.get(key).is_some()
        {
            cx.error(
                t.offset_of(key),
                &t.key_path(key),
                format!("\"{key}\" does not apply to method \"{m}\", expected it only with method \"{wanted}\""),
            );
        }
    };
    only_for(cx, "tun_source", ForwardingMethod::Tun);
    only_for(cx, "real_interface", ForwardingMethod::Nat);
    only_for(cx, "tun_vary_source", ForwardingMethod::Tun);
    only_for(cx, "local_addresses", ForwardingMethod::FullNat);
    only_for(cx, "local_port_range", ForwardingMethod::FullNat);
    only_for(cx, "toa", ForwardingMethod::FullNat);
    let tun_source = cx.opt(t, "tun_source", ip_like(vip, "vip"));
    let local_addresses = cx.opt(
        t,
        "local_addresses",
        non_empty_list(ip_like(vip, "vip"), "local address"),
    );
    if method == Some(ForwardingMethod::FullNat) && t.get("local_addresses").is_none() {
        cx.error(
            t.at,
            &t.key_path("local_addresses"),
            "method \"fullnat\" needs source addresses, expected \"local_addresses\" with at least one IP address",
        );
    }

    let health_check = cx.opt(t, "health_check", non_empty);
    if let Some(check) = &health_check {
        rec.check_refs.push(CheckRef {
            name: check.clone(),
            at: t.offset_of("health_check"),
            path: t.key_path("health_check"),
            dr_service: method == Some(ForwardingMethod::Dr),
        });
    }

    let reals = reals(cx, t, vip, port, method);

    let maglev_table_size = cx.opt(t, "maglev_table_size", int_in(1, MAX_MAGLEV_TABLE_SIZE));
    if scheduler != Scheduler::Mh && t.get("maglev_table_size").is_some() {
        cx.error(
            t.offset_of("maglev_table_size"),
            &t.key_path("maglev_table_size"),
            format!("\"maglev_table_size\" does not apply to scheduler \"{scheduler}\", expected it only with scheduler \"mh\""),
        );
    } else if scheduler == Scheduler::Mh
        && (maglev_table_size.is_some() || t.get("maglev_table_size").is_none())
    {
        let size = maglev_table_size.unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE);
        let at = t.offset_of("maglev_table_size");
        let path = t.key_path("maglev_table_size");
        let needed = u64::try_from(reals.len())
            .unwrap_or(u64::MAX)
            .saturating_mul(u64::from(MAGLEV_SLOTS_PER_REAL));
        if !is_prime(u64::from(size)) {
            cx.error(
                at,
                &path,
                format!(
                    "{size} is not prime, expected a prime such as {}",
                    next_prime(u64::from(size))
                ),
            );
        } else if u64::from(size) < needed {
            cx.error(
                at,
                &path,
                format!(
                    "{size} is too small for {} reals, expected a prime of at least {needed} ({MAGLEV_SLOTS_PER_REAL} slots per real), e.g. {}",
                    reals.len(),
                    next_prime(needed)
                ),
            );
        }
    }

    L4Service {
        name: name.unwrap_or_default(),
        vip: vip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        port: port.unwrap_or(0),
        protocol,
        method: method.unwrap_or(ForwardingMethod::Dr),
        scheduler,
        persistence: cx.opt(t, "persistence", duration),
        interface: cx
            .req(
                t,
                "interface",
                "the interface the XDP program attaches to, e.g. \"eth0\"",
                interface,
            )
            .unwrap_or_default(),
        real_interface: real_interface(cx, t),
        xdp_mode: cx
            .opt(t, "xdp_mode", keyword("xdp_mode"))
            .unwrap_or(XdpMode::Native),
        session_capacity: cx
            .opt(
                t,
                "session_capacity",
                int_in(MIN_SESSION_CAPACITY, MAX_SESSION_CAPACITY),
            )
            .unwrap_or(DEFAULT_SESSION_CAPACITY),
        maglev_table_size: maglev_table_size.unwrap_or(DEFAULT_MAGLEV_TABLE_SIZE),
        tun_source,
        tun_vary_source: cx.opt(t, "tun_vary_source", boolean).unwrap_or(false),
        local_addresses: local_addresses.unwrap_or_default(),
        local_port_range: cx
            .opt(t, "local_port_range", port_range)
            .unwrap_or((DEFAULT_LOCAL_PORT_MIN, DEFAULT_LOCAL_PORT_MAX)),
        toa: cx.opt(t, "toa", boolean).unwrap_or(true),
        health_check,
        on_real_down: cx
            .opt(t, "on_real_down", keyword("on_real_down"))
            .unwrap_or(OnRealDown::Keep),
        fail_open: cx.opt(t, "fail_open", boolean).unwrap_or(false),
        reals,
    }
}

/// `real_interface`: an interface name other than `interface` (the same
/// one would be the one-arm topology, which is the default without it).
fn real_interface(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>) -> Option<String> {
    let name = cx.opt(t, "real_interface", interface)?;
    let same = t
        .get("interface")
        .is_some_and(|v| matches!(v.get_ref(), toml::de::DeValue::String(s) if *s == name));
    if same {
        cx.error(
            t.offset_of("real_interface"),
            &t.key_path("real_interface"),
            format!("{name:?} is also the service's interface, expected the interface toward the reals (two-arm), or no real_interface (one-arm)"),
        );
    }
    Some(name)
}

fn reals(
    cx: &mut Ctx<'_>,
    t: &Tbl<'_, '_>,
    vip: Option<IpAddr>,
    service_port: Option<u16>,
    method: Option<ForwardingMethod>,
) -> Vec<Real> {
    let tables = tables(cx, t, "real");
    if tables.is_empty() && t.get("real").is_none() {
        cx.error(
            t.at,
            &t.key_path("real"),
            "the service has no reals, expected at least one [[l4_service.real]]",
        );
    }
    let mut out = Vec::with_capacity(tables.len());
    // (address, port) -> offset of the first occurrence.
    let mut seen: HashMap<(IpAddr, Option<u16>), usize> = HashMap::new();
    for r in &tables {
        cx.check_keys(r, REAL_KEYS);
        let address = cx.req(r, "address", "the real's IP address", ip_like(vip, "vip"));
        let port = cx.opt(r, "port", int_in(1, u16::MAX));
        if let (Some(p), Some(sp), Some(m)) = (port, service_port, method)
            && matches!(m, ForwardingMethod::Dr | ForwardingMethod::Tun)
            && p != sp
        {
            cx.error(
                r.offset_of("port"),
                &r.key_path("port"),
                if sp == 0 {
                    format!("port {p} is set, but the service forwards every port and method \"{m}\" cannot rewrite ports, expected no port")
                } else {
                    format!("port {p} differs from the service port {sp}, but method \"{m}\" cannot rewrite ports, expected {sp} or no port")
                },
            );
        }
        if let Some(address) = address {
            let at = r.offset_of("address");
            if let Some(first) = seen.get(&(address, port)) {
                let line = cx.line_of(*first);
                cx.error(at, &r.key_path("address"), format!("duplicate real {address} (first at line {line}), expected each real once per service"));
            } else {
                seen.insert((address, port), at);
            }
        }
        out.push(Real {
            address: address.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            port,
            weight: cx.opt(r, "weight", int_in(0, MAX_L4_WEIGHT)).unwrap_or(1),
        });
    }
    out
}

/// Trial division; the numbers checked here are at most 2^24.
fn is_prime(n: u64) -> bool {
    if n < 2 {
        return false;
    }
    let mut d = 2;
    while d * d <= n {
        if n.is_multiple_of(d) {
            return false;
        }
        d += 1;
    }
    true
}

/// The smallest prime ≥ `n`.
fn next_prime(n: u64) -> u64 {
    let mut p = n.max(2);
    while !is_prime(p) {
        p += 1;
    }
    p
}

// === [[frontend]] ===

fn frontend(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, defaults: &Defaults, rec: &mut Records) -> Frontend {
    cx.check_keys(t, FRONTEND_KEYS);
    let name = cx.req(t, "name", "a unique frontend name", non_empty);
    if let Some(name) = &name {
        rec.names.push((
            "frontend",
            name.clone(),
            t.offset_of("name"),
            t.key_path("name"),
        ));
    }
    let binds = cx
        .req(
            t,
            "bind",
            "a list of \"ip:port\" addresses, e.g. [\"0.0.0.0:80\"]",
            non_empty_list(at(socket), "ip:port address"),
        )
        .unwrap_or_default();
    for (i, (addr, offset)) in binds.iter().enumerate() {
        let path = format!("{}[{i}]", t.key_path("bind"));
        rec.binds
            .push((*addr, name.clone().unwrap_or_default(), *offset, path));
    }
    let mode = cx.req(t, "mode", "\"http\" or \"tcp\"", keyword::<Mode>("mode"));
    let default_backend = cx.req(t, "default_backend", "the name of a [[backend]]", non_empty);
    if let Some(backend) = &default_backend {
        rec.backend_refs.push((
            backend.clone(),
            name.clone().unwrap_or_default(),
            mode,
            t.offset_of("default_backend"),
            t.key_path("default_backend"),
        ));
    }

    let forwardfor = cx.opt(t, "forwardfor", boolean);
    if mode == Some(Mode::Tcp) && forwardfor == Some(true) {
        cx.error(
            t.offset_of("forwardfor"),
            &t.key_path("forwardfor"),
            "forwardfor adds HTTP headers and does not apply to mode \"tcp\", expected mode \"http\" or no forwardfor",
        );
    }

    let splice = cx.opt(t, "splice", keyword::<Splice>("splice mode"));
    if mode == Some(Mode::Http) && splice.is_some() {
        cx.error(
            t.offset_of("splice"),
            &t.key_path("splice"),
            "splice applies to the byte relay of mode \"tcp\", expected mode \"tcp\" or no splice",
        );
    }

    let tls = tls_certs(cx, t);
    let alpn = cx.opt(t, "alpn", non_empty_list(alpn_id, "protocol"));
    if alpn.is_some() && tls.is_empty() && t.get("tls").is_none() {
        cx.error(
            t.offset_of("alpn"),
            &t.key_path("alpn"),
            "alpn needs TLS, expected a [[frontend.tls]] certificate or no alpn",
        );
    }
    let alpn = alpn.unwrap_or_else(|| {
        if !tls.is_empty() && mode == Some(Mode::Http) {
            vec!["h2".to_owned(), "http/1.1".to_owned()]
        } else {
            Vec::new()
        }
    });

    Frontend {
        name: name.unwrap_or_default(),
        bind: binds.into_iter().map(|(addr, _)| addr).collect(),
        mode: mode.unwrap_or(Mode::Http),
        default_backend: default_backend.unwrap_or_default(),
        maxconn: cx
            .opt(t, "maxconn", int_in(1, MAX_MAXCONN))
            .unwrap_or(defaults.maxconn),
        rate_limit_sessions: cx.opt(t, "rate_limit_sessions", int_in(1, u32::MAX)),
        timeout_client: cx
            .opt(t, "timeout_client", duration)
            .unwrap_or(defaults.timeout_client),
        timeout_http_request: cx
            .opt(t, "timeout_http_request", duration)
            .unwrap_or(defaults.timeout_http_request),
        timeout_http_keep_alive: cx
            .opt(t, "timeout_http_keep_alive", duration)
            .unwrap_or(defaults.timeout_http_keep_alive),
        max_header_size: cx
            .opt(
                t,
                "max_header_size",
                int_in(MIN_MAX_HEADER_SIZE, MAX_MAX_HEADER_SIZE),
            )
            .unwrap_or(DEFAULT_MAX_HEADER_SIZE),
        accept_proxy: cx.opt(t, "accept_proxy", boolean).unwrap_or(false),
        forwardfor: forwardfor.unwrap_or(mode != Some(Mode::Tcp)),
        tls,
        alpn,
        splice: splice.unwrap_or(Splice::Auto),
        h1_fast_path: cx.opt(t, "h1_fast_path", boolean).unwrap_or(true),
    }
}

fn tls_certs(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>) -> Vec<TlsCert> {
    let mut out = Vec::new();
    let mut default_cert_at: Option<usize> = None;
    for c in tables(cx, t, "tls") {
        cx.check_keys(&c, TLS_KEYS);
        let cert = cx
            .req(&c, "cert", "the path of a PEM certificate chain", non_empty)
            .unwrap_or_default();
        let key = cx
            .req(&c, "key", "the path of a PEM private key", non_empty)
            .unwrap_or_default();
        let sni = cx
            .opt(&c, "sni", non_empty_list(hostname, "host name"))
            .unwrap_or_default();
        if c.get("sni").is_none() {
            if let Some(first) = default_cert_at {
                let line = cx.line_of(first);
                cx.error(
                    c.at,
                    &c.key_path("sni"),
                    format!("a second certificate without sni (the first is at line {line}), expected sni names on all but one certificate"),
                );
            } else {
                default_cert_at = Some(c.at);
            }
        }
        out.push(TlsCert { cert, key, sni });
    }
    out
}

/// A DNS name for SNI matching, optionally with a leading `*.` wildcard.
fn hostname(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = string(cx, v, path)?;
    let bare = s.strip_prefix("*.").unwrap_or(&s);
    let valid = !bare.is_empty()
        && bare.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        cx.error(
            v.span().start,
            path,
            format!(
                "\"{s}\" is not a host name, expected e.g. \"example.com\" or \"*.example.com\""
            ),
        );
        return None;
    }
    Some(s.to_ascii_lowercase())
}

fn alpn_id(cx: &mut Ctx<'_>, v: &Val<'_>, path: &str) -> Option<String> {
    let s = non_empty(cx, v, path)?;
    if s.len() > MAX_ALPN_LEN {
        cx.error(
            v.span().start,
            path,
            format!(
                "protocol id of {} bytes, expected at most {MAX_ALPN_LEN} bytes",
                s.len()
            ),
        );
        return None;
    }
    Some(s)
}

// === [[backend]] ===

fn backend(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, defaults: &Defaults, rec: &mut Records) -> Backend {
    cx.check_keys(t, BACKEND_KEYS);
    let name = cx.req(t, "name", "a unique backend name", non_empty);
    let mode = cx.req(t, "mode", "\"http\" or \"tcp\"", keyword::<Mode>("mode"));
    if let Some(name) = &name {
        rec.names.push((
            "backend",
            name.clone(),
            t.offset_of("name"),
            t.key_path("name"),
        ));
        rec.backend_modes.entry(name.clone()).or_insert(mode);
    }
    let balance = cx
        .opt(t, "balance", keyword("balance"))
        .unwrap_or(Balance::RoundRobin);
    if balance == Balance::Uri && mode == Some(Mode::Tcp) {
        cx.error(
            t.offset_of("balance"),
            &t.key_path("balance"),
            "balance \"uri\" needs HTTP requests and does not apply to mode \"tcp\", expected mode \"http\" or another balance",
        );
    }
    let tls = cx.opt(t, "tls", boolean).unwrap_or(false);
    if !tls && t.get("tls_verify").is_some() {
        cx.error(
            t.offset_of("tls_verify"),
            &t.key_path("tls_verify"),
            "tls_verify does nothing without TLS to the servers, expected tls = true or no tls_verify",
        );
    }
    if !tls && t.get("tls_ca").is_some() {
        cx.error(
            t.offset_of("tls_ca"),
            &t.key_path("tls_ca"),
            "tls_ca does nothing without TLS to the servers, expected tls = true or no tls_ca",
        );
    }
    let health_check = cx.opt(t, "health_check", non_empty);
    if let Some(check) = &health_check {
        rec.check_refs.push(CheckRef {
            name: check.clone(),
            at: t.offset_of("health_check"),
            path: t.key_path("health_check"),
            dr_service: false,
        });
    }

    Backend {
        name: name.unwrap_or_default(),
        mode: mode.unwrap_or(Mode::Http),
        balance,
        timeout_connect: cx
            .opt(t, "timeout_connect", duration)
            .unwrap_or(defaults.timeout_connect),
        timeout_server: cx
            .opt(t, "timeout_server", duration)
            .unwrap_or(defaults.timeout_server),
        timeout_queue: cx
            .opt(t, "timeout_queue", duration)
            .unwrap_or(defaults.timeout_queue),
        timeout_tunnel: cx
            .opt(t, "timeout_tunnel", duration)
            .or(defaults.timeout_tunnel),
        retries: cx
            .opt(t, "retries", int_in(0, MAX_RETRIES))
            .unwrap_or(defaults.retries),
        redispatch: cx.opt(t, "redispatch", boolean).unwrap_or(true),
        health_check,
        pool_idle: cx
            .opt(t, "pool_idle", int_in(0, MAX_POOL_IDLE))
            .unwrap_or(DEFAULT_POOL_IDLE),
        tls,
        tls_verify: cx.opt(t, "tls_verify", boolean).unwrap_or(true),
        tls_ca: cx.opt(t, "tls_ca", non_empty),
        send_proxy: cx
            .opt(t, "send_proxy", keyword("send_proxy"))
            .unwrap_or(SendProxy::None),
        servers: servers(cx, t),
    }
}

fn servers(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>) -> Vec<Server> {
    let tables = tables(cx, t, "server");
    if tables.is_empty() && t.get("server").is_none() {
        cx.error(
            t.at,
            &t.key_path("server"),
            "the backend has no servers, expected at least one [[backend.server]]",
        );
    }
    let mut out = Vec::with_capacity(tables.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for s in &tables {
        cx.check_keys(s, SERVER_KEYS);
        let name = cx.req(s, "name", "a server name, unique in the backend", non_empty);
        if let Some(name) = &name {
            let at = s.offset_of("name");
            if let Some(first) = seen.get(name) {
                let line = cx.line_of(*first);
                cx.error(at, &s.key_path("name"), format!("duplicate server name \"{name}\" (first defined at line {line}), expected unique names within a backend"));
            } else {
                seen.insert(name.clone(), at);
            }
        }
        out.push(Server {
            name: name.unwrap_or_default(),
            address: cx
                .req(s, "address", "the server's \"ip:port\"", peer_socket)
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
            weight: cx
                .opt(s, "weight", int_in(0, MAX_SERVER_WEIGHT))
                .unwrap_or(DEFAULT_SERVER_WEIGHT),
            maxconn: cx.opt(s, "maxconn", int_in(1, MAX_MAXCONN)),
            sni: cx.opt(s, "sni", non_empty),
            backup: cx.opt(s, "backup", boolean).unwrap_or(false),
            disabled: cx.opt(s, "disabled", boolean).unwrap_or(false),
        });
    }
    out
}

// === [[vrrp_instance]] and [sync] ===

fn vrrp_instance(cx: &mut Ctx<'_>, t: &Tbl<'_, '_>, rec: &mut Records) -> VrrpInstance {
    cx.check_keys(t, VRRP_KEYS);
    let name = cx.req(t, "name", "a unique instance name", non_empty);
    if let Some(name) = &name {
        rec.names.push((
            "vrrp_instance",
            name.clone(),
            t.offset_of("name"),
            t.key_path("name"),
        ));
    }
    let iface = cx.req(
        t,
        "interface",
        "the interface adverts are sent on, e.g. \"eth0\"",
        interface,
    );
    let vrid = cx.req(
        t,
        "virtual_router_id",
        "an id in 1..=255",
        int_in(1, u8::MAX),
    );
    if let (Some(iface), Some(vrid)) = (&iface, vrid) {
        rec.vrids.push((
            iface.clone(),
            vrid,
            name.clone().unwrap_or_default(),
            t.offset_of("virtual_router_id"),
            t.key_path("virtual_router_id"),
        ));
    }
    let advert_interval = cx.opt(t, "advert_interval", duration);
    if let Some(d) = advert_interval
        && (!d
            .as_micros()
            .is_multiple_of(ADVERT_INTERVAL_UNIT.as_micros())
            || d > MAX_ADVERT_INTERVAL)
    {
        cx.error(
            t.offset_of("advert_interval"),
            &t.key_path("advert_interval"),
            format!(
                "{} cannot be sent in VRRPv3's centisecond field, expected a multiple of 10ms up to {}",
                format_duration(d),
                format_duration(MAX_ADVERT_INTERVAL)
            ),
        );
    }
    let addresses = cx
        .req(
            t,
            "virtual_addresses",
            "a list of IP addresses, e.g. [\"10.99.255.1\"]",
            non_empty_list(at(ip), "address"),
        )
        .unwrap_or_default();
    if addresses.len() > MAX_VRRP_ADDRESSES {
        cx.error(
            t.offset_of("virtual_addresses"),
            &t.key_path("virtual_addresses"),
            format!(
                "{} addresses, expected at most {MAX_VRRP_ADDRESSES} (an advertisement's count is one byte)",
                addresses.len()
            ),
        );
    }
    let first = addresses.first().map(|(a, _)| *a);
    for (i, (addr, offset)) in addresses.iter().enumerate().skip(1) {
        if let Some(first) = first
            && first.is_ipv4() != addr.is_ipv4()
        {
            cx.error(
                *offset,
                &format!("{}[{i}]", t.key_path("virtual_addresses")),
                format!("{addr} is {} but {first} is {}; one VRRP instance serves one family, expected an {} address", family(*addr), family(first), family(first)),
            );
        }
    }
    VrrpInstance {
        name: name.unwrap_or_default(),
        interface: iface.unwrap_or_default(),
        virtual_router_id: vrid.unwrap_or(1),
        priority: cx
            .req(
                t,
                "priority",
                "a priority in 1..=254 (higher wins)",
                int_in(1, 254),
            )
            .unwrap_or(1),
        advert_interval: advert_interval.unwrap_or(DEFAULT_ADVERT_INTERVAL),
        virtual_addresses: addresses.into_iter().map(|(a, _)| a).collect(),
        preempt: cx.opt(t, "preempt", boolean).unwrap_or(true),
        unicast_peers: cx
            .opt(t, "unicast_peers", list(ip_like(first, "virtual address")))
            .unwrap_or_default(),
        preempt_delay: cx
            .opt(t, "preempt_delay", duration)
            .unwrap_or(Duration::ZERO),
        garp_repeat: cx
            .opt(t, "garp_repeat", int_in(1, MAX_GARP_REPEAT))
            .unwrap_or(DEFAULT_GARP_REPEAT),
        garp_interval: cx
            .opt(t, "garp_interval", duration)
            .unwrap_or(DEFAULT_GARP_INTERVAL),
        track_interfaces: cx
            .opt(t, "track_interfaces", list(interface))
            .unwrap_or_default(),
        track_script: cx
            .opt(
                t,
                "track_script",
                non_empty_list(non_empty, "argument (the program)"),
            )
            .unwrap_or_default(),
        track_script_interval: cx
            .opt(t, "track_script_interval", duration)
            .unwrap_or(DEFAULT_TRACK_SCRIPT_INTERVAL),
        track_data_plane: cx.opt(t, "track_data_plane", boolean).unwrap_or(true),
    }
}

fn state_sync(cx: &mut Ctx<'_>, root: &Tbl<'_, '_>) -> StateSync {
    let Some(t) = section(cx, root, "sync") else {
        return StateSync {
            enabled: false,
            listen: None,
            peers: Vec::new(),
            interval: DEFAULT_SYNC_INTERVAL,
        };
    };
    cx.check_keys(&t, SYNC_KEYS);
    let enabled = cx.opt(&t, "enabled", boolean).unwrap_or(false);
    let listen = if enabled {
        cx.req(
            &t,
            "listen",
            "an ip:port to receive sync messages on when enabled = true",
            socket,
        )
    } else {
        cx.opt(&t, "listen", socket)
    };
    let peers = if enabled {
        cx.req(
            &t,
            "peers",
            "a list of peer ip:port addresses when enabled = true",
            non_empty_list(peer_socket, "peer"),
        )
    } else {
        cx.opt(&t, "peers", list(peer_socket))
    };
    StateSync {
        enabled,
        listen,
        peers: peers.unwrap_or_default(),
        interval: cx
            .opt(&t, "interval", duration)
            .unwrap_or(DEFAULT_SYNC_INTERVAL),
    }
}

// === Cross-section checks ===

fn cross_check(cx: &mut Ctx<'_>, rec: &Records) {
    // Duplicate names, per kind.
    let mut first_name: HashMap<(&str, &str), usize> = HashMap::new();
    for (kind, name, at, path) in &rec.names {
        if let Some(first) = first_name.get(&(*kind, name.as_str())) {
            let line = cx.line_of(*first);
            cx.error(*at, path, format!("duplicate {kind} name \"{name}\" (first defined at line {line}), expected unique {kind} names"));
        } else {
            first_name.insert((kind, name), *at);
        }
    }

    // Overlapping L4 endpoints: the same vip/protocol and the same port, or
    // port 0 (every port) beside anything else.
    for (i, (vip, port, proto, name, at, path)) in rec.l4_endpoints.iter().enumerate() {
        let clash = rec.l4_endpoints[..i]
            .iter()
            .find(|(v, p, pr, ..)| v == vip && pr == proto && (p == port || *p == 0 || *port == 0));
        if let Some((_, other_port, _, other_name, other_at, _)) = clash {
            let line = cx.line_of(*other_at);
            let message = if other_port == port {
                format!(
                    "{}/{proto} is already used by l4_service \"{other_name}\" (line {line}), expected a unique vip, port and protocol",
                    SocketAddr::new(*vip, *port)
                )
            } else {
                format!(
                    "l4_service \"{name}\" overlaps l4_service \"{other_name}\" (line {line}) on {vip}/{proto} because port 0 means every port, expected distinct vips or protocols"
                )
            };
            cx.error(*at, path, message);
        }
    }

    // Health check references.
    let mut check_names: Vec<&str> = rec.checks.keys().map(String::as_str).collect();
    check_names.sort_unstable();
    for r in &rec.check_refs {
        match rec.checks.get(&r.name) {
            None => {
                let message = unknown_reference("health check", "[health_check.NAME]", &r.name, &check_names);
                cx.error(r.at, &r.path, message);
            }
            Some(true) if !r.dr_service => cx.error(
                r.at,
                &r.path,
                format!(
                    "health check \"{}\" sets via_vip, which only works for an l4_service with method \"dr\", expected a check without via_vip",
                    r.name
                ),
            ),
            Some(_) => {}
        }
    }

    // Frontend -> backend references.
    let mut backend_names: Vec<&str> = rec.backend_modes.keys().map(String::as_str).collect();
    backend_names.sort_unstable();
    for (backend, frontend, mode, at, path) in &rec.backend_refs {
        match rec.backend_modes.get(backend) {
            None => {
                let message = unknown_reference("backend", "[[backend]]", backend, &backend_names);
                cx.error(*at, path, message);
            }
            Some(Some(backend_mode)) if Some(*backend_mode) != *mode => {
                if let Some(mode) = mode {
                    cx.error(
                        *at,
                        path,
                        format!(
                            "backend \"{backend}\" has mode \"{backend_mode}\" but frontend \"{frontend}\" has mode \"{mode}\", expected a backend with mode \"{mode}\""
                        ),
                    );
                }
            }
            Some(_) => {}
        }
    }

    // The same bind address twice cannot both be listened on.
    let mut first_bind: HashMap<SocketAddr, usize> = HashMap::new();
    for (addr, _, at, path) in &rec.binds {
        if addr.port() == 0 {
            continue; // the kernel picks a distinct port for each
        }
        if let Some(first) = first_bind.get(addr) {
            let line = cx.line_of(*first);
            cx.error(
                *at,
                path,
                format!("{addr} is already bound at line {line}, expected each bind address once"),
            );
        } else {
            first_bind.insert(*addr, *at);
        }
    }

    // VRRP ids are per interface (they pick the virtual MAC).
    let mut first_vrid: HashMap<(&str, u8), (usize, &str)> = HashMap::new();
    for (iface, vrid, name, at, path) in &rec.vrids {
        if let Some((first, first_name)) = first_vrid.get(&(iface.as_str(), *vrid)) {
            let line = cx.line_of(*first);
            cx.error(
                *at,
                path,
                format!(
                    "virtual_router_id {vrid} is already used on interface \"{iface}\" by vrrp_instance \"{first_name}\" (line {line}), expected a unique id per interface"
                ),
            );
        } else {
            first_vrid.insert((iface, *vrid), (*at, name));
        }
    }
}

/// `unknown backend "apo", did you mean "api"?`, or says none is defined.
fn unknown_reference(what: &str, header: &str, found: &str, names: &[&str]) -> String {
    if names.is_empty() {
        format!(
            "unknown {what} \"{found}\", expected the name of a {header} section and none is defined"
        )
    } else {
        unknown_message(what, found, names.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primes() {
        assert!(is_prime(65_537));
        assert!(is_prime(2));
        assert!(!is_prime(1));
        assert!(!is_prime(65_536));
        assert!(!is_prime(65_535));
        assert_eq!(next_prime(65_536), 65_537);
        assert_eq!(next_prime(70_000), 70_001);
        assert_eq!(next_prime(0), 2);
    }
}
