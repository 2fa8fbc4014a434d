//! Sending the new master's announcements (gratuitous ARP, unsolicited
//! neighbour advertisements; frames from `sluice_wire::announce`) on an
//! `AF_PACKET` socket. The link-layer address the socket sends to is the
//! interface's own, as `getifaddrs` reports it: that gives the interface
//! index without building a `sockaddr_ll` by hand (no unsafe code).

use std::net::IpAddr;
use std::os::fd::{AsRawFd as _, OwnedFd};

use nix::ifaddrs::getifaddrs;
use nix::sys::socket::{AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, sendto, socket};
use sluice_wire::announce::{GARP_LEN, NA_LEN, garp, unsolicited_na};

use crate::HaError;

/// An `AF_PACKET` socket that sends whole Ethernet frames out of one
/// interface.
#[derive(Debug)]
pub struct Announcer {
    fd: OwnedFd,
    to: LinkAddr,
    mac: [u8; 6],
}

impl Announcer {
    /// Opens it on `iface`, whose MAC the frames announce.
    ///
    /// # Errors
    /// [`HaError::Socket`] if the interface has no link-layer address or
    /// the socket cannot be opened (needs CAP_NET_RAW).
    pub fn open(iface: &str) -> Result<Self, HaError> {
        let err = |what: &str, reason: String| HaError::Socket {
            iface: iface.to_owned(),
            what: what.to_owned(),
            reason,
        };
        let to = getifaddrs()
            .map_err(|e| err("listing interfaces", e.to_string()))?
            .filter(|i| i.interface_name == iface)
            .find_map(|i| i.address.and_then(|a| a.as_link_addr().copied()))
            .ok_or_else(|| err("finding its link-layer address", "none reported".into()))?;
        let mac = to
            .addr()
            .ok_or_else(|| err("reading its MAC", "not an Ethernet address".into()))?;
        // Protocol 0: the socket receives nothing, it only sends.
        let fd = socket(
            AddressFamily::Packet,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(|e| err("opening a packet socket", e.to_string()))?;
        Ok(Self { fd, to, mac })
    }

    /// The MAC announced.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Announces `ip` at this interface's MAC once.
    ///
    /// # Errors
    /// The socket's (a full queue too: the next repetition is the retry).
    pub fn announce(&self, ip: IpAddr) -> std::io::Result<()> {
        let mut buf = [0u8; NA_LEN];
        let n = match ip {
            IpAddr::V4(a) => garp(&mut buf[..GARP_LEN], self.mac, a.octets()),
            IpAddr::V6(a) => unsolicited_na(&mut buf, self.mac, a.octets()),
        };
        let Some(n) = n else {
            return Err(std::io::Error::other("announcement buffer too short"));
        };
        sendto(self.fd.as_raw_fd(), &buf[..n], &self.to, MsgFlags::empty())
            .map(drop)
            .map_err(std::io::Error::from)
    }
}
