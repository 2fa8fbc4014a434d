//! One VRRPv3 virtual router at run time: the state machine of
//! `sluice_core::vrrp` driven by a tokio task, with its advertisements on
//! a raw socket ([`crate::socket`]), its virtual addresses added and
//! removed over rtnetlink ([`crate::link`]), a new master's
//! announcements ([`crate::announce`]) and the watchdog's verdicts
//! ([`crate::track`]) as the fault input.
//!
//! Choices beyond the RFC, as keepalived makes them:
//! - the master answers for the virtual addresses with the interface's
//!   own MAC (no virtual MAC `00:00:5e:00:01:VRID`), announced
//!   `garp_repeat` times on becoming master;
//! - virtual addresses still on the interface at start (a crashed run)
//!   are removed first: a backup must not hold them;
//! - with `unicast_peers`, adverts from other sources are ignored.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use sluice_core::vrrp::{Action, Advert, Config, State, Vrrp};
use sluice_wire::vrrp::{Header, Invalid, MULTICAST_V4, MULTICAST_V6};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::HaError;
use crate::announce::Announcer;
use crate::link::Netlink;
use crate::socket::{MAX_PACKET, VrrpSocket};

/// One centisecond, the unit of the advertisement's interval field.
const CENTISECOND: Duration = Duration::from_millis(10);
/// When no timer runs (fault, init), the loop still wakes this often.
const IDLE_WAKE: Duration = Duration::from_secs(3600);

/// One instance's settings (the binary converts `[[vrrp_instance]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VrrpSpec {
    /// Name, in logs, `sluice ctl` and the metrics.
    pub name: String,
    /// Interface it runs on.
    pub interface: String,
    /// Virtual router id.
    pub vrid: u8,
    /// Priority, 1..=255.
    pub priority: u8,
    /// Advertisement interval (whole centiseconds).
    pub advert_interval: Duration,
    /// Whether a higher priority preempts a live master.
    pub preempt: bool,
    /// Wait after start before preempting.
    pub preempt_delay: Duration,
    /// The virtual addresses (one family).
    pub virtual_addresses: Vec<IpAddr>,
    /// Unicast peers; empty: multicast.
    pub unicast_peers: Vec<IpAddr>,
    /// Announcements per virtual address on becoming master.
    pub garp_repeat: u8,
    /// Time between them.
    pub garp_interval: Duration,
}

/// What an instance reports (`sluice ctl vrrp`, `/metrics`).
#[derive(Clone, Debug)]
pub struct InstanceStatus {
    /// The spec it runs.
    pub spec: VrrpSpec,
    /// This node's address in the election (IPv4: primary; IPv6: link
    /// local).
    pub own_address: Option<IpAddr>,
    /// Current state.
    pub state: State,
    /// When it entered it.
    pub since: SystemTime,
    /// State changes since start.
    pub transitions: u64,
    /// The master as last heard (this node when master).
    pub master: Option<IpAddr>,
    /// Advertisements sent (per destination).
    pub adverts_sent: u64,
    /// Valid advertisements received for this router id.
    pub adverts_received: u64,
    /// Advertisements discarded, by [`Invalid::index`].
    pub invalid: [u64; Invalid::ALL.len()],
    /// Sends, netlink requests and announcements that failed.
    pub io_errors: u64,
    /// Take-overs started because the master fell silent on the sync
    /// channel (docs/HA.md, "Faster than VRRP").
    pub silent_takeovers: u64,
    /// The watchdog's current fault reasons (empty: healthy).
    pub faults: Vec<String>,
}

