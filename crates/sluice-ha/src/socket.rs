//! The raw IP socket (protocol 112) one VRRP instance sends and receives
//! its advertisements on, bound to its interface, with TTL / hop limit
//! 255 on everything it sends and the received TTL / hop limit and
//! destination reported with each packet (the receiver must check them:
//! RFC 5798 7.1).

use std::io::IoSliceMut;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn6, recvmsg, setsockopt, sockopt};
use sluice_wire::vrrp::{MULTICAST_V4, MULTICAST_V6, PROTO_VRRP, TTL};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use tokio::io::Interest;

use crate::HaError;

/// Largest advertisement read (255 IPv6 addresses and an IPv4 header
/// with options fit).
pub const MAX_PACKET: usize = 60 + sluice_wire::vrrp::HEADER_LEN + 255 * 16;

/// A received advertisement's IP-level facts.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    /// The sender.
    pub src: IpAddr,
    /// Where it was sent (the multicast group or this node).
    pub dst: IpAddr,
    /// Its TTL / hop limit.
    pub ttl: u8,
    /// Where the VRRP packet starts in the buffer.
    pub offset: usize,
    /// Where it ends.
    pub end: usize,
}

/// The socket. It is handed to tokio as a `UdpSocket`, which only issues
/// `sendto`/`recvfrom` on its descriptor and waits on readiness: right
/// for any datagram-style socket, and without `unsafe` (as the health
/// checker's raw sockets).
#[derive(Debug)]
pub struct VrrpSocket {
    /// Sends (bound to this node's address); receives too with unicast
    /// peers.
    tx: tokio::net::UdpSocket,
    /// Receives the multicast group's adverts.
    rx: Option<tokio::net::UdpSocket>,
    v6: bool,
}

fn io_err(iface: &str, what: &str) -> impl FnOnce(std::io::Error) -> HaError {
    let (iface, what) = (iface.to_owned(), what.to_owned());
    move |e| HaError::Socket {
        iface,
        what,
        reason: e.to_string(),
    }
}

/// One raw protocol-112 socket on `iface`: TTL / hop limit 255 on what it
/// sends, hop limit and destination reported on what it receives (IPv6).
/// `bind` binds it to `own` (the source of what it sends); `join` joins
/// the VRRP group.
fn raw(
    iface: &str,
    ifindex: u32,
    own: IpAddr,
    bind: bool,
    join: bool,
) -> Result<tokio::net::UdpSocket, HaError> {
    let proto = Some(Protocol::from(i32::from(PROTO_VRRP)));
    let s = match own {
        IpAddr::V4(a) => {
            let s = Socket::new(Domain::IPV4, Type::RAW, proto)
                .map_err(io_err(iface, "opening a raw IPv4 socket for protocol 112"))?;
            s.bind_device(Some(iface.as_bytes()))
                .map_err(io_err(iface, "binding to the interface"))?;
            if bind {
                s.bind(&SockAddr::from(SocketAddr::new(own, 0)))
                    .map_err(io_err(iface, "binding to the primary address"))?;
            }
            s.set_ttl_v4(u32::from(TTL))
                .and_then(|()| s.set_multicast_ttl_v4(u32::from(TTL)))
                .and_then(|()| s.set_multicast_loop_v4(false))
                .and_then(|()| s.set_multicast_if_v4(&a))
                .map_err(io_err(iface, "setting TTL 255 and the multicast interface"))?;
            if join {
                s.join_multicast_v4_n(
                    &Ipv4Addr::from(MULTICAST_V4),
                    &InterfaceIndexOrAddress::Index(ifindex),
                )
                .map_err(io_err(iface, "joining 224.0.0.18"))?;
            }
            s
        }
        IpAddr::V6(a) => {
            let s = Socket::new(Domain::IPV6, Type::RAW, proto)
                .map_err(io_err(iface, "opening a raw IPv6 socket for protocol 112"))?;
            s.bind_device(Some(iface.as_bytes()))
                .map_err(io_err(iface, "binding to the interface"))?;
            if bind {
                s.bind(&SockAddr::from(SocketAddrV6::new(a, 0, 0, ifindex)))
                    .map_err(io_err(iface, "binding to the link-local address"))?;
            }
            s.set_unicast_hops_v6(u32::from(TTL))
                .and_then(|()| s.set_multicast_hops_v6(u32::from(TTL)))
                .and_then(|()| s.set_multicast_loop_v6(false))
                .and_then(|()| s.set_multicast_if_v6(ifindex))
                .map_err(io_err(
                    iface,
                    "setting hop limit 255 and the multicast interface",
                ))?;
            setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true)
                .and_then(|()| setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true))
                .map_err(|e| io_err(iface, "asking for hop limits")(e.into()))?;
            if join {
                s.join_multicast_v6(&Ipv6Addr::from(MULTICAST_V6), ifindex)
                    .map_err(io_err(iface, "joining ff02::12"))?;
            }
            s
        }
    };
    s.set_nonblocking(true)
        .map_err(io_err(iface, "making the socket non-blocking"))?;
    let std_sock: std::net::UdpSocket = s.into();
    tokio::net::UdpSocket::from_std(std_sock).map_err(io_err(iface, "registering the socket"))
}

