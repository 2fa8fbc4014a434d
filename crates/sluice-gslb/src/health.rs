//! The sites' health: one flag per (site, address), written by the
//! binary's health wiring and read by every query. A site with no health
//! source stays up.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::policy::HealthView;
use crate::spec::ZoneSpec;

/// Health flags of every site's addresses, all up at start.
#[derive(Debug)]
pub struct SiteHealth {
    flags: Vec<Vec<AtomicBool>>,
}

impl SiteHealth {
    /// All addresses of all sites of `zone`, up.
    pub fn new(zone: &ZoneSpec) -> Self {
        Self {
            flags: zone
                .sites
                .iter()
                .map(|s| s.addresses.iter().map(|_| AtomicBool::new(true)).collect())
                .collect(),
        }
    }

    /// Marks one address of a site up or down; out-of-range indices are ignored.
    pub fn set(&self, site: usize, addr: usize, up: bool) {
        if let Some(f) = self.flags.get(site).and_then(|s| s.get(addr)) {
            f.store(up, Ordering::Relaxed);
        }
    }

    /// Marks every address of a site up or down (a site whose health is a
    /// local service's).
    pub fn set_site(&self, site: usize, up: bool) {
        if let Some(s) = self.flags.get(site) {
            for f in s {
                f.store(up, Ordering::Relaxed);
            }
        }
    }
}

impl HealthView for SiteHealth {
    fn is_up(&self, site: usize, addr: usize) -> bool {
        self.flags
            .get(site)
            .and_then(|s| s.get(addr))
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}