/// A running instance.
#[derive(Debug)]
pub struct Instance {
    status: Arc<Mutex<InstanceStatus>>,
    state: watch::Receiver<State>,
    stop: watch::Sender<bool>,
    /// Taken by the first [`Instance::stop`].
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Instance {
    /// Starts the instance on the current runtime, with `faults` as the
    /// watchdog's verdict (empty: healthy) and `silent` as the sync
    /// peers that fell silent (a master among them is taken for one that
    /// gave up: docs/HA.md, "Faster than VRRP").
    ///
    /// # Errors
    /// [`HaError`] if its interface, addresses or sockets cannot be set up
    /// or the spec is out of range.
    pub async fn start(
        spec: VrrpSpec,
        nl: Netlink,
        faults: watch::Receiver<Vec<String>>,
        silent: watch::Receiver<Vec<IpAddr>>,
    ) -> Result<Self, HaError> {
        let cfg_err = |reason: String| HaError::Config {
            name: spec.name.clone(),
            reason,
        };
        let link = nl.link(&spec.interface).await?;
        let v6 = spec.virtual_addresses.first().is_some_and(IpAddr::is_ipv6);
        let own = own_address(&nl, link.index, &spec, v6).await?;
        for ip in &spec.virtual_addresses {
            nl.del_vip(link.index, *ip).await?;
        }
        let sock = VrrpSocket::open(
            &spec.interface,
            link.index,
            own,
            spec.unicast_peers.is_empty(),
        )?;
        let announcer = Announcer::open(&spec.interface)?;
        let machine = Vrrp::new(Config {
            priority: spec.priority,
            advert_interval: spec.advert_interval,
            preempt: spec.preempt,
            preempt_delay: spec.preempt_delay,
            own_address: own,
        })
        .map_err(|e| cfg_err(e.to_string()))?;
        let status = Arc::new(Mutex::new(InstanceStatus {
            spec: spec.clone(),
            own_address: Some(own),
            state: State::Initialize,
            since: SystemTime::now(),
            transitions: 0,
            master: None,
            adverts_sent: 0,
            adverts_received: 0,
            invalid: [0; Invalid::ALL.len()],
            io_errors: 0,
            silent_takeovers: 0,
            faults: Vec::new(),
        }));
        let (state_tx, state) = watch::channel(State::Initialize);
        let (stop, stop_rx) = watch::channel(false);
        let run = Runner {
            spec,
            ifindex: link.index,
            own,
            nl,
            sock,
            announcer: Arc::new(announcer),
            machine,
            status: status.clone(),
            state_tx,
            epoch: Instant::now(),
            tx_buf: vec![0; MAX_PACKET],
        };
        let task = tokio::spawn(run.run(faults, silent, stop_rx));
        Ok(Self {
            status,
            state,
            stop,
            task: Mutex::new(Some(task)),
        })
    }

    /// A snapshot of the status.
    pub fn status(&self) -> InstanceStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The state, watched.
    pub fn state(&self) -> watch::Receiver<State> {
        self.state.clone()
    }

    /// Stops the instance: a master gives up with priority 0 (its backup
    /// takes over after its skew time) and removes its addresses.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = task {
            let _ = t.await;
        }
    }
}

/// This node's address in the election: IPv4, the interface's first
/// address that is not virtual; IPv6, its link-local address (RFC 5798
/// 5.1.2.2).
async fn own_address(
    nl: &Netlink,
    index: u32,
    spec: &VrrpSpec,
    v6: bool,
) -> Result<IpAddr, HaError> {
    let addrs = nl.addresses(index).await?;
    let pick = addrs.iter().map(|(a, _)| *a).find(|a| match a {
        IpAddr::V4(_) => !v6 && !spec.virtual_addresses.contains(a),
        IpAddr::V6(a6) => v6 && (a6.segments()[0] & 0xffc0) == 0xfe80,
    });
    pick.ok_or_else(|| HaError::Config {
        name: spec.name.clone(),
        reason: format!(
            "interface {:?} has no {} to send advertisements from",
            spec.interface,
            if v6 {
                "IPv6 link-local address"
            } else {
                "IPv4 address besides the virtual ones"
            }
        ),
    })
}

struct Runner {
    spec: VrrpSpec,
    ifindex: u32,
    own: IpAddr,
    nl: Netlink,
    sock: VrrpSocket,
    announcer: Arc<Announcer>,
    machine: Vrrp,
    status: Arc<Mutex<InstanceStatus>>,
    state_tx: watch::Sender<State>,
    epoch: Instant,
    /// Where adverts are built.
    tx_buf: Vec<u8>,
}

impl Runner {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    fn with_status(&self, f: impl FnOnce(&mut InstanceStatus)) {
        f(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }

