//! `GET /metrics`: the admin endpoint's counters in Prometheus' text
//! exposition format (version 0.0.4), for scraping.
//!
//! Sans-IO: the admin handler collects snapshots (proxy counters, L4 data
//! plane counters and services, health-check targets) and this module only
//! renders them. Names follow Prometheus' conventions: a `sluice_` prefix,
//! `_total` on counters, base units (bytes, seconds), one `# HELP` and
//! `# TYPE` line per family, every sample of a family together.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sluice_core::health::Health;
use sluice_core::service::Effective;
use sluice_health::TargetStatus;
use sluice_l4::ServiceView;
use sluice_l4::wire_maps::Counter;
use sluice_proxy::StatsSnapshot;
use sluice_proxy::stats::CountersSnapshot;

/// The `Content-Type` of the text exposition format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Prometheus metric type of a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only ever goes up (resets on restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

#[derive(Debug)]
struct Family {
    help: &'static str,
    kind: Kind,
    /// Rendered label sets (`{a="b"}` or empty) and values, in insertion
    /// order. Values are kept as text so that counters stay exact `u64`s
    /// (an `f64` would round them above 2^53).
    samples: Vec<(String, String)>,
}

/// Metric families being collected, rendered in name order.
#[derive(Debug, Default)]
pub(crate) struct Families {
    map: BTreeMap<String, Family>,
}

impl Families {
    /// Adds one sample. The first sample of a family fixes its help text and
    /// type.
    fn add(
        &mut self,
        name: String,
        help: &'static str,
        kind: Kind,
        labels: &[(&str, &str)],
        value: String,
    ) {
        let mut set = String::new();
        if !labels.is_empty() {
            set.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    set.push(',');
                }
                let _ = write!(set, "{k}=\"{}\"", escape_label(v));
            }
            set.push('}');
        }
        self.map
            .entry(name)
            .or_insert_with(|| Family {
                help,
                kind,
                samples: Vec::new(),
            })
            .samples
            .push((set, value));
    }

    fn counter(&mut self, name: String, help: &'static str, labels: &[(&str, &str)], v: u64) {
        self.add(name, help, Kind::Counter, labels, v.to_string());
    }

    fn gauge(&mut self, name: String, help: &'static str, labels: &[(&str, &str)], v: f64) {
        self.add(name, help, Kind::Gauge, labels, number(v));
    }

    /// The exposition text.
    pub(crate) fn render(&self) -> String {
        let mut s = String::new();
        for (name, f) in &self.map {
            let _ = writeln!(s, "# HELP {name} {}", f.help);
            let _ = writeln!(s, "# TYPE {name} {}", f.kind.name());
            for (labels, v) in &f.samples {
                let _ = writeln!(s, "{name}{labels} {v}");
            }
        }
        s
    }
}

/// A label value with `\`, `"` and newlines escaped, as the format asks.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Integers without a fraction, the rest as Rust prints them (which
/// Prometheus parses, including `NaN` and `inf` spelled as `+Inf`).
fn number(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        v.to_string()
    }
}

