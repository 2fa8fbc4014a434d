//! Layouts of the BPF maps shared by `sluice-ebpf` (kernel) and `sluice-l4`
//! (userspace).
//!
//! Every type is `#[repr(C)]`, made of fixed-width integers only, and has no
//! implicit padding (padding bytes would be uninitialised on one side and
//! break hash-map key equality). Addresses are stored as 16 bytes in network
//! order; IPv4 uses the first four bytes and zeroes the rest.

/// Name of the per-CPU counter array (`PerCpuArray<u64>`, [`Counter::COUNT`] slots).
pub const MAP_STATS: &str = "SLUICE_STATS";

/// Global per-CPU counters, one named slot each. Userspace sums the per-CPU
/// values. New slots are appended, never reordered.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Every frame the program saw.
    RxPackets = 0,
    /// Bytes of every frame the program saw.
    RxBytes = 1,
    /// Frames passed to the kernel stack because they are not for a VIP.
    PassNonVip = 2,
    /// Frames passed because they are not IPv4/IPv6 (ARP, LLDP, ...).
    PassNonIp = 3,
    /// Frames dropped because they end inside a header they claim to have.
    DropTruncated = 4,
    /// VIP packets that are IP fragments (dropped, like Katran: a non-first
    /// fragment carries no ports, so it cannot be balanced consistently).
    DropFragment = 5,
    /// VIP packets with IPv4 options or IPv6 extension headers (dropped).
    DropIpOptions = 6,
    /// VIP packets forwarded to a real server.
    TxForwarded = 7,
    /// VIP packets dropped because the service has no usable real server.
    DropNoReal = 8,
    /// VIP packets that hit an existing session.
    SessionHit = 9,
    /// VIP packets that created a new session.
    SessionMiss = 10,
    /// ICMP errors for VIP flows forwarded to the flow's real server
    /// (`nat`: with the quoted packet translated back to the real's
    /// address and port, and the outer destination the real).
    IcmpForwarded = 11,
    /// Frames dropped because growing the head for encapsulation (or
    /// reshaping the frame into an ICMP too-big answer) failed.
    DropEncapFailed = 12,
    /// Frames dropped with a malformed header (bad IHL, bad version, ...).
    DropMalformed = 13,
    /// VIP packets dropped because the next-hop MAC of the real is unknown.
    DropNoNeighbour = 14,
    /// Packets to a VIP address on a port/protocol with no service (passed).
    PassNoService = 15,
    /// ICMP to a VIP that is not a "too big" error (passed to the kernel).
    PassIcmp = 16,
    /// VIP packets dropped because their service's method byte names no
    /// [`Method`] (a loader and program of different versions), or its
    /// method's program is not installed. Dropped before any session is
    /// made.
    DropUnknownMethod = 17,
    /// VIP packets that would exceed the egress MTU once encapsulated
    /// (`tun`), answered to the client with ICMP "fragmentation needed"
    /// (IPv4 with DF) or ICMPv6 "packet too big" (`XDP_TX`; not forwarded).
    TxIcmpTooBig = 18,
    /// VIP packets that would exceed the egress MTU once encapsulated and
    /// are not answered: IPv4 without DF, or a forwarded ICMP error
    /// (dropped; see `encap::Oversize::Drop`).
    DropTooBig = 19,
    /// `nat`: replies of a real (real:rport → client) matched to their
    /// session and sent back to the client from VIP:vport (`XDP_TX`).
    TxNatReply = 20,
    /// `nat`: packets from a real's address and port to a client that
    /// have a reverse entry ([`MAP_NAT_REVERSE`]) but no live session any
    /// more (expired, its real removed or changed, its service gone):
    /// passed to the kernel, never rewritten.
    PassNatNoSession = 21,
    /// `nat`: ICMP errors from the reals' side to a client (port
    /// unreachable, fragmentation needed, packet too big, ...) quoting a
    /// packet of a live `nat` session, translated back (outer source and
    /// quoted destination VIP:vport) and sent to the client. (Slot 22 was
    /// `drop_nat_icmp` before ICMP errors of `nat` flows were translated;
    /// the client's errors about a `nat` flow count as
    /// [`Counter::IcmpForwarded`] now.)
    TxNatIcmpReply = 22,
    /// `fullnat`: new flows dropped because no local port was free for
    /// their real (every probed port of every local address of the
    /// service busy, or the reverse table full). Never forwarded
    /// untranslated; the client's SYN goes unanswered and it retries.
    DropFullnatNoPort = 23,
    /// `fullnat`: replies of a real to a local address:port matched to
    /// their session and sent back to the client from VIP:vport.
    TxFullnatReply = 24,
    /// `fullnat`: TOA options (the client's address and port,
    /// `crate::toa`) inserted into a connection's first ACK.
    TxToa = 25,
    /// `fullnat`: first ACKs forwarded without a TOA because it did not
    /// fit (TCP options full, or the frame would exceed the egress MTU):
    /// never truncated, never dropped for it.
    ToaNoRoom = 26,
    /// Connection sync: new sessions not announced to the sync daemon
    /// because its ring ([`MAP_SYNC_RING`]) was full. The session itself
    /// is made; the daemon's periodic walk sends it later.
    SyncRingFull = 27,
}

