//! The bmt lab made fit for `nat`: the lab is built for DSR (the reals
//! answer the client straight over the switch), but a `nat` reply must
//! cross the LB to be rewritten back to the VIP. For the `nat` rows each
//! real routes the client via the LB (a host route: the client shares the
//! reals' segment, so it stands in for "default route via the LB") and
//! sends with full checksums (native XDP on a veth loses a partial
//! checksum: ../shared/reference/platform.md). A drop guard puts the reals
//! back, so the modes measured after `nat` see the DSR lab again.
//! `crates/sluice/tests/l4_nat.rs` prepares its lab the same way.
//!
//! `nat`'s peer, the kernel's NAT ([`NftDnat`]), runs on the same changed
//! lab: an nftables DNAT rule in the LB namespace, forwarding on.

use std::net::Ipv4Addr;
use std::process::Command;

use sluice_lab::Topology;

/// The reals' changes for `nat`, undone on drop.
#[derive(Debug)]
pub(crate) struct RealsViaLb {
    /// `(namespace, interface)` of each real changed so far.
    reals: Vec<(String, String)>,
    client: Ipv4Addr,
}

impl RealsViaLb {
    /// Routes the client via the LB on every real and turns their
    /// transmit checksum offload off. On an error the reals changed so
    /// far are put back (drop) and the reason is returned.
    pub(crate) fn set(t: &Topology) -> Result<Self, String> {
        let mut guard = RealsViaLb {
            reals: Vec::new(),
            client: t.client.ipv4,
        };
        let client = format!("{}/32", t.client.ipv4);
        let lb = t.lb.ipv4.to_string();
        for r in &t.reals {
            guard.reals.push((r.netns.clone(), r.iface.clone()));
            run(&[
                "ip", "-n", &r.netns, "route", "replace", &client, "via", &lb,
            ])?;
            run(&[
                "ip", "netns", "exec", &r.netns, "ethtool", "-K", &r.iface, "tx", "off",
            ])?;
        }
        Ok(guard)
    }
}

impl Drop for RealsViaLb {
    fn drop(&mut self) {
        let client = format!("{}/32", self.client);
        for (netns, iface) in &self.reals {
            for argv in [
                &["ip", "-n", netns, "route", "del", &client][..],
                &[
                    "ip", "netns", "exec", netns, "ethtool", "-K", iface, "tx", "on",
                ][..],
            ] {
                if let Err(e) = run(argv) {
                    eprintln!("sluice lab bmt: putting {netns} back after nat: {e}");
                }
            }
        }
    }
}

/// The nftables table `nft-dnat` loads into the LB namespace.
const NFT_TABLE: &str = "sluice_bmt";

/// The kernel's DNAT in the LB namespace (and forwarding on), undone on
/// drop: the table deleted, `ip_forward` put back.
#[derive(Debug)]
pub(crate) struct NftDnat {
    lb_netns: String,
    /// `net.ipv4.ip_forward` before, put back on drop.
    forward_was: String,
}

impl NftDnat {
    /// Loads `dnat to numgen inc mod N map { 0 : RIP1, ... }` for the VIP
    /// and port of `t` (the real port is the VIP's, as in `nat`'s rows)
    /// and turns forwarding on in the LB namespace.
    pub(crate) fn set(t: &Topology) -> Result<Self, String> {
        let lb = &t.lb.netns;
        let forward_was = output(&[
            "ip",
            "netns",
            "exec",
            lb,
            "sysctl",
            "-n",
            "net.ipv4.ip_forward",
        ])?;
        let guard = NftDnat {
            lb_netns: lb.clone(),
            forward_was: forward_was.trim().to_owned(),
        };
        run(&[
            "ip",
            "netns",
            "exec",
            lb,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        let map: Vec<String> = t
            .reals
            .iter()
            .enumerate()
            .map(|(i, r)| format!("{i} : {}", r.ipv4))
            .collect();
        let rules = format!(
            "table ip {NFT_TABLE} {{\n\
             \tchain prerouting {{\n\
             \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
             \t\tip daddr {vip} tcp dport {port} dnat to numgen inc mod {n} map {{ {map} }}\n\
             \t}}\n\
             }}\n",
            vip = t.vip4,
            port = t.port,
            n = t.reals.len(),
            map = map.join(", "),
        );
        let file = tempfile::NamedTempFile::new().map_err(|e| format!("nft rules file: {e}"))?;
        std::fs::write(file.path(), rules).map_err(|e| format!("writing the nft rules: {e}"))?;
        let path = file.path().display().to_string();
        run(&["ip", "netns", "exec", lb, "nft", "-f", &path])?;
        Ok(guard)
    }
}

impl Drop for NftDnat {
    fn drop(&mut self) {
        let lb = &self.lb_netns;
        let forward = format!("net.ipv4.ip_forward={}", self.forward_was);
        for argv in [
            &[
                "ip", "netns", "exec", lb, "nft", "delete", "table", "ip", NFT_TABLE,
            ][..],
            &["ip", "netns", "exec", lb, "sysctl", "-qw", &forward][..],
        ] {
            if let Err(e) = run(argv) {
                eprintln!("sluice lab bmt: putting {lb} back after nft-dnat: {e}");
            }
        }
    }
}

/// Runs `argv` to completion and returns its standard output.
fn output(argv: &[&str]) -> Result<String, String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `argv` to completion; `Err` names the command and its stderr.
fn run(argv: &[&str]) -> Result<(), String> {
    output(argv).map(drop)
}
