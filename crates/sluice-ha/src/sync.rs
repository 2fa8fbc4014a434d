//! Connection sync between LBs (docs/HA.md, "Connection sync"): the
//! active LB streams its new sessions (as they are made) and, every
//! `interval`, the sessions active since the previous round, to its
//! peers in UDP datagrams of `sluice_wire::sync`'s format; every LB
//! installs what its peers send. A node that starts asks its peers for
//! a full dump, which an active peer answers by walking its table.
//!
//! The data plane is behind two traits ([`NewSessions`], [`SessionTable`],
//! [`SessionSink`]) that the binary implements with `sluice-l4`; the
//! pieces that decide (batching, rate, loss accounting) are sans-IO and
//! tested here in virtual time. Bounds: the kernel's ring of new sessions
//! (`SYNC_RING_BYTES`, overflow counted as `sync_ring_full`), one
//! datagram buffer per sending thread, [`MAX_DATAGRAMS_PER_SEC`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use sluice_wire::sync::{Datagram, HEADER_BYTES, Kind, MAX_DATAGRAM, SyncEntry, SyncError, Writer};

/// How often the ring of new sessions is read (its lag's main part).
pub const SYNC_POLL: Duration = Duration::from_millis(10);
/// Most ring records read per poll (then sent before the next read).
pub const SYNC_DRAIN_MAX: usize = 4096;
/// Most datagrams sent per second, over all peers and both senders (new
/// sessions and walks): about 11 MB/s, 300,000 IPv4 entries per second,
/// below what a peer installs (about 390,000 a second measured,
/// docs/HA.md), so that a full resync's stream does not overflow the
/// peer's socket. 10,000 new sessions a second take about 560 of them
/// per peer (announcement and walk).
pub const MAX_DATAGRAMS_PER_SEC: u32 = 8_000;
/// Datagrams the rate allows at once after a quiet spell.
pub const BURST_DATAGRAMS: u32 = 500;
/// Resync requests a starting node sends (one per `interval`) until a
/// peer's sessions arrive.
pub const RESYNC_ATTEMPTS: u32 = 5;
/// Receive buffer of the sync socket (bytes): a walk's burst of
/// datagrams (up to [`BURST_DATAGRAMS`], each ~2.3 KiB of kernel memory)
/// waits there while the receiver installs the previous ones; the
/// default (208 KiB) lost datagrams at 10,000 new sessions a second.
pub const SYNC_RCVBUF_BYTES: usize = 4 << 20;
/// How long the receiver blocks before it looks at the stop flag and
/// the resync schedule.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// A peer that was heard and then sent nothing (sessions, heartbeats,
/// requests) for this long is *silent*: an active peer sends at least a
/// heartbeat every [`SYNC_POLL`], so this is ten of them. VRRP takes a
/// silent master for one that gave up (docs/HA.md, "Faster than
/// VRRP"). Long enough that a loaded machine's scheduling delays do not
/// make a live peer silent.
pub const PEER_SILENCE: Duration = Duration::from_millis(100);
/// How long the receiver blocks at most, so that a peer's silence is
/// noticed within this of [`PEER_SILENCE`].
const SILENCE_CHECK: Duration = Duration::from_millis(10);

/// Where sync listens and sends, and how often the table is walked.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Local address of the sync socket (it also sends from it).
    pub listen: SocketAddr,
    /// The peers' sync sockets. Datagrams from other addresses are
    /// counted and dropped.
    pub peers: Vec<SocketAddr>,
    /// Time between two walks of the session table.
    pub interval: Duration,
}

/// What became of an entry given to a [`SessionSink`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Installed {
    /// Written.
    Yes,
    /// Names a service, real or local address this LB does not have:
    /// nothing written.
    Unknown,
}

/// The sessions this LB makes, as they are made (the kernel's ring).
pub trait NewSessions: Send {
    /// Calls `out` with each new session's entry (at most `max`);
    /// returns the records read.
    fn drain(&mut self, max: usize, out: &mut dyn FnMut(SyncEntry)) -> usize;
}