impl Counter {
    /// Number of slots in [`MAP_STATS`].
    pub const COUNT: u32 = 28;

    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::RxPackets,
        Counter::RxBytes,
        Counter::PassNonVip,
        Counter::PassNonIp,
        Counter::DropTruncated,
        Counter::DropFragment,
        Counter::DropIpOptions,
        Counter::TxForwarded,
        Counter::DropNoReal,
        Counter::SessionHit,
        Counter::SessionMiss,
        Counter::IcmpForwarded,
        Counter::DropEncapFailed,
        Counter::DropMalformed,
        Counter::DropNoNeighbour,
        Counter::PassNoService,
        Counter::PassIcmp,
        Counter::DropUnknownMethod,
        Counter::TxIcmpTooBig,
        Counter::DropTooBig,
        Counter::TxNatReply,
        Counter::PassNatNoSession,
        Counter::TxNatIcmpReply,
        Counter::DropFullnatNoPort,
        Counter::TxFullnatReply,
        Counter::TxToa,
        Counter::ToaNoRoom,
        Counter::SyncRingFull,
    ];

    /// Stable snake_case name, used by `sluice ctl` and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RxPackets => "rx_packets",
            Counter::RxBytes => "rx_bytes",
            Counter::PassNonVip => "pass_non_vip",
            Counter::PassNonIp => "pass_non_ip",
            Counter::DropTruncated => "drop_truncated",
            Counter::DropFragment => "drop_fragment",
            Counter::DropIpOptions => "drop_ip_options",
            Counter::TxForwarded => "tx_forwarded",
            Counter::DropNoReal => "drop_no_real",
            Counter::SessionHit => "session_hit",
            Counter::SessionMiss => "session_miss",
            Counter::IcmpForwarded => "icmp_forwarded",
            Counter::DropEncapFailed => "drop_encap_failed",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropNoNeighbour => "drop_no_neighbour",
            Counter::PassNoService => "pass_no_service",
            Counter::PassIcmp => "pass_icmp",
            Counter::DropUnknownMethod => "drop_unknown_method",
            Counter::TxIcmpTooBig => "tx_icmp_too_big",
            Counter::DropTooBig => "drop_too_big",
            Counter::TxNatReply => "tx_nat_reply",
            Counter::PassNatNoSession => "pass_nat_no_session",
            Counter::TxNatIcmpReply => "tx_nat_icmp_reply",
            Counter::DropFullnatNoPort => "drop_fullnat_no_port",
            Counter::TxFullnatReply => "tx_fullnat_reply",
            Counter::TxToa => "tx_toa",
            Counter::ToaNoRoom => "toa_no_room",
            Counter::SyncRingFull => "sync_ring_full",
        }
    }
}

// ---------------------------------------------------------------------------
// Capacities. Each is a compile-time bound of a BPF map; a config that needs
// more is rejected by the loader with the constant's name.
// ---------------------------------------------------------------------------

/// Maximum number of L4 virtual services (VIP, port, protocol) per LB.
pub const MAX_VIPS: u32 = 64;
/// Maximum number of distinct VIP addresses.
pub const MAX_VIP_ADDRS: u32 = 64;
/// Maximum number of real servers over all services (slots in [`MAP_REALS`]).
pub const MAX_REALS: u32 = 4096;
/// Maximum number of real servers in one service (bounds the in-kernel loop
/// of the connection-count schedulers).
pub const MAX_REALS_PER_VIP: u32 = 64;
/// Largest lookup-ring size per service (entries). 65537 is Katran's default
/// Maglev table size, a prime ≥ 100 × 655 reals.
pub const MAX_RING_SIZE: u32 = 65537;
/// Default session-table capacity (entries, split over CPUs' LRU lists).
pub const DEFAULT_SESSION_CAPACITY: u32 = 65536;
/// Default persistence-table capacity (entries).
pub const PERSIST_CAPACITY: u32 = 65536;
/// Minimum gap between two `last_seen` writes of one session (ns): saves a
/// store to a shared cache line on most packets of a busy flow. Above the
/// coarse clock's tick (1-10 ms), far below the shortest timeout. A
/// session's `last_seen` may thus lag its latest packet by this much
/// (connection sync's walk allows for it).
pub const LAST_SEEN_GRANULARITY_NS: u64 = 100_000_000;
/// Sentinel for "no real" in rings and lookups.
pub const NO_REAL: u32 = u32::MAX;