    async fn run(
        mut self,
        mut faults: watch::Receiver<Vec<String>>,
        mut silent: watch::Receiver<Vec<IpAddr>>,
        mut stop: watch::Receiver<bool>,
    ) {
        let initial = faults.borrow_and_update().clone();
        let mut actions = self.machine.start(self.now());
        if !initial.is_empty() {
            actions.extend(self.machine.set_fault(self.now(), true));
            self.with_status(|s| s.faults = initial);
        }
        self.perform(actions).await;
        let mut buf = vec![0u8; MAX_PACKET];
        let mut watching = true;
        let mut listening = true;
        loop {
            let wake = self
                .machine
                .next_deadline()
                .map_or(Instant::now() + IDLE_WAKE, |d| self.epoch + d);
            let actions = tokio::select! {
                biased;
                _ = stop.changed() => {
                    let a = self.machine.shutdown();
                    self.perform(a).await;
                    return;
                }
                changed = faults.changed(), if watching => {
                    if changed.is_err() {
                        // The watchdog is gone (shutting down): keep the
                        // last verdict.
                        watching = false;
                        continue;
                    }
                    let f = faults.borrow_and_update().clone();
                    let faulty = !f.is_empty();
                    if faulty {
                        tracing::warn!(instance = %self.spec.name, reasons = ?f, "vrrp: fault");
                    }
                    self.with_status(|s| s.faults = f);
                    self.machine.set_fault(self.now(), faulty)
                }
                changed = silent.changed(), if listening => {
                    if changed.is_err() {
                        listening = false;
                        continue;
                    }
                    let quiet = silent.borrow_and_update().clone();
                    self.master_silent(&quiet)
                }
                r = self.sock.recv(&mut buf) => self.received(r, &buf),
                () = tokio::time::sleep_until(wake.into()) => self.machine.on_timer(self.now()),
            };
            self.perform(actions).await;
        }
    }

    /// The sync peers in `quiet` fell silent: if the master this backup
    /// follows is one of them, it is taken for a master that gave up
    /// (priority 0): the backup takes over after its skew time instead of
    /// three advertisement intervals.
    fn master_silent(&mut self, quiet: &[IpAddr]) -> Vec<Action> {
        let master = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .master;
        let Some(m) = master.filter(|m| quiet.contains(m)) else {
            return Vec::new();
        };
        if self.machine.state() != State::Backup {
            return Vec::new();
        }
        tracing::warn!(instance = %self.spec.name, master = %m, "vrrp: the master is silent on the sync channel");
        eprintln!(
            "sluice: vrrp {}: master {m} silent on the sync channel, taking over after the skew",
            self.spec.name
        );
        self.with_status(|s| s.silent_takeovers += 1);
        self.machine.on_advert(
            self.now(),
            Advert {
                priority: sluice_core::vrrp::RELEASE_PRIORITY,
                interval: self.spec.advert_interval,
                sender: m,
            },
        )
    }

    /// A packet from the socket: checked, counted, given to the machine.
    fn received(
        &mut self,
        r: std::io::Result<Option<crate::socket::Received>>,
        buf: &[u8],
    ) -> Vec<Action> {
        let r = match r {
            Ok(Some(r)) => r,
            Ok(None) => {
                self.with_status(|s| s.invalid[Invalid::Truncated.index()] += 1);
                return Vec::new();
            }
            Err(e) => {
                tracing::warn!(instance = %self.spec.name, "vrrp: receive failed: {e}");
                self.with_status(|s| s.io_errors += 1);
                return Vec::new();
            }
        };
        if r.src == self.own
            || (!self.spec.unicast_peers.is_empty() && !self.spec.unicast_peers.contains(&r.src))
        {
            return Vec::new();
        }
        let Some(pkt) = buf.get(r.offset..r.end) else {
            return Vec::new();
        };
        let h = match sluice_wire::vrrp::parse(pkt, &ip_bytes(&r.src), &ip_bytes(&r.dst), r.ttl) {
            Ok(h) => h,
            Err(why) => {
                self.with_status(|s| s.invalid[why.index()] += 1);
                return Vec::new();
            }
        };
        if h.vrid != self.spec.vrid {
            // Another virtual router on the same segment.
            return Vec::new();
        }
        self.with_status(|s| {
            s.adverts_received += 1;
            if h.priority != 0 {
                s.master = Some(r.src);
            }
        });
        let adv = Advert {
            priority: h.priority,
            interval: CENTISECOND * u32::from(h.max_adver_int_cs),
            sender: r.src,
        };
        self.machine.on_advert(self.now(), adv)
    }