/// This LB's session table.
pub trait SessionTable: Send {
    /// Calls `out` with each session of this LB's own: all when `full`,
    /// else those active since the previous incremental walk.
    fn walk(&mut self, full: bool, out: &mut dyn FnMut(SyncEntry)) -> usize;
}

/// Where a peer's sessions are installed.
pub trait SessionSink: Send {
    /// Installs `e`.
    ///
    /// # Errors
    /// A map write failed (the text says which).
    fn install(&mut self, e: &SyncEntry) -> Result<Installed, String>;
}

/// Sync's counts, for the binary to expose.
#[derive(Debug, Default)]
pub struct SyncCounters {
    /// Entries sent (once per peer).
    pub sent_entries: AtomicU64,
    /// Datagrams sent.
    pub sent_datagrams: AtomicU64,
    /// Datagrams whose send failed (the socket's error).
    pub send_errors: AtomicU64,
    /// Datagrams received from peers and parsed.
    pub received_datagrams: AtomicU64,
    /// Entries received.
    pub received_entries: AtomicU64,
    /// Entries installed.
    pub installed: AtomicU64,
    /// Entries for a service, real or local address this LB lacks.
    pub skipped_unknown: AtomicU64,
    /// Entries whose installation failed (a map write).
    pub install_errors: AtomicU64,
    /// Datagrams refused by the format check (truncated, other version, ...).
    pub malformed: AtomicU64,
    /// Datagrams from an address that is not a peer.
    pub not_from_peer: AtomicU64,
    /// Datagrams missing in a peer's sequence (lost on the way, or
    /// reordered; a restarted peer's restart is not counted).
    pub lost_datagrams: AtomicU64,
    /// Full resyncs asked of peers.
    pub resync_requests_sent: AtomicU64,
    /// Full resyncs sent to peers.
    pub resyncs_served: AtomicU64,
    /// Heartbeats sent (one per peer).
    pub heartbeats_sent: AtomicU64,
    /// Times a peer fell silent (docs/HA.md, "Faster than VRRP").
    pub peers_silent: AtomicU64,
}

impl SyncCounters {
    /// Every count by name (snake_case), for the binary's output.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        vec![
            ("sent_entries", g(&self.sent_entries)),
            ("sent_datagrams", g(&self.sent_datagrams)),
            ("send_errors", g(&self.send_errors)),
            ("received_datagrams", g(&self.received_datagrams)),
            ("received_entries", g(&self.received_entries)),
            ("installed", g(&self.installed)),
            ("skipped_unknown", g(&self.skipped_unknown)),
            ("install_errors", g(&self.install_errors)),
            ("malformed", g(&self.malformed)),
            ("not_from_peer", g(&self.not_from_peer)),
            ("lost_datagrams", g(&self.lost_datagrams)),
            ("resync_requests_sent", g(&self.resync_requests_sent)),
            ("resyncs_served", g(&self.resyncs_served)),
            ("heartbeats_sent", g(&self.heartbeats_sent)),
            ("peers_silent", g(&self.peers_silent)),
        ]
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

// ---------------------------------------------------------------------------
// Sans-IO pieces.
// ---------------------------------------------------------------------------

/// Packs entries into datagrams of at most [`MAX_DATAGRAM`] bytes.
#[derive(Debug, Default)]
pub struct Packer {
    pending: Vec<SyncEntry>,
    bytes: usize,
}

impl Packer {
    /// Adds `e`; returns the entries of a full datagram when `e` does
    /// not fit beside those already pending (`e` then starts the next).
    pub fn push(&mut self, e: SyncEntry) -> Option<Vec<SyncEntry>> {
        let n = e.encoded_len();
        let out = if HEADER_BYTES + self.bytes + n > MAX_DATAGRAM {
            self.take()
        } else {
            None
        };
        self.bytes += n;
        self.pending.push(e);
        out
    }

    /// The pending entries (a last, partial datagram), if any.
    pub fn take(&mut self) -> Option<Vec<SyncEntry>> {
        self.bytes = 0;
        if self.pending.is_empty() {
            return None;
        }
        Some(std::mem::take(&mut self.pending))
    }
}