// ---------------------------------------------------------------------------
// Map names (the loader looks them up by these strings).
// ---------------------------------------------------------------------------

/// `Array<GlobalCfg>`, one entry.
pub const MAP_CFG: &str = "SLUICE_CFG";
/// `HashMap<AddrKey, u32>`: every VIP address (value: number of services on it).
pub const MAP_VIP_ADDRS: &str = "SLUICE_VIP_ADDRS";
/// `HashMap<VipKey, VipMeta>`: the services.
pub const MAP_VIPS: &str = "SLUICE_VIPS";
/// Name of the array of services by index ([`VipSlot`], [`MAX_VIPS`]
/// entries): a session hit finds its service here by the index kept in
/// [`FlowVal::vip_slot`], without a hash lookup.
pub const MAP_VIP_BY_INDEX: &str = "SLUICE_VIP_BY_INDEX";
/// Name of the VIP address filter: [`VIP_FILTER_SLOTS`] counters, one per
/// value of an address's last byte, each the number of VIP addresses
/// ending in it. A packet whose destination's last byte counts zero is
/// not for a VIP, and skips the session lookup.
pub const MAP_VIP_FILTER: &str = "SLUICE_VIP_FILTER";
/// Entries of [`MAP_VIP_FILTER`] (one per byte value).
pub const VIP_FILTER_SLOTS: u32 = 256;
/// `Array<RealDef>`, [`MAX_REALS`] entries.
pub const MAP_REALS: &str = "SLUICE_REALS";
/// `Array<u32>`: per-service lookup rings, `vip_index * ring_size + slot`.
pub const MAP_RING: &str = "SLUICE_RING";
/// `Array<u32>`: per-service real lists, `vip_index * MAX_REALS_PER_VIP + i`.
pub const MAP_VIP_REALS: &str = "SLUICE_VIP_REALS";
/// `PerCpuArray<u32>`: round-robin cursor per service and CPU.
pub const MAP_RR: &str = "SLUICE_RR";
/// `LruHashMap<FlowKey, FlowVal>` with per-CPU LRU lists: the session table.
pub const MAP_SESSIONS: &str = "SLUICE_SESSIONS";
/// `LruHashMap<FlowKey, NatReverse>` with per-CPU LRU lists, as large as
/// the session table: for each `nat` session, keyed by the 5-tuple of its
/// real's replies (real:rport → client:cport, [`crate::nat::reverse_key`]),
/// the service end the replies are sent back from.
pub const MAP_NAT_REVERSE: &str = "SLUICE_NAT_REVERSE";
/// `ProgramArray`: the `nat` programs `sluice_xdp` tail-calls, in the
/// slots of [`nat_prog`] (the loader fills them).
pub const MAP_NAT_PROGS: &str = "SLUICE_NAT_PROGS";

/// The `nat` programs of the object and their slots in [`MAP_NAT_PROGS`].
/// They are tail calls, not functions: a tail-called program gets a stack
/// of its own, where a BPF function's frame would add to `sluice_xdp`'s
/// (the kernel allows 512 bytes for a whole call chain).
pub mod nat_prog {
    /// Slot of the client's direction (rewrite to the real, record the
    /// reverse entry).
    pub const FORWARD: u32 = 0;
    /// Slot of the real's replies.
    pub const REPLY: u32 = 1;
    /// Slot of `fullnat`'s client direction (local port, both ends
    /// rewritten, TOA).
    pub const FULLNAT_FORWARD: u32 = 2;
    /// Slot of `fullnat`'s replies (to a local address).
    pub const FULLNAT_REPLY: u32 = 3;
    /// Slots of [`super::MAP_NAT_PROGS`].
    pub const COUNT: u32 = 4;
    /// Name of the program in slot [`FORWARD`].
    pub const FORWARD_NAME: &str = "sluice_nat_forward";
    /// Name of the program in slot [`REPLY`].
    pub const REPLY_NAME: &str = "sluice_nat_reply";
    /// Name of the program in slot [`FULLNAT_FORWARD`].
    pub const FULLNAT_FORWARD_NAME: &str = "sluice_fullnat_forward";
    /// Name of the program in slot [`FULLNAT_REPLY`].
    pub const FULLNAT_REPLY_NAME: &str = "sluice_fullnat_reply";
    /// Every program and its slot.
    pub const ALL: [(u32, &str); COUNT as usize] = [
        (FORWARD, FORWARD_NAME),
        (REPLY, REPLY_NAME),
        (FULLNAT_FORWARD, FULLNAT_FORWARD_NAME),
        (FULLNAT_REPLY, FULLNAT_REPLY_NAME),
    ];
}

