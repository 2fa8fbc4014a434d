//! The bmt lab made fit for `nat`: the lab is built for DSR (the reals
//! answer the client straight over the switch), but a `nat` reply must
//! cross the LB to be rewritten back to the VIP. For the `nat` rows each
//! real routes the client via the LB (a host route: the client shares the
//! reals' segment, so it stands in for "default route via the LB") and
//! sends with full checksums (native XDP on a veth loses a partial
//! checksum: ../shared/reference/platform.md). A drop guard puts the reals
//! back, so the modes measured after `nat` see the DSR lab again.
//! `crates/sluice/tests/l4_nat.rs` prepares its lab the same way.

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

/// Runs `argv` to completion; `Err` names the command and its stderr.
fn run(argv: &[&str]) -> Result<(), String> {
    let (program, args) = argv.split_first().ok_or("empty command")?;
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("`{}`: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