fn bool_value(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// Proxy counters: `sluice_frontend_*`, `sluice_backend_*`, `sluice_server_*`.
pub(crate) fn proxy(f: &mut Families, s: &StatsSnapshot) {
    for fe in &s.frontends {
        counters(f, "frontend", &[("frontend", &fe.name)], &fe.counters);
    }
    for be in &s.backends {
        counters(f, "backend", &[("backend", &be.name)], &be.counters);
        for sv in &be.servers {
            let labels = [("backend", be.name.as_str()), ("server", sv.name.as_str())];
            counters(f, "server", &labels, &sv.counters);
            f.gauge(
                "sluice_server_up".into(),
                "1 if the server is eligible for new traffic (health and operator state).",
                &labels,
                bool_value(sv.up),
            );
            f.gauge(
                "sluice_server_weight".into(),
                "The server's current weight.",
                &labels,
                f64::from(sv.weight),
            );
        }
    }
}

/// One object's [`CountersSnapshot`] under `sluice_<scope>_*`.
fn counters(f: &mut Families, scope: &str, labels: &[(&str, &str)], c: &CountersSnapshot) {
    let n = |what: &str| format!("sluice_{scope}_{what}");
    f.counter(n("sessions_total"), "Sessions since start (connections on frontends and in mode tcp; requests forwarded to a server in mode http).", labels, c.sessions_total);
    f.gauge(
        n("sessions_current"),
        "Sessions open now.",
        labels,
        c.sessions_current as f64,
    );
    f.counter(
        n("requests_total"),
        "HTTP requests seen.",
        labels,
        c.requests,
    );
    f.counter(
        n("bytes_in_total"),
        "Bytes received from clients (HTTP: request bodies; TCP: payload).",
        labels,
        c.bytes_in,
    );
    f.counter(
        n("bytes_out_total"),
        "Bytes sent to clients (HTTP: response bodies; TCP: payload).",
        labels,
        c.bytes_out,
    );
    f.counter(
        n("bytes_spliced_total"),
        "Of bytes in and out, those a mode tcp relay moved with splice(2).",
        labels,
        c.bytes_spliced,
    );
    f.counter(
        n("retries_total"),
        "Connect attempts repeated after a failure.",
        labels,
        c.retries,
    );
    f.counter(
        n("redispatches_total"),
        "Retries sent to another server than the failed one.",
        labels,
        c.redispatches,
    );
    f.gauge(
        n("queued_current"),
        "Requests waiting for a server slot now.",
        labels,
        c.queued_current as f64,
    );
    f.counter(
        n("denied_total"),
        "Connections refused or closed early by a limit or a bad PROXY header.",
        labels,
        c.denied,
    );
    let e = &c.errors;
    split(
        f,
        n("errors_total"),
        "Errors by kind: connect (to a server), response (bad or none, 502), timeout (504 or TCP idle), request (bad client request), queue (503).",
        labels,
        "kind",
        &[
            ("connect", e.connect),
            ("response", e.response),
            ("timeout", e.timeout),
            ("request", e.request),
            ("queue", e.queue),
        ],
    );
    let r = &c.responses;
    split(
        f,
        n("responses_total"),
        "HTTP responses sent, by status class.",
        labels,
        "code",
        &[
            ("1xx", r.http_1xx),
            ("2xx", r.http_2xx),
            ("3xx", r.http_3xx),
            ("4xx", r.http_4xx),
            ("5xx", r.http_5xx),
        ],
    );
}

/// One counter family split by one more label (`key`), a sample per value.
fn split(
    f: &mut Families,
    name: String,
    help: &'static str,
    labels: &[(&str, &str)],
    key: &str,
    values: &[(&str, u64)],
) {
    for (value, v) in values {
        let mut l = labels.to_vec();
        l.push((key, value));
        f.counter(name.clone(), help, &l, *v);
    }
}

/// XDP data plane: the program's global counters (`sluice_l4_<name>_total`)
/// and per service and real traffic and state.
pub(crate) fn l4(f: &mut Families, counters: &[(Counter, u64)], services: &[ServiceView]) {
    for (c, v) in counters {
        f.counter(
            format!("sluice_l4_{}_total", c.name()),
            "XDP program counter, summed over CPUs (docs/L4.md lists them).",
            &[],
            *v,
        );
    }
    for s in services {
        let labels = [
            ("service", s.name.as_str()),
            ("address", s.address.as_str()),
        ];
        f.counter(
            "sluice_l4_service_packets_total".into(),
            "Packets to the service.",
            &labels,
            s.packets,
        );
        f.counter(
            "sluice_l4_service_bytes_total".into(),
            "Bytes to the service.",
            &labels,
            s.bytes,
        );
        f.counter(
            "sluice_l4_service_sessions_total".into(),
            "Sessions created for the service.",
            &labels,
            s.sessions,
        );
        for l in &s.local_addresses {
            let labels = [("service", s.name.as_str()), ("local", l.address.as_str())];
            f.gauge(
                "sluice_l4_local_ports_in_use".into(),
                "fullnat: local ports of the address held by live sessions (all reals).",
                &labels,
                l.in_use as f64,
            );
            f.gauge(
                "sluice_l4_local_ports_per_real".into(),
                "fullnat: local ports of the address per real address and port.",
                &labels,
                f64::from(l.per_real),
            );
        }
        for r in &s.reals {
            let labels = [("service", s.name.as_str()), ("real", r.address.as_str())];
            f.counter(
                "sluice_l4_real_packets_total".into(),
                "Packets forwarded to the real.",
                &labels,
                r.packets,
            );
            f.counter(
                "sluice_l4_real_bytes_total".into(),
                "Bytes forwarded to the real.",
                &labels,
                r.bytes,
            );
            f.counter(
                "sluice_l4_real_sessions_total".into(),
                "Sessions created for the real.",
                &labels,
                r.sessions,
            );
            f.gauge(
                "sluice_l4_real_active_connections".into(),
                "Established sessions of the real now (IPVS ActiveConn).",
                &labels,
                r.active as f64,
            );
            f.gauge(
                "sluice_l4_real_inactive_connections".into(),
                "Other live sessions of the real now (IPVS InActConn).",
                &labels,
                r.inactive as f64,
            );
            f.gauge(
                "sluice_l4_real_weight".into(),
                "The real's current weight.",
                &labels,
                f64::from(r.weight),
            );
            f.gauge(
                "sluice_l4_real_healthy".into(),
                "1 if the real's health verdict is up.",
                &labels,
                bool_value(r.health == "up"),
            );
        }
    }
}

/// Health-check targets: `sluice_check_*`, labelled with the target id
/// (`service/address` or `backend/server`) and the check type.
pub(crate) fn checks(f: &mut Families, targets: &[TargetStatus]) {
    for t in targets {
        let labels = [("target", t.id.as_str()), ("check", t.check)];
        f.gauge(
            "sluice_check_up".into(),
            "1 if the target passes its checks (health only, operator state aside).",
            &labels,
            bool_value(t.health == Health::Up),
        );
        f.gauge(
            "sluice_check_serving".into(),
            "1 if the target gets new traffic (health and operator state together).",
            &labels,
            bool_value(t.effective == Effective::Serving),
        );
        f.counter(
            "sluice_check_runs_total".into(),
            "Checks run against the target.",
            &labels,
            t.checks_total,
        );
        f.counter(
            "sluice_check_failures_total".into(),
            "Checks that failed.",
            &labels,
            t.failures_total,
        );
        f.counter(
            "sluice_check_transitions_total".into(),
            "Changes of the target's health verdict.",
            &labels,
            t.transitions_total,
        );
        if let Some(d) = t.last_latency {
            f.gauge(
                "sluice_check_latency_seconds".into(),
                "Duration of the last successful check.",
                &labels,
                d.as_secs_f64(),
            );
        }
    }
}

/// Connection sync: `sluice_sync_<count>_total`, one counter per count of
/// `sluice_ha::sync::SyncCounters` (docs/HA.md, "Counts").
pub(crate) fn sync(f: &mut Families, counts: &[(&'static str, u64)]) {
    for (name, v) in counts {
        f.counter(
            format!("sluice_sync_{name}_total"),
            "Connection sync (docs/HA.md, \"Counts\").",
            &[],
            *v,
        );
    }
}

/// The GSLB DNS server: `sluice_gslb_*` (queries by transport, responses
/// by code, answers per site, rate-limited responses).
pub(crate) fn gslb(f: &mut Families, s: &sluice_gslb::Stats, sites: &[sluice_gslb::SiteSpec]) {
    use std::sync::atomic::Ordering::Relaxed;
    for (t, c) in [("udp", &s.queries_udp), ("tcp", &s.queries_tcp)] {
        f.counter(
            "sluice_gslb_queries_total".into(),
            "DNS queries received.",
            &[("transport", t)],
            c.load(Relaxed),
        );
    }
    for (name, c) in sluice_gslb::server::RCODES.iter().zip(&s.responses) {
        f.counter(
            "sluice_gslb_responses_total".into(),
            "DNS responses sent, by response code.",
            &[("rcode", name)],
            c.load(Relaxed),
        );
    }
    f.counter(
        "sluice_gslb_truncated_total".into(),
        "Responses sent truncated (TC: too large for UDP, or rate-limited slips).",
        &[],
        s.truncated.load(Relaxed),
    );
    f.counter(
        "sluice_gslb_dropped_total".into(),
        "Datagrams dropped unanswered (not a query).",
        &[],
        s.dropped.load(Relaxed),
    );
    for (action, c) in [
        ("dropped", &s.rate_limited_dropped),
        ("slipped", &s.rate_limited_slipped),
    ] {
        f.counter(
            "sluice_gslb_rate_limited_total".into(),
            "UDP responses over the per-source rate limit.",
            &[("action", action)],
            c.load(Relaxed),
        );
    }
    for (site, c) in sites.iter().zip(&s.site_answers) {
        f.counter(
            "sluice_gslb_site_answers_total".into(),
            "Answers that held the site's addresses.",
            &[("site", site.name.as_str())],
            c.load(Relaxed),
        );
    }
}

/// VRRP instances: `sluice_vrrp_*`, labelled with the instance name.
pub(crate) fn vrrp(f: &mut Families, instances: &[sluice_ha::InstanceStatus]) {
    use sluice_core::vrrp::State;
    for s in instances {
        let name = s.spec.name.as_str();
        for st in [
            State::Initialize,
            State::Backup,
            State::Master,
            State::Fault,
        ] {
            f.gauge(
                "sluice_vrrp_state".into(),
                "1 for the instance's current state (init, backup, master, fault), 0 for the others.",
                &[("instance", name), ("state", st.as_str())],
                bool_value(s.state == st),
            );
        }
        let labels = [("instance", name)];
        f.counter(
            "sluice_vrrp_transitions_total".into(),
            "State changes since start.",
            &labels,
            s.transitions,
        );
        f.counter(
            "sluice_vrrp_adverts_sent_total".into(),
            "Advertisements sent (one per destination).",
            &labels,
            s.adverts_sent,
        );
        f.counter(
            "sluice_vrrp_adverts_received_total".into(),
            "Valid advertisements received for the instance's router id.",
            &labels,
            s.adverts_received,
        );
        for r in sluice_wire::vrrp::Invalid::ALL {
            f.counter(
                "sluice_vrrp_adverts_invalid_total".into(),
                "Advertisements discarded, by reason (RFC 5798 7.1).",
                &[("instance", name), ("reason", r.as_str())],
                s.invalid[r.index()],
            );
        }
        f.counter(
            "sluice_vrrp_io_errors_total".into(),
            "Sends, netlink requests and announcements that failed.",
            &labels,
            s.io_errors,
        );
        f.gauge(
            "sluice_vrrp_faults".into(),
            "Watchdog reasons currently holding the instance in the fault state.",
            &labels,
            s.faults.len() as f64,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use sluice_core::service::OperatorState;
    use sluice_proxy::stats::{BackendSnapshot, NamedCounters, ServerSnapshot};

    use super::*;

    /// Checks the exposition format: one HELP and one TYPE per family, before
    /// its samples; every sample right after its family's header (families
    /// are not split); valid names; `_total` on counters only; numbers that
    /// parse. Returns the sample lines.
    fn validate(text: &str) -> Vec<&str> {
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.chars().enumerate().all(|(i, c)| {
                    c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
                })
        };
        let mut seen = BTreeSet::new();
        let mut current: Option<(String, String)> = None;
        let mut samples = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(line) = lines.next() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(name_ok(name) && !help.is_empty(), "{line}");
                assert!(
                    seen.insert(name.to_owned()),
                    "family {name} split or repeated"
                );
                let ty = lines.next().unwrap();
                let kind = ty.strip_prefix(&format!("# TYPE {name} ")).unwrap();
                assert!(kind == "counter" || kind == "gauge", "{ty}");
                assert_eq!(
                    name.ends_with("_total"),
                    kind == "counter",
                    "{name} is a {kind}"
                );
                current = Some((name.to_owned(), kind.to_owned()));
                continue;
            }
            let (family, _) = current.as_ref().unwrap();
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert_eq!(name, family, "sample outside its family: {line}");
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
            }
            assert!(value.parse::<f64>().is_ok() || value == "+Inf", "{line}");
            samples.push(line);
        }
        samples
    }

    fn counters(requests: u64) -> CountersSnapshot {
        CountersSnapshot {
            sessions_total: requests,
            requests,
            ..Default::default()
        }
    }

    #[test]
    fn proxy_counters_by_frontend_backend_and_server() {
        let mut fe = counters(7);
        fe.responses.http_2xx = 6;
        fe.responses.http_5xx = 1;
        fe.errors.connect = 2;
        let s = StatsSnapshot {
            frontends: vec![NamedCounters {
                name: "www".into(),
                counters: fe,
            }],
            backends: vec![BackendSnapshot {
                name: "web".into(),
                counters: counters(7),
                servers: vec![
                    ServerSnapshot {
                        name: "rs1".into(),
                        up: true,
                        weight: 3,
                        counters: counters(4),
                    },
                    ServerSnapshot {
                        name: "a \"quoted\"\\name".into(),
                        up: false,
                        weight: 0,
                        counters: counters(3),
                    },
                ],
            }],
        };
        let mut f = Families::default();
        proxy(&mut f, &s);
        let text = f.render();
        let samples = validate(&text);
        for want in [
            "sluice_frontend_requests_total{frontend=\"www\"} 7",
            "sluice_frontend_responses_total{frontend=\"www\",code=\"2xx\"} 6",
            "sluice_frontend_responses_total{frontend=\"www\",code=\"5xx\"} 1",
            "sluice_frontend_errors_total{frontend=\"www\",kind=\"connect\"} 2",
            "sluice_frontend_sessions_current{frontend=\"www\"} 0",
            "sluice_backend_requests_total{backend=\"web\"} 7",
            "sluice_server_requests_total{backend=\"web\",server=\"rs1\"} 4",
            "sluice_server_up{backend=\"web\",server=\"rs1\"} 1",
            "sluice_server_weight{backend=\"web\",server=\"rs1\"} 3",
            // Label values are escaped.
            "sluice_server_up{backend=\"web\",server=\"a \\\"quoted\\\"\\\\name\"} 0",
        ] {
            assert!(samples.contains(&want), "missing {want}:\n{text}");
        }
        assert!(text.contains("# TYPE sluice_server_up gauge\n"), "{text}");
        assert!(
            text.contains("# TYPE sluice_frontend_requests_total counter\n"),
            "{text}"
        );
    }

    #[test]
    fn health_check_targets() {
        let t = |id: &str, health, effective, latency| TargetStatus {
            id: id.into(),
            addr: "10.0.0.1".parse().unwrap(),
            port: 80,
            check: "http",
            health,
            operator: OperatorState::Enabled,
            effective,
            last: None,
            last_latency: latency,
            last_change: None,
            consecutive_successes: 0,
            consecutive_failures: 0,
            checks_total: 12,
            failures_total: 2,
            transitions_total: 1,
        };
        let mut f = Families::default();
        checks(
            &mut f,
            &[
                t(
                    "web/10.0.0.1",
                    Health::Up,
                    Effective::Serving,
                    Some(Duration::from_micros(1500)),
                ),
                t("web/10.0.0.2", Health::Down, Effective::Out, None),
            ],
        );
        let text = f.render();
        let samples = validate(&text);
        for want in [
            "sluice_check_up{target=\"web/10.0.0.1\",check=\"http\"} 1",
            "sluice_check_serving{target=\"web/10.0.0.1\",check=\"http\"} 1",
            "sluice_check_up{target=\"web/10.0.0.2\",check=\"http\"} 0",
            "sluice_check_runs_total{target=\"web/10.0.0.2\",check=\"http\"} 12",
            "sluice_check_failures_total{target=\"web/10.0.0.2\",check=\"http\"} 2",
            "sluice_check_latency_seconds{target=\"web/10.0.0.1\",check=\"http\"} 0.0015",
        ] {
            assert!(samples.contains(&want), "missing {want}:\n{text}");
        }
        // No latency yet: no sample rather than a made-up 0.
        assert!(
            !text.contains("latency_seconds{target=\"web/10.0.0.2\""),
            "{text}"
        );
    }

    #[test]
    fn every_xdp_counter_is_a_series_including_nats() {
        let all: Vec<(Counter, u64)> = Counter::ALL.iter().map(|c| (*c, *c as u64)).collect();
        let mut f = Families::default();
        l4(&mut f, &all, &[]);
        let text = f.render();
        let samples = validate(&text);
        assert_eq!(samples.len(), Counter::ALL.len(), "{text}");
        for want in [
            "sluice_l4_tx_nat_reply_total 20",
            "sluice_l4_pass_nat_no_session_total 21",
            "sluice_l4_tx_nat_icmp_reply_total 22",
        ] {
            assert!(samples.contains(&want), "missing {want}:\n{text}");
        }
    }

    #[test]
    fn numbers_and_labels_in_the_format() {
        assert_eq!(number(3.0), "3");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(1e20), "100000000000000000000");
        assert_eq!(escape_label("a\nb"), "a\\nb");
        let mut f = Families::default();
        f.counter("big_total".into(), "h", &[], u64::MAX);
        assert!(f.render().ends_with("big_total 18446744073709551615\n"));
        let empty = Families::default().render();
        assert!(empty.is_empty());
    }
}