/// `DevMap` of the interfaces `nat` packets leave by, in the slots of
/// [`tx_port`]: empty in the one-arm topology (every packet leaves with
/// `XDP_TX` by the interface it came in on); in the two-arm topology the
/// client-side and the real-side interface, and packets are redirected
/// between them (`bpf_redirect_map`). The loader writes interface indexes
/// from the namespace of the interfaces, where they mean what they say.
pub const MAP_TX_PORTS: &str = "SLUICE_TX_PORTS";

/// Slots of [`MAP_TX_PORTS`].
pub mod tx_port {
    /// The interface toward the clients (replies leave by it).
    pub const CLIENT_SIDE: u32 = 0;
    /// The interface toward the reals (the clients' packets leave by it).
    pub const REAL_SIDE: u32 = 1;
    /// Slots of [`super::MAP_TX_PORTS`].
    pub const COUNT: u32 = 2;
}

/// `RingBuf` of [`FlowKey`]s: while [`cfg_flags::SYNC`] is set, the key
/// of every session the program makes, for the connection-sync daemon
/// (docs/HA.md). Written without waking the reader (it polls), so only
/// a new session pays, never an established flow's packet.
pub const MAP_SYNC_RING: &str = "SLUICE_SYNC_RING";
/// Bytes of [`MAP_SYNC_RING`] (a power of two, a multiple of the page
/// size): 21,845 records of 48 bytes (a 40-byte key and the ring's
/// 8-byte header), two seconds of 10,000 new sessions per second if the
/// reader stalled.
pub const SYNC_RING_BYTES: u32 = 1 << 20;

/// `LruHashMap<PersistKey, PersistVal>`: client-IP persistence.
pub const MAP_PERSIST: &str = "SLUICE_PERSIST";
/// `Array<u64>`: approximate active connections per real (atomic adds in
/// the kernel, reconciled from the session table by userspace).
pub const MAP_REAL_CONNS: &str = "SLUICE_REAL_CONNS";
/// `PerCpuArray<TrafficStats>` per service.
pub const MAP_VIP_STATS: &str = "SLUICE_VIP_STATS";
/// `PerCpuArray<TrafficStats>` per real.
pub const MAP_REAL_STATS: &str = "SLUICE_REAL_STATS";

// ---------------------------------------------------------------------------
// Enumerations stored as bytes in the maps.
// ---------------------------------------------------------------------------

/// Address family byte.
pub mod family {
    /// IPv4.
    pub const V4: u8 = 4;
    /// IPv6.
    pub const V6: u8 = 6;
}

/// An L4 forwarding method: the one type for it, from the configuration
/// keyword to the byte in [`VipMeta::method`] the XDP program reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    /// L2 direct routing: rewrite the destination MAC.
    Dr = 0,
    /// L3 DSR: IPIP / IP6IP6 encapsulation.
    Tun = 1,
    /// Destination NAT with port translation.
    Nat = 2,
    /// Full NAT (not in the XDP program yet).
    Fullnat = 3,
}

impl Method {
    /// Every method, in documentation order.
    pub const ALL: [Method; 4] = [Self::Dr, Self::Tun, Self::Nat, Self::Fullnat];

    /// The configuration keyword (`"dr"`, `"tun"`, `"nat"`, `"fullnat"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Dr => "dr",
            Self::Tun => "tun",
            Self::Nat => "nat",
            Self::Fullnat => "fullnat",
        }
    }

    /// The byte in [`VipMeta::method`].
    pub const fn to_byte(self) -> u8 {
        self as u8
    }

    /// The method a [`VipMeta::method`] byte names; `None` for anything else.
    pub const fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(Self::Dr),
            1 => Some(Self::Tun),
            2 => Some(Self::Nat),
            3 => Some(Self::Fullnat),
            _ => None,
        }
    }
}

/// A name that is not a [`Method`]'s keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownMethod;