    async fn perform(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::SendAdvert { priority } => self.send_advert(priority).await,
                Action::AddAddresses => {
                    for ip in self.spec.virtual_addresses.clone() {
                        if let Err(e) = self.nl.add_vip(self.ifindex, ip).await {
                            tracing::error!(instance = %self.spec.name, "vrrp: {e}");
                            self.with_status(|s| s.io_errors += 1);
                        }
                    }
                }
                Action::RemoveAddresses => {
                    for ip in self.spec.virtual_addresses.clone() {
                        if let Err(e) = self.nl.del_vip(self.ifindex, ip).await {
                            tracing::error!(instance = %self.spec.name, "vrrp: {e}");
                            self.with_status(|s| s.io_errors += 1);
                        }
                    }
                }
                Action::AnnounceAddresses => self.announce(),
                Action::Transition { from, to } => {
                    tracing::info!(
                        instance = %self.spec.name,
                        "vrrp: {} -> {}",
                        from.as_str(),
                        to.as_str()
                    );
                    eprintln!(
                        "sluice: vrrp {}: {} -> {}",
                        self.spec.name,
                        from.as_str(),
                        to.as_str()
                    );
                    let own = self.own;
                    self.with_status(|s| {
                        s.state = to;
                        s.since = SystemTime::now();
                        s.transitions += 1;
                        if to == State::Master {
                            s.master = Some(own);
                        } else if s.master == Some(own) {
                            s.master = None;
                        }
                    });
                    self.state_tx.send_replace(to);
                }
            }
        }
    }

    async fn send_advert(&mut self, priority: u8) {
        let dsts: Vec<IpAddr> = if self.spec.unicast_peers.is_empty() {
            vec![match self.own {
                IpAddr::V4(_) => IpAddr::from(MULTICAST_V4),
                IpAddr::V6(_) => IpAddr::from(MULTICAST_V6),
            }]
        } else {
            self.spec.unicast_peers.clone()
        };
        let addrs: Vec<Vec<u8>> = self.spec.virtual_addresses.iter().map(ip_bytes).collect();
        let refs: Vec<&[u8]> = addrs.iter().map(Vec::as_slice).collect();
        let h = Header {
            vrid: self.spec.vrid,
            priority,
            // The configuration allows at most 255 addresses (the count is
            // a byte); more would make `build` refuse, counted below.
            count: u8::try_from(refs.len()).unwrap_or(0),
            max_adver_int_cs: u16::try_from(
                self.spec.advert_interval.as_millis() / CENTISECOND.as_millis(),
            )
            .unwrap_or(u16::MAX),
        };
        for dst in dsts {
            let n = sluice_wire::vrrp::build(
                &mut self.tx_buf,
                &h,
                &refs,
                &ip_bytes(&self.own),
                &ip_bytes(&dst),
            );
            let sent = match n {
                Some(n) => self.sock.send(&self.tx_buf[..n], dst, self.ifindex).await,
                None => Err(std::io::Error::other("advertisement does not fit")),
            };
            match sent {
                Ok(()) => self.with_status(|s| s.adverts_sent += 1),
                Err(e) => {
                    tracing::warn!(instance = %self.spec.name, "vrrp: sending to {dst}: {e}");
                    self.with_status(|s| s.io_errors += 1);
                }
            }
        }
    }

    /// Announces the addresses `garp_repeat` times, `garp_interval`
    /// apart, for as long as this node stays master.
    fn announce(&self) {
        let announcer = self.announcer.clone();
        let addrs = self.spec.virtual_addresses.clone();
        let (repeat, gap) = (self.spec.garp_repeat, self.spec.garp_interval);
        let state = self.state_tx.subscribe();
        let status = self.status.clone();
        tokio::spawn(async move {
            for i in 0..repeat {
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                // The transition to master follows this action in the
                // same batch, so the first round goes before it is seen.
                if i > 0 && *state.borrow() != State::Master {
                    return;
                }
                for ip in &addrs {
                    if announcer.announce(*ip).is_err() {
                        status
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .io_errors += 1;
                    }
                }
            }
        });
    }
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}
