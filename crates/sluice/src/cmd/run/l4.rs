//! `sluice run`'s L4 wiring: load and attach the XDP data plane, the
//! control thread (connection counts, neighbours), and the health checks
//! of the reals driving it.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use sluice_config::Config;
use sluice_core::service::OnRealDown;
use sluice_l4::wire_maps::Method;
use sluice_l4::{Dataplane, L4Plane, ServiceSpec, neigh::KernelNeighbours};
use sluice_wire::encap::MIN_TUN_EGRESS_MTU;

use crate::cmd::l4_map::L4Plan;

/// Period of the control loop: connection-count reconciliation and
/// neighbour refresh.
const CONTROL_PERIOD: Duration = Duration::from_secs(1);
/// Every this many control rounds, every real's MAC is re-resolved (not
/// only the unknown ones).
const NEIGH_FULL_REFRESH_ROUNDS: u64 = 10;

/// Every this many control rounds, the reverse entries of dead `fullnat`
/// sessions are removed (their ports are reusable before that anyway).
const FULLNAT_SWEEP_ROUNDS: u64 = 10;

/// The control plane, shared by the control thread, the health events and
/// the admin endpoint.
pub(crate) type Plane = Arc<Mutex<L4Plane<KernelNeighbours>>>;

/// Loads the XDP program, attaches it and applies the planned services.
pub(super) fn start(plan: &L4Plan, cfg: &Config) -> anyhow::Result<L4Plane<KernelNeighbours>> {
    let iface = &plan.iface;
    check_tun_mtu(plan)?;
    check_fullnat_locals(plan, cfg)?;
    remove_stale_program(iface)?;
    let mac = sluice_l4::neigh::iface_mac(iface)
        .with_context(|| format!("reading the MAC of interface {iface:?}"))?;
    let mut dp = Dataplane::load(plan.params.clone(), mac)
        .context("loading the XDP program (needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)")?;
    dp.attach(iface, plan.mode)?;
    if let Some(real_iface) = &plan.real_iface {
        two_arm(&mut dp, iface, real_iface, plan.mode)?;
    }
    let mut plane = L4Plane::new(dp, KernelNeighbours { wait: true });
    // `tun` without `tun_source` sends from the interface's own address.
    let (v4, v6) = sluice_l4::neigh::iface_addrs(iface);
    plane.set_outer_sources(v4, v6);
    plane.apply(plan.specs.clone())?;
    eprintln!(
        "sluice: XDP data plane attached to {iface} ({:?}), {} L4 service(s)",
        plan.mode,
        plan.specs.len()
    );
    Ok(plane)
}

/// The checks `start` makes of a plan's services against this host,
/// for a reload's new services.
pub(super) fn check_reloadable(plan: &L4Plan, cfg: &Config) -> anyhow::Result<()> {
    check_tun_mtu(plan)?;
    check_fullnat_locals(plan, cfg)
}

/// `tun` asks the kernel for the egress MTU only for packets that could
/// exceed [`MIN_TUN_EGRESS_MTU`] once encapsulated, so an interface with
/// a smaller MTU is refused when a `tun` service exists (IPv6 forbids
/// such links anyway).
fn check_tun_mtu(plan: &L4Plan) -> anyhow::Result<()> {
    if !plan.specs.iter().any(|s| s.method == Method::Tun) {
        return Ok(());
    }
    let iface = &plan.iface;
    let mtu = sluice_l4::neigh::iface_mtu(iface)
        .with_context(|| format!("reading the MTU of interface {iface:?}"))?;
    if mtu < MIN_TUN_EGRESS_MTU {
        bail!(
            "interface {iface:?} has an MTU of {mtu} bytes: a `tun` service needs at least \
             {MIN_TUN_EGRESS_MTU} (IPv6's minimum link MTU)"
        );
    }
    Ok(())
}