impl core::fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown forwarding method, expected dr, tun, nat or fullnat")
    }
}

impl core::str::FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, UnknownMethod> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or(UnknownMethod)
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Forwarding method bytes of [`VipMeta::method`] as constants (defined by
/// [`Method`]), for code that writes raw records (tests, benchmarks); the
/// XDP program matches on [`Method::from_byte`].
pub mod method {
    use super::Method;
    /// L2 direct routing: rewrite the destination MAC.
    pub const DR: u8 = Method::Dr.to_byte();
    /// L3 DSR: IPIP / IP6IP6 encapsulation.
    pub const TUN: u8 = Method::Tun.to_byte();
    /// Destination NAT with port translation.
    pub const NAT: u8 = Method::Nat.to_byte();
    /// Full NAT (not in the XDP program yet).
    pub const FULLNAT: u8 = Method::Fullnat.to_byte();
}

/// Scheduler byte of [`VipMeta::sched`].
pub mod sched {
    /// Ring lookup by flow hash (Maglev table in the ring).
    pub const HASH_FLOW: u8 = 0;
    /// Ring lookup by source-address hash (`sh`).
    pub const HASH_SRC: u8 = 1;
    /// Ring lookup by destination-address hash (`dh`).
    pub const HASH_DST: u8 = 2;
    /// Ring walked by a per-CPU cursor (`rr`, `wrr`: the ring holds the
    /// interleaved weighted cycle).
    pub const CURSOR: u8 = 3;
    /// Least connections (`lc`), in kernel over the service's real list.
    pub const LC: u8 = 4;
    /// Weighted least connections (`wlc`).
    pub const WLC: u8 = 5;
    /// Shortest expected delay (`sed`).
    pub const SED: u8 = 6;
    /// Never queue (`nq`).
    pub const NQ: u8 = 7;
}

/// Session states of [`FlowVal::state`]; each has its own timeout in
/// [`GlobalCfg`].
pub mod state {
    /// TCP: only a SYN seen so far.
    pub const TCP_SYN: u8 = 0;
    /// TCP: a non-SYN packet seen (the handshake completed, as far as a DSR
    /// balancer can tell from the client's side only).
    pub const TCP_ESTABLISHED: u8 = 1;
    /// TCP: FIN or RST seen from the client.
    pub const TCP_CLOSING: u8 = 2;
    /// UDP (no states).
    pub const UDP: u8 = 3;
}

/// Bits of [`VipMeta::flags`].
pub mod vip_flags {
    /// Vary the outer IPv4 source's low 16 bits (IPv6: low 32 bits) by flow
    /// hash, so real servers' RSS spreads tunnelled flows (Katran does this).
    pub const TUN_VARY_SOURCE: u8 = 1;
    /// Client-IP persistence is on (timeout in [`super::VipMeta::persist_ns`]).
    pub const PERSIST: u8 = 2;
    /// `fullnat` TCP: insert the client's address and port as a TOA option
    /// into each connection's first ACK (`crate::toa`).
    pub const TOA: u8 = 4;
}

/// Bits of [`GlobalCfg::flags`].
pub mod cfg_flags {
    /// Some service listens on every port (port 0): a miss on the exact
    /// port must be retried with port 0. Without it, that second lookup is
    /// skipped.
    pub const ANY_PORT_SERVICES: u32 = 1;
    /// Some service uses `nat`: TCP/UDP packets that are not for a VIP
    /// may be a real's replies, looked up in [`super::MAP_NAT_REVERSE`].
    /// Without it, that lookup is skipped.
    pub const NAT_SERVICES: u32 = 2;
    /// Some service uses `fullnat`: a TCP/UDP packet that is not for a VIP
    /// may be a real's reply to a local address
    /// ([`crate::fullnat::MAP_LOCAL_INDEX`]).
    pub const FULLNAT_SERVICES: u32 = 4;
    /// Connection sync runs: every new session's key goes to
    /// [`super::MAP_SYNC_RING`].
    pub const SYNC: u32 = 8;
}

/// Bits of [`RealDef::flags`].
pub mod real_flags {
    /// Slot holds a live real. Sessions to a slot without it are rescheduled.
    pub const PRESENT: u8 = 1;
    /// The next-hop MAC is known.
    pub const HAS_MAC: u8 = 2;
}

// ---------------------------------------------------------------------------
// Keys and values.
// ---------------------------------------------------------------------------

/// An IP address as stored in the maps: the 16 bytes of the address in
/// network order (IPv4 in the first four, the rest zero), held as four
/// words in memory order so that the BPF code builds, copies and compares
/// keys with word operations instead of byte loops. The bytes in memory are
/// exactly the address bytes on every host.
pub type Addr = [u32; 4];

/// [`Addr`] from the 16 address bytes.
pub const fn addr_from_bytes(b: [u8; 16]) -> Addr {
    [
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_ne_bytes([b[8], b[9], b[10], b[11]]),
        u32::from_ne_bytes([b[12], b[13], b[14], b[15]]),
    ]
}

/// [`Addr`] of an IPv4 address given as its 4 bytes.
pub const fn addr_v4(b: [u8; 4]) -> Addr {
    [u32::from_ne_bytes(b), 0, 0, 0]
}

/// Slot of `addr` in [`MAP_VIP_FILTER`]: the address's last byte.
pub const fn vip_filter_slot(addr: &Addr, fam: u8) -> u32 {
    let w = if fam == family::V6 { addr[3] } else { addr[0] };
    w.to_ne_bytes()[3] as u32
}

/// The 16 address bytes of an [`Addr`].
pub const fn addr_to_bytes(a: Addr) -> [u8; 16] {
    let w = [
        a[0].to_ne_bytes(),
        a[1].to_ne_bytes(),
        a[2].to_ne_bytes(),
        a[3].to_ne_bytes(),
    ];
    [
        w[0][0], w[0][1], w[0][2], w[0][3], w[1][0], w[1][1], w[1][2], w[1][3], w[2][0], w[2][1],
        w[2][2], w[2][3], w[3][0], w[3][1], w[3][2], w[3][3],
    ]
}

/// Global settings, one entry in [`MAP_CFG`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCfg {
    /// MAC of the interface the program is attached to (source MAC of
    /// forwarded frames).
    pub iface_mac: [u8; 6],
    /// Padding, zero.
    pub _pad: u16,
    /// Entries per service in [`MAP_RING`] (a prime ≤ [`MAX_RING_SIZE`]).
    pub ring_size: u32,
    /// [`cfg_flags`] bits.
    pub flags: u32,
    /// Session timeouts (ns), indexed by [`state`]: SYN only, established,
    /// FIN/RST seen, UDP. An array indexed by a masked state keeps the
    /// verifier's bounds check trivial.
    pub timeouts_ns: [u64; 4],
    /// Source MAC of `nat` packets sent toward the reals: the real-side
    /// interface's in the two-arm topology ([`MAP_TX_PORTS`]), else the
    /// same as `iface_mac`.
    pub real_side_mac: [u8; 6],
    /// Padding, zero.
    pub _pad2: u16,
    /// Possible CPUs of the machine: `fullnat` partitions each local
    /// address's ports among them (`crate::fullnat::cpu_port`).
    pub ncpus: u32,
    /// Padding, zero.
    pub _pad3: u32,
    /// `fullnat`: how long a local port stays taken after the last reply
    /// of its connection (ns), so that it is not handed out again toward
    /// the same real while the real may still hold that connection in
    /// TIME_WAIT (`crate::fullnat::in_use`).
    pub port_quarantine_ns: u64,
}

