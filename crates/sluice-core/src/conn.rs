//! Connection (session) table policy for the L4 path: IPVS's timeouts and
//! its TCP state tracker for traffic seen in one direction.
//!
//! # The DSR limitation
//!
//! In direct-server-return modes (DR/L2DSR, IPIP/L3DSR) the load balancer
//! sees only client → server packets; the server answers the client
//! directly. So the tracker cannot see SYN-ACK, the server's FIN or the final
//! ACK, and it cannot tell an established flow from a spoofed ACK. It uses
//! IPVS's **INPUT-ONLY** transition table (`ip_vs_proto_tcp.c`, the table
//! IPVS uses for DR/TUN), which infers states from the client's SYN, FIN,
//! ACK and RST alone. Consequences:
//!
//! - a client FIN moves the flow to FIN_WAIT (2 min) even though the server
//!   may keep sending for longer; the entry is refreshed by every client
//!   packet, including the ACKs of the server's data, so an active download
//!   keeps its entry;
//! - a first packet that is a bare ACK (a flow picked up mid-stream after an
//!   LB restart or an eviction) is tracked as CLOSE (10 s), as in current
//!   kernels: it survives while packets keep coming, and an idle one is
//!   re-scheduled (with Maglev, normally to the same real);
//! - a RST during SYN_RECV is ignored (IPVS's protection against blind RST).
//!
//! NAT/FULLNAT modes see both directions; they can use the same table (the
//! client direction drives it) with the same timeouts.

use std::time::Duration;

/// TCP FIN flag bit (RFC 9293).
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag bit.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag bit.
pub const TCP_RST: u8 = 0x04;
/// TCP ACK flag bit.
pub const TCP_ACK: u8 = 0x10;

/// IPVS's TCP connection states (`IP_VS_TCP_S_*`), in IPVS order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TcpState {
    /// No packet seen yet.
    #[default]
    None,
    /// ESTABLISHED.
    Established,
    /// SYN_SENT (not reachable from client-only packets).
    SynSent,
    /// SYN_RECV: the client's SYN was seen.
    SynRecv,
    /// FIN_WAIT: the client sent FIN.
    FinWait,
    /// TIME_WAIT.
    TimeWait,
    /// CLOSE: reset, or a flow picked up mid-stream.
    Close,
    /// CLOSE_WAIT (not reachable from client-only packets).
    CloseWait,
    /// LAST_ACK (not reachable from client-only packets).
    LastAck,
    /// LISTEN (not reachable from client-only packets).
    Listen,
    /// SYNACK (not reachable from client-only packets).
    SynAck,
}

/// Session timeouts per state, in IPVS's defaults (`tcp_timeouts[]` in
/// `ip_vs_proto_tcp.c`, `udp_timeouts[]` in `ip_vs_proto_udp.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// NONE: 2 s.
    pub none: Duration,
    /// ESTABLISHED: 15 min.
    pub established: Duration,
    /// SYN_SENT: 2 min.
    pub syn_sent: Duration,
    /// SYN_RECV: 1 min.
    pub syn_recv: Duration,
    /// FIN_WAIT: 2 min.
    pub fin_wait: Duration,
    /// TIME_WAIT: 2 min.
    pub time_wait: Duration,
    /// CLOSE: 10 s.
    pub close: Duration,
    /// CLOSE_WAIT: 60 s.
    pub close_wait: Duration,
    /// LAST_ACK: 30 s.
    pub last_ack: Duration,
    /// LISTEN: 2 min.
    pub listen: Duration,
    /// SYNACK: 2 min.
    pub synack: Duration,
    /// UDP "normal": 5 min.
    pub udp: Duration,
}

/// IPVS default timeouts.
pub const IPVS_TIMEOUTS: Timeouts = Timeouts {
    none: Duration::from_secs(2),
    established: Duration::from_secs(15 * 60),
    syn_sent: Duration::from_secs(2 * 60),
    syn_recv: Duration::from_secs(60),
    fin_wait: Duration::from_secs(2 * 60),
    time_wait: Duration::from_secs(2 * 60),
    close: Duration::from_secs(10),
    close_wait: Duration::from_secs(60),
    last_ack: Duration::from_secs(30),
    listen: Duration::from_secs(2 * 60),
    synack: Duration::from_secs(2 * 60),
    udp: Duration::from_secs(5 * 60),
};

impl Default for Timeouts {
    fn default() -> Self {
        IPVS_TIMEOUTS
    }
}

// === impl Timeouts ===

impl Timeouts {
    /// Idle timeout of a TCP flow in `state`.
    pub const fn tcp(&self, state: TcpState) -> Duration {
        match state {
            TcpState::None => self.none,
            TcpState::Established => self.established,
            TcpState::SynSent => self.syn_sent,
            TcpState::SynRecv => self.syn_recv,
            TcpState::FinWait => self.fin_wait,
            TcpState::TimeWait => self.time_wait,
            TcpState::Close => self.close,
            TcpState::CloseWait => self.close_wait,
            TcpState::LastAck => self.last_ack,
            TcpState::Listen => self.listen,
            TcpState::SynAck => self.synack,
        }
    }
}

// === impl TcpState ===

