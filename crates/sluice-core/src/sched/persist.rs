//! Per-service client persistence (IPVS `-p`, HAProxy `stick`-lite): the
//! same client address keeps going to the same real for a while.
//!
//! Sans-IO: time is a [`Duration`] since any fixed epoch the caller chooses
//! (its monotonic clock at start-up, or a virtual clock in tests).
//!
//! Semantics:
//!
//! - An entry lives `timeout` after its last use: [`PersistenceTable::lookup`]
//!   and [`PersistenceTable::insert`] both refresh it. (IPVS refreshes its
//!   persistence template while connections use it; "last use" is the
//!   closest sans-IO equivalent.)
//! - The table never holds more than its capacity
//!   (≤ [`MAX_PERSISTENCE_ENTRIES`]); inserting into a full table first drops
//!   expired entries, then the least recently used one.
//! - Addresses can be grouped by prefix (IPVS persistence netmask), so a
//!   client behind several proxies of one /24 sticks as a whole.
//! - The table stores indices only; the caller checks that the real still
//!   accepts flows and, if not, schedules anew and inserts the new choice.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// Hard cap on entries per table: bounds memory (about 100 bytes per entry
/// with both indices, so ≈ 100 MiB at the cap).
pub const MAX_PERSISTENCE_ENTRIES: usize = 1 << 20;
/// Default capacity of a table (entries).
pub const DEFAULT_PERSISTENCE_CAPACITY: usize = 65_536;
/// Default persistence timeout: ipvsadm's default for `-p` (300 s).
pub const DEFAULT_PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(300);

/// One sticky client.
#[derive(Debug, Clone, Copy)]
struct Entry {
    real: usize,
    expires: Duration,
    /// Tie-breaker making the expiry index key unique.
    seq: u64,
}

/// Client-address → real index with per-entry expiry and bounded capacity.
#[derive(Debug, Clone)]
pub struct PersistenceTable {
    timeout: Duration,
    capacity: usize,
    v4_prefix: u8,
    v6_prefix: u8,
    entries: HashMap<IpAddr, Entry>,
    /// (expires, seq) → key: expiry and LRU order in one index.
    by_expiry: BTreeMap<(Duration, u64), IpAddr>,
    next_seq: u64,
}

// === impl PersistenceTable ===

impl PersistenceTable {
    /// A table whose entries live `timeout` after last use, holding at most
    /// `capacity` entries (clamped to `1..=MAX_PERSISTENCE_ENTRIES`). Keys
    /// are full addresses (/32, /128).
    pub fn new(timeout: Duration, capacity: usize) -> Self {
        Self {
            timeout,
            capacity: capacity.clamp(1, MAX_PERSISTENCE_ENTRIES),
            v4_prefix: 32,
            v6_prefix: 128,
            entries: HashMap::new(),
            by_expiry: BTreeMap::new(),
            next_seq: 0,
        }
    }

    /// Groups clients by prefix: IPv4 addresses are masked to `v4_prefix`
    /// bits (clamped to 0..=32), IPv6 to `v6_prefix` (0..=128).
    pub fn with_netmask(mut self, v4_prefix: u8, v6_prefix: u8) -> Self {
        self.v4_prefix = v4_prefix.min(32);
        self.v6_prefix = v6_prefix.min(128);
        self
    }

    /// The real `ip` (or its prefix) sticks to, if the entry has not expired
    /// at `now`. A hit refreshes the entry.
    pub fn lookup(&mut self, now: Duration, ip: IpAddr) -> Option<usize> {
        let key = self.key(ip);
        let e = *self.entries.get(&key)?;
        if e.expires <= now {
            self.remove_key(key);
            return None;
        }
        self.put(now, key, e.real);
        Some(e.real)
    }

    /// Makes `ip` (or its prefix) stick to `real` from `now`, replacing any
    /// previous entry. Evicts expired, then least recently used, entries to
    /// stay within capacity.
    pub fn insert(&mut self, now: Duration, ip: IpAddr, real: usize) {
        let key = self.key(ip);
        self.remove_key(key);
        if self.entries.len() >= self.capacity {
            self.expire(now);
        }
        while self.entries.len() >= self.capacity {
            let Some((_, oldest)) = self.by_expiry.pop_first() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.put(now, key, real);
    }

    /// Drops entries expired at `now`; returns how many.
    pub fn expire(&mut self, now: Duration) -> usize {
        let mut n = 0;
        while let Some(entry) = self.by_expiry.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            self.entries.remove(&key);
            n += 1;
        }
        n
    }

