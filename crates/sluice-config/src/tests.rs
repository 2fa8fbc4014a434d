//! Tests of `parse` over whole configuration texts: each bad config asserts
//! the exact diagnostic (position, key path and message); good configs
//! assert parsed values and defaults.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::*;

const FILE: &str = "t.toml";

/// A valid frontend and backend, appended to tests of sections that alone
/// would leave "nothing to run". Appended at the end, so line numbers of the
/// text under test are unchanged.
const TAIL: &str = r#"
[[frontend]]
name = "tail"
bind = ["127.0.0.1:1"]
mode = "tcp"
default_backend = "tail"

[[backend]]
name = "tail"
mode = "tcp"
[[backend.server]]
name = "t1"
address = "127.0.0.1:2"
"#;

/// Drops the newline after `r#"` so line 1 is the first written line.
fn text(s: &str) -> &str {
    s.strip_prefix('\n').unwrap_or(s)
}

fn with_tail(s: &str) -> String {
    format!("{}{TAIL}", text(s))
}

/// Every diagnostic of `s`, rendered; panics if `s` is valid.
fn diags(s: &str) -> Vec<String> {
    match parse(FILE, s) {
        Ok(c) => panic!("expected diagnostics, parsed: {}", c.summary()),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

/// The single diagnostic of `s`.
fn only(s: &str) -> String {
    let d = diags(s);
    assert_eq!(
        d.len(),
        1,
        "expected exactly one diagnostic, got:\n{}",
        d.join("\n")
    );
    d.into_iter().next().unwrap()
}

fn ok(s: &str) -> Config {
    match parse(FILE, s) {
        Ok(c) => c,
        Err(d) => panic!("expected a valid config, got:\n{d}"),
    }
}

/// One L4 dr service on the lab addresses, then `extra` inside the service
/// table (lines 7 onwards).
fn l4(extra: &str) -> String {
    format!(
        "[[l4_service]]\nname = \"web\"\nvip = \"10.99.255.1\"\nport = 80\nmethod = \"dr\"\ninterface = \"lb0\"\n{extra}\n[[l4_service.real]]\naddress = \"10.99.0.11\"\n"
    )
}

// === Bad configs: one diagnostic each, exact text and position ===

#[test]
fn syntax_error_is_positioned() {
    assert_eq!(
        only("[global]\nthreads = 2\n[defaults\n"),
        "t.toml:3:10: TOML syntax error: unclosed table, expected `]`"
    );
    // A key defined twice is a TOML error too.
    assert_eq!(
        only("[global]\nthreads = 2\nthreads = 3\n"),
        "t.toml:3:1: TOML syntax error: duplicate key"
    );
}

#[test]
fn unknown_key_suggests_the_closest() {
    assert_eq!(
        only(&with_tail("[global]\nlog_levle = \"debug\"\n")),
        "t.toml:2:1: global.log_levle: unknown key \"log_levle\", did you mean \"log_level\"?"
    );
}

#[test]
fn unknown_key_far_from_any_lists_the_choices() {
    assert_eq!(
        only(&with_tail("[global]\ncolour = \"red\"\n")),
        "t.toml:2:1: global.colour: unknown key \"colour\", expected one of: admin, log_level, log_format, threads, cpu_map, hard_stop_after"
    );
}

#[test]
fn unknown_section_suggests_the_closest() {
    assert_eq!(
        only(&with_tail("[[l4_services]]\nname = \"x\"\n")),
        "t.toml:1:3: l4_services: unknown key \"l4_services\", did you mean \"l4_service\"?"
    );
}

#[test]
fn wrong_type_names_both_types() {
    assert_eq!(
        only(&with_tail("[defaults]\nretries = \"3\"\n")),
        "t.toml:2:11: defaults.retries: expected an integer, found string"
    );
    assert_eq!(
        only(&with_tail("[global]\nlog_level = 3\n")),
        "t.toml:2:13: global.log_level: expected a string, found integer"
    );
}

#[test]
fn section_of_the_wrong_shape() {
    assert_eq!(
        only(&with_tail("[l4_service]\nname = \"x\"\n")),
        "t.toml:1:1: l4_service: expected an array of tables ([[l4_service]]), found table"
    );
}

#[test]
fn duration_without_unit() {
    assert_eq!(
        only(&with_tail("[defaults]\ntimeout_connect = 5\n")),
        "t.toml:2:19: defaults.timeout_connect: found a bare integer, expected a duration with a unit, e.g. \"2s\" or \"150ms\""
    );
    assert_eq!(
        only(&with_tail("[defaults]\ntimeout_connect = \"5\"\n")),
        "t.toml:2:19: defaults.timeout_connect: \"5\" has no unit, expected a duration with a unit, e.g. \"2s\" or \"150ms\""
    );
}

#[test]
fn duration_with_unknown_unit_or_zero() {
    assert_eq!(
        only(&with_tail("[defaults]\ntimeout_queue = \"2sec\"\n")),
        "t.toml:2:17: defaults.timeout_queue: \"2sec\" has an unknown unit \"sec\", expected one of us, ms, s, m, h"
    );
    assert_eq!(
        only(&with_tail("[defaults]\ntimeout_queue = \"0s\"\n")),
        "t.toml:2:17: defaults.timeout_queue: \"0s\" is zero, expected a duration greater than zero"
    );
}

#[test]
fn enum_value_suggests_the_closest() {
    assert_eq!(
        only(&l4("scheduler = \"wlcc\"")),
        "t.toml:7:13: l4_service[0].scheduler: unknown scheduler \"wlcc\", did you mean \"wlc\"?"
    );
}

#[test]
fn real_weight_out_of_range() {
    let s = format!("{}weight = 70000\n", l4(""));
    assert_eq!(
        only(&s),
        "t.toml:10:10: l4_service[0].real[0].weight: 70000 is out of range, expected 0..=65535"
    );
}

#[test]
fn server_weight_out_of_range() {
    let s = r#"
[[frontend]]
name = "f"
bind = ["0.0.0.0:8080"]
mode = "http"
default_backend = "b"

[[backend]]
name = "b"
mode = "http"
[[backend.server]]
name = "s1"
address = "10.99.0.11:80"
weight = 257
"#;
    assert_eq!(
        only(text(s)),
        "t.toml:13:10: backend[0].server[0].weight: 257 is out of range, expected 0..=256"
    );
}

#[test]
fn address_that_is_not_an_ip() {
    let s = l4("").replace("address = \"10.99.0.11\"", "address = \"10.99.0.x\"");
    assert_eq!(
        only(&s),
        "t.toml:9:11: l4_service[0].real[0].address: \"10.99.0.x\" is not an IP address, expected an IPv4 or IPv6 address, e.g. \"10.99.0.11\" or \"fd00::11\""
    );
    let s = l4("").replace("vip = \"10.99.255.1\"", "vip = \"10.99.255.1:80\"");
    assert_eq!(
        only(&s),
        "t.toml:3:7: l4_service[0].vip: \"10.99.255.1:80\" is not an IP address, expected an IPv4 or IPv6 address (without a port), e.g. \"10.99.0.11\" or \"fd00::11\""
    );
}

#[test]
fn real_family_differs_from_vip() {
    let s = l4("").replace("address = \"10.99.0.11\"", "address = \"fd00::11\"");
    assert_eq!(
        only(&s),
        "t.toml:9:11: l4_service[0].real[0].address: fd00::11 is IPv6 but the vip 10.99.255.1 is IPv4, expected an IPv4 address"
    );
}

#[test]
fn dr_real_port_must_match_service_port() {
    let s = format!("{}port = 8080\n", l4(""));
    assert_eq!(
        only(&s),
        "t.toml:10:8: l4_service[0].real[0].port: port 8080 differs from the service port 80, but method \"dr\" cannot rewrite ports, expected 80 or no port"
    );
    // nat may rewrite it.
    let nat = s.replace("method = \"dr\"", "method = \"nat\"");
    assert_eq!(ok(&nat).l4_services[0].reals[0].port, Some(8080));
}

#[test]
fn missing_required_key_is_reported_at_the_table_header() {
    let s = l4("").replace("interface = \"lb0\"\n", "");
    assert_eq!(
        only(&s),
        "t.toml:1:1: l4_service[0].interface: missing required key \"interface\", expected the interface the XDP program attaches to, e.g. \"eth0\""
    );
}

#[test]
fn nat_real_interface_two_arm() {
    let nat = l4("real_interface = \"lb1\"").replace("method = \"dr\"", "method = \"nat\"");
    assert_eq!(
        ok(&nat).l4_services[0].real_interface.as_deref(),
        Some("lb1")
    );
    assert_eq!(ok(&l4("")).l4_services[0].real_interface, None);
    assert_eq!(
        only(&l4("real_interface = \"lb1\"")),
        "t.toml:7:18: l4_service[0].real_interface: \"real_interface\" does not apply to method \"dr\", expected it only with method \"nat\""
    );
    let same = l4("real_interface = \"lb0\"").replace("method = \"dr\"", "method = \"nat\"");
    assert_eq!(
        only(&same),
        "t.toml:7:18: l4_service[0].real_interface: \"lb0\" is also the service's interface, expected the interface toward the reals (two-arm), or no real_interface (one-arm)"
    );
}

#[test]
fn fullnat_without_local_addresses() {
    let s = l4("").replace("method = \"dr\"", "method = \"fullnat\"");
    assert_eq!(
        only(&s),
        "t.toml:1:1: l4_service[0].local_addresses: method \"fullnat\" needs source addresses, expected \"local_addresses\" with at least one IP address"
    );
}

#[test]
fn tun_source_with_another_method() {
    assert_eq!(
        only(&l4("tun_source = \"10.99.0.1\"")),
        "t.toml:7:14: l4_service[0].tun_source: \"tun_source\" does not apply to method \"dr\", expected it only with method \"tun\""
    );
}

#[test]
fn maglev_table_size_not_prime() {
    assert_eq!(
        only(&l4("maglev_table_size = 65536")),
        "t.toml:7:21: l4_service[0].maglev_table_size: 65536 is not prime, expected a prime such as 65537"
    );
}

#[test]
fn maglev_table_size_too_small() {
    let s = format!(
        "{}[[l4_service.real]]\naddress = \"10.99.0.12\"\n",
        l4("maglev_table_size = 197")
    );
    assert_eq!(
        only(&s),
        "t.toml:7:21: l4_service[0].maglev_table_size: 197 is too small for 2 reals, expected a prime of at least 200 (100 slots per real), e.g. 211"
    );
}

#[test]
fn service_without_reals() {
    let s = "[[l4_service]]\nname = \"web\"\nvip = \"10.99.255.1\"\nport = 80\nmethod = \"dr\"\ninterface = \"lb0\"\n";
    assert_eq!(
        only(s),
        "t.toml:1:1: l4_service[0].real: the service has no reals, expected at least one [[l4_service.real]]"
    );
}

#[test]
fn duplicate_vip_port_protocol() {
    let s = format!("{}{}", l4(""), l4("").replace("\"web\"", "\"web2\""));
    // The second service starts at line 10; its vip is on line 12.
    assert_eq!(
        only(&s),
        "t.toml:12:7: l4_service[1].vip: 10.99.255.1:80/tcp is already used by l4_service \"web\" (line 3), expected a unique vip, port and protocol"
    );
    // The same vip and port over udp is a different service.
    let udp = format!(
        "{}{}",
        l4(""),
        l4("protocol = \"udp\"").replace("\"web\"", "\"dns\"")
    );
    assert_eq!(ok(&udp).l4_services.len(), 2);
}

#[test]
fn port_zero_overlaps_every_port() {
    let s = format!(
        "{}{}",
        l4("").replace("port = 80", "port = 0"),
        l4("").replace("\"web\"", "\"web2\"")
    );
    assert_eq!(
        only(&s),
        "t.toml:12:7: l4_service[1].vip: l4_service \"web2\" overlaps l4_service \"web\" (line 3) on 10.99.255.1/tcp because port 0 means every port, expected distinct vips or protocols"
    );
}

#[test]
fn duplicate_service_name() {
    let s = format!("{}{}", l4(""), l4("").replace("port = 80", "port = 443"));
    assert_eq!(
        only(&s),
        "t.toml:11:8: l4_service[1].name: duplicate l4_service name \"web\" (first defined at line 2), expected unique l4_service names"
    );
}

#[test]
fn duplicate_backend_name() {
    let s = with_tail(
        "[[backend]]\nname = \"tail\"\nmode = \"tcp\"\n[[backend.server]]\nname = \"x\"\naddress = \"10.99.0.11:80\"\n",
    );
    assert_eq!(
        only(&s),
        "t.toml:15:8: backend[1].name: duplicate backend name \"tail\" (first defined at line 2), expected unique backend names"
    );
}

#[test]
fn backend_without_servers() {
    let s = with_tail("[[backend]]\nname = \"empty\"\nmode = \"http\"\n");
    assert_eq!(
        only(&s),
        "t.toml:1:1: backend[0].server: the backend has no servers, expected at least one [[backend.server]]"
    );
}

#[test]
fn frontend_default_backend_unknown() {
    let s = with_tail(
        r#"
[[frontend]]
name = "web"
bind = ["0.0.0.0:8080"]
mode = "tcp"
default_backend = "tial"
"#,
    );
    assert_eq!(
        only(&s),
        "t.toml:5:19: frontend[0].default_backend: unknown backend \"tial\", did you mean \"tail\"?"
    );
}

#[test]
fn frontend_default_backend_mode_mismatch() {
    let s = with_tail(
        r#"
[[frontend]]
name = "web"
bind = ["0.0.0.0:8080"]
mode = "http"
default_backend = "tail"
"#,
    );
    assert_eq!(
        only(&s),
        "t.toml:5:19: frontend[0].default_backend: backend \"tail\" has mode \"tcp\" but frontend \"web\" has mode \"http\", expected a backend with mode \"http\""
    );
}

#[test]
fn bind_not_ip_port() {
    let s = with_tail(
        r#"
[[frontend]]
name = "web"
bind = ["0.0.0.0:8080", "localhost:80"]
mode = "tcp"
default_backend = "tail"
"#,
    );
    assert_eq!(
        only(&s),
        "t.toml:3:25: frontend[0].bind[1]: \"localhost:80\" is not an ip:port address, expected e.g. \"10.99.0.11:80\" or \"[fd00::11]:80\""
    );
}

#[test]
fn bind_twice() {
    let s = with_tail(
        r#"
[[frontend]]
name = "web"
bind = ["127.0.0.1:1"]
mode = "tcp"
default_backend = "tail"
"#,
    );
    assert_eq!(
        only(&s),
        "t.toml:9:9: frontend[1].bind[0]: 127.0.0.1:1 is already bound at line 3, expected each bind address once"
    );
}

#[test]
fn health_check_reference_unknown() {
    assert_eq!(
        only(&l4("health_check = \"tcp\"")),
        "t.toml:7:16: l4_service[0].health_check: unknown health check \"tcp\", expected the name of a [health_check.NAME] section and none is defined"
    );
}

#[test]
fn check_timeout_not_below_interval() {
    let s = with_tail("[health_check.web]\ntype = \"tcp\"\ninterval = \"1s\"\ntimeout = \"1s\"\n");
    assert_eq!(
        only(&s),
        "t.toml:4:11: health_check.web.timeout: timeout 1s is not shorter than interval 1s, expected a timeout less than the interval"
    );
    // Without an explicit timeout the default (1s) is compared, at the interval.
    let s = with_tail("[health_check.web]\ntype = \"tcp\"\ninterval = \"500ms\"\n");
    assert_eq!(
        only(&s),
        "t.toml:3:12: health_check.web.interval: interval 500ms is not longer than the default timeout 1s, expected a longer interval or a shorter timeout"
    );
}

#[test]
fn check_type_missing_its_parameters() {
    let s = with_tail("[health_check.script]\ntype = \"script\"\n");
    assert_eq!(
        only(&s),
        "t.toml:1:1: health_check.script.command: missing required key \"command\", expected the command to run as a list of strings, e.g. [\"/usr/local/bin/check\", \"arg\"]"
    );
    let s = with_tail("[health_check.body]\ntype = \"http-content\"\n");
    assert_eq!(
        only(&s),
        "t.toml:1:1: health_check.body.body_contains: type \"http-content\" needs a body check, expected \"body_contains\" or \"body_regex\""
    );
}

#[test]
fn check_key_of_another_type() {
    let s = with_tail("[health_check.t]\ntype = \"tcp\"\npath = \"/\"\n");
    assert_eq!(
        only(&s),
        "t.toml:3:1: health_check.t.path: \"path\" does not apply to type \"tcp\", it is used by type \"http\" or \"http-content\""
    );
}

#[test]
fn check_regex_must_compile() {
    let s = with_tail("[health_check.b]\ntype = \"http-content\"\nbody_regex = \"ok(\"\n");
    assert_eq!(
        only(&s),
        "t.toml:3:14: health_check.b.body_regex: regex does not compile (unclosed group), expected a valid regular expression"
    );
}

#[test]
fn check_expect_status_invalid() {
    let s =
        with_tail("[health_check.h]\ntype = \"http\"\nexpect_status = [\"200\", \"399-200\"]\n");
    assert_eq!(
        only(&s),
        "t.toml:3:25: health_check.h.expect_status[1]: \"399-200\" is not a status or status range, expected e.g. \"200\" or \"200-399\" with codes in 100..=599"
    );
}

#[test]
fn via_vip_check_on_a_backend() {
    let s = r#"
[health_check.vv]
type = "tcp"
via_vip = true

[[frontend]]
name = "f"
bind = ["0.0.0.0:80"]
mode = "tcp"
default_backend = "b"

[[backend]]
name = "b"
mode = "tcp"
health_check = "vv"
[[backend.server]]
name = "s"
address = "10.99.0.11:80"
"#;
    assert_eq!(
        only(text(s)),
        "t.toml:14:16: backend[0].health_check: health check \"vv\" sets via_vip, which only works for an l4_service with method \"dr\", expected a check without via_vip"
    );
}

#[test]
fn vrrp_id_out_of_range_and_duplicate() {
    let v = |name: &str, id: u32| {
        format!(
            "[[vrrp_instance]]\nname = \"{name}\"\ninterface = \"eth0\"\nvirtual_router_id = {id}\npriority = 100\nvirtual_addresses = [\"10.99.255.1\"]\n"
        )
    };
    assert_eq!(
        only(&v("a", 256)),
        "t.toml:4:21: vrrp_instance[0].virtual_router_id: 256 is out of range, expected 1..=255"
    );
    assert_eq!(
        only(&format!("{}{}", v("a", 51), v("b", 51))),
        "t.toml:10:21: vrrp_instance[1].virtual_router_id: virtual_router_id 51 is already used on interface \"eth0\" by vrrp_instance \"a\" (line 4), expected a unique id per interface"
    );
    // The same id on another interface is fine.
    let other = format!("{}{}", v("a", 51), v("b", 51).replace("eth0", "eth1"));
    assert_eq!(ok(&other).vrrp_instances.len(), 2);
}

#[test]
fn vrrp_advert_interval_must_fit_centiseconds() {
    let s = "[[vrrp_instance]]\nname = \"a\"\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\nadvert_interval = \"15ms\"\nvirtual_addresses = [\"10.99.255.1\"]\n";
    assert_eq!(
        only(s),
        "t.toml:6:19: vrrp_instance[0].advert_interval: 15ms cannot be sent in VRRPv3's centisecond field, expected a multiple of 10ms up to 40950ms"
    );
}

#[test]
fn sync_enabled_needs_listen_and_peers() {
    let d = diags(&with_tail("[sync]\nenabled = true\n"));
    assert_eq!(
        d,
        vec![
            "t.toml:1:1: sync.listen: missing required key \"listen\", expected an ip:port to receive sync messages on when enabled = true",
            "t.toml:1:1: sync.peers: missing required key \"peers\", expected a list of peer ip:port addresses when enabled = true",
        ]
    );
}

#[test]
fn empty_config_has_nothing_to_run() {
    assert_eq!(
        only("# just a comment\n[global]\n"),
        "t.toml:1:1: the configuration defines nothing to run, expected at least one [[l4_service]], [[frontend]], [[vrrp_instance]] or [gslb]"
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    // "é" is two bytes but one column: the value 0 is at character 30.
    let s = with_tail("[health_check]\n\"é\" = { type = \"tcp\", rise = 0 }\n");
    assert_eq!(
        only(&s),
        "t.toml:2:30: health_check.é.rise: 0 is out of range, expected 1..=100"
    );
}

// === Many errors in one file ===

#[test]
fn every_error_is_reported_in_file_order() {
    let s = r#"
[global]
threads = 0
log_level = "verbose"

[[l4_service]]
name = "web"
vip = "10.99.255.1"
port = 80
method = "dr"
interface = "lb0"
persistence = 300
health_check = "missing"

[[l4_service.real]]
address = "10.99.0.11"
weight = -1

[[l4_service.real]]
address = "10.99.0.300"

[[frontend]]
name = "web"
bind = ["0.0.0.0:8080"]
mode = "http"
default_backend = "nope"

[[backend]]
name = "app"
mode = "http"
balance = "round-robin"
"#;
    assert_eq!(
        diags(text(s)),
        vec![
            "t.toml:2:11: global.threads: 0 is out of range, expected 1..=1024",
            "t.toml:3:13: global.log_level: unknown log_level \"verbose\", expected one of: error, warn, info, debug, trace",
            "t.toml:11:15: l4_service[0].persistence: found a bare integer, expected a duration with a unit, e.g. \"2s\" or \"150ms\"",
            "t.toml:12:16: l4_service[0].health_check: unknown health check \"missing\", expected the name of a [health_check.NAME] section and none is defined",
            "t.toml:16:10: l4_service[0].real[0].weight: -1 is out of range, expected 0..=65535",
            "t.toml:19:11: l4_service[0].real[1].address: \"10.99.0.300\" is not an IP address, expected an IPv4 or IPv6 address, e.g. \"10.99.0.11\" or \"fd00::11\"",
            "t.toml:25:19: frontend[0].default_backend: unknown backend \"nope\", expected one of: app",
            "t.toml:27:1: backend[0].server: the backend has no servers, expected at least one [[backend.server]]",
            "t.toml:30:11: backend[0].balance: unknown balance \"round-robin\", did you mean \"roundrobin\"?",
        ]
    );
}

// === Good configs: values and defaults ===

#[test]
fn l4_defaults() {
    let c = ok(&l4(""));
    let s = &c.l4_services[0];
    assert_eq!(s.name, "web");
    assert_eq!(s.vip, "10.99.255.1".parse::<IpAddr>().unwrap());
    assert_eq!(s.port, 80);
    assert_eq!(s.protocol, Protocol::Tcp);
    assert_eq!(s.method, ForwardingMethod::Dr);
    assert_eq!(s.scheduler, Scheduler::Mh);
    assert_eq!(s.persistence, None);
    assert_eq!(s.interface, "lb0");
    assert_eq!(s.xdp_mode, XdpMode::Native);
    assert_eq!(s.session_capacity, 65_536);
    assert_eq!(s.maglev_table_size, 65_537);
    assert_eq!(s.tun_source, None);
    assert!(!s.tun_vary_source);
    assert!(s.local_addresses.is_empty());
    assert_eq!(s.on_real_down, OnRealDown::Keep);
    assert!(!s.fail_open);
    assert_eq!(
        s.reals,
        vec![Real {
            address: "10.99.0.11".parse().unwrap(),
            port: None,
            weight: 1
        }]
    );
    // Untouched sections take their defaults.
    assert_eq!(
        c.global.admin,
        "127.0.0.1:9900".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(c.global.log_level, LogLevel::Info);
    assert_eq!(c.global.log_format, LogFormat::Text);
    assert_eq!(c.global.threads, None);
    assert!(!c.sync.enabled);
    assert_eq!(c.sync.interval, Duration::from_secs(1));
    assert_eq!(
        c.summary(),
        "ok: 1 L4 service (1 real), 0 frontends, 0 backends (0 servers), 0 health checks, 0 VRRP instances"
    );
}

#[test]
fn l4_ipv6_fullnat_with_every_key() {
    let s = r#"
[health_check.h]
type = "tcp"

[[l4_service]]
name = "v6"
vip = "fd00::1"
port = 443
protocol = "tcp"
method = "fullnat"
scheduler = "mh"
persistence = "10m"
interface = "lb0"
xdp_mode = "generic"
session_capacity = 1024
maglev_table_size = 251
local_addresses = ["fd00::100", "fd00::101"]
health_check = "h"
on_real_down = "expire"
fail_open = true

[[l4_service.real]]
address = "fd00::11"
port = 8443
weight = 0
"#;
    let c = ok(text(s));
    let s = &c.l4_services[0];
    assert_eq!(s.vip, "fd00::1".parse::<IpAddr>().unwrap());
    assert_eq!(s.method, ForwardingMethod::FullNat);
    assert_eq!(s.persistence, Some(Duration::from_secs(600)));
    assert_eq!(s.xdp_mode, XdpMode::Generic);
    assert_eq!(s.session_capacity, 1024);
    assert_eq!(s.maglev_table_size, 251);
    assert_eq!(s.local_addresses.len(), 2);
    assert_eq!(s.health_check.as_deref(), Some("h"));
    assert_eq!(s.on_real_down, OnRealDown::Expire);
    assert!(s.fail_open);
    assert_eq!(
        s.reals[0],
        Real {
            address: "fd00::11".parse().unwrap(),
            port: Some(8443),
            weight: 0
        }
    );
}

#[test]
fn defaults_are_inherited_unless_overridden() {
    let s = r#"
[defaults]
timeout_client = "1m"
timeout_connect = "150ms"
retries = 5
maxconn = 100

[[frontend]]
name = "a"
bind = ["0.0.0.0:80"]
mode = "http"
default_backend = "app"
timeout_client = "2s"

[[frontend]]
name = "b"
bind = ["0.0.0.0:81"]
mode = "http"
default_backend = "app"
maxconn = 7

[[backend]]
name = "app"
mode = "http"
timeout_server = "500us"
[[backend.server]]
name = "s"
address = "10.99.0.11:80"
"#;
    let c = ok(text(s));
    let (a, b) = (&c.frontends[0], &c.frontends[1]);
    assert_eq!(a.timeout_client, Duration::from_secs(2));
    assert_eq!(b.timeout_client, Duration::from_secs(60));
    assert_eq!(a.maxconn, 100);
    assert_eq!(b.maxconn, 7);
    // Not in [defaults]: the built-in default.
    assert_eq!(a.timeout_http_request, Duration::from_secs(10));
    assert_eq!(a.timeout_http_keep_alive, Duration::from_secs(5));
    let app = c.backend("app").unwrap();
    assert_eq!(app.timeout_connect, Duration::from_millis(150));
    assert_eq!(app.timeout_server, Duration::from_micros(500));
    assert_eq!(app.timeout_queue, Duration::from_secs(5));
    assert_eq!(app.retries, 5);
    assert_eq!(c.defaults.retries, 5);
    assert_eq!(app.timeout_tunnel, None);
    assert!(a.h1_fast_path);
    assert_eq!(c.global.hard_stop_after, Duration::from_secs(10));
}

#[test]
fn tunnel_timeout_hard_stop_and_fast_path_switch() {
    let s = r#"
[global]
hard_stop_after = "30s"

[defaults]
timeout_tunnel = "1h"

[[frontend]]
name = "a"
bind = ["0.0.0.0:80"]
mode = "http"
default_backend = "ws"
h1_fast_path = false

[[backend]]
name = "ws"
mode = "http"
[[backend.server]]
name = "s"
address = "10.99.0.11:80"

[[backend]]
name = "ws2"
mode = "http"
timeout_tunnel = "90s"
[[backend.server]]
name = "s"
address = "10.99.0.12:80"
"#;
    let c = ok(text(s));
    assert_eq!(c.global.hard_stop_after, Duration::from_secs(30));
    assert!(!c.frontends[0].h1_fast_path);
    assert_eq!(
        c.backend("ws").unwrap().timeout_tunnel,
        Some(Duration::from_secs(3600))
    );
    assert_eq!(
        c.backend("ws2").unwrap().timeout_tunnel,
        Some(Duration::from_secs(90))
    );
    assert_eq!(
        only(&with_tail("[defaults]\ntimeout_tunnel = \"0s\"\n")),
        "t.toml:2:18: defaults.timeout_tunnel: \"0s\" is zero, expected a duration greater than zero"
    );
}

#[test]
fn frontend_and_backend_defaults() {
    let c = ok(&with_tail(
        r#"
[[frontend]]
name = "web"
bind = ["0.0.0.0:443", "[::]:443"]
mode = "http"
default_backend = "app"
[[frontend.tls]]
cert = "/c.pem"
key = "/k.pem"

[[backend]]
name = "app"
mode = "http"
server = [{ name = "s1", address = "10.99.0.11:80" }, { name = "s2", address = "[fd00::12]:80", weight = 0, backup = true }]
"#,
    ));
    let web = &c.frontends[0];
    assert_eq!(web.bind.len(), 2);
    assert_eq!(web.maxconn, 10_000);
    assert_eq!(web.max_header_size, 16_384);
    assert!(web.forwardfor, "forwardfor defaults to true in http mode");
    assert!(!web.accept_proxy);
    assert_eq!(web.rate_limit_sessions, None);
    assert_eq!(
        web.tls,
        vec![TlsCert {
            cert: "/c.pem".into(),
            key: "/k.pem".into(),
            sni: vec![]
        }]
    );
    assert_eq!(web.alpn, vec!["h2", "http/1.1"]);
    let tail = &c.frontends[1];
    assert!(!tail.forwardfor, "forwardfor defaults to false in tcp mode");
    assert!(tail.alpn.is_empty());

    let app = c.backend("app").unwrap();
    assert_eq!(app.balance, Balance::RoundRobin);
    assert!(app.redispatch);
    assert_eq!(app.pool_idle, 64);
    assert!(!app.tls);
    assert!(app.tls_verify);
    assert_eq!(app.send_proxy, SendProxy::None);
    assert_eq!(app.retries, 3);
    assert_eq!(app.servers[0].weight, 1);
    assert!(!app.servers[0].backup && !app.servers[0].disabled);
    assert_eq!(app.servers[0].maxconn, None);
    assert_eq!(
        app.servers[1].address,
        "[fd00::12]:80".parse::<SocketAddr>().unwrap()
    );
    assert!(app.servers[1].backup);
    assert_eq!(app.servers[1].weight, 0);
    assert_eq!(
        c.summary(),
        "ok: 0 L4 services (0 reals), 2 frontends, 2 backends (3 servers), 0 health checks, 0 VRRP instances"
    );
}

#[test]
fn health_check_defaults_and_types() {
    let c = ok(&with_tail(
        r#"
[health_check.plain]
type = "http"
interval = "3s"

[health_check.content]
type = "http-content"
body_contains = "OK"
expect_status = ["200", "204-206"]
down_interval = "10s"
initial_state = "up"
jitter = 0

[health_check.run]
type = "script"
command = ["/bin/true", "-x"]

[health_check.ping]
type = "icmp"
"#,
    ));
    let plain = c.health_check("plain").unwrap();
    assert_eq!(plain.interval, Duration::from_secs(3));
    assert_eq!(plain.timeout, Duration::from_secs(1));
    assert_eq!(
        plain.down_interval,
        Duration::from_secs(3),
        "down_interval defaults to interval"
    );
    assert_eq!((plain.rise, plain.fall, plain.jitter), (2, 3, 10));
    assert_eq!(plain.initial_state, InitialState::Down);
    assert_eq!(plain.port, None);
    assert!(!plain.via_vip);
    let Probe::Http(http) = &plain.probe else {
        panic!("{:?}", plain.probe)
    };
    assert_eq!(http.path, "/");
    assert_eq!(http.method, HttpMethod::Get);
    assert_eq!(http.host, None);
    assert_eq!(http.expect_status, vec![StatusRange { min: 200, max: 399 }]);
    assert!(!http.tls);

    let content = c.health_check("content").unwrap();
    let Probe::HttpContent(http, body) = &content.probe else {
        panic!("{:?}", content.probe)
    };
    assert_eq!(
        http.expect_status,
        vec![
            StatusRange { min: 200, max: 200 },
            StatusRange { min: 204, max: 206 }
        ]
    );
    assert!(http.expect_status[1].contains(205) && !http.expect_status[1].contains(207));
    assert_eq!(body.body_contains.as_deref(), Some("OK"));
    assert_eq!(body.max_body, 65_536);
    assert_eq!(content.down_interval, Duration::from_secs(10));
    assert_eq!(content.initial_state, InitialState::Up);
    assert_eq!(content.jitter, 0);

    assert_eq!(
        c.health_check("run").unwrap().probe,
        Probe::Script {
            command: vec!["/bin/true".into(), "-x".into()]
        }
    );
    assert_eq!(
        c.health_check("ping").unwrap().probe.check_type(),
        CheckType::Icmp
    );
    // Sorted by name.
    let names: Vec<&str> = c.health_checks.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(names, ["content", "ping", "plain", "run"]);
}

#[test]
fn vrrp_and_sync_values() {
    let c = ok(r#"[[vrrp_instance]]
name = "v"
interface = "eth0"
virtual_router_id = 51
priority = 150
advert_interval = "100ms"
virtual_addresses = ["10.99.255.1", "10.99.255.2"]

[sync]
enabled = true
listen = "10.99.0.1:7946"
peers = ["10.99.0.2:7946"]
"#);
    let v = &c.vrrp_instances[0];
    assert_eq!((v.virtual_router_id, v.priority), (51, 150));
    assert_eq!(v.advert_interval, Duration::from_millis(100));
    assert_eq!(v.virtual_addresses.len(), 2);
    assert!(v.preempt);
    assert!(v.unicast_peers.is_empty() && v.track_interfaces.is_empty());
    assert_eq!(v.preempt_delay, Duration::ZERO);
    assert_eq!(
        (v.garp_repeat, v.garp_interval),
        (5, Duration::from_millis(100))
    );
    assert!(v.track_script.is_empty() && v.track_data_plane);
    assert_eq!(v.track_script_interval, Duration::from_secs(2));
    assert!(c.sync.enabled);
    assert_eq!(c.sync.listen, Some("10.99.0.1:7946".parse().unwrap()));
    assert_eq!(c.sync.interval, Duration::from_secs(1));
    assert!(
        c.summary()
            .ends_with("1 VRRP instance, state sync to 1 peer"),
        "{}",
        c.summary()
    );
}

#[test]
fn vrrp_tracking_and_announcement_keys() {
    let c = ok(r#"[[vrrp_instance]]
name = "v"
interface = "eth0"
virtual_router_id = 51
priority = 150
virtual_addresses = ["fd99::1"]
preempt_delay = "5s"
garp_repeat = 3
garp_interval = "1s"
track_script = ["/bin/true", "x"]
track_script_interval = "500ms"
track_data_plane = false
"#);
    let v = &c.vrrp_instances[0];
    assert_eq!(v.preempt_delay, Duration::from_secs(5));
    assert_eq!(
        (v.garp_repeat, v.garp_interval),
        (3, Duration::from_secs(1))
    );
    assert_eq!(v.track_script, ["/bin/true", "x"]);
    assert_eq!(v.track_script_interval, Duration::from_millis(500));
    assert!(!v.track_data_plane);
    let base = "[[vrrp_instance]]\nname = \"v\"\ninterface = \"eth0\"\nvirtual_router_id = 1\npriority = 100\n";
    assert_eq!(
        diags(&format!(
            "{base}virtual_addresses = [\"10.99.255.1\"]\ngarp_repeat = 0\n"
        )),
        ["t.toml:7:15: vrrp_instance[0].garp_repeat: 0 is out of range, expected 1..=100"]
    );
    assert_eq!(
        diags(&format!(
            "{base}virtual_addresses = [\"10.99.255.1\"]\ntrack_script = []\n"
        )),
        [
            "t.toml:7:16: vrrp_instance[0].track_script: empty array, expected at least one argument (the program)"
        ]
    );
    let many: Vec<String> = (0..256)
        .map(|i| format!("\"10.99.{}.{}\"", i / 200, i % 200 + 1))
        .collect();
    let d = diags(&format!(
        "{base}virtual_addresses = [{}]\n",
        many.join(", ")
    ));
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(
        d[0].contains("256 addresses, expected at most 255"),
        "{d:?}"
    );
}

#[test]
fn global_values() {
    let c = ok(&with_tail(
        "[global]\nadmin = \"[::1]:9901\"\nlog_level = \"trace\"\nlog_format = \"json\"\nthreads = 4\ncpu_map = [0, 1, 1023]\n",
    ));
    assert_eq!(c.global.admin, "[::1]:9901".parse::<SocketAddr>().unwrap());
    assert_eq!(c.global.log_level, LogLevel::Trace);
    assert_eq!(c.global.log_format, LogFormat::Json);
    assert_eq!(c.global.threads, Some(4));
    assert_eq!(c.global.cpu_map, vec![0, 1, 1023]);
}

#[test]
fn backend_tls_ca_and_server_sni() {
    let c = ok(r#"
[[frontend]]
name = "fe"
bind = ["0.0.0.0:8443"]
mode = "http"
default_backend = "app"

[[backend]]
name = "app"
mode = "http"
tls = true
tls_ca = "/etc/sluice/ca.pem"

[[backend.server]]
name = "a"
address = "10.0.0.1:443"
sni = "a.internal"
"#);
    let b = c.backend("app").unwrap();
    assert_eq!(b.tls_ca.as_deref(), Some("/etc/sluice/ca.pem"));
    assert_eq!(b.servers[0].sni.as_deref(), Some("a.internal"));
}

#[test]
fn tls_ca_without_tls_is_an_error() {
    let d = only(text(
        r#"
[[frontend]]
name = "fe"
bind = ["0.0.0.0:80"]
mode = "http"
default_backend = "app"

[[backend]]
name = "app"
mode = "http"
tls_ca = "/etc/sluice/ca.pem"

[[backend.server]]
name = "a"
address = "10.0.0.1:80"
"#,
    ));
    assert_eq!(
        d,
        "t.toml:10:10: backend[0].tls_ca: tls_ca does nothing without TLS to the servers, expected tls = true or no tls_ca"
    );
}

#[test]
fn frontend_splice_only_for_tcp() {
    let c = ok(&with_tail(""));
    assert_eq!(c.frontends[0].splice, Splice::Auto, "default");
    let c = ok(&with_tail("").replace(
        "default_backend = \"tail\"\n",
        "default_backend = \"tail\"\nsplice = \"always\"\n",
    ));
    assert_eq!(c.frontends[0].splice, Splice::Always);

    let bad = with_tail("").replace(
        "default_backend = \"tail\"\n",
        "default_backend = \"tail\"\nsplice = \"sometimes\"\n",
    );
    let d = only(&bad);
    assert!(
        d.starts_with("t.toml:7:10: frontend[0].splice: unknown splice mode")
            && d.contains("\"sometimes\""),
        "{d}"
    );

    let http = with_tail(text(
        r#"
[[frontend]]
name = "web"
bind = ["127.0.0.1:80"]
mode = "http"
default_backend = "app"
splice = "never"

[[backend]]
name = "app"
mode = "http"
server = [{ name = "s1", address = "10.99.0.11:80" }]
"#,
    ));
    assert_eq!(
        only(&http),
        "t.toml:6:10: frontend[0].splice: splice applies to the byte relay of mode \"tcp\", expected mode \"tcp\" or no splice"
    );
}

#[test]
fn locate_positions_a_key_path_found_outside_the_crate() {
    let s = "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[l4_service]]\nname = \"a\"\n\n[[l4_service]]\nname = \"b\"\ninterface = \"eth1\"\n";
    let d = crate::locate(
        "t.toml",
        s,
        "l4_service[1].interface",
        "one interface per daemon",
    );
    assert_eq!(
        d.to_string(),
        "t.toml:9:13: l4_service[1].interface: one interface per daemon"
    );
    // A key the file does not have: the enclosing table.
    let d = crate::locate("t.toml", s, "l4_service[0].interface", "x");
    assert_eq!((d.line, d.col), (4, 1));
    let d = crate::locate("t.toml", s, "vrrp_instance[0]", "x");
    assert_eq!((d.line, d.col), (1, 1));
}

#[test]
fn odd_keys_are_quoted_in_key_paths_and_each_problem_stays_one_line() {
    let d = diags("[global]\n\"a\\nb\" = 1\n\"c.d\" = 2\n");
    assert_eq!(d.len(), 3, "{d:?}");
    for line in &d {
        assert!(!line.contains('\n'), "{line:?}");
    }
    assert!(
        d[1].contains("global.\"a\\nb\": unknown key \"a\\nb\""),
        "{}",
        d[1]
    );
    assert!(d[2].contains("global.\"c.d\": unknown key"), "{}", d[2]);
}