/// Encodes a datagram of `kind` with sequence `seq` and `entries` (which
/// a [`Packer`] sized to fit) into `buf`; returns its length.
pub fn encode(buf: &mut [u8; MAX_DATAGRAM], kind: Kind, seq: u32, entries: &[SyncEntry]) -> usize {
    let Some(mut w) = Writer::new(buf, kind, seq) else {
        return 0;
    };
    for e in entries {
        if !w.push(e) {
            break;
        }
    }
    w.finish()
}

/// A token bucket in datagrams, in the caller's time.
#[derive(Debug)]
pub struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// `per_sec` datagrams a second, `burst` at once; full at `now`.
    pub fn new(per_sec: u32, burst: u32, now: Instant) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token at `now`, or says how long until there is one.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
    }
}

/// A peer's datagram sequence: how many went missing.
#[derive(Debug, Default)]
pub struct SeqTracker {
    next: Option<u32>,
}

/// Sequence numbers further away than this (ahead or back) are a
/// restarted sender, not losses or a late datagram.
const SEQ_RESTART_GAP: u32 = 1 << 16;

impl SeqTracker {
    /// Records datagram `seq`; returns the datagrams skipped before it.
    /// A sender starts its sequence at a random point
    /// (`initial_seq`), so a restart is a far jump, not counted.
    pub fn see(&mut self, seq: u32) -> u64 {
        let Some(next) = self.next else {
            self.next = Some(seq.wrapping_add(1));
            return 0;
        };
        let ahead = seq.wrapping_sub(next);
        if ahead < SEQ_RESTART_GAP {
            self.next = Some(seq.wrapping_add(1));
            return u64::from(ahead);
        }
        if next.wrapping_sub(seq) <= SEQ_RESTART_GAP {
            // Late: counted as lost when the gap opened.
            return 0;
        }
        self.next = Some(seq.wrapping_add(1));
        0
    }
}

/// Where a sender's sequence starts: from the clock, so that a restarted
/// sender's numbers are far from its previous ones.
fn initial_seq() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ (d.as_secs() as u32))
}

// ---------------------------------------------------------------------------
// The daemon.
// ---------------------------------------------------------------------------

/// What the threads share.
struct Shared {
    socket: UdpSocket,
    peers: Vec<SocketAddr>,
    bucket: Mutex<TokenBucket>,
    seq: AtomicU32,
    counters: Arc<SyncCounters>,
    stop: AtomicBool,
    /// The peers heard once and silent for [`PEER_SILENCE`] since.
    silent: tokio::sync::watch::Sender<Vec<IpAddr>>,
}

impl Shared {
    /// Sends `entries` as one datagram to each of `to`, within the rate.
    fn send(
        &self,
        buf: &mut [u8; MAX_DATAGRAM],
        kind: Kind,
        entries: &[SyncEntry],
        to: &[SocketAddr],
    ) {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let n = encode(buf, kind, seq, entries);
        for peer in to {
            self.wait_token();
            match self.socket.send_to(&buf[..n], peer) {
                Ok(_) => {
                    bump(&self.counters.sent_datagrams, 1);
                    bump(&self.counters.sent_entries, entries.len() as u64);
                }
                Err(e) => {
                    bump(&self.counters.send_errors, 1);
                    tracing::debug!(error = %e, %peer, "sending a sync datagram");
                }
            }
        }
    }

    /// A heartbeat to every peer: outside the rate (it is tiny, and a
    /// resync's stream must not delay it into silence) and outside the
    /// sessions' sequence (whose gaps count as losses).
    fn heartbeat(&self, buf: &mut [u8; MAX_DATAGRAM]) {
        let n = encode(buf, Kind::Heartbeat, 0, &[]);
        for peer in &self.peers {
            match self.socket.send_to(&buf[..n], peer) {
                Ok(_) => bump(&self.counters.heartbeats_sent, 1),
                Err(_) => bump(&self.counters.send_errors, 1),
            }
        }
    }

