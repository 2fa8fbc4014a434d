//! Neighbour resolution from the kernel's tables, through iproute2's JSON
//! output (`ip -j route get`, `ip -j neigh show`): the next hop toward a
//! real (the real itself when on-link, as `dr` requires; the gateway for a
//! routed `tun` real) and its MAC.
//!
//! Runs in the calling thread's network namespace (child processes inherit
//! it), which is the load balancer's.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    process::Command,
    time::Duration,
};

use crate::control::NeighbourResolver;

/// UDP port a resolution probe is sent to (discard): the datagram itself
/// does not matter, sending it makes the kernel resolve the neighbour.
const PROBE_PORT: u16 = 9;
/// How long one synchronous resolution waits for the neighbour entry.
const RESOLVE_WAIT: Duration = Duration::from_millis(1000);
/// Poll step while waiting.
const RESOLVE_STEP: Duration = Duration::from_millis(50);

/// Resolves through the kernel; waits up to [`RESOLVE_WAIT`] per unknown
/// neighbour when `wait` is set (start-up), otherwise only probes.
#[derive(Debug, Default)]
pub struct KernelNeighbours {
    /// Wait for resolution instead of only probing.
    pub wait: bool,
}

fn ip_json(args: &[&str]) -> Option<serde_json::Value> {
    let out = Command::new("ip").arg("-j").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The next hop toward `addr` (gateway or `addr` itself) and the device.
pub fn next_hop(addr: IpAddr) -> Option<(IpAddr, String)> {
    let v = ip_json(&["route", "get", &addr.to_string()])?;
    let r = v.as_array()?.first()?;
    let dev = r.get("dev")?.as_str()?.to_owned();
    let nh = match r.get("gateway").and_then(|g| g.as_str()) {
        Some(g) => g.parse().ok()?,
        None => addr,
    };
    Some((nh, dev))
}

/// A usable MAC for `nh` on `dev` from the neighbour table, if any.
pub fn neighbour_mac(nh: IpAddr, dev: &str) -> Option<[u8; 6]> {
    let v = ip_json(&["neigh", "show", "to", &nh.to_string(), "dev", dev])?;
    for e in v.as_array()? {
        let bad = e
            .get("state")
            .and_then(|s| s.as_array())
            .is_some_and(|s| s.iter().any(|x| x == "FAILED" || x == "INCOMPLETE"));
        if bad {
            continue;
        }
        if let Some(mac) = e.get("lladdr").and_then(|l| l.as_str()).and_then(parse_mac) {
            return Some(mac);
        }
    }
    None
}

/// The index of interface `dev` in the calling thread's network
/// namespace (what `SLUICE_TX_PORTS` holds: write it from the same
/// namespace).
pub fn iface_index(dev: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(dev).ok()
}

/// The MAC of interface `dev`.
pub fn iface_mac(dev: &str) -> Option<[u8; 6]> {
    let v = ip_json(&["link", "show", "dev", dev])?;
    v.as_array()?
        .first()?
        .get("address")?
        .as_str()
        .and_then(parse_mac)
}

/// The MTU of interface `dev`, in bytes.
pub fn iface_mtu(dev: &str) -> Option<u32> {
    let v = ip_json(&["link", "show", "dev", dev])?;
    let mtu = v.as_array()?.first()?.get("mtu")?.as_u64()?;
    u32::try_from(mtu).ok()
}

/// The first global IPv4 and IPv6 addresses of interface `dev`: the outer
/// source of `tun` packets of a service without `tun_source`.
pub fn iface_addrs(dev: &str) -> (Option<std::net::Ipv4Addr>, Option<std::net::Ipv6Addr>) {
    let infos = addr_infos(dev);
    let global = |family: &str| {
        infos
            .iter()
            .filter(|i| i.get("family").and_then(|f| f.as_str()) == Some(family))
            .filter(|i| i.get("scope").and_then(|f| f.as_str()) == Some("global"))
            .find_map(|i| i.get("local").and_then(|a| a.as_str()).map(str::to_owned))
    };
    (
        global("inet").and_then(|a| a.parse().ok()),
        global("inet6").and_then(|a| a.parse().ok()),
    )
}

/// Every address assigned to interface `dev` (any scope; none if the
/// interface does not exist).
pub fn iface_all_addrs(dev: &str) -> Vec<std::net::IpAddr> {
    addr_infos(dev)
        .iter()
        .filter_map(|i| i.get("local").and_then(|a| a.as_str()))
        .filter_map(|a| a.parse().ok())
        .collect()
}

/// `ip -j addr show dev DEV`'s `addr_info` entries.
fn addr_infos(dev: &str) -> Vec<serde_json::Value> {
    let Some(v) = ip_json(&["addr", "show", "dev", dev]) else {
        return Vec::new();
    };
    v.as_array()
        .and_then(|a| a.first())
        .and_then(|l| l.get("addr_info"))
        .and_then(|i| i.as_array())
        .cloned()
        .unwrap_or_default()
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0;
    for part in s.split(':') {
        if n == 6 || part.len() != 2 {
            return None;
        }
        out[n] = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

fn probe(nh: IpAddr) {
    let bind: SocketAddr = match nh {
        IpAddr::V4(_) => "0.0.0.0:0".parse().ok(),
        IpAddr::V6(_) => "[::]:0".parse().ok(),
    }
    .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    if let Ok(s) = UdpSocket::bind(bind) {
        // Errors only mean the probe did not leave; resolution is retried.
        let _ = s.send_to(b"sluice neighbour probe", SocketAddr::new(nh, PROBE_PORT));
    }
}

impl NeighbourResolver for KernelNeighbours {
    fn resolve(&mut self, addr: IpAddr) -> Option<[u8; 6]> {
        let (nh, dev) = next_hop(addr)?;
        if let Some(m) = neighbour_mac(nh, &dev) {
            return Some(m);
        }
        probe(nh);
        if !self.wait {
            return None;
        }
        let mut waited = Duration::ZERO;
        while waited < RESOLVE_WAIT {
            std::thread::sleep(RESOLVE_STEP);
            waited += RESOLVE_STEP;
            if let Some(m) = neighbour_mac(nh, &dev) {
                return Some(m);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:aa:0b:0c:0d:ff"),
            Some([2, 0xaa, 0xb, 0xc, 0xd, 0xff])
        );
        assert_eq!(parse_mac("02:aa:0b:0c:0d"), None);
        assert_eq!(parse_mac("02:aa:0b:0c:0d:ff:00"), None);
        assert_eq!(parse_mac("zz:aa:0b:0c:0d:ff"), None);
        assert_eq!(parse_mac(""), None);
    }
}
