//! Reloading the configuration in place (`sluice reload`, `POST
//! /v1/reload`, SIGHUP): the file is read and checked as by `sluice
//! check`; if it is invalid, nothing changes and the diagnostics go back
//! to the caller and the log. If it is valid and differs only in what
//! reload can apply, the difference is applied: today the L4 services,
//! their reals and weights (the XDP program stays attached, and services
//! and reals that survive keep their slots and so their sessions). Any
//! other difference is refused whole, naming what would need a restart:
//! nothing is ever half-applied (issue 19 tracks the rest: the proxy's
//! frontends and backends, health checks, VRRP).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use sluice_config::Config;

use super::Plane;
use crate::cmd::l4_map::L4Plan;

/// Why a reload was refused; nothing was applied.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The file does not parse or check (`FILE:LINE:COL` diagnostics).
    Invalid(String),
    /// It is valid, but these differences need a restart.
    NeedsRestart(Vec<String>),
    /// Reading the file or applying failed (nothing was applied before
    /// the failure: the plane applies a whole service set or nothing).
    Failed(String),
}

/// The loaded configuration and its generation.
#[derive(Debug)]
struct Loaded {
    cfg: Config,
    l4: Option<L4Plan>,
    generation: u64,
    at: SystemTime,
}

/// What the daemon needs to reload.
#[derive(Debug)]
pub(crate) struct Reloader {
    path: PathBuf,
    plane: Option<Plane>,
    loaded: Mutex<Loaded>,
}

/// Generation, load time and file, as `GET /v1/config` shows them.
#[derive(Debug, Clone)]
pub(crate) struct Generation {
    pub(crate) generation: u64,
    pub(crate) at: SystemTime,
    pub(crate) path: PathBuf,
}

/// What `new` changes against `old` that reload cannot apply (empty:
/// reload can). Everything but the L4 services must be equal; of the L4
/// services, what the loaded XDP program was sized and attached for, and
/// the targets of their health checks (checks are not reloaded yet).
pub(crate) fn needs_restart(
    old: &Config,
    new: &Config,
    old_l4: Option<&L4Plan>,
    new_l4: Option<&L4Plan>,
) -> Vec<String> {
    let mut out = Vec::new();
    let differs = |name: &str, same: bool, out: &mut Vec<String>| {
        if !same {
            out.push(name.to_owned());
        }
    };
    differs("[global]", old.global == new.global, &mut out);
    differs("[defaults]", old.defaults == new.defaults, &mut out);
    differs("[[frontend]]", old.frontends == new.frontends, &mut out);
    differs("[[backend]]", old.backends == new.backends, &mut out);
    differs(
        "[health_check]",
        old.health_checks == new.health_checks,
        &mut out,
    );
    differs(
        "[[vrrp_instance]]",
        old.vrrp_instances == new.vrrp_instances,
        &mut out,
    );
    differs("[sync]", old.sync == new.sync, &mut out);
    differs("[gslb]", old.gslb == new.gslb, &mut out);
    match (old_l4, new_l4) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            if (&a.iface, &a.real_iface, a.mode) != (&b.iface, &b.real_iface, b.mode) {
                out.push("the L4 interfaces or XDP mode".to_owned());
            }
            if a.params != b.params {
                out.push("the L4 table sizes (rings, sessions)".to_owned());
            }
        }
        _ => out
            .push("L4 services added to or removed from a daemon without (all of) them".to_owned()),
    }
    if checked_targets(old) != checked_targets(new) {
        out.push("the reals or checks of health-checked L4 services".to_owned());
    }
    out
}

/// (service, check, VIP, port, interface, reals) of every L4 service with
/// a health check: what the running checks were started for.
fn checked_targets(c: &Config) -> Vec<String> {
    c.l4_services
        .iter()
        .filter_map(|s| {
            let check = s.health_check.as_deref()?;
            let reals: Vec<String> = s
                .reals
                .iter()
                .map(|r| format!("{}:{:?}", r.address, r.port))
                .collect();
            Some(format!(
                "{} {check} {}:{} {} {reals:?}",
                s.name, s.vip, s.port, s.interface
            ))
        })
        .collect()
}

impl Reloader {
    pub(crate) fn new(
        path: PathBuf,
        cfg: Config,
        l4: Option<L4Plan>,
        plane: Option<Plane>,
    ) -> Self {
        Self {
            path,
            plane,
            loaded: Mutex::new(Loaded {
                cfg,
                l4,
                generation: 1,
                at: SystemTime::now(),
            }),
        }
    }