    fn wait_token(&self) {
        loop {
            let r = match self.bucket.lock() {
                Ok(mut b) => b.take(Instant::now()),
                Err(_) => return,
            };
            match r {
                Ok(()) => return,
                Err(d) => std::thread::sleep(d),
            }
        }
    }

    fn is_peer(&self, from: &SocketAddr) -> Option<SocketAddr> {
        self.peers.iter().copied().find(|p| p.ip() == from.ip())
    }
}

/// The running sync daemon; dropping it stops its threads (within
/// a receive timeout, 100 ms, and one walk).
#[derive(Debug)]
pub struct SyncHandle {
    shared: Arc<SharedDebug>,
    counters: Arc<SyncCounters>,
}

/// `Shared` behind a `Debug` that prints nothing (it holds a socket).
struct SharedDebug(Shared);

impl std::fmt::Debug for SharedDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl SyncHandle {
    /// The peers heard once and silent for [`PEER_SILENCE`] since,
    /// watched.
    pub fn silent_peers(&self) -> tokio::sync::watch::Receiver<Vec<IpAddr>> {
        self.shared.0.silent.subscribe()
    }

    /// The counts.
    pub fn counters(&self) -> &Arc<SyncCounters> {
        &self.counters
    }

    /// The socket's local address (the port when `listen` had port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.0.socket.local_addr()
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.shared.0.stop.store(true, Ordering::Relaxed);
    }
}

/// Whether this node is the active one (only it sends).
pub type Active = tokio::sync::watch::Receiver<bool>;