/// Key of [`MAP_VIP_ADDRS`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct AddrKey {
    /// Address.
    pub addr: Addr,
    /// [`family`] value (a word, so the key has no padding bytes).
    pub family: u32,
}

/// Key of [`MAP_VIPS`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VipKey {
    /// VIP address.
    pub addr: Addr,
    /// Destination port in host order; 0 = every port.
    pub port: u16,
    /// IP protocol number (6 TCP, 17 UDP).
    pub proto: u8,
    /// [`family`] byte.
    pub family: u8,
}

/// Value of [`MAP_VIPS`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipMeta {
    /// Index of this service in the per-service maps (< [`MAX_VIPS`]).
    pub vip_index: u32,
    /// [`method`] byte.
    pub method: u8,
    /// [`sched`] byte.
    pub sched: u8,
    /// [`vip_flags`] bits.
    pub flags: u8,
    /// [`family`] byte.
    pub family: u8,
    /// Used ring entries: the cycle length for cursor schedulers, the ring
    /// size for hash schedulers. 0 = the service has no usable real.
    pub ring_len: u32,
    /// Number of reals in [`MAP_VIP_REALS`] for this service.
    pub reals_len: u32,
    /// Persistence timeout (ns) when [`vip_flags::PERSIST`] is set.
    pub persist_ns: u64,
    /// Outer source address for `tun`.
    pub tun_src: Addr,
}