impl TcpState {
    /// IPVS's state name (`"ESTABLISHED"`, ...), for display.
    pub const fn name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait => "FIN_WAIT",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::SynAck => "SYNACK",
        }
    }

    /// Whether IPVS counts a flow in this state as *active*
    /// (`activeconns`, weighted 256× by [`crate::sched::lc`]); every other
    /// state counts as inactive.
    pub const fn is_active(self) -> bool {
        matches!(self, Self::Established)
    }

    /// The next state after a client → server segment with `flags`, per
    /// IPVS's INPUT-ONLY table. Flag priority is IPVS's: RST, then SYN, then
    /// FIN, then ACK; a segment with none of them changes nothing.
    pub const fn on_client_segment(self, flags: u8) -> TcpState {
        use TcpState::*;
        let row = if flags & TCP_RST != 0 {
            3
        } else if flags & TCP_SYN != 0 {
            0
        } else if flags & TCP_FIN != 0 {
            1
        } else if flags & TCP_ACK != 0 {
            2
        } else {
            return self;
        };
        let col = self as usize;
        // Columns: NO ES SS SR FW TW CL CW LA LI SA (IPVS order = enum order).
        #[rustfmt::skip]
        const T: [[TcpState; 11]; 4] = [
            /* syn */
            [SynRecv, Established, Established, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv, SynRecv],
            /* fin */
            [Close, FinWait, SynSent, TimeWait, FinWait, TimeWait, Close, CloseWait, LastAck, Listen, TimeWait],
            /* ack */
            [Close, Established, SynSent, Established, FinWait, TimeWait, Close, CloseWait, Close, Listen, Established],
            /* rst */
            [Close, Close, Close, SynRecv, Close, Close, Close, Close, LastAck, Listen, Close],
        ];
        T[row][col]
    }
}

/// Tracks one TCP flow from client → server segments and answers its idle
/// timeout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpTracker {
    state: TcpState,
}

// === impl TcpTracker ===

impl TcpTracker {
    /// A flow with no segment seen.
    pub const fn new() -> Self {
        Self {
            state: TcpState::None,
        }
    }

    /// Feeds one client → server segment's flags; returns the new state.
    pub fn on_segment(&mut self, flags: u8) -> TcpState {
        self.state = self.state.on_client_segment(flags);
        self.state
    }

    /// Current state.
    pub const fn state(&self) -> TcpState {
        self.state
    }

    /// Idle timeout for the current state.
    pub const fn timeout(&self, timeouts: &Timeouts) -> Duration {
        timeouts.tcp(self.state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(flags: &[u8]) -> Vec<TcpState> {
        let mut t = TcpTracker::new();
        flags.iter().map(|&f| t.on_segment(f)).collect()
    }

    #[test]
    fn ipvs_default_timeouts() {
        let t = Timeouts::default();
        assert_eq!(t.tcp(TcpState::Established), Duration::from_secs(900));
        assert_eq!(t.tcp(TcpState::SynRecv), Duration::from_secs(60));
        assert_eq!(t.tcp(TcpState::SynSent), Duration::from_secs(120));
        assert_eq!(t.tcp(TcpState::FinWait), Duration::from_secs(120));
        assert_eq!(t.tcp(TcpState::TimeWait), Duration::from_secs(120));
        assert_eq!(t.tcp(TcpState::Close), Duration::from_secs(10));
        assert_eq!(t.tcp(TcpState::CloseWait), Duration::from_secs(60));
        assert_eq!(t.tcp(TcpState::LastAck), Duration::from_secs(30));
        assert_eq!(t.tcp(TcpState::Listen), Duration::from_secs(120));
        assert_eq!(t.udp, Duration::from_secs(300));
    }

    #[test]
    fn normal_client_side_lifecycle() {
        use TcpState::*;
        // SYN, ACK (handshake done), data ACKs, FIN, ACK of server's FIN.
        let s = run(&[TCP_SYN, TCP_ACK, TCP_ACK | 0x08, TCP_FIN | TCP_ACK, TCP_ACK]);
        assert_eq!(s, vec![SynRecv, Established, Established, FinWait, FinWait]);
        let mut t = TcpTracker::new();
        t.on_segment(TCP_SYN);
        assert_eq!(t.timeout(&IPVS_TIMEOUTS), Duration::from_secs(60));
        t.on_segment(TCP_ACK);
        assert_eq!(t.timeout(&IPVS_TIMEOUTS), Duration::from_secs(900));
        assert!(t.state().is_active());
    }

    #[test]
    fn resets_and_edge_cases() {
        use TcpState::*;
        assert_eq!(
            run(&[TCP_SYN, TCP_ACK, TCP_RST]),
            vec![SynRecv, Established, Close]
        );
        // RST while SYN_RECV is ignored (blind-RST protection).
        assert_eq!(run(&[TCP_SYN, TCP_RST | TCP_ACK]), vec![SynRecv, SynRecv]);
        // Mid-stream pickup: bare ACK first -> CLOSE, stays CLOSE.
        assert_eq!(run(&[TCP_ACK, TCP_ACK]), vec![Close, Close]);
        // A new SYN after close reopens.
        assert_eq!(
            run(&[TCP_SYN, TCP_ACK, TCP_FIN, TCP_SYN]),
            vec![SynRecv, Established, FinWait, SynRecv]
        );
        // FIN during SYN_RECV -> TIME_WAIT; no known flag -> unchanged.
        assert_eq!(
            run(&[TCP_SYN, TCP_FIN, 0x08]),
            vec![SynRecv, TimeWait, TimeWait]
        );
        // RST beats SYN in the same segment.
        assert_eq!(run(&[TCP_SYN | TCP_RST]), vec![Close]);
        assert_eq!(TcpState::FinWait.name(), "FIN_WAIT");
        assert!(!TcpState::FinWait.is_active());
    }
}