/// Starts sync: binds `cfg.listen`, asks the peers for their sessions,
/// and runs three threads: new sessions (every [`SYNC_POLL`]), walks
/// (every `cfg.interval`, and a peer's resync), and the receiver.
///
/// # Errors
/// Binding the socket or starting a thread failed.
pub fn start(
    cfg: SyncConfig,
    mut new: Box<dyn NewSessions>,
    mut table: Box<dyn SessionTable>,
    mut sink: Box<dyn SessionSink>,
    active: Active,
) -> io::Result<SyncHandle> {
    let socket = bind(cfg.listen)?;
    socket.set_read_timeout(Some(SILENCE_CHECK))?;
    let counters = Arc::new(SyncCounters::default());
    let shared = Arc::new(SharedDebug(Shared {
        socket,
        peers: cfg.peers.clone(),
        bucket: Mutex::new(TokenBucket::new(
            MAX_DATAGRAMS_PER_SEC,
            BURST_DATAGRAMS,
            Instant::now(),
        )),
        seq: AtomicU32::new(initial_seq()),
        counters: counters.clone(),
        stop: AtomicBool::new(false),
        silent: tokio::sync::watch::channel(Vec::new()).0,
    }));
    let (resync_tx, resync_rx) = mpsc::channel::<SocketAddr>();

    let sh = shared.clone();
    let act = active.clone();
    std::thread::Builder::new()
        .name("sluice-sync-new".into())
        .spawn(move || {
            let s = &sh.0;
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut packer = Packer::default();
            while !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(SYNC_POLL);
                // Drained even when standby, so that a node that becomes
                // active does not send a backlog of stale announcements.
                let on = *act.borrow();
                let mut full = Vec::new();
                new.drain(SYNC_DRAIN_MAX, &mut |e| {
                    if on && let Some(d) = packer.push(e) {
                        full.push(d);
                    }
                });
                full.extend(packer.take());
                for d in &full {
                    s.send(&mut buf, Kind::Sessions, d, &s.peers);
                }
                if on && full.is_empty() {
                    s.heartbeat(&mut buf);
                }
            }
        })?;

    let sh = shared.clone();
    let act = active;
    let interval = cfg.interval;
    std::thread::Builder::new()
        .name("sluice-sync-walk".into())
        .spawn(move || {
            let s = &sh.0;
            let mut buf = [0u8; MAX_DATAGRAM];
            let mut next = Instant::now() + interval;
            while !s.stop.load(Ordering::Relaxed) {
                let wait = next
                    .saturating_duration_since(Instant::now())
                    .min(RECV_TIMEOUT);
                let (full, to) = match resync_rx.recv_timeout(wait) {
                    Ok(peer) => (true, vec![peer]),
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        if Instant::now() < next {
                            continue;
                        }
                        next = Instant::now() + interval;
                        (false, s.peers.clone())
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                };
                if !*act.borrow() {
                    continue;
                }
                if full {
                    bump(&s.counters.resyncs_served, 1);
                }
                let mut packer = Packer::default();
                table.walk(full, &mut |e| {
                    if let Some(d) = packer.push(e) {
                        s.send(&mut buf, Kind::Sessions, &d, &to);
                    }
                });
                if let Some(d) = packer.take() {
                    s.send(&mut buf, Kind::Sessions, &d, &to);
                }
            }
        })?;

    let sh = shared.clone();
    std::thread::Builder::new()
        .name("sluice-sync-recv".into())
        .spawn(move || {
            let s = &sh.0;
            let mut buf = [0u8; 2 * MAX_DATAGRAM];
            let mut seqs: HashMap<IpAddr, SeqTracker> = HashMap::new();
            let mut resync = Resync::new(interval, Instant::now());
            let mut heard = Heard::default();
            while !s.stop.load(Ordering::Relaxed) {
                let silent = heard.silent(Instant::now());
                s.silent.send_if_modified(|old| {
                    if *old == silent {
                        return false;
                    }
                    let newly = silent.iter().filter(|p| !old.contains(p)).count();
                    bump(&s.counters.peers_silent, newly as u64);
                    *old = silent;
                    true
                });
                if resync.due(Instant::now()) {
                    bump(&s.counters.resync_requests_sent, 1);
                    s.send(&mut [0u8; MAX_DATAGRAM], Kind::ResyncRequest, &[], &s.peers);
                }
                let (n, from) = match s.socket.recv_from(&mut buf) {
                    Ok(x) => x,
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "receiving sync datagrams");
                        std::thread::sleep(RECV_TIMEOUT);
                        continue;
                    }
                };
                let Some(peer) = s.is_peer(&from) else {
                    bump(&s.counters.not_from_peer, 1);
                    continue;
                };
                let got = receive(&buf[..n], sink.as_mut(), &s.counters);
                if got.is_ok() {
                    heard.heard(from.ip(), Instant::now());
                }
                match got {
                    Ok((Kind::Heartbeat, _)) => {}
                    Ok((Kind::ResyncRequest, _)) => {
                        let _ = resync_tx.send(peer);
                    }
                    Ok((Kind::Sessions, seq)) => {
                        resync.answered();
                        let lost = seqs.entry(from.ip()).or_default().see(seq);
                        bump(&s.counters.lost_datagrams, lost);
                    }
                    Err(e) => tracing::debug!(error = %e, %from, "refused sync datagram"),
                }
            }
        })?;

    Ok(SyncHandle { shared, counters })
}

/// The sync socket, with a receive buffer of [`SYNC_RCVBUF_BYTES`]:
/// forced past `net.core.rmem_max` where the process may (CAP_NET_ADMIN),
/// else as large as that allows.
fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    use nix::sys::socket::{setsockopt, sockopt};
    let s = UdpSocket::bind(addr)?;
    if setsockopt(&s, sockopt::RcvBufForce, &SYNC_RCVBUF_BYTES).is_err() {
        // Not privileged: the kernel caps it at rmem_max, which is fine.
        let _ = setsockopt(&s, sockopt::RcvBuf, &SYNC_RCVBUF_BYTES);
    }
    Ok(s)
}

/// When each peer was last heard, and which are silent.
#[derive(Debug, Default)]
pub struct Heard {
    last: HashMap<IpAddr, Instant>,
}

impl Heard {
    /// `peer` sent a valid datagram at `now`.
    pub fn heard(&mut self, peer: IpAddr, now: Instant) {
        self.last.insert(peer, now);
    }