    /// The current generation.
    pub(crate) fn generation(&self) -> Generation {
        let g = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        Generation {
            generation: g.generation,
            at: g.at,
            path: self.path.clone(),
        }
    }

    /// Reloads (blocking: map writes are system calls). Returns the new
    /// generation.
    pub(crate) fn reload(&self) -> Result<u64, Refused> {
        let (cfg, plan) = match crate::cmd::check::load(&self.path) {
            Ok(Ok(x)) => x,
            Ok(Err(d)) => return Err(Refused::Invalid(d.to_string())),
            Err(e) => return Err(Refused::Failed(format!("{e:#}"))),
        };
        let mut g = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        let restart = needs_restart(&g.cfg, &cfg, g.l4.as_ref(), plan.l4.as_ref());
        if !restart.is_empty() {
            return Err(Refused::NeedsRestart(restart));
        }
        if let (Some(plane), Some(l4)) = (&self.plane, &plan.l4) {
            super::l4::check_reloadable(l4, &cfg).map_err(|e| Refused::Failed(format!("{e:#}")))?;
            let mut p = plane
                .lock()
                .map_err(|_| Refused::Failed("control plane lock poisoned".into()))?;
            p.apply(l4.specs.clone())
                .map_err(|e| Refused::Failed(e.to_string()))?;
        }
        g.cfg = cfg;
        g.l4 = plan.l4;
        g.generation += 1;
        g.at = SystemTime::now();
        Ok(g.generation)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> (Config, Option<L4Plan>) {
        let c = sluice_config::parse("t.toml", text).unwrap();
        let p = crate::cmd::plan::plan(&c).unwrap();
        (c, p.l4)
    }

    const BASE: &str = "[global]\nadmin = \"127.0.0.1:9900\"\n\n[[l4_service]]\nname = \"web\"\n\
        vip = \"10.99.255.1\"\nport = 80\nmethod = \"dr\"\ninterface = \"lb0\"\n\n\
        [[l4_service.real]]\naddress = \"10.99.0.11\"\n";

    #[test]
    fn reals_weights_and_services_reload_and_everything_else_needs_a_restart() {
        let (a, la) = cfg(BASE);
        let more = format!(
            "{BASE}[[l4_service.real]]\naddress = \"10.99.0.12\"\nweight = 3\n\n\
             [[l4_service]]\nname = \"dns\"\nvip = \"10.99.255.2\"\nport = 53\nprotocol = \"udp\"\n\
             method = \"dr\"\ninterface = \"lb0\"\n[[l4_service.real]]\naddress = \"10.99.0.13\"\n"
        );
        let (b, lb) = cfg(&more);
        assert!(needs_restart(&a, &b, la.as_ref(), lb.as_ref()).is_empty());

        let admin = BASE.replace("127.0.0.1:9900", "127.0.0.1:9901");
        let (c, lc) = cfg(&admin);
        assert_eq!(
            needs_restart(&a, &c, la.as_ref(), lc.as_ref()),
            ["[global]"]
        );
        let iface = BASE.replace("interface = \"lb0\"", "interface = \"lb1\"");
        let (d, ld) = cfg(&iface);
        assert_eq!(
            needs_restart(&a, &d, la.as_ref(), ld.as_ref()),
            ["the L4 interfaces or XDP mode"]
        );
        let with_check = BASE.replace(
            "interface = \"lb0\"\n",
            "interface = \"lb0\"\nhealth_check = \"t\"\n",
        ) + "\n[health_check.t]\ntype = \"tcp\"\n";
        let (e, le) = cfg(&with_check);
        let grown = with_check.replace(
            "[[l4_service.real]]\naddress = \"10.99.0.11\"\n",
            "[[l4_service.real]]\naddress = \"10.99.0.11\"\n[[l4_service.real]]\naddress = \"10.99.0.12\"\n",
        );
        let (f, lf) = cfg(&grown);
        assert_eq!(
            needs_restart(&e, &f, le.as_ref(), lf.as_ref()),
            ["the reals or checks of health-checked L4 services"]
        );
        // A weight of a checked service reloads.
        let weighted = with_check.replace(
            "address = \"10.99.0.11\"\n",
            "address = \"10.99.0.11\"\nweight = 5\n",
        );
        let (g, lg) = cfg(&weighted);
        assert!(needs_restart(&e, &g, le.as_ref(), lg.as_ref()).is_empty());
    }
}