/// `fullnat`'s local addresses must be the LB's own, on the interface the
/// reals' replies arrive by (the real side, two-arm): the kernel answers
/// the reals' ARP / neighbour solicitations for them, and the XDP program
/// takes the replies before the kernel sees them. One that is not there
/// would leave every connection from it unanswered, so it is refused.
/// A virtual address of a `[[vrrp_instance]]` on that interface counts as
/// there: an HA pair shares its local addresses, and only the master holds
/// them (the backup takes them over with the sessions it was synced).
fn check_fullnat_locals(plan: &L4Plan, cfg: &Config) -> anyhow::Result<()> {
    let iface = plan.real_iface.as_deref().unwrap_or(&plan.iface);
    let mut have = sluice_l4::neigh::iface_all_addrs(iface);
    have.extend(
        cfg.vrrp_instances
            .iter()
            .filter(|v| v.interface == iface)
            .flat_map(|v| v.virtual_addresses.iter().copied()),
    );
    for s in plan.specs.iter().filter(|s| s.method == Method::Fullnat) {
        if let Some(a) = s.local_addresses.iter().find(|a| !have.contains(a)) {
            bail!(
                "service {}: local address {a} is not assigned to interface {iface:?}: the reals \
                 answer it, so it must be the LB's own (e.g. `ip addr add {a}/32 dev {iface}`)",
                s.name
            );
        }
    }
    Ok(())
}

/// Two-arm `nat`: the program on the interface toward the reals too (their
/// replies arrive there), and `nat` packets redirected between the two.
/// The daemon runs in the interfaces' network namespace, so the indexes it
/// resolves and writes are theirs.
fn two_arm(
    dp: &mut Dataplane,
    iface: &str,
    real_iface: &str,
    mode: sluice_l4::AttachMode,
) -> anyhow::Result<()> {
    remove_stale_program(real_iface)?;
    let index = |dev: &str| {
        sluice_l4::neigh::iface_index(dev)
            .with_context(|| format!("interface {dev:?} not found in this network namespace"))
    };
    let (client_side, real_side) = (index(iface)?, index(real_iface)?);
    let real_mac = sluice_l4::neigh::iface_mac(real_iface)
        .with_context(|| format!("reading the MAC of interface {real_iface:?}"))?;
    dp.attach_also(real_iface, mode)?;
    dp.set_two_arm(client_side, real_side, real_mac)?;
    eprintln!("sluice: nat two-arm: clients on {iface}, reals on {real_iface}");
    Ok(())
}

/// Removes an XDP program named `sluice_xdp` left attached through netlink
/// (e.g. by a crashed older daemon); link-based attachments vanish with
/// their process by themselves. Another program is never touched.
fn remove_stale_program(iface: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "interface {iface:?} not found in this network namespace: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains(sluice_l4::PROGRAM_NAME) {
        eprintln!(
            "sluice: removing a stale {} from {iface}",
            sluice_l4::PROGRAM_NAME
        );
        for mode in ["xdp", "xdpgeneric", "xdpdrv"] {
            let _ = std::process::Command::new("ip")
                .args(["link", "set", "dev", iface, mode, "off"])
                .status();
        }
    }
    Ok(())
}

/// Reconciles connection counters and refreshes neighbour MACs, forever.
pub(super) fn control_loop(p: &Plane) {
    for round in 1u64.. {
        std::thread::sleep(CONTROL_PERIOD);
        let Ok(mut g) = p.lock() else { return };
        if let Err(e) = g.reconcile_conns() {
            tracing::warn!(error = %e, "reconciling connection counters");
        }
        if round % FULLNAT_SWEEP_ROUNDS == 0
            && let Err(e) = g.sweep_fullnat()
        {
            tracing::warn!(error = %e, "sweeping fullnat's reverse entries");
        }
        // Unknown MACs every round; every MAC only every few rounds (each
        // lookup runs `ip`, and the answer rarely changes).
        let all = round % NEIGH_FULL_REFRESH_ROUNDS == 0;
        match g.refresh_neighbours(all) {
            Ok(0) => {}
            Ok(n) => eprintln!("sluice: neighbour change rewrote {n} service(s)"),
            Err(e) => tracing::warn!(error = %e, "refreshing neighbours"),
        }
    }
}

