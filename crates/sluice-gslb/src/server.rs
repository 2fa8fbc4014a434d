//! The DNS listeners on the caller's tokio runtime: per `listen` address
//! [`ServerConfig::udp_sockets`] UDP sockets (`SO_REUSEPORT`), one task
//! each reading and answering in batches of [`UDP_BATCH`]
//! (`recvmmsg` / `sendmmsg`), and one TCP listener on the same port; each
//! query answered by [`Zone::respond`].
//!
//! Bounds: a UDP query larger than [`MAX_UDP_QUERY`] bytes is cut (and so
//! answered FORMERR); at most [`MAX_TCP_CONNECTIONS`] TCP connections,
//! each closed after [`TCP_IDLE_TIMEOUT`] without a complete query.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::ResponseCode;
use std::os::fd::AsRawFd as _;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, Interest};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use crate::answer::{Outcome, Transport, Zone};
use crate::health::SiteHealth;
use crate::policy::splitmix64;
use crate::rrl::{RateLimiter, Verdict};

/// Largest UDP query read, in bytes (EDNS clients advertise at most 4096
/// in practice; a query is far smaller).
pub const MAX_UDP_QUERY: usize = 4096;
/// Most concurrent TCP connections (all listeners together).
pub const MAX_TCP_CONNECTIONS: usize = 1024;
/// A TCP connection idle this long without a complete query is closed.
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most datagrams read (and answers sent) per system call
/// (`recvmmsg` / `sendmmsg`).
pub const UDP_BATCH: usize = 32;
/// Most UDP sockets (one task each) per listen address.
pub const MAX_UDP_WORKERS: usize = 8;

/// What the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses, each served over UDP and TCP (port 0: the kernel picks
    /// the UDP port, TCP takes the same).
    pub listen: Vec<SocketAddr>,
    /// UDP responses per second per source prefix; 0: unlimited.
    pub rate_limit: u32,
    /// UDP sockets per listen address (`SO_REUSEPORT`: the kernel spreads
    /// the clients among them), one task each; 0: one per CPU, at most
    /// [`MAX_UDP_WORKERS`].
    pub udp_sockets: usize,
}