/// Value of [`MAP_VIP_BY_INDEX`]: a service's key and settings, as in
/// [`MAP_VIPS`]. `key.family == 0` marks an index without a service.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VipSlot {
    /// The service's key.
    pub key: VipKey,
    /// Padding, zero.
    pub _pad: u32,
    /// The service's settings.
    pub meta: VipMeta,
}

/// Value of [`MAP_REALS`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RealDef {
    /// Real server address.
    pub addr: Addr,
    /// MAC of the next hop toward the real (the real itself for `dr`).
    pub mac: [u8; 6],
    /// [`family`] byte.
    pub family: u8,
    /// [`real_flags`] bits.
    pub flags: u8,
    /// Scheduling weight (0 = drain: existing sessions only).
    pub weight: u32,
    /// Real port (host order) a `nat` flow is sent to; 0 = the packet's
    /// own destination port (see [`crate::nat::real_port`]). 0 for the
    /// other methods, which cannot rewrite ports.
    pub port: u16,
    /// Generation of the slot: the control plane gives every allocation of
    /// a slot a new one (never 0, which marks a free slot), and a session
    /// or persistence entry keeps the generation of the real it chose
    /// ([`FlowVal::real_gen`], [`PersistVal::real_gen`]). An entry whose
    /// generation differs from its slot's points at a real that has since
    /// been removed, and whose slot may now serve another service: it is
    /// treated like one whose real is absent (docs/L4.md, "Sessions").
    pub generation: u16,
}

/// Key of [`MAP_SESSIONS`]: the client→VIP 5-tuple.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Client address.
    pub src: Addr,
    /// VIP address.
    pub dst: Addr,
    /// Client port, host order (0 for ICMP).
    pub sport: u16,
    /// VIP port, host order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// [`family`] byte.
    pub family: u8,
    /// Padding, zero.
    pub _pad: u16,
}

impl FlowKey {
    /// Bytes of a key in memory.
    pub const BYTES: usize = core::mem::size_of::<FlowKey>();

    /// A key from its bytes in memory (native byte order, the layout
    /// above), as a record of [`MAP_SYNC_RING`] carries it; `None` for a
    /// slice of another length.
    pub fn from_ne_bytes(b: &[u8]) -> Option<Self> {
        if b.len() != Self::BYTES {
            return None;
        }
        let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let h = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        Some(Self {
            src: [w(0), w(4), w(8), w(12)],
            dst: [w(16), w(20), w(24), w(28)],
            sport: h(32),
            dport: h(34),
            proto: b[36],
            family: b[37],
            _pad: h(38),
        })
    }
}

/// Value of [`MAP_SESSIONS`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowVal {
    /// Slot in [`MAP_REALS`].
    pub real: u32,
    /// [`state`] byte.
    pub state: u8,
    /// `vip_index + 1` of the service the session belongs to (its slot in
    /// [`MAP_VIP_BY_INDEX`]); 0 = not recorded. A byte: [`MAX_VIPS`] + 1
    /// fits (asserted below), and the byte it saves holds `real_gen`
    /// without growing the entry.
    pub vip_slot: u8,
    /// [`RealDef::generation`] of the real when the session chose it.
    pub real_gen: u16,
    /// `bpf_ktime_get_ns()` of the last packet.
    pub last_seen_ns: u64,
    /// `fullnat`: the local port the LB connects to the real from (host
    /// order); 0 for other methods.
    pub local_port: u16,
    /// `fullnat`: the local address's slot in
    /// [`crate::fullnat::MAP_LOCAL_ADDRS`] plus one; 0 for other methods.
    pub local_slot: u8,
    /// `fullnat`: 1 once the connection's TOA has been sent
    /// (`crate::toa`), so only its first ACK carries one.
    pub toa_sent: u8,
    /// 1: installed by connection sync from a peer and not seen by this
    /// LB since; the program clears it when it next moves `last_seen_ns`
    /// on (a packet of the flow arrived here). Sync never sends such a
    /// session back, so two LBs do not keep each other's idle sessions
    /// alive (docs/HA.md).
    pub from_peer: u8,
    /// Padding, zero.
    pub _pad: u8,
    /// Padding, zero.
    pub _pad2: u16,
}

/// Bytes of key plus value of one session entry (the kernel adds its own
/// hash-table element header on top; see docs/L4.md).
pub const SESSION_ENTRY_BYTES: usize =
    core::mem::size_of::<FlowKey>() + core::mem::size_of::<FlowVal>();