/// Starts one check per (L4 service with a health check, real) and applies
/// every transition to the control plane.
pub(super) fn start_health(
    cfg: &Config,
    specs: &[ServiceSpec],
    plane: Plane,
) -> anyhow::Result<Option<(sluice_health::CheckerHandle, ViaVipRoutes)>> {
    let mut targets = Vec::new();
    let mut routes = ViaVipRoutes::default();
    for (si, s) in cfg.l4_services.iter().enumerate() {
        let Some(check) = s.health_check.as_deref().and_then(|n| cfg.health_check(n)) else {
            continue;
        };
        let port = if s.port == 0 { 80 } else { s.port };
        for (ri, r) in s.reals.iter().enumerate() {
            let mut spec = crate::cmd::health_map::check_spec(check);
            let mut addr = r.address;
            if check.via_vip {
                // Through the data path: the probe goes to the VIP, and a
                // policy route for its mark sends it to this real's MAC,
                // so a real that answers on its own address but not on
                // the VIP is caught.
                let mark = VIA_VIP_MARK_BASE + (si as u32) * 64 + ri as u32;
                routes.add(mark, s.vip, r.address, &s.interface)?;
                spec.fwmark = Some(mark);
                addr = s.vip;
            }
            targets.push(sluice_health::Target {
                id: format!("{}/{}", s.name, r.address),
                addr,
                port: r.port.unwrap_or(port),
                spec,
                on_down: specs.get(si).map_or(OnRealDown::Keep, |sp| sp.on_real_down),
            });
        }
    }
    if targets.is_empty() {
        return Ok(None);
    }
    let n = targets.len();
    let (handle, mut events) =
        sluice_health::Checker::start(targets).context("starting health checks")?;
    eprintln!("sluice: {n} L4 health check(s) running");
    tokio::spawn(async move {
        loop {
            let ev = match events.recv().await {
                Ok(ev) => ev,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(lost = n, "health events lagged");
                    continue;
                }
                Err(_) => return,
            };
            let Some((svc, real)) = ev.id.split_once('/') else {
                continue;
            };
            // The id names the real (a via_vip check probes the VIP).
            let Ok(real) = real.parse::<IpAddr>() else {
                continue;
            };
            let up = ev.to == sluice_core::health::Health::Up;
            eprintln!(
                "sluice: health {} {} -> {:?}{}{}",
                ev.id,
                format!("{:?}", ev.from).to_lowercase(),
                ev.to,
                ev.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                ev.latency
                    .map(|l| format!(" latency {l:?}"))
                    .unwrap_or_default(),
            );
            let p = plane.clone();
            let svc = svc.to_owned();
            let addr = real;
            let res = tokio::task::spawn_blocking(move || {
                let mut g = p
                    .lock()
                    .map_err(|_| anyhow::anyhow!("control plane lock poisoned"))?;
                g.set_health(&svc, addr, up).map_err(anyhow::Error::from)
            })
            .await;
            match res {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "applying a health transition"),
                Err(e) => tracing::warn!(error = %e, "health task"),
            }
        }
    });
    Ok(Some((handle, routes)))
}

/// First routing mark (and policy table) used by `via_vip` checks; one per
/// (service, real) above it.
const VIA_VIP_MARK_BASE: u32 = 0x5100_0000;

/// Policy routes of `via_vip` checks: `ip rule fwmark M lookup M` and, in
/// table M, the VIP via the real. Removed again on drop.
#[derive(Debug, Default)]
pub(super) struct ViaVipRoutes {
    marks: Vec<(u32, bool)>,
}

fn ip_cmd(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl ViaVipRoutes {
    fn add(&mut self, mark: u32, vip: IpAddr, real: IpAddr, iface: &str) -> anyhow::Result<()> {
        let fam = if vip.is_ipv4() { "-4" } else { "-6" };
        let m = mark.to_string();
        let dst = match vip {
            IpAddr::V4(a) => format!("{a}/32"),
            IpAddr::V6(a) => format!("{a}/128"),
        };
        // A rule left by a crashed daemon would otherwise be doubled.
        let _ = ip_cmd(&[fam, "rule", "del", "fwmark", &m, "lookup", &m]);
        ip_cmd(&[fam, "rule", "add", "fwmark", &m, "lookup", &m])?;
        self.marks.push((mark, vip.is_ipv4()));
        let real = real.to_string();
        ip_cmd(&[
            fam, "route", "replace", &dst, "via", &real, "dev", iface, "table", &m,
        ])
        .with_context(|| format!("via_vip route for real {real}"))
    }
}

impl Drop for ViaVipRoutes {
    fn drop(&mut self) {
        for (mark, v4) in &self.marks {
            let fam = if *v4 { "-4" } else { "-6" };
            let m = mark.to_string();
            let _ = ip_cmd(&[fam, "rule", "del", "fwmark", &m, "lookup", &m]);
            let _ = ip_cmd(&[fam, "route", "flush", "table", &m]);
        }
    }
}
