//! The bmt lab made fit for the NAT modes. The lab is built for DSR (the
//! reals answer the client straight over the switch), but a NAT reply
//! must cross the LB to be rewritten back to the VIP:
//!
//! - `nat` (and its peer `nft-dnat`): each real routes the client via the
//!   LB (a host route: the client shares the reals' segment, so it stands
//!   in for "default route via the LB").
//! - `fullnat` (and its peer `nft-fullnat`): the LB connects to the reals
//!   from a local address of its own ([`LocalAddress`], added to the LB's
//!   interface), so the replies go to the LB with no change of route.
//!
//! In every NAT mode the reals send with full checksums: their replies
//! cross the LB, and native XDP on a veth loses a partial checksum
//! (../shared/reference/platform.md, gotcha 3); the kernel peers get the
//! same reals, so both sides of a comparison run on the same lab. Drop
//! guards put everything back, so the modes measured afterwards see the
//! DSR lab again. `crates/sluice/tests/l4_nat.rs` prepares its lab the
//! same way.
//!
//! The kernel's peers ([`NftNat`]) are one nftables table in the LB
//! namespace, forwarding on: DNAT to the reals (`nft-dnat`), plus SNAT to
//! the local address (`nft-fullnat`). The table's text ([`nft_rules`]) is
//! public: the packet-rate bench (`crates/sluice/benches/l4_pps.rs`)
//! loads the same rules as its kernel cases.

use std::net::Ipv4Addr;
use std::process::Command;

use sluice_lab::Topology;

/// Last octet of the local address `fullnat` and `nft-fullnat` connect to
/// the reals from, in the lab's subnet: no node of the lab has it (the LB
/// is .1, the client .2, the reals .11 to .35, the router .254).
const LOCAL_HOST: u8 = 200;

/// Prefix length of the local address on the LB's interface, in bits: a
/// host address, so adding it changes no route.
const LOCAL_PREFIX_LEN: u8 = 32;

/// The local address of `fullnat` and `nft-fullnat` in the lab of `t`:
/// host [`LOCAL_HOST`] of the LB's subnet.
pub(crate) fn local_address(t: &Topology) -> Ipv4Addr {
    let [a, b, c, _] = t.lb.ipv4.octets();
    Ipv4Addr::new(a, b, c, LOCAL_HOST)
}

/// How the reals' replies reach the LB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyPath {
    /// The reals route the client via the LB (`nat`, `nft-dnat`): the
    /// replies go to the client's address.
    ClientViaLb,
    /// The replies go to the LB's local address, which the reals reach
    /// on their segment with no change (`fullnat`, `nft-fullnat`).
    ToLocalAddress,
}

/// The reals' changes for a NAT mode, undone on drop.
#[derive(Debug)]
struct NatReals {
    /// `(namespace, interface)` of each real changed so far.
    reals: Vec<(String, String)>,
    /// The client's host route via the LB, if one was added.
    route: Option<String>,
}

impl NatReals {
    /// Turns the reals' transmit checksum offload off and, for
    /// [`ReplyPath::ClientViaLb`], routes the client via the LB on every
    /// real. On an error the reals changed so far are put back (drop) and
    /// the reason is returned.
    fn set(t: &Topology, path: ReplyPath) -> Result<Self, String> {
        let client = format!("{}/32", t.client.ipv4);
        let mut guard = NatReals {
            reals: Vec::new(),
            route: (path == ReplyPath::ClientViaLb).then(|| client.clone()),
        };
        let lb = t.lb.ipv4.to_string();
        for r in &t.reals {
            guard.reals.push((r.netns.clone(), r.iface.clone()));
            if path == ReplyPath::ClientViaLb {
                run(&[
                    "ip", "-n", &r.netns, "route", "replace", &client, "via", &lb,
                ])?;
            }
            run(&[
                "ip", "netns", "exec", &r.netns, "ethtool", "-K", &r.iface, "tx", "off",
            ])?;
        }
        Ok(guard)
    }
}

impl Drop for NatReals {
    fn drop(&mut self) {
        for (netns, iface) in &self.reals {
            if let Some(client) = &self.route
                && let Err(e) = run(&["ip", "-n", netns, "route", "del", client])
            {
                eprintln!("sluice lab bmt: putting {netns} back after a NAT mode: {e}");
            }
            if let Err(e) = run(&[
                "ip", "netns", "exec", netns, "ethtool", "-K", iface, "tx", "on",
            ]) {
                eprintln!("sluice lab bmt: putting {netns} back after a NAT mode: {e}");
            }
        }
    }
}

/// The local address of `fullnat` and `nft-fullnat` on the LB's interface
/// (`sluice run` refuses a local address its interface does not have;
/// the reals' ARP for it must be answered by the LB), removed on drop.
#[derive(Debug)]
pub(crate) struct LocalAddress {
    lb_netns: String,
    iface: String,
    /// `ADDRESS/PREFIX` as added.
    cidr: String,
    /// The address itself.
    pub(crate) addr: Ipv4Addr,
}

impl LocalAddress {
    /// Adds [`local_address`] to the LB's interface.
    fn add(t: &Topology) -> Result<Self, String> {
        let addr = local_address(t);
        let cidr = format!("{addr}/{LOCAL_PREFIX_LEN}");
        run(&[
            "ip",
            "-n",
            &t.lb.netns,
            "addr",
            "add",
            &cidr,
            "dev",
            &t.lb.iface,
        ])?;
        Ok(LocalAddress {
            lb_netns: t.lb.netns.clone(),
            iface: t.lb.iface.clone(),
            cidr,
            addr,
        })
    }
}

