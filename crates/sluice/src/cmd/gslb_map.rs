//! Maps `[gslb]` onto sluice-gslb's zone and server specs (site and name
//! references become indices; TTLs become seconds).

use sluice_config as model;
use sluice_gslb::{AnswerSpec, NameSpec, PolicyKind, SitePolicy, SiteSpec, TopologyRule, ZoneSpec};

use super::plan::Problem;

/// What `sluice run` starts for `[gslb]`.
#[derive(Debug, Clone)]
pub(crate) struct GslbPlan {
    pub(crate) zone: ZoneSpec,
    pub(crate) server: sluice_gslb::ServerConfig,
}

/// The plan of `[gslb]`, if any, or the problems `sluice run` would hit.
pub(crate) fn plan(cfg: &model::Config) -> Result<Option<GslbPlan>, Vec<Problem>> {
    let Some(g) = &cfg.gslb else {
        return Ok(None);
    };
    let zone = zone_spec(g);
    // The config crate validated every name; this only fails if the two
    // disagree on what a DNS name is.
    if let Err(e) = sluice_gslb::Zone::new(zone.clone()) {
        return Err(vec![Problem::new("gslb", e.to_string())]);
    }
    Ok(Some(GslbPlan {
        zone,
        server: sluice_gslb::ServerConfig {
            listen: g.listen.clone(),
            rate_limit: g.rate_limit,
            // `global.threads` sizes the DNS sockets too (0: one per CPU).
            udp_sockets: usize::from(cfg.global.threads.unwrap_or(0)),
        },
    }))
}

fn secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

/// The zone of `[gslb]`.
pub(crate) fn zone_spec(g: &model::Gslb) -> ZoneSpec {
    let index = |name: &str| g.sites.iter().position(|s| s.name == name);
    let indices = |names: &[String]| names.iter().filter_map(|n| index(n)).collect::<Vec<_>>();
    ZoneSpec {
        apex: g.zone.clone(),
        nameservers: g.nameservers.clone(),
        hostmaster: g.hostmaster.clone(),
        serial: g.serial,
        zone_ttl: secs(g.ttl),
        negative_ttl: secs(g.negative_ttl),
        sites: g
            .sites
            .iter()
            .map(|s| SiteSpec {
                name: s.name.clone(),
                addresses: s.addresses.clone(),
            })
            .collect(),
        names: g
            .names
            .iter()
            .map(|n| NameSpec {
                name: n.name.clone(),
                ttl: secs(n.ttl),
                answer: match &n.target {
                    model::GslbTarget::Cname(t) => AnswerSpec::Cname(t.clone()),
                    model::GslbTarget::Sites {
                        policy,
                        sites,
                        weights,
                        max_addresses,
                        topology,
                    } => AnswerSpec::Sites(SitePolicy {
                        kind: match policy {
                            model::GslbPolicy::Failover => PolicyKind::Failover,
                            model::GslbPolicy::Weighted => PolicyKind::Weighted,
                            model::GslbPolicy::Topology => PolicyKind::Topology,
                        },
                        sites: indices(sites),
                        weights: weights.clone(),
                        max_addresses: usize::from(*max_addresses),
                        topology: topology
                            .iter()
                            .map(|r| TopologyRule {
                                prefixes: r.prefixes.clone(),
                                sites: indices(&r.sites),
                            })
                            .collect(),
                    }),
                },
            })
            .collect(),
    }
}

/// `sluice ctl gslb`'s table from `GET /v1/gslb`'s JSON.
pub(crate) fn format_view(v: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let list = |v: &serde_json::Value| v.as_array().cloned().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "zone {} on {} (answers for client {})",
        s(&v["zone"]),
        list(&v["listen"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(", "),
        s(&v["client"])
    );
    let _ = writeln!(out, "\nSITE            HEALTH FROM          ADDRESSES");
    for site in list(&v["sites"]) {
        let addrs: Vec<String> = list(&site["addresses"])
            .iter()
            .map(|a| {
                let up = if a["up"].as_bool().unwrap_or(false) {
                    "up"
                } else {
                    "DOWN"
                };
                format!("{} {up}", s(&a["address"]))
            })
            .collect();
        let _ = writeln!(
            out,
            "{:<15} {:<20} {}",
            s(&site["name"]),
            s(&site["health_source"]),
            addrs.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nNAME                             POLICY     TTL  SITES            ANSWER"
    );
    for n in list(&v["names"]) {
        let answer = if n["cname"].is_string() {
            format!("CNAME {}", s(&n["cname"]))
        } else {
            let mut parts = Vec::new();
            for key in ["a", "aaaa"] {
                for a in list(&n[key]) {
                    parts.push(format!("{} ({})", s(&a["address"]), s(&a["site"])));
                }
                if n[format!("{key}_fail_open")].as_bool() == Some(true) {
                    parts.push(format!(
                        "[{} fail-open: no site healthy]",
                        key.to_uppercase()
                    ));
                }
            }
            if parts.is_empty() {
                "-".to_owned()
            } else {
                parts.join(", ")
            }
        };
        let sites = list(&n["sites"])
            .iter()
            .map(s)
            .collect::<Vec<_>>()
            .join(",");
        let policy = if n["cname"].is_string() {
            "cname".to_owned()
        } else {
            s(&n["policy"])
        };
        let _ = writeln!(
            out,
            "{:<32} {:<10} {:<4} {:<16} {}",
            s(&n["name"]),
            policy,
            n["ttl"].as_u64().unwrap_or(0),
            sites,
            answer
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_become_indices_and_ttls_seconds() {
        let text = r#"
[gslb]
listen = ["127.0.0.1:0"]
zone = "g.test"
nameservers = ["ns.g.test"]
[[gslb.site]]
name = "a"
addresses = ["192.0.2.1"]
[[gslb.site]]
name = "b"
addresses = ["192.0.2.2"]
[[gslb.name]]
name = "www"
policy = "topology"
sites = ["b", "a"]
ttl = "7s"
[[gslb.name.topology]]
prefixes = ["10.0.0.0/8"]
sites = ["b"]
"#;
        let cfg = match sluice_config::parse("t.toml", text) {
            Ok(c) => c,
            Err(d) => panic!("{d}"),
        };
        let p = match plan(&cfg) {
            Ok(Some(p)) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!(p.zone.names[0].ttl, 7);
        assert_eq!(p.zone.zone_ttl, 30);
        let AnswerSpec::Sites(sp) = &p.zone.names[0].answer else {
            panic!("sites");
        };
        assert_eq!(sp.sites, vec![1, 0]);
        assert_eq!(sp.topology[0].sites, vec![1]);
        assert_eq!(sp.kind, PolicyKind::Topology);
    }

    #[test]
    fn ctl_table_shows_health_and_answers() {
        let v = serde_json::json!({
            "zone": "g.test", "listen": ["127.0.0.1:53"], "client": "10.1.1.1",
            "sites": [{"name": "eu", "health_source": "health_check web",
                       "addresses": [{"address": "192.0.2.1", "up": false}]}],
            "names": [
                {"name": "www.g.test.", "ttl": 30, "policy": "failover", "sites": ["eu"],
                 "a": [{"site": "eu", "address": "192.0.2.1"}], "a_fail_open": true},
                {"name": "app.g.test.", "ttl": 60, "cname": "www.g.test"}
            ]
        });
        let t = format_view(&v);
        assert!(t.contains("192.0.2.1 DOWN"), "{t}");
        assert!(
            t.contains("192.0.2.1 (eu), [A fail-open: no site healthy]"),
            "{t}"
        );
        assert!(t.contains("CNAME www.g.test"), "{t}");
    }
}
