//! Maps the configuration's `[[l4_service]]` onto sluice-l4's specs, and
//! plans the one data plane a daemon loads (one interface, one attach
//! mode, one session table). Each keyword is converted once, by name, into
//! the lower crates' types (`Method` from sluice-wire, the scheduler and
//! `on_real_down` from sluice-core); every rule that refuses a
//! configuration reports the key at fault, so `sluice check` shows it with
//! a position and `sluice run` refuses the same file the same way.

use sluice_config::{self as model, Config, Keyword};
use sluice_core::sched::L4Scheduler;
use sluice_core::service::OnRealDown;
use sluice_l4::{AttachMode, DataplaneParams, RealSpec, ServiceSpec, validate_spec};

use super::plan::Problem;

/// What `sluice run` loads for the L4 services.
#[derive(Debug, Clone)]
pub(crate) struct L4Plan {
    /// The interface the XDP program attaches to.
    pub(crate) iface: String,
    /// Two-arm `nat`: the interface toward the reals (the program attaches
    /// there too, and `nat` packets are redirected between the two).
    pub(crate) real_iface: Option<String>,
    pub(crate) mode: AttachMode,
    /// Ring and session-table sizes of the loaded program.
    pub(crate) params: DataplaneParams,
    pub(crate) specs: Vec<ServiceSpec>,
}

/// The plan for `cfg`'s L4 services (`None` without any), or every rule
/// they break.
pub(crate) fn plan(cfg: &Config) -> Result<Option<L4Plan>, Vec<Problem>> {
    let Some(first) = cfg.l4_services.first() else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    for (i, s) in cfg.l4_services.iter().enumerate().skip(1) {
        let at = |key: &str| format!("l4_service[{i}].{key}");
        if s.interface != first.interface {
            problems.push(Problem::new(
                at("interface"),
                format!(
                    "{:?} differs from l4_service[0]'s {:?}: one daemon attaches to one interface, expected {:?}",
                    s.interface, first.interface, first.interface
                ),
            ));
        }
        if s.xdp_mode != first.xdp_mode {
            problems.push(Problem::new(
                at("xdp_mode"),
                format!(
                    "{:?} differs from l4_service[0]'s {:?}: one program is attached once, expected {:?}",
                    s.xdp_mode.as_str(),
                    first.xdp_mode.as_str(),
                    first.xdp_mode.as_str()
                ),
            ));
        }
        if s.session_capacity != first.session_capacity {
            problems.push(Problem::new(
                at("session_capacity"),
                format!(
                    "{} differs from l4_service[0]'s {}: every service shares one session table, expected {}",
                    s.session_capacity, first.session_capacity, first.session_capacity
                ),
            ));
        }
    }
    // One real side per daemon, as one interface: the services that name
    // one must name the same.
    let mut real_iface: Option<(usize, &String)> = None;
    for (i, s) in cfg.l4_services.iter().enumerate() {
        let Some(r) = &s.real_interface else { continue };
        match real_iface {
            None => real_iface = Some((i, r)),
            Some((first, f)) if f != r => problems.push(Problem::new(
                format!("l4_service[{i}].real_interface"),
                format!(
                    "{r:?} differs from l4_service[{first}]'s {f:?}: one daemon has one interface toward the reals, expected {f:?}"
                ),
            )),
            Some(_) => {}
        }
    }
    // A local address is one pool of ports: services that share it
    // share its range.
    let mut ranges: std::collections::BTreeMap<std::net::IpAddr, (usize, (u16, u16))> =
        std::collections::BTreeMap::new();
    for (i, s) in cfg.l4_services.iter().enumerate() {
        if s.method != model::ForwardingMethod::FullNat {
            continue;
        }
        for a in &s.local_addresses {
            match ranges.get(a) {
                None => {
                    ranges.insert(*a, (i, s.local_port_range));
                }
                Some((first, r)) if *r != s.local_port_range => problems.push(Problem::new(
                    format!("l4_service[{i}].local_port_range"),
                    format!(
                        "{:?} differs from l4_service[{first}]'s {:?} for the shared local address {a}: one address has one pool of ports, expected {:?}",
                        s.local_port_range, r, r
                    ),
                )),
                Some(_) => {}
            }
        }
    }
    let params = DataplaneParams {
        ring_size: cfg
            .l4_services
            .iter()
            .map(|s| s.maglev_table_size)
            .max()
            .unwrap_or(sluice_l4::wire_maps::MAX_RING_SIZE),
        session_capacity: first.session_capacity,
        ..Default::default()
    };
    let mut specs = Vec::new();
    for (i, s) in cfg.l4_services.iter().enumerate() {
        match spec(cfg, s) {
            Ok(spec) => {
                if let Err(p) = validate_spec(&spec, params.ring_size) {
                    problems.push(Problem::new(
                        format!("l4_service[{i}].{}", p.field),
                        p.message,
                    ));
                }
                specs.push(spec);
            }
            Err(p) => problems.push(Problem::new(format!("l4_service[{i}]"), p)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(L4Plan {
        iface: first.interface.clone(),
        real_iface: real_iface.map(|(_, r)| r.clone()),
        mode: match first.xdp_mode {
            model::XdpMode::Native => AttachMode::Native,
            model::XdpMode::Generic => AttachMode::Generic,
        },
        params,
        specs,
    }))
}

/// One service's spec; keywords converted by name.
fn spec(cfg: &Config, s: &model::L4Service) -> Result<ServiceSpec, String> {
    Ok(ServiceSpec {
        name: s.name.clone(),
        vip: s.vip,
        port: s.port,
        proto: match s.protocol {
            model::Protocol::Tcp => 6,
            model::Protocol::Udp => 17,
        },
        method: by_name(s.method)?,
        scheduler: by_name::<L4Scheduler, _>(s.scheduler)?,
        persistence: s.persistence,
        table_size: s.maglev_table_size,
        tun_source: s.tun_source,
        tun_vary_source: s.tun_vary_source,
        local_addresses: s.local_addresses.clone(),
        local_ports: s.local_port_range,
        toa: s.toa,
        on_real_down: by_name::<OnRealDown, _>(s.on_real_down)?,
        fail_open: s.fail_open,
        initially_up: s
            .health_check
            .as_deref()
            .and_then(|n| cfg.health_check(n))
            .is_none_or(|c| c.initial_state == model::InitialState::Up),
        reals: s
            .reals
            .iter()
            .map(|r| RealSpec {
                addr: r.address,
                weight: u32::from(r.weight),
                // No port: the packet's own (only `nat` may set one;
                // the config crate and `validate_spec` hold that).
                port: r.port.unwrap_or(0),
            })
            .collect(),
    })
}

/// A configuration keyword as the lower crate's type of the same name.
/// Failing means the keyword list and the type drifted apart (a test
/// below holds them together).
pub(crate) fn by_name<T: std::str::FromStr, K: Keyword>(k: K) -> Result<T, String> {
    k.as_str().parse().map_err(|_| {
        format!(
            "{:?} has no {} (internal)",
            k.as_str(),
            std::any::type_name::<T>()
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_keyword_names_a_type_value() {
        for (kw, k) in model::ForwardingMethod::ALL {
            let m: sluice_wire::maps::Method = by_name(*k).unwrap();
            assert_eq!(m.as_str(), *kw);
        }
        for (kw, k) in model::Scheduler::ALL {
            let s: L4Scheduler = by_name(*k).unwrap();
            assert_eq!(s.name(), *kw);
        }
        for (kw, k) in model::OnRealDown::ALL {
            let o: OnRealDown = by_name(*k).unwrap();
            assert_eq!(o.as_str(), *kw);
        }
    }
}