/// Value of [`MAP_NAT_REVERSE`]: what a real's reply needs to be sent
/// back to the client as the service. Its key is the reply's 5-tuple (a
/// [`FlowKey`] from the real to the client). The reply cannot compute
/// its session's key by itself: the same real and port may serve several
/// VIPs and ports, so the VIP end is recorded here when the session is
/// made, and the session itself (state, real, timeouts) stays the one
/// entry of [`MAP_SESSIONS`] that both directions read.
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NatReverse {
    /// VIP address (the replies' new source).
    pub vip: Addr,
    /// VIP port, host order (the replies' new source port).
    pub vport: u16,
    /// Source MAC of the client's packet that made the session: the next
    /// hop back toward the client (the client itself or its router), the
    /// replies' destination MAC.
    pub client_mac: [u8; 6],
}

/// Bytes of key plus value of one reverse entry of a `nat` session.
pub const NAT_REVERSE_ENTRY_BYTES: usize =
    core::mem::size_of::<FlowKey>() + core::mem::size_of::<NatReverse>();

/// Key of [`MAP_PERSIST`].
#[repr(C, align(4))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PersistKey {
    /// Client address.
    pub src: Addr,
    /// Service index.
    pub vip_index: u32,
}

/// Value of [`MAP_PERSIST`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PersistVal {
    /// Slot in [`MAP_REALS`].
    pub real: u32,
    /// [`RealDef::generation`] of the real when the entry was made.
    pub real_gen: u16,
    /// Padding, zero.
    pub _pad: u16,
    /// Last use (ns).
    pub last_seen_ns: u64,
}

/// Packet and byte counters (per CPU; summed by userspace).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrafficStats {
    /// Packets.
    pub packets: u64,
    /// Bytes (whole frames as received).
    pub bytes: u64,
    /// New sessions created.
    pub sessions: u64,
}

// Layout guards: a change here must be deliberate (both sides rebuild).
// The explicit alignments let the BPF code generator copy keys and values
// on the stack with 4- and 8-byte loads and stores instead of byte by byte
// (the verifier requires aligned stack access).
const _: () = assert!(core::mem::size_of::<GlobalCfg>() == 72);
const _: () = assert!(core::mem::size_of::<AddrKey>() == 20);
const _: () = assert!(core::mem::size_of::<VipKey>() == 20);
const _: () = assert!(core::mem::size_of::<VipMeta>() == 40);
const _: () = assert!(core::mem::size_of::<RealDef>() == 32);
const _: () = assert!(core::mem::size_of::<VipSlot>() == 64);
const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowVal>() == 24);
const _: () = assert!(SESSION_ENTRY_BYTES <= 64);
const _: () = assert!(core::mem::size_of::<NatReverse>() == 24);
const _: () = assert!(NAT_REVERSE_ENTRY_BYTES <= 64);
// `FlowVal::vip_slot` is `vip_index + 1` in a byte.
const _: () = assert!(MAX_VIPS < u8::MAX as u32);
const _: () = assert!(core::mem::size_of::<PersistKey>() == 20);
const _: () = assert!(core::mem::size_of::<TrafficStats>() == 24);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_flow_key_reads_back_from_its_bytes() {
        let mut b = [0u8; FlowKey::BYTES];
        b[..4].copy_from_slice(&[10, 0, 0, 9]);
        b[16..20].copy_from_slice(&[10, 0, 0, 100]);
        b[32..34].copy_from_slice(&40000u16.to_ne_bytes());
        b[34..36].copy_from_slice(&80u16.to_ne_bytes());
        b[36] = 6;
        b[37] = family::V4;
        let k = FlowKey::from_ne_bytes(&b).unwrap();
        assert_eq!(
            k,
            FlowKey {
                src: addr_v4([10, 0, 0, 9]),
                dst: addr_v4([10, 0, 0, 100]),
                sport: 40000,
                dport: 80,
                proto: 6,
                family: family::V4,
                _pad: 0,
            }
        );
        assert_eq!(FlowKey::from_ne_bytes(&b[1..]), None);
    }

    #[test]
    fn counter_slots_are_dense_and_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{}", c.name());
        }
    }

    #[test]
    fn methods_round_trip_through_names_and_bytes() {
        for m in Method::ALL {
            assert_eq!(m.as_str().parse::<Method>(), Ok(m));
            assert_eq!(Method::from_byte(m.to_byte()), Some(m));
        }
        assert_eq!("masq".parse::<Method>(), Err(UnknownMethod));
        assert_eq!(Method::from_byte(4), None);
        assert_eq!((method::DR, method::TUN), (0, 1));
    }
}