/// Starting the server failed.
#[derive(Debug, thiserror::Error)]
pub enum GslbError {
    /// A listener could not be bound.
    #[error("binding DNS {proto} {addr}: {source}")]
    Bind {
        /// `"UDP"` or `"TCP"`.
        proto: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Response codes counted by name, in this order (`other` last).
pub const RCODES: [&str; 8] = [
    "noerror", "formerr", "servfail", "nxdomain", "notimp", "refused", "badvers", "other",
];

fn rcode_index(r: ResponseCode) -> usize {
    match r {
        ResponseCode::NoError => 0,
        ResponseCode::FormErr => 1,
        ResponseCode::ServFail => 2,
        ResponseCode::NXDomain => 3,
        ResponseCode::NotImp => 4,
        ResponseCode::Refused => 5,
        ResponseCode::BADVERS => 6,
        _ => 7,
    }
}

/// The server's counters (monotonic; `/metrics` reads them).
#[derive(Debug)]
pub struct Stats {
    /// Queries received over UDP.
    pub queries_udp: AtomicU64,
    /// Queries received over TCP.
    pub queries_tcp: AtomicU64,
    /// Responses by code, indexed like [`RCODES`].
    pub responses: [AtomicU64; RCODES.len()],
    /// Responses sent truncated (too large for UDP, or slipped).
    pub truncated: AtomicU64,
    /// Queries dropped unanswered because they were not queries (QR set
    /// or no header).
    pub dropped: AtomicU64,
    /// UDP responses the rate limiter dropped.
    pub rate_limited_dropped: AtomicU64,
    /// UDP responses the rate limiter sent truncated instead.
    pub rate_limited_slipped: AtomicU64,
    /// Answers that held a site's addresses, per site index.
    pub site_answers: Vec<AtomicU64>,
}

impl Stats {
    fn new(sites: usize) -> Self {
        Self {
            queries_udp: AtomicU64::new(0),
            queries_tcp: AtomicU64::new(0),
            responses: Default::default(),
            truncated: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            rate_limited_dropped: AtomicU64::new(0),
            rate_limited_slipped: AtomicU64::new(0),
            site_answers: (0..sites).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn count(&self, o: &Outcome) {
        match o.rcode {
            Some(r) => {
                self.responses[rcode_index(r)].fetch_add(1, Ordering::Relaxed);
            }
            None => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        if o.truncated {
            self.truncated.fetch_add(1, Ordering::Relaxed);
        }
        for &s in &o.sites {
            if let Some(c) = self.site_answers.get(s) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// A running DNS server; dropping it (or [`Server::shutdown`]) stops its
/// tasks.
#[derive(Debug)]
pub struct Server {
    zone: Arc<Zone>,
    health: Arc<SiteHealth>,
    stats: Arc<Stats>,
    addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// Shared by every task.
#[derive(Debug)]
struct Shared {
    zone: Arc<Zone>,
    health: Arc<SiteHealth>,
    stats: Arc<Stats>,
    tcp_slots: Arc<tokio::sync::Semaphore>,
}

/// UDP sockets per listen address by default: one per CPU, at most
/// [`MAX_UDP_WORKERS`].
pub fn udp_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, MAX_UDP_WORKERS)
}

impl Server {
    /// Binds every listener (all before serving any) and starts serving.
    pub async fn start(
        zone: Zone,
        health: Arc<SiteHealth>,
        cfg: &ServerConfig,
    ) -> Result<Self, GslbError> {
        let stats = Arc::new(Stats::new(zone.spec().sites.len()));
        let zone = Arc::new(zone);
        let shared = Arc::new(Shared {
            zone: zone.clone(),
            health: health.clone(),
            stats: stats.clone(),
            tcp_slots: Arc::new(tokio::sync::Semaphore::new(MAX_TCP_CONNECTIONS)),
        });
        let sockets = if cfg.udp_sockets == 0 {
            udp_workers()
        } else {
            cfg.udp_sockets.min(MAX_UDP_WORKERS)
        };
        let bind_err = |proto, addr| {
            move |source| GslbError::Bind {
                proto,
                addr,
                source,
            }
        };
        // Every socket bound before anything is served.
        let mut bound = Vec::new();
        for &addr in &cfg.listen {
            let first = udp_socket(addr).map_err(bind_err("UDP", addr))?;
            let local = first.local_addr().map_err(bind_err("UDP", addr))?;
            let mut socks = vec![first];
            for _ in 1..sockets {
                socks.push(udp_socket(local).map_err(bind_err("UDP", local))?);
            }
            let tcp = TcpListener::bind(local)
                .await
                .map_err(bind_err("TCP", local))?;
            bound.push((local, socks, tcp));
        }
        let epoch = Instant::now();
        let mut tasks = Vec::new();
        let mut addrs = Vec::new();
        for (local, socks, tcp) in bound {
            addrs.push(local);
            let limiter = (cfg.rate_limit > 0)
                .then(|| Arc::new(Mutex::new(RateLimiter::new(cfg.rate_limit))));
            for (w, sock) in socks.into_iter().enumerate() {
                tasks.push(tokio::spawn(udp_loop(
                    Arc::new(sock),
                    shared.clone(),
                    limiter.clone(),
                    epoch,
                    seed(local, w),
                )));
            }
            tasks.push(tokio::spawn(tcp_loop(tcp, shared.clone(), seed(local, 99))));
        }
        Ok(Self {
            zone,
            health,
            stats,
            addrs,
            tasks,
        })
    }

    /// The bound addresses (UDP and TCP share each).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The zone served.
    pub fn zone(&self) -> &Zone {
        &self.zone
    }

    /// The sites' health the answers follow.
    pub fn health(&self) -> &SiteHealth {
        &self.health
    }

    /// Stops every listener.
    pub fn shutdown(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A per-task seed for the weighted draw (not security-relevant: it only
/// spreads answers).
fn seed(addr: SocketAddr, worker: usize) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut s = t ^ u64::from(addr.port()) ^ ((worker as u64) << 32);
    splitmix64(&mut s)
}

/// A non-blocking UDP socket on `addr` with `SO_REUSEPORT`, registered
/// with the runtime.
fn udp_socket(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}

async fn udp_loop(
    sock: Arc<UdpSocket>,
    sh: Arc<Shared>,
    limiter: Option<Arc<Mutex<RateLimiter>>>,
    epoch: Instant,
    mut rng: u64,
) {
    let fd = sock.as_raw_fd();
    let mut bufs: Vec<Vec<u8>> = (0..UDP_BATCH).map(|_| vec![0u8; MAX_UDP_QUERY]).collect();
    let mut replies: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(UDP_BATCH);
    loop {
        if let Err(e) = sock.readable().await {
            tracing::debug!(error = %e, "gslb: UDP readiness");
            continue;
        }
        let got = match sock.try_io(Interest::READABLE, || batch::recv(fd, &mut bufs)) {
            Ok(got) => got,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here; keep going.
                tracing::debug!(error = %e, "gslb: UDP receive");
                continue;
            }
        };
        for (i, (n, src)) in got.into_iter().enumerate() {
            let Some(src) = src else {
                continue;
            };
            sh.stats.queries_udp.fetch_add(1, Ordering::Relaxed);
            let verdict = match &limiter {
                Some(l) => match l.lock() {
                    Ok(mut l) => l.check(src.ip(), epoch.elapsed()),
                    Err(_) => Verdict::Send,
                },
                None => Verdict::Send,
            };
            let slip = match verdict {
                Verdict::Send => false,
                Verdict::Slip => {
                    sh.stats
                        .rate_limited_slipped
                        .fetch_add(1, Ordering::Relaxed);
                    true
                }
                Verdict::Drop => {
                    sh.stats
                        .rate_limited_dropped
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            };
            let out = sh.zone.respond(
                &*sh.health,
                &bufs[i][..n],
                client_ip(src),
                Transport::Udp,
                slip,
                splitmix64(&mut rng),
            );
            sh.stats.count(&out);
            if let Some(r) = out.response {
                replies.push((r, src));
            }
        }
        // One sendmmsg for the batch; what it could not send (a full
        // socket buffer) goes one by one, waiting for room.
        let sent = match sock.try_io(Interest::WRITABLE, || batch::send(fd, &replies)) {
            Ok(n) => n,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock {
                    tracing::debug!(error = %e, "gslb: UDP send");
                }
                0
            }
        };
        for (r, dst) in replies.drain(..).skip(sent) {
            if let Err(e) = sock.send_to(&r, dst).await {
                tracing::debug!(error = %e, %dst, "gslb: UDP send");
            }
        }
    }
}

/// Batched UDP I/O: `recvmmsg` and `sendmmsg` through nix's safe wrappers.
mod batch {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::RawFd;

    use nix::sys::socket::{
        ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg,
    };

    /// Receives up to `bufs.len()` datagrams without waiting: (length,
    /// source) of each, in order; `WouldBlock` if none is queued.
    pub(super) fn recv(
        fd: RawFd,
        bufs: &mut [Vec<u8>],
    ) -> std::io::Result<Vec<(usize, Option<SocketAddr>)>> {
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), None);
        let res = recvmmsg(
            fd,
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        Ok(res
            .map(|m| (m.bytes, m.address.as_ref().and_then(socket_addr)))
            .collect())
    }

    /// Sends `replies` without waiting; returns how many went.
    pub(super) fn send(fd: RawFd, replies: &[(Vec<u8>, SocketAddr)]) -> std::io::Result<usize> {
        if replies.is_empty() {
            return Ok(0);
        }
        let iovs: Vec<[IoSlice<'_>; 1]> = replies.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
        let addrs: Vec<Option<SockaddrStorage>> = replies
            .iter()
            .map(|(_, a)| Some(SockaddrStorage::from(*a)))
            .collect();
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(iovs.len(), None);
        let cmsgs: [ControlMessage<'_>; 0] = [];
        let res = sendmmsg(
            fd,
            &mut headers,
            &iovs,
            addrs,
            cmsgs,
            MsgFlags::MSG_DONTWAIT,
        )
        .map_err(std::io::Error::from)?;
        Ok(res.count())
    }

    fn socket_addr(s: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(a) = s.as_sockaddr_in() {
            return Some(SocketAddr::V4(SocketAddrV4::new(a.ip(), a.port())));
        }
        let a = s.as_sockaddr_in6()?;
        Some(SocketAddr::V6(SocketAddrV6::new(
            a.ip(),
            a.port(),
            a.flowinfo(),
            a.scope_id(),
        )))
    }
}

/// The client's address, IPv4-mapped IPv6 shown as IPv4.
fn client_ip(src: SocketAddr) -> IpAddr {
    match src.ip() {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        ip => ip,
    }
}

async fn tcp_loop(listener: TcpListener, sh: Arc<Shared>, mut rng: u64) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "gslb: TCP accept");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = sh.tcp_slots.clone().try_acquire_owned() else {
            // Full: close at once rather than queue.
            drop(stream);
            continue;
        };
        let sh = sh.clone();
        let seed = splitmix64(&mut rng);
        tokio::spawn(async move {
            tcp_conn(stream, peer, &sh, seed).await;
            drop(permit);
        });
    }
}

async fn tcp_conn(mut s: TcpStream, peer: SocketAddr, sh: &Shared, mut rng: u64) {
    let mut buf = vec![0u8; crate::answer::MAX_TCP_MESSAGE];
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let n = usize::from(u16::from_be_bytes(len));
        match tokio::time::timeout(TCP_IDLE_TIMEOUT, s.read_exact(&mut buf[..n])).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        sh.stats.queries_tcp.fetch_add(1, Ordering::Relaxed);
        let out = sh.zone.respond(
            &*sh.health,
            &buf[..n],
            client_ip(peer),
            Transport::Tcp,
            false,
            splitmix64(&mut rng),
        );
        sh.stats.count(&out);
        let Some(r) = out.response else {
            return;
        };
        let Ok(rlen) = u16::try_from(r.len()) else {
            return;
        };
        let mut msg = Vec::with_capacity(r.len() + 2);
        msg.extend_from_slice(&rlen.to_be_bytes());
        msg.extend_from_slice(&r);
        if s.write_all(&msg).await.is_err() {
            return;
        }
    }
}