impl Drop for LocalAddress {
    fn drop(&mut self) {
        let (ns, iface, cidr) = (&self.lb_netns, &self.iface, &self.cidr);
        if let Err(e) = run(&["ip", "-n", ns, "addr", "del", cidr, "dev", iface]) {
            eprintln!("sluice lab bmt: removing the local address from {ns}: {e}");
        }
    }
}

/// Everything a NAT mode changes in the lab, undone on drop: the reals,
/// and for [`ReplyPath::ToLocalAddress`] the local address on the LB.
#[derive(Debug)]
pub(crate) struct NatLab {
    /// The local address, if the mode connects from one.
    pub(crate) local: Option<LocalAddress>,
    _reals: NatReals,
}

impl NatLab {
    /// Prepares the lab of `t` for a NAT mode whose replies take `path`;
    /// on an error what was changed so far is put back.
    pub(crate) fn set(t: &Topology, path: ReplyPath) -> Result<Self, String> {
        let reals = NatReals::set(t, path)?;
        let local = match path {
            ReplyPath::ClientViaLb => None,
            ReplyPath::ToLocalAddress => Some(LocalAddress::add(t)?),
        };
        Ok(NatLab {
            local,
            _reals: reals,
        })
    }
}

/// The nftables table (family `ip`) the kernel's NAT peers load into the
/// LB namespace.
pub const NFT_TABLE: &str = "sluice_bmt";

/// Which NAT the kernel does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelNat {
    /// DNAT to the reals (`nft-dnat`, the peer of `nat`).
    Dnat,
    /// DNAT to the reals and SNAT to this local address (`nft-fullnat`,
    /// the peer of `fullnat`, which connects from the same address).
    FullNat(Ipv4Addr),
}

/// The kernel's NAT in the LB namespace (and forwarding on), undone on
/// drop: the table deleted, `ip_forward` put back.
#[derive(Debug)]
pub(crate) struct NftNat {
    lb_netns: String,
    /// `net.ipv4.ip_forward` before, put back on drop.
    forward_was: String,
}

impl NftNat {
    /// Loads [`nft_rules`] for the VIP, port and reals of `t` and turns
    /// forwarding on in the LB namespace.
    pub(crate) fn set(t: &Topology, nat: KernelNat) -> Result<Self, String> {
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
        let guard = NftNat {
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
        let reals: Vec<Ipv4Addr> = t.reals.iter().map(|r| r.ipv4).collect();
        let rules = nft_rules(t.vip4, t.port, &reals, nat);
        let file = tempfile::NamedTempFile::new().map_err(|e| format!("nft rules file: {e}"))?;
        std::fs::write(file.path(), rules).map_err(|e| format!("writing the nft rules: {e}"))?;
        let path = file.path().display().to_string();
        run(&["ip", "netns", "exec", lb, "nft", "-f", &path])?;
        Ok(guard)
    }
}

impl Drop for NftNat {
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
                eprintln!("sluice lab bmt: putting {lb} back after the kernel's NAT: {e}");
            }
        }
    }
}

/// The nftables table of the kernel's NAT for `vip:port` (TCP): `dnat to
/// numgen inc mod N map { 0 : RIP1, ... }` in prerouting (the real port
/// is the VIP's, as in the sluice rows), and for [`KernelNat::FullNat`]
/// `snat to` the local address in postrouting, for the connections to the
/// VIP (conntrack's original destination: prerouting has already
/// rewritten the packet's) and nothing else. `snat to` rather than `masquerade`: masquerade would pick
/// the interface's primary address, where sluice's `fullnat` connects from
/// the local address; with the same source the reals see the same thing.
pub fn nft_rules(vip: Ipv4Addr, port: u16, reals: &[Ipv4Addr], nat: KernelNat) -> String {
    let map: Vec<String> = reals
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{i} : {r}"))
        .collect();
    let mut rules = format!(
        "table ip {NFT_TABLE} {{\n\
         \tchain prerouting {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tip daddr {vip} tcp dport {port} dnat to numgen inc mod {n} map {{ {map} }}\n\
         \t}}\n",
        n = reals.len(),
        map = map.join(", "),
    );
    if let KernelNat::FullNat(local) = nat {
        rules.push_str(&format!(
            "\tchain postrouting {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\tct original ip daddr {vip} snat to {local}\n\
             \t}}\n"
        ));
    }
    rules.push_str("}\n");
    rules
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 99, 255, 1);
    const REALS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 99, 0, 11), Ipv4Addr::new(10, 99, 0, 12)];

    #[test]
    fn dnat_rules_round_robin_over_the_reals_and_snat_nothing() {
        let r = nft_rules(VIP, 80, &REALS, KernelNat::Dnat);
        assert!(r.contains(
            "ip daddr 10.99.255.1 tcp dport 80 dnat to numgen inc mod 2 map { 0 : 10.99.0.11, 1 : 10.99.0.12 }"
        ), "{r}");
        assert!(!r.contains("postrouting") && !r.contains("snat"), "{r}");
        assert_eq!(r.matches('{').count(), r.matches('}').count(), "{r}");
    }

    #[test]
    fn fullnat_rules_are_the_dnat_rules_plus_snat_of_the_vips_connections() {
        let local = Ipv4Addr::new(10, 99, 0, 200);
        let r = nft_rules(VIP, 8080, &REALS, KernelNat::FullNat(local));
        let dnat = nft_rules(VIP, 8080, &REALS, KernelNat::Dnat);
        // One owner: the DNAT part is the same text.
        assert!(r.starts_with(dnat.strip_suffix("}\n").unwrap()), "{r}");
        assert!(
            r.contains("ct original ip daddr 10.99.255.1 snat to 10.99.0.200"),
            "{r}"
        );
        assert!(
            r.contains("type nat hook postrouting priority srcnat"),
            "{r}"
        );
        assert_eq!(r.matches('{').count(), r.matches('}').count(), "{r}");
    }
}
