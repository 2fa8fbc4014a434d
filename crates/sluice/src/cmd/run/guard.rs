//! The guard of an HA node's kernel: nftables rules that drop what only
//! the XDP program may answer, so that a node whose `sluice run` died
//! (SIGKILL, a crash) never resets the flows it was carrying.
//!
//! Why: VRRP's virtual addresses are the kernel's own (netlink), and they
//! stay on the interface when the process dies without cleaning up, as
//! keepalived's do. Until the backup takes over and announces itself
//! (3 advert intervals and a skew), the client and the reals still send
//! to the dead node, whose XDP program went with the process: its kernel
//! then answers a segment for `VIP:port` with a RST (no socket), answers
//! a reply to a `fullnat` local address with a RST, and forwards a `nat`
//! real's reply unrewritten (whereupon the client resets the real). With
//! the guard those packets are dropped instead, TCP retransmits them, and
//! the new master carries the flow on. The rules match only traffic the
//! XDP program takes while it runs, so they cost nothing then.
//!
//! The rules are one nftables table (`inet sluice_guard`), replaced
//! atomically at start and removed at a clean stop.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use sluice_l4::ServiceSpec;
use sluice_l4::wire_maps::Method;

/// The table's name (family `inet`).
const TABLE: &str = "sluice_guard";
/// Hook priority of both chains: before the kernel's own filter tables
/// (0), after conntrack (-200), so that nothing else sees these packets.
const PRIORITY: i32 = -150;

fn family(a: IpAddr) -> &'static str {
    if a.is_ipv4() { "ip" } else { "ip6" }
}

fn proto_name(p: u8) -> &'static str {
    if p == 17 { "udp" } else { "tcp" }
}

/// The nftables script for `specs` (replacing any earlier table).
pub(super) fn ruleset(specs: &[ServiceSpec]) -> String {
    let mut input = String::new();
    let mut forward = String::new();
    for s in specs {
        let (fam, proto) = (family(s.vip), proto_name(s.proto));
        let port = if s.port == 0 {
            String::new()
        } else {
            format!(" th dport {}", s.port)
        };
        let _ = writeln!(
            input,
            "    {fam} daddr {} meta l4proto {proto}{port} drop",
            s.vip
        );
        match s.method {
            Method::Fullnat => {
                for l in &s.local_addresses {
                    let _ = writeln!(
                        input,
                        "    {} daddr {l} meta l4proto {proto} th dport {}-{} drop",
                        family(*l),
                        s.local_ports.0,
                        s.local_ports.1
                    );
                }
            }
            // A real's reply from the service's port; an every-port
            // service's replies cannot be told from the real's own
            // traffic routed through the LB, so they are not guarded.
            Method::Nat if s.port != 0 => {
                for r in &s.reals {
                    let rport = if r.port == 0 { s.port } else { r.port };
                    let _ = writeln!(
                        forward,
                        "    {} saddr {} meta l4proto {proto} th sport {rport} drop",
                        family(r.addr),
                        r.addr
                    );
                }
            }
            _ => {}
        }
    }
    format!(
        "table inet {TABLE}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n  \
         chain input {{\n    type filter hook input priority {PRIORITY}; policy accept;\n{input}  }}\n  \
         chain forward {{\n    type filter hook forward priority {PRIORITY}; policy accept;\n{forward}  }}\n}}\n"
    )
}

fn nft(script: &str) -> anyhow::Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running nft (Debian package nftables)")?;
    if let Some(mut i) = child.stdin.take() {
        i.write_all(script.as_bytes())
            .context("writing the rules to nft")?;
    }
    let out = child.wait_with_output().context("waiting for nft")?;
    if !out.status.success() {
        bail!(
            "nft refused the rules: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Installs the guard for `specs`.
pub(super) fn install(specs: &[ServiceSpec]) -> anyhow::Result<()> {
    nft(&ruleset(specs)).context("installing the HA guard (docs/HA.md, \"The guard\")")
}

/// Removes the guard (a clean stop: the addresses are gone too).
pub(super) fn remove() -> anyhow::Result<()> {
    nft(&format!("table inet {TABLE}\ndelete table inet {TABLE}\n"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice_l4::RealSpec;

    fn spec(method: Method, vip: &str, port: u16) -> ServiceSpec {
        ServiceSpec {
            name: "s".into(),
            vip: vip.parse().unwrap(),
            port,
            proto: 6,
            method,
            scheduler: sluice_core::sched::L4Scheduler::Rr,
            persistence: None,
            table_size: 1009,
            tun_source: None,
            tun_vary_source: false,
            local_addresses: Vec::new(),
            local_ports: (1024, 32767),
            toa: false,
            on_real_down: sluice_core::service::OnRealDown::default(),
            fail_open: false,
            initially_up: true,
            reals: Vec::new(),
        }
    }

    fn real(a: &str, port: u16) -> RealSpec {
        RealSpec {
            addr: a.parse().unwrap(),
            weight: 1,
            port,
        }
    }

    #[test]
    fn the_rules_cover_vips_local_addresses_and_nat_replies() {
        let dr = spec(Method::Dr, "10.99.255.1", 80);
        let mut udp6 = spec(Method::Dr, "fd99:ffff::1", 0);
        udp6.proto = 17;
        let mut fullnat = spec(Method::Fullnat, "10.99.255.2", 443);
        fullnat.local_addresses = vec!["10.99.0.200".parse().unwrap()];
        fullnat.local_ports = (20000, 29999);
        let mut nat = spec(Method::Nat, "10.99.255.3", 80);
        nat.reals = vec![real("10.99.0.11", 8080), real("10.99.0.12", 0)];
        let mut nat_all = spec(Method::Nat, "10.99.255.4", 0);
        nat_all.reals = vec![real("10.99.0.13", 0)];
        let r = ruleset(&[dr, udp6, fullnat, nat, nat_all]);
        for want in [
            "ip daddr 10.99.255.1 meta l4proto tcp th dport 80 drop",
            "ip6 daddr fd99:ffff::1 meta l4proto udp drop",
            "ip daddr 10.99.0.200 meta l4proto tcp th dport 20000-29999 drop",
            "ip saddr 10.99.0.11 meta l4proto tcp th sport 8080 drop",
            "ip saddr 10.99.0.12 meta l4proto tcp th sport 80 drop",
            "delete table inet sluice_guard",
            "type filter hook input priority -150; policy accept;",
        ] {
            assert!(r.contains(want), "{want:?} missing from:\n{r}");
        }
        assert!(
            !r.contains("10.99.0.13"),
            "every-port nat replies guarded:\n{r}"
        );
    }
}
