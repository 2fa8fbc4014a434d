//! What VRRP needs of the kernel's links and addresses, over rtnetlink
//! (no `ip` subprocess): an interface's index, MAC, link state and XDP
//! attachment, its addresses, and adding / removing the virtual
//! addresses. Runs in the calling process's network namespace.

use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkXdp, XdpAttached};

use crate::HaError;

/// Prefix length a virtual IPv4 address is added with (a host address:
/// the interface's own subnet route already covers the segment).
const VIP_PREFIX_V4: u8 = 32;
/// Prefix length a virtual IPv6 address is added with.
const VIP_PREFIX_V6: u8 = 128;

/// One interface, as the kernel reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Its MAC (all zero if it has none).
    pub mac: [u8; 6],
    /// Administratively up with carrier (`IFF_UP` and `IFF_LOWER_UP`).
    pub up: bool,
    /// An XDP program is attached (any mode).
    pub xdp_attached: bool,
}

/// A route-netlink connection (its driver runs on the current tokio
/// runtime).
#[derive(Clone, Debug)]
pub struct Netlink {
    handle: rtnetlink::Handle,
}

fn nl_error(what: String, e: rtnetlink::Error) -> HaError {
    HaError::Netlink {
        what,
        reason: e.to_string(),
    }
}

/// The errno of a netlink error reply, if it is one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.to_io().raw_os_error(),
        _ => None,
    }
}

impl Netlink {
    /// Opens the connection.
    ///
    /// # Errors
    /// [`HaError::Netlink`] if the socket cannot be opened.
    pub fn connect() -> Result<Self, HaError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| HaError::Netlink {
            what: "opening a route-netlink socket".into(),
            reason: e.to_string(),
        })?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The interface named `name`.
    ///
    /// # Errors
    /// [`HaError::Netlink`] if there is none or the kernel refuses.
    pub async fn link(&self, name: &str) -> Result<Link, HaError> {
        let what = || format!("reading interface {name:?}");
        let msg = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute()
            .try_next()
            .await
            .map_err(|e| nl_error(what(), e))?
            .ok_or_else(|| HaError::Netlink {
                what: what(),
                reason: "no such interface".into(),
            })?;
        let flags = msg.header.flags;
        let mut link = Link {
            index: msg.header.index,
            mac: [0; 6],
            up: flags.contains(LinkFlags::Up) && flags.contains(LinkFlags::LowerUp),
            xdp_attached: false,
        };
        for a in &msg.attributes {
            match a {
                LinkAttribute::Address(b) if b.len() == 6 => link.mac.copy_from_slice(b),
                LinkAttribute::Xdp(x) => {
                    link.xdp_attached = x
                        .iter()
                        .any(|x| matches!(x, LinkXdp::Attached(a) if *a != XdpAttached::None));
                }
                _ => {}
            }
        }
        Ok(link)
    }

    /// The addresses on interface `index`, with their flags: (address,
    /// prefix length).
    ///
    /// # Errors
    /// [`HaError::Netlink`] if the kernel refuses the dump.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, HaError> {
        let mut out = Vec::new();
        let mut s = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        while let Some(m) = s
            .try_next()
            .await
            .map_err(|e| nl_error(format!("listing the addresses of interface {index}"), e))?
        {
            // IPv4 carries the address in IFA_LOCAL (IFA_ADDRESS is the
            // peer's on point-to-point links); IPv6 only in IFA_ADDRESS.
            let local = m.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let addr = local.or_else(|| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(a) = addr {
                out.push((a, m.header.prefix_len));
            }
        }
        Ok(out)
    }

    /// Adds virtual address `ip` to interface `index` (as a host address;
    /// IPv6 without duplicate address detection, so it is usable at once:
    /// the backup that held it has given it up). Already there: done.
    ///
    /// # Errors
    /// [`HaError::Netlink`] if the kernel refuses.
    pub async fn add_vip(&self, index: u32, ip: IpAddr) -> Result<(), HaError> {
        let mut req = self.handle.address().add(index, ip, vip_prefix(ip));
        if ip.is_ipv6() {
            let m = req.message_mut();
            m.header.flags |= AddressHeaderFlags::Nodad;
            m.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        match req.execute().await {
            Ok(()) => Ok(()),
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            Err(e) => Err(nl_error(format!("adding {ip} to interface {index}"), e)),
        }
    }

    /// Removes virtual address `ip` from interface `index`. Not there:
    /// done.
    ///
    /// # Errors
    /// [`HaError::Netlink`] if the kernel refuses.
    pub async fn del_vip(&self, index: u32, ip: IpAddr) -> Result<(), HaError> {
        // A message naming the same address and prefix as the add.
        let mut msg = self
            .handle
            .address()
            .add(index, ip, vip_prefix(ip))
            .message_mut()
            .clone();
        msg.header.flags = AddressHeaderFlags::empty();
        match self.handle.address().del(msg).execute().await {
            Ok(()) => Ok(()),
            Err(e) if matches!(errno(&e), Some(libc::EADDRNOTAVAIL | libc::ENOENT)) => Ok(()),
            Err(e) => Err(nl_error(format!("removing {ip} from interface {index}"), e)),
        }
    }
}

fn vip_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        VIP_PREFIX_V4
    } else {
        VIP_PREFIX_V6
    }
}
