//! The VRRPv3 state machine of one virtual router (RFC 5798, section 6.4),
//! sans-IO: time comes in as a [`Duration`] since the caller's epoch,
//! received advertisements come in already validated (checksum, TTL /
//! hop limit 255, version, VRID: the I/O layer's job), and what the node
//! must do comes out as [`Action`]s (send an advertisement, take or give
//! up the virtual addresses, announce them). The caller asks
//! [`Vrrp::next_deadline`] when to call [`Vrrp::on_timer`] next.
//!
//! Besides the RFC: a **preemption delay** (keepalived's `preempt_delay`:
//! a backup that outranks the master waits this long after it starts
//! before it preempts a live master), and a **fault** state (a tracked
//! interface down, the node's own data plane unhealthy): a master in it
//! gives its addresses up at once (advertising priority 0, so a backup
//! takes over after its skew time, not after three intervals), and the
//! node stays out of elections until the fault clears.
//!
//! Not here yet (issue 17): the advertisement's wire format and
//! checksums, the sockets, netlink, gratuitous ARP / unsolicited NA, the
//! daemon's wiring, `sluice ctl` and `/metrics`.

use std::net::IpAddr;
use std::time::Duration;

/// Priority of the router that owns the virtual addresses (RFC 5798 5.2.4).
pub const OWNER_PRIORITY: u8 = 255;
/// Priority that announces a master giving up (RFC 5798 5.2.4).
pub const RELEASE_PRIORITY: u8 = 0;
/// Shortest advertisement interval: one centisecond is the field's unit,
/// 10 ms the shortest sluice accepts (as keepalived).
pub const MIN_ADVERT_INTERVAL: Duration = Duration::from_millis(10);
/// Longest advertisement interval: the field has 12 bits of centiseconds
/// (4095 cs).
pub const MAX_ADVERT_INTERVAL: Duration = Duration::from_millis(40_950);

/// The state of the virtual router.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Not started, or shut down.
    Initialize,
    /// Listening for the master.
    Backup,
    /// Owning the virtual addresses, advertising.
    Master,
    /// Out of the election (tracked interface down, own data plane
    /// unhealthy); owns nothing.
    Fault,
}

impl State {
    /// Lower-case name, as `sluice ctl` and the metrics show it.
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Initialize => "init",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
        }
    }
}

/// What the node must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send an advertisement with this priority (and the current
    /// advertisement interval).
    SendAdvert {
        /// The priority to announce (0: giving up).
        priority: u8,
    },
    /// Add the virtual addresses to the interface.
    AddAddresses,
    /// Announce them: gratuitous ARP (IPv4), unsolicited NA (IPv6).
    AnnounceAddresses,
    /// Remove the virtual addresses from the interface.
    RemoveAddresses,
    /// The state changed (for the log, `sluice ctl` and the metrics).
    Transition {
        /// The previous state.
        from: State,
        /// The new state.
        to: State,
    },
}

/// A received advertisement, validated by the I/O layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Advert {
    /// The sender's priority.
    pub priority: u8,
    /// The sender's advertisement interval.
    pub interval: Duration,
    /// The sender's primary address (the packet's source).
    pub sender: IpAddr,
}

/// One virtual router's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// This node's priority, 1..=255 (255: it owns the addresses).
    pub priority: u8,
    /// Advertisement interval, `MIN_ADVERT_INTERVAL..=MAX_ADVERT_INTERVAL`,
    /// a whole number of centiseconds.
    pub advert_interval: Duration,
    /// Whether a higher-priority backup takes over from a live
    /// lower-priority master.
    pub preempt: bool,
    /// How long after starting a backup waits before it preempts.
    pub preempt_delay: Duration,
    /// This node's primary address on the interface (ties between equal
    /// priorities go to the higher address).
    pub own_address: IpAddr,
}

/// A configuration the state machine refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Priority 0 is reserved for a master giving up.
    #[error("priority 0 is reserved (a master giving up), expected 1..=255")]
    ReservedPriority,
    /// The interval is out of range or not whole centiseconds.
    #[error("advertisement interval {0:?} is not a whole number of centiseconds in 10ms..=40.95s")]
    Interval(Duration),
}

/// The state machine (see the module documentation).
#[derive(Clone, Debug)]
pub struct Vrrp {
    cfg: Config,
    state: State,
    /// The master's advertisement interval, as learnt from its adverts.
    master_adver_interval: Duration,
    /// When the master sends its next advertisement (state Master).
    adver_timer: Option<Duration>,
    /// When a backup decides that the master is down (state Backup).
    master_down_timer: Option<Duration>,
    /// From when a backup may preempt a live lower-priority master.
    preempt_from: Duration,
}