    /// The peers heard once and not for [`PEER_SILENCE`] at `now`, in
    /// address order.
    pub fn silent(&self, now: Instant) -> Vec<IpAddr> {
        let mut v: Vec<IpAddr> = self
            .last
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(**t) > PEER_SILENCE)
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v
    }
}

/// When a starting node asks its peers for their sessions: at once, then
/// every `interval` until a peer's sessions arrive, at most
/// [`RESYNC_ATTEMPTS`] times.
#[derive(Debug)]
pub struct Resync {
    interval: Duration,
    next: Option<Instant>,
    left: u32,
}

impl Resync {
    /// A schedule that starts at `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            next: Some(now),
            left: RESYNC_ATTEMPTS,
        }
    }

    /// Is a request due at `now`? (Then the next is scheduled.)
    pub fn due(&mut self, now: Instant) -> bool {
        match self.next {
            Some(t) if now >= t && self.left > 0 => {
                self.left -= 1;
                self.next = Some(now + self.interval);
                true
            }
            _ => false,
        }
    }

    /// A peer's sessions arrived: no more requests.
    pub fn answered(&mut self) {
        self.next = None;
    }
}

/// Handles one datagram from a peer: checks it whole, installs its
/// entries, counts. Returns its kind and sequence number.
///
/// # Errors
/// The format check's reason (counted as `malformed`).
pub fn receive(
    buf: &[u8],
    sink: &mut dyn SessionSink,
    c: &SyncCounters,
) -> Result<(Kind, u32), SyncError> {
    let d = match Datagram::parse(buf) {
        Ok(d) => d,
        Err(e) => {
            bump(&c.malformed, 1);
            return Err(e);
        }
    };
    bump(&c.received_datagrams, 1);
    bump(&c.received_entries, u64::from(d.count));
    for e in d.entries() {
        match sink.install(&e) {
            Ok(Installed::Yes) => bump(&c.installed, 1),
            Ok(Installed::Unknown) => bump(&c.skipped_unknown, 1),
            Err(err) => {
                bump(&c.install_errors, 1);
                tracing::debug!(error = %err, "installing a synced session");
            }
        }
    }
    Ok((d.kind, d.seq))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use sluice_wire::maps::{FlowKey, Method, addr_v4, family, state};

    fn entry(cport: u16) -> SyncEntry {
        SyncEntry {
            key: FlowKey {
                src: addr_v4([10, 0, 0, 9]),
                dst: addr_v4([10, 0, 0, 100]),
                sport: cport,
                dport: 80,
                proto: 6,
                family: family::V4,
                _pad: 0,
            },
            service_port: 80,
            method: Method::Dr,
            state: state::TCP_ESTABLISHED,
            real: addr_v4([10, 0, 1, 2]),
            real_port: 0,
            client_mac: [0; 6],
            local: None,
            toa_sent: false,
        }
    }

    #[derive(Default)]
    struct Recorder {
        got: Vec<SyncEntry>,
    }

    impl SessionSink for Recorder {
        fn install(&mut self, e: &SyncEntry) -> Result<Installed, String> {
            self.got.push(*e);
            if e.key.sport.is_multiple_of(2) {
                Ok(Installed::Yes)
            } else {
                Ok(Installed::Unknown)
            }
        }
    }

    #[test]
    fn the_packer_fills_datagrams_to_the_limit_and_keeps_every_entry() {
        let mut p = Packer::default();
        let mut datagrams = Vec::new();
        for i in 0..100 {
            datagrams.extend(p.push(entry(i)));
        }
        datagrams.extend(p.take());
        assert_eq!(p.take(), None);
        let per = (MAX_DATAGRAM - HEADER_BYTES) / 34;
        assert_eq!(datagrams.len(), 100usize.div_ceil(per));
        assert!(
            datagrams[..datagrams.len() - 1]
                .iter()
                .all(|d| d.len() == per)
        );
        let all: Vec<u16> = datagrams.iter().flatten().map(|e| e.key.sport).collect();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        // Each encodes within the limit and parses back.
        let mut buf = [0u8; MAX_DATAGRAM];
        for d in &datagrams {
            let n = encode(&mut buf, Kind::Sessions, 0, d);
            assert_eq!(
                Datagram::parse(&buf[..n]).unwrap().entries().count(),
                d.len()
            );
        }
    }

    #[test]
    fn the_bucket_holds_the_rate_after_its_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, 10, t0);
        for _ in 0..10 {
            assert_eq!(b.take(t0), Ok(()));
        }
        let wait = b.take(t0).expect_err("the burst is spent");
        assert!(
            wait <= Duration::from_millis(1) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // One second later: 1000 more, not more than the burst at once.
        let t1 = t0 + Duration::from_secs(1);
        let mut n = 0;
        while b.take(t1).is_ok() {
            n += 1;
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn gaps_in_a_peers_sequence_count_as_lost_and_a_restart_does_not() {
        let mut t = SeqTracker::default();
        assert_eq!(t.see(100), 0, "the first one seen");
        assert_eq!(t.see(101), 0);
        assert_eq!(t.see(105), 3);
        assert_eq!(t.see(103), 0, "late: already counted");
        assert_eq!(t.see(106), 0);
        assert_eq!(t.see(1_000_000), 0, "the peer restarted");
        assert_eq!(t.see(1_000_001), 0);
        assert_eq!(t.see(u32::MAX), 0, "far behind: a restart again");
        assert_eq!(t.see(1), 1, "wraps");
    }

    #[test]
    fn received_datagrams_are_installed_or_refused_whole_and_counted() {
        let c = SyncCounters::default();
        let mut sink = Recorder::default();
        let mut buf = [0u8; MAX_DATAGRAM];
        let es = [entry(2), entry(3), entry(4)];
        let n = encode(&mut buf, Kind::Sessions, 7, &es);
        assert_eq!(receive(&buf[..n], &mut sink, &c), Ok((Kind::Sessions, 7)));
        assert_eq!(sink.got, es);
        let snap: HashMap<_, _> = c.snapshot().into_iter().collect();
        assert_eq!(snap["received_entries"], 3);
        assert_eq!(snap["installed"], 2);
        assert_eq!(snap["skipped_unknown"], 1);

        // Truncated: nothing installed, counted.
        assert_eq!(
            receive(&buf[..n - 1], &mut sink, &c),
            Err(SyncError::Truncated)
        );
        buf[4] = 9;
        assert_eq!(
            receive(&buf[..n], &mut sink, &c),
            Err(SyncError::Version(9))
        );
        assert_eq!(sink.got.len(), 3);
        assert_eq!(c.malformed.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_peer_is_silent_after_being_heard_and_quiet_for_the_silence() {
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("10.99.0.1".parse().unwrap(), "10.99.0.3".parse().unwrap());
        let mut h = Heard::default();
        // Never heard: never silent.
        assert!(h.silent(t0 + PEER_SILENCE * 10).is_empty());
        h.heard(a, t0);
        h.heard(b, t0);
        assert!(h.silent(t0 + PEER_SILENCE).is_empty());
        h.heard(b, t0 + PEER_SILENCE);
        let later = t0 + PEER_SILENCE + Duration::from_millis(1);
        assert_eq!(h.silent(later), vec![a]);
        // Heard again: no longer silent.
        h.heard(a, later);
        assert!(h.silent(later).is_empty());
    }

    #[test]
    fn a_starting_node_asks_until_answered_and_at_most_a_few_times() {
        let t0 = Instant::now();
        let i = Duration::from_secs(1);
        let mut r = Resync::new(i, t0);
        assert!(r.due(t0));
        assert!(!r.due(t0 + i / 2));
        assert!(r.due(t0 + i));
        r.answered();
        assert!(!r.due(t0 + 10 * i));

        let mut r = Resync::new(i, t0);
        let asked = (0..100).filter(|k| r.due(t0 + i * *k)).count();
        assert_eq!(asked, RESYNC_ATTEMPTS as usize);
    }
}
