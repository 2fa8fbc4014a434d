//! `sluice doctor` inside a fresh network namespace: it reports the
//! namespace's own sysctl values, `--apply` changes exactly the
//! namespace-local ones it reported, and the root namespace's values stay
//! as they were. Needs root.
#![allow(missing_docs, clippy::unwrap_used)]

use std::process::Command;

const SLUICE: &str = env!("CARGO_BIN_EXE_sluice");

/// A network namespace that is deleted on drop.
struct Ns(String);

impl Ns {
    fn new() -> Self {
        let name = format!("sl-doc{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ip netns add (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ns(name)
    }

    fn doctor(&self, args: &[&str]) -> (i32, serde_json::Value) {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.0, SLUICE, "doctor", "--json"])
            .args(args)
            .output()
            .unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap(), v)
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn finding<'a>(v: &'a serde_json::Value, item: &str) -> &'a serde_json::Value {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["item"] == item)
        .unwrap_or_else(|| panic!("no {item} in {v:#}"))
}

/// The root namespace's values of everything the tests may touch (read from
/// this process, which runs in the root namespace).
fn root_values() -> Vec<(String, String)> {
    [
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/ip_local_port_range",
        "net/ipv4/tcp_tw_reuse",
        "net/ipv4/conf/all/arp_ignore",
        "net/ipv4/conf/all/arp_announce",
        "net/ipv4/conf/all/rp_filter",
        "net/ipv4/conf/default/rp_filter",
        "net/netfilter/nf_conntrack_max",
        "net/core/netdev_max_backlog",
        "fs/file-max",
    ]
    .iter()
    .map(|k| {
        (
            (*k).to_owned(),
            std::fs::read_to_string(format!("/proc/sys/{k}")).unwrap_or_default(),
        )
    })
    .collect()
}

#[test]
fn doctor_reports_and_applies_only_namespace_local_settings() {
    let before = root_values();
    let ns = Ns::new();

    // A proxying LB in a fresh namespace: kernel defaults need changes.
    let (code, v) = ns.doctor(&["--role", "lb", "--method", "proxy"]);
    assert_eq!(code, 1, "changes are outstanding: {v:#}");
    assert_eq!(v["root_namespace"], false);
    for key in [
        "net.core.somaxconn",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.ip_local_port_range",
    ] {
        let f = finding(&v, key);
        assert_eq!(f["scope"], "namespace", "{f}");
        assert_eq!(f["status"], "change", "{f}");
        assert!(
            f["command"].as_str().unwrap().starts_with("sysctl -w "),
            "{f}"
        );
    }
    // Global-only: hidden inside a namespace, reported, not guessed.
    assert_eq!(
        finding(&v, "net.core.netdev_max_backlog")["status"],
        "unreadable"
    );
    assert_eq!(finding(&v, "fs.file-max")["scope"], "global");

    let (_, applied) = ns.doctor(&["--role", "lb", "--method", "proxy", "--apply"]);
    for f in applied["findings"].as_array().unwrap() {
        if f["status"] != "change" {
            assert!(
                f["applied"].is_null(),
                "applied something it did not report: {f}"
            );
            continue;
        }
        if f["scope"] == "namespace" {
            assert_eq!(f["applied"], true, "{f}");
        } else {
            assert_eq!(f["applied"], false, "global applied from a netns: {f}");
            assert!(f["apply_error"].is_string(), "{f}");
        }
    }
    // Read back inside the namespace: now fine.
    let (_, after) = ns.doctor(&["--role", "lb", "--method", "proxy"]);
    for key in [
        "net.core.somaxconn",
        "net.ipv4.tcp_max_syn_backlog",
        "net.ipv4.tcp_tw_reuse",
        "net.ipv4.ip_local_port_range",
    ] {
        assert_eq!(finding(&after, key)["status"], "ok", "{after:#}");
    }
    assert_eq!(
        finding(&after, "net.ipv4.ip_local_port_range")["current"],
        "1024 65535"
    );

    // A DSR real: ARP settings.
    let (_, real) = ns.doctor(&["--role", "real", "--method", "dr"]);
    assert_eq!(
        finding(&real, "net.ipv4.conf.all.arp_ignore")["status"],
        "change"
    );
    let (_, _) = ns.doctor(&["--role", "real", "--method", "dr", "--apply"]);
    let (_, real) = ns.doctor(&["--role", "real", "--method", "dr"]);
    assert_eq!(
        finding(&real, "net.ipv4.conf.all.arp_ignore")["status"],
        "ok"
    );
    assert_eq!(
        finding(&real, "net.ipv4.conf.all.arp_announce")["status"],
        "ok"
    );

    // The text report names the command.
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.0, SLUICE, "doctor", "--role", "lb", "--method", "fullnat",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("inside a network namespace"), "{text}");
    assert!(text.contains("summary:"), "{text}");

    drop(ns);
    assert_eq!(
        root_values(),
        before,
        "the root namespace's sysctls changed"
    );
}