    /// Drops every entry pointing at `real` (e.g. it was deleted); returns
    /// how many.
    pub fn remove_real(&mut self, real: usize) -> usize {
        let keys: Vec<IpAddr> = self
            .entries
            .iter()
            .filter(|(_, e)| e.real == real)
            .map(|(k, _)| *k)
            .collect();
        for k in &keys {
            self.remove_key(*k);
        }
        keys.len()
    }

    /// Number of entries (expired ones included until [`Self::expire`]).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn put(&mut self, now: Duration, key: IpAddr, real: usize) {
        if let Some(old) = self.entries.get(&key) {
            self.by_expiry.remove(&(old.expires, old.seq));
        }
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let expires = now.saturating_add(self.timeout);
        self.entries.insert(key, Entry { real, expires, seq });
        self.by_expiry.insert((expires, seq), key);
    }

    fn remove_key(&mut self, key: IpAddr) {
        if let Some(old) = self.entries.remove(&key) {
            self.by_expiry.remove(&(old.expires, old.seq));
        }
    }

    fn key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.v4_prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.v6_prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(a, b, c, d))
    }
    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn expires_after_timeout_since_last_use() {
        let mut t = PersistenceTable::new(s(300), 10);
        let c = v4(192, 0, 2, 1);
        assert_eq!(t.lookup(s(0), c), None);
        t.insert(s(0), c, 3);
        assert_eq!(t.lookup(s(299), c), Some(3)); // refreshes to 599
        assert_eq!(t.lookup(s(598), c), Some(3)); // refreshes to 898
        assert_eq!(t.lookup(s(898), c), None, "expired exactly at deadline");
        assert!(t.is_empty());
    }

    #[test]
    fn capacity_evicts_least_recently_used() {
        let mut t = PersistenceTable::new(s(100), 2);
        t.insert(s(0), v4(10, 0, 0, 1), 0);
        t.insert(s(1), v4(10, 0, 0, 2), 1);
        assert_eq!(t.lookup(s(2), v4(10, 0, 0, 1)), Some(0)); // .1 now newest
        t.insert(s(3), v4(10, 0, 0, 3), 2);
        assert_eq!(t.len(), 2);
        assert_eq!(t.lookup(s(4), v4(10, 0, 0, 2)), None, ".2 was LRU");
        assert_eq!(t.lookup(s(4), v4(10, 0, 0, 1)), Some(0));
        assert_eq!(t.lookup(s(4), v4(10, 0, 0, 3)), Some(2));
    }

    #[test]
    fn expire_and_remove_real() {
        let mut t = PersistenceTable::new(s(10), 100);
        for i in 0..5u8 {
            t.insert(s(u64::from(i)), v4(10, 0, 0, i), usize::from(i % 2));
        }
        assert_eq!(t.expire(s(12)), 3); // inserted at 0,1,2 -> expire at 10,11,12
        assert_eq!(t.len(), 2);
        assert_eq!(t.remove_real(1), 1); // .3 -> real 1
        assert_eq!(t.lookup(s(13), v4(10, 0, 0, 4)), Some(0));
    }

    #[test]
    fn netmask_groups_clients_and_insert_replaces() {
        let mut t = PersistenceTable::new(s(60), 10).with_netmask(24, 64);
        t.insert(s(0), v4(198, 51, 100, 7), 4);
        assert_eq!(t.lookup(s(1), v4(198, 51, 100, 200)), Some(4));
        assert_eq!(t.lookup(s(1), v4(198, 51, 101, 7)), None);
        t.insert(s(2), v4(198, 51, 100, 9), 5);
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup(s(3), v4(198, 51, 100, 7)), Some(5));
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:1".parse().unwrap();
        t.insert(s(0), a, 1);
        assert_eq!(t.lookup(s(1), b), Some(1));
        let mut all = PersistenceTable::new(s(60), 10).with_netmask(0, 0);
        all.insert(s(0), a, 9);
        assert_eq!(
            all.lookup(s(1), v4(1, 2, 3, 4)),
            None,
            "v4 and v6 stay apart"
        );
        assert_eq!(all.lookup(s(1), "::9".parse().unwrap()), Some(9));
    }
}
