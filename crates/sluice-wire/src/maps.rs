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
    /// VIP packets that are IP fragments (passed to the kernel; see docs/L4.md).
    PassFragment = 5,
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
    /// ICMP errors for VIP flows forwarded to the flow's real server.
    IcmpForwarded = 11,
    /// Frames dropped because growing the head for encapsulation failed.
    DropEncapFailed = 12,
    /// Frames dropped with a malformed header (bad IHL, bad version, ...).
    DropMalformed = 13,
    /// VIP packets dropped because the next-hop MAC of the real is unknown.
    DropNoNeighbour = 14,
}

impl Counter {
    /// Number of slots in [`MAP_STATS`].
    pub const COUNT: u32 = 15;

    /// Every counter, in slot order.
    pub const ALL: [Counter; Self::COUNT as usize] = [
        Counter::RxPackets,
        Counter::RxBytes,
        Counter::PassNonVip,
        Counter::PassNonIp,
        Counter::DropTruncated,
        Counter::PassFragment,
        Counter::DropIpOptions,
        Counter::TxForwarded,
        Counter::DropNoReal,
        Counter::SessionHit,
        Counter::SessionMiss,
        Counter::IcmpForwarded,
        Counter::DropEncapFailed,
        Counter::DropMalformed,
        Counter::DropNoNeighbour,
    ];

    /// Stable snake_case name, used by `sluice ctl` and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::RxPackets => "rx_packets",
            Counter::RxBytes => "rx_bytes",
            Counter::PassNonVip => "pass_non_vip",
            Counter::PassNonIp => "pass_non_ip",
            Counter::DropTruncated => "drop_truncated",
            Counter::PassFragment => "pass_fragment",
            Counter::DropIpOptions => "drop_ip_options",
            Counter::TxForwarded => "tx_forwarded",
            Counter::DropNoReal => "drop_no_real",
            Counter::SessionHit => "session_hit",
            Counter::SessionMiss => "session_miss",
            Counter::IcmpForwarded => "icmp_forwarded",
            Counter::DropEncapFailed => "drop_encap_failed",
            Counter::DropMalformed => "drop_malformed",
            Counter::DropNoNeighbour => "drop_no_neighbour",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_slots_are_dense_and_ordered() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as u32, i as u32, "{}", c.name());
        }
    }
}
