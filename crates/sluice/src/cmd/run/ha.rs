//! `sluice run`'s HA wiring: one VRRP instance per `[[vrrp_instance]]`,
//! each with its watchdog (its tracked interfaces and script, and, with
//! `track_data_plane`, this node's XDP attachment and proxy frontends).

use std::net::SocketAddr;

use anyhow::Context as _;
use sluice_config::{Config, VrrpInstance};
use sluice_core::vrrp::State;
use sluice_ha::link::Netlink;
use sluice_ha::track::Tracker;
use sluice_ha::{Instance, InstanceStatus, TrackSpec, VrrpSpec};
use tokio::sync::watch;

use crate::cmd::l4_map::L4Plan;

/// The running instances.
pub(crate) struct Ha {
    instances: Vec<Instance>,
    /// Kept alive for the instances' fault inputs.
    _trackers: Vec<Tracker>,
    active: watch::Receiver<bool>,
}

/// The plane's spec of one instance.
fn spec(v: &VrrpInstance) -> VrrpSpec {
    VrrpSpec {
        name: v.name.clone(),
        interface: v.interface.clone(),
        vrid: v.virtual_router_id,
        priority: v.priority,
        advert_interval: v.advert_interval,
        preempt: v.preempt,
        preempt_delay: v.preempt_delay,
        virtual_addresses: v.virtual_addresses.clone(),
        unicast_peers: v.unicast_peers.clone(),
        garp_repeat: v.garp_repeat,
        garp_interval: v.garp_interval,
    }
}

impl Ha {
    /// Starts every instance of `cfg` (`None` without any). `l4` and
    /// `frontends` are what this node serves, watched when an instance
    /// has `track_data_plane`.
    pub(crate) async fn start(
        cfg: &Config,
        l4: Option<&L4Plan>,
        frontends: &[SocketAddr],
        silent: &watch::Receiver<Vec<std::net::IpAddr>>,
    ) -> anyhow::Result<Option<Self>> {
        if cfg.vrrp_instances.is_empty() {
            return Ok(None);
        }
        let nl = Netlink::connect().context("starting VRRP")?;
        let (mut instances, mut trackers) = (Vec::new(), Vec::new());
        for v in &cfg.vrrp_instances {
            let mut track = TrackSpec {
                interfaces: v.track_interfaces.clone(),
                script: v.track_script.clone(),
                script_interval: v.track_script_interval,
                ..TrackSpec::default()
            };
            if v.track_data_plane {
                if let Some(l4) = l4 {
                    track.xdp.push(l4.iface.clone());
                    track.xdp.extend(l4.real_iface.clone());
                }
                track.frontends = frontends.to_vec();
            }
            let tracker = Tracker::start(track, nl.clone()).await;
            let inst = Instance::start(spec(v), nl.clone(), tracker.verdict(), silent.clone())
                .await
                .with_context(|| format!("starting vrrp_instance {:?}", v.name))?;
            eprintln!(
                "sluice: vrrp {}: virtual router {} on {}, priority {}",
                v.name, v.virtual_router_id, v.interface, v.priority
            );
            instances.push(inst);
            trackers.push(tracker);
        }
        let active = any_master(instances.iter().map(Instance::state).collect());
        Ok(Some(Self {
            instances,
            _trackers: trackers,
            active,
        }))
    }

    /// Every instance's status, in file order.
    pub(crate) fn statuses(&self) -> Vec<InstanceStatus> {
        self.instances.iter().map(Instance::status).collect()
    }

    /// Whether this node is master of at least one instance, watched: the
    /// node that serves the VIPs is the one whose sessions are synced.
    pub(crate) fn active(&self) -> watch::Receiver<bool> {
        self.active.clone()
    }

    /// Gives every mastership up (priority 0: the backups take over after
    /// their skew time) and removes the virtual addresses.
    pub(crate) async fn stop(&self) {
        for i in &self.instances {
            i.stop().await;
        }
    }
}

/// A watch that is true while any of `states` is master.
fn any_master(mut states: Vec<watch::Receiver<State>>) -> watch::Receiver<bool> {
    let now = |s: &[watch::Receiver<State>]| s.iter().any(|s| *s.borrow() == State::Master);
    let (tx, rx) = watch::channel(now(&states));
    tokio::spawn(async move {
        loop {
            let changes = states.iter_mut().map(|s| Box::pin(s.changed()));
            let (r, _, _) = futures_util::future::select_all(changes).await;
            if r.is_err() {
                return;
            }
            tx.send_replace(now(&states));
        }
    });
    rx
}