impl VrrpSocket {
    /// Opens the sockets on `iface` (index `ifindex`), sending from `own`
    /// (IPv4: the interface's primary address; IPv6: its link-local
    /// address), receiving from the VRRP multicast group when `multicast`
    /// (else what is sent to `own`).
    ///
    /// Two sockets with multicast: a raw socket bound to an address only
    /// receives packets sent to that address, so the one that receives the
    /// group's adverts is unbound, and the one that sends is bound (the
    /// source is part of the checksum, so it must be known).
    ///
    /// # Errors
    /// [`HaError::Socket`] (needs CAP_NET_RAW).
    pub fn open(iface: &str, ifindex: u32, own: IpAddr, multicast: bool) -> Result<Self, HaError> {
        let tx = raw(iface, ifindex, own, true, false)?;
        let rx = if multicast {
            Some(raw(iface, ifindex, own, false, true)?)
        } else {
            None
        };
        Ok(Self {
            tx,
            rx,
            v6: own.is_ipv6(),
        })
    }

    /// Sends advertisement `pkt` to `dst`.
    ///
    /// # Errors
    /// The socket's.
    pub async fn send(&self, pkt: &[u8], dst: IpAddr, ifindex: u32) -> std::io::Result<()> {
        let to = match dst {
            IpAddr::V4(_) => SocketAddr::new(dst, 0),
            IpAddr::V6(a) => SocketAddr::V6(SocketAddrV6::new(a, 0, 0, ifindex)),
        };
        self.tx.send_to(pkt, to).await.map(drop)
    }

    /// Receives the next packet into `buf` (at least [`MAX_PACKET`]);
    /// `None` for one too short to hold an IPv4 header.
    ///
    /// # Errors
    /// The socket's.
    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<Received>> {
        let sock = self.rx.as_ref().unwrap_or(&self.tx);
        if self.v6 {
            let fd = sock.as_raw_fd();
            sock.async_io(Interest::READABLE, || recv_v6(fd, buf)).await
        } else {
            let (n, _) = sock.recv_from(buf).await?;
            Ok(ipv4_facts(&buf[..n]))
        }
    }
}

/// The IPv4 socket returns the IP header: read the facts from it.
fn ipv4_facts(p: &[u8]) -> Option<Received> {
    let ihl = usize::from(p.first()? & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
    let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
    // The payload ends where the IP header's total length says (Ethernet
    // padding of a short frame is not part of it).
    let total = usize::from(u16::from_be_bytes([p[2], p[3]])).min(p.len());
    Some(Received {
        src: IpAddr::from(src),
        dst: IpAddr::from(dst),
        ttl: p[8],
        offset: ihl,
        end: total.max(ihl),
    })
}

/// The IPv6 socket returns the payload; source from the address, hop
/// limit and destination from control messages.
fn recv_v6(fd: std::os::fd::RawFd, buf: &mut [u8]) -> std::io::Result<Option<Received>> {
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in6_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrIn6>(fd, &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(std::io::Error::from)?;
    let n = msg.bytes;
    let Some(src) = msg.address.map(|a| IpAddr::V6(a.ip())) else {
        return Ok(None);
    };
    let (mut ttl, mut dst) = (None, None);
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv6HopLimit(h) => ttl = u8::try_from(h).ok(),
            ControlMessageOwned::Ipv6PacketInfo(i) => {
                dst = Some(IpAddr::V6(Ipv6Addr::from(i.ipi6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    Ok(match (ttl, dst) {
        (Some(ttl), Some(dst)) => Some(Received {
            src,
            dst,
            ttl,
            offset: 0,
            end: n,
        }),
        _ => None,
    })
}