impl Vrrp {
    /// A router in state `Initialize`.
    ///
    /// # Errors
    /// [`ConfigError`] for a reserved priority or an interval out of range.
    pub fn new(cfg: Config) -> Result<Self, ConfigError> {
        if cfg.priority == RELEASE_PRIORITY {
            return Err(ConfigError::ReservedPriority);
        }
        let i = cfg.advert_interval;
        if !(MIN_ADVERT_INTERVAL..=MAX_ADVERT_INTERVAL).contains(&i)
            || !i.as_nanos().is_multiple_of(MIN_ADVERT_INTERVAL.as_nanos())
        {
            return Err(ConfigError::Interval(i));
        }
        Ok(Self {
            cfg,
            state: State::Initialize,
            master_adver_interval: i,
            adver_timer: None,
            master_down_timer: None,
            preempt_from: Duration::ZERO,
        })
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// When [`Vrrp::on_timer`] must be called next, if ever.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.state {
            State::Master => self.adver_timer,
            State::Backup => self.master_down_timer,
            State::Initialize | State::Fault => None,
        }
    }

    /// RFC 5798's Skew_Time: how much sooner a higher-priority backup
    /// declares the master down.
    fn skew_time(&self) -> Duration {
        self.master_adver_interval * (256 - u32::from(self.cfg.priority)) / 256
    }

    /// RFC 5798's Master_Down_Interval.
    fn master_down_interval(&self) -> Duration {
        self.master_adver_interval * 3 + self.skew_time()
    }

    fn transition(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state != to {
            out.push(Action::Transition {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn become_master(&mut self, now: Duration, out: &mut Vec<Action>) {
        out.push(Action::SendAdvert {
            priority: self.cfg.priority,
        });
        out.push(Action::AddAddresses);
        out.push(Action::AnnounceAddresses);
        self.master_down_timer = None;
        self.adver_timer = Some(now + self.cfg.advert_interval);
        self.transition(State::Master, out);
    }

    fn become_backup(&mut self, now: Duration, out: &mut Vec<Action>) {
        self.adver_timer = None;
        self.master_down_timer = Some(now + self.master_down_interval());
        self.transition(State::Backup, out);
    }

    /// Starts the router at `now` (RFC 5798 6.4.1): the address owner
    /// becomes master at once, anyone else a backup waiting for the
    /// master.
    pub fn start(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::Initialize {
            return out;
        }
        self.master_adver_interval = self.cfg.advert_interval;
        self.preempt_from = now + self.cfg.preempt_delay;
        if self.cfg.priority == OWNER_PRIORITY {
            self.become_master(now, &mut out);
        } else {
            self.become_backup(now, &mut out);
        }
        out
    }

    /// Shuts the router down: a master gives up with priority 0 so a
    /// backup takes over after its skew time (RFC 5798 6.4.3).
    pub fn shutdown(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::Master {
            out.push(Action::SendAdvert {
                priority: RELEASE_PRIORITY,
            });
            out.push(Action::RemoveAddresses);
        }
        self.adver_timer = None;
        self.master_down_timer = None;
        self.transition(State::Initialize, &mut out);
        out
    }

    /// Timers that expired by `now`.
    pub fn on_timer(&mut self, now: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Master => {
                if self.adver_timer.is_some_and(|t| now >= t) {
                    out.push(Action::SendAdvert {
                        priority: self.cfg.priority,
                    });
                    self.adver_timer = Some(now + self.cfg.advert_interval);
                }
            }
            State::Backup => {
                if self.master_down_timer.is_some_and(|t| now >= t) {
                    self.become_master(now, &mut out);
                }
            }
            State::Initialize | State::Fault => {}
        }
        out
    }

    /// An advertisement received at `now` (RFC 5798 6.4.2 and 6.4.3).
    pub fn on_advert(&mut self, now: Duration, adv: Advert) -> Vec<Action> {
        let mut out = Vec::new();
        match self.state {
            State::Backup => {
                if adv.priority == RELEASE_PRIORITY {
                    // The master gives up: take over after the skew time.
                    self.master_down_timer = Some(now + self.skew_time());
                } else if !self.cfg.preempt
                    || adv.priority >= self.cfg.priority
                    || now < self.preempt_from
                {
                    self.master_adver_interval = adv.interval;
                    self.master_down_timer = Some(now + self.master_down_interval());
                }
                // Else: a lower-priority master that this node preempts;
                // its advert is ignored and the down timer runs out.
            }
            State::Master => {
                if adv.priority == RELEASE_PRIORITY {
                    // Another master gave up: reassert at once.
                    out.push(Action::SendAdvert {
                        priority: self.cfg.priority,
                    });
                    self.adver_timer = Some(now + self.cfg.advert_interval);
                } else if adv.priority > self.cfg.priority
                    || (adv.priority == self.cfg.priority && adv.sender > self.cfg.own_address)
                {
                    self.master_adver_interval = adv.interval;
                    out.push(Action::RemoveAddresses);
                    self.become_backup(now, &mut out);
                }
            }
            State::Initialize | State::Fault => {}
        }
        out
    }

    /// The node's own health changed at `now` (`faulty`: a tracked
    /// interface down, its data plane unhealthy). A master gives its
    /// addresses up at once; on recovery the router starts over as a
    /// backup.
    pub fn set_fault(&mut self, now: Duration, faulty: bool) -> Vec<Action> {
        let mut out = Vec::new();
        match (faulty, self.state) {
            (true, State::Master) => {
                out.push(Action::SendAdvert {
                    priority: RELEASE_PRIORITY,
                });
                out.push(Action::RemoveAddresses);
                self.adver_timer = None;
                self.transition(State::Fault, &mut out);
            }
            (true, State::Backup) => {
                self.master_down_timer = None;
                self.transition(State::Fault, &mut out);
            }
            (false, State::Fault) => {
                self.master_adver_interval = self.cfg.advert_interval;
                self.become_backup(now, &mut out);
            }
            _ => {}
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    const ADV: Duration = Duration::from_millis(100);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn router(priority: u8, preempt: bool, last: u8) -> Vrrp {
        Vrrp::new(Config {
            priority,
            advert_interval: ADV,
            preempt,
            preempt_delay: Duration::ZERO,
            own_address: IpAddr::V4(Ipv4Addr::new(10, 99, 0, last)),
        })
        .unwrap()
    }

    fn advert(priority: u8, last: u8) -> Advert {
        Advert {
            priority,
            interval: ADV,
            sender: IpAddr::V4(Ipv4Addr::new(10, 99, 0, last)),
        }
    }

    /// Runs `r`'s timers in 1 ms steps from `from` to `to`; the time of the
    /// first transition to Master, if any.
    fn run_until_master(r: &mut Vrrp, from: Duration, to: Duration) -> Option<Duration> {
        let mut t = from;
        while t <= to {
            if r.on_timer(t).contains(&Action::Transition {
                from: State::Backup,
                to: State::Master,
            }) {
                return Some(t);
            }
            t += ms(1);
        }
        None
    }

    #[test]
    fn reserved_priority_and_bad_intervals_are_refused() {
        let mut c = router(100, true, 1).cfg;
        c.priority = 0;
        assert_eq!(Vrrp::new(c).err(), Some(ConfigError::ReservedPriority));
        c.priority = 100;
        for bad in [ms(5), ms(15), ms(41_000)] {
            c.advert_interval = bad;
            assert_eq!(Vrrp::new(c).err(), Some(ConfigError::Interval(bad)));
        }
    }

    #[test]
    fn the_owner_starts_as_master_and_advertises_every_interval() {
        let mut r = router(OWNER_PRIORITY, true, 1);
        let a = r.start(ms(0));
        assert_eq!(
            a,
            [
                Action::SendAdvert { priority: 255 },
                Action::AddAddresses,
                Action::AnnounceAddresses,
                Action::Transition {
                    from: State::Initialize,
                    to: State::Master
                },
            ]
        );
        assert_eq!(r.next_deadline(), Some(ADV));
        assert!(r.on_timer(ms(99)).is_empty());
        assert_eq!(r.on_timer(ADV), [Action::SendAdvert { priority: 255 }]);
        assert_eq!(r.next_deadline(), Some(ADV * 2));
    }

    #[test]
    fn a_backup_takes_over_after_the_master_down_interval() {
        // Priority 100: skew = 100 ms * 156 / 256 = 60.9375 ms; down
        // interval = 300 ms + skew.
        let mut r = router(100, true, 2);
        r.start(ms(0));
        assert_eq!(r.state(), State::Backup);
        let down = ADV * 3 + ADV * 156 / 256;
        assert_eq!(r.next_deadline(), Some(down));
        // Adverts of a higher-priority master keep it a backup.
        for i in 1..10u64 {
            assert!(r.on_advert(ms(100 * i), advert(150, 1)).is_empty());
        }
        assert_eq!(r.state(), State::Backup);
        // The master falls silent after its advert at 900 ms.
        let at = run_until_master(&mut r, ms(900), ms(2000)).unwrap();
        assert_eq!(
            at,
            ms(900) + ms(361),
            "down interval rounded up to the ms step"
        );
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn a_master_giving_up_hands_over_after_the_skew_time_only() {
        let mut r = router(200, false, 2);
        r.start(ms(0));
        r.on_advert(ms(100), advert(250, 1));
        r.on_advert(ms(150), advert(RELEASE_PRIORITY, 1));
        // Skew for priority 200: 100 ms * 56 / 256 = 21.875 ms.
        let at = run_until_master(&mut r, ms(150), ms(1000)).unwrap();
        assert_eq!(at, ms(172));
    }

    #[test]
    fn preemption_follows_the_setting_and_its_delay() {
        // With preempt: a lower-priority master's adverts are ignored, so
        // the higher-priority backup takes over after one down interval.
        let mut r = router(200, true, 2);
        r.start(ms(0));
        let mut t = ms(100);
        let mut took = None;
        while t < ms(2000) && took.is_none() {
            r.on_advert(t, advert(100, 1));
            if run_until_master(&mut r, t, t + ms(99)).is_some() {
                took = Some(t);
            }
            t += ADV;
        }
        assert!(took.is_some(), "preempted");
        // Without preempt it stays a backup as long as the master speaks.
        let mut r = router(200, false, 2);
        r.start(ms(0));
        for i in 1..20u64 {
            r.on_advert(ms(100 * i), advert(100, 1));
            assert!(run_until_master(&mut r, ms(100 * i), ms(100 * i + 99)).is_none());
        }
        // With a delay of 1 s it preempts only after it.
        let mut r = Vrrp::new(Config {
            preempt_delay: ms(1000),
            ..router(200, true, 2).cfg
        })
        .unwrap();
        r.start(ms(0));
        let mut became = None;
        for i in 1..30u64 {
            r.on_advert(ms(100 * i), advert(100, 1));
            if run_until_master(&mut r, ms(100 * i), ms(100 * i + 99)).is_some() {
                became = Some(ms(100 * i));
                break;
            }
        }
        let became = became.unwrap();
        assert!(became >= ms(1000), "not before the delay: {became:?}");
    }

    #[test]
    fn a_master_yields_to_a_higher_priority_or_a_higher_address_at_a_tie() {
        for (adv, yields) in [
            (advert(150, 9), true),
            (advert(100, 9), true),
            (advert(100, 1), false),
            (advert(50, 9), false),
        ] {
            let mut r = router(100, true, 5);
            r.start(ms(0));
            run_until_master(&mut r, ms(0), ms(1000)).unwrap();
            let a = r.on_advert(ms(1100), adv);
            assert_eq!(r.state() == State::Backup, yields, "{adv:?}");
            if yields {
                assert!(a.contains(&Action::RemoveAddresses));
            } else {
                assert!(a.is_empty());
            }
        }
    }

    #[test]
    fn a_fault_gives_the_addresses_up_and_recovery_starts_as_backup() {
        let mut r = router(OWNER_PRIORITY, true, 1);
        r.start(ms(0));
        let a = r.set_fault(ms(50), true);
        assert_eq!(
            a,
            [
                Action::SendAdvert { priority: 0 },
                Action::RemoveAddresses,
                Action::Transition {
                    from: State::Master,
                    to: State::Fault
                },
            ]
        );
        assert_eq!(r.next_deadline(), None);
        assert!(
            r.on_advert(ms(60), advert(100, 2)).is_empty(),
            "out of elections"
        );
        r.set_fault(ms(70), false);
        assert_eq!(r.state(), State::Backup);
        // The owner's down interval: 300 ms + 100 ms * 1 / 256, so master
        // again at 370.39 ms (the first 1 ms step after it: 371).
        assert!(run_until_master(&mut r, ms(70), ms(370)).is_none());
        assert_eq!(run_until_master(&mut r, ms(371), ms(372)), Some(ms(371)));
    }

    #[test]
    fn shutdown_of_a_master_announces_priority_zero() {
        let mut r = router(OWNER_PRIORITY, true, 1);
        r.start(ms(0));
        let a = r.shutdown();
        assert_eq!(a[0], Action::SendAdvert { priority: 0 });
        assert!(a.contains(&Action::RemoveAddresses));
        assert_eq!(r.state(), State::Initialize);
        assert_eq!(State::Master.as_str(), "master");
    }
}
