//! Wire constants of the headers the programs read and write (we own these
//! bytes, so they are spelled out here rather than taken from a crate), and
//! the data path's tuning constants, each with its unit.

/// Bytes of an Ethernet header (no VLAN tag: tagged frames are passed).
pub(crate) const ETH_HDR_LEN: usize = 14;
/// EtherType of IPv4.
pub(crate) const ETH_P_IP: u16 = 0x0800;
/// EtherType of IPv6.
pub(crate) const ETH_P_IPV6: u16 = 0x86dd;
/// Bytes of an IPv4 header without options (IHL 5).
pub(crate) const IPV4_HDR_LEN: usize = 20;
/// Bytes of the fixed IPv6 header.
pub(crate) const IPV6_HDR_LEN: usize = 40;
/// Bytes of a TCP header without options: the flags are at offset 13.
pub(crate) const TCP_HDR_LEN: usize = 20;
/// Bytes of a UDP header.
pub(crate) const UDP_HDR_LEN: usize = 8;
pub(crate) const PROTO_ICMP: u8 = 1;
pub(crate) const PROTO_IPIP: u8 = 4;
pub(crate) const PROTO_TCP: u8 = 6;
pub(crate) const PROTO_UDP: u8 = 17;
pub(crate) const PROTO_IPV6: u8 = 41;
pub(crate) const PROTO_ICMPV6: u8 = 58;
pub(crate) const PROTO_V6_FRAGMENT: u8 = 44;
/// IPv6 extension headers that are not walked (hop-by-hop, routing,
/// destination options): a VIP packet carrying one is dropped.
pub(crate) const PROTO_V6_HOP_BY_HOP: u8 = 0;
pub(crate) const PROTO_V6_ROUTING: u8 = 43;
pub(crate) const PROTO_V6_DEST_OPTS: u8 = 60;
pub(crate) const TCP_FIN: u8 = 0x01;
pub(crate) const TCP_SYN: u8 = 0x02;
pub(crate) const TCP_RST: u8 = 0x04;
pub(crate) const TCP_ACK: u8 = 0x10;
pub(crate) const ICMP_DEST_UNREACH: u8 = 3;
pub(crate) const ICMP_FRAG_NEEDED: u8 = 4;
pub(crate) const ICMPV6_PKT_TOO_BIG: u8 = 2;
/// Bytes of an ICMP header before the quoted packet.
pub(crate) const ICMP_HDR_LEN: usize = 8;
/// TTL / hop limit of the outer header of `tun`.
pub(crate) const TUN_TTL: u8 = 64;
/// Seed of the ring hash; the same constant is used by userspace predictions.
pub(crate) const HASH_SEED: u32 = 0;
pub(crate) use sluice_wire::maps::LAST_SEEN_GRANULARITY_NS;

/// `bpf_ringbuf_output` flag: do not wake the reader (uapi
/// `BPF_RB_NO_WAKEUP`); the sync daemon polls the ring instead, which
/// spares each new session the wake-up's work.
pub(crate) const BPF_RB_NO_WAKEUP: u64 = 1;
