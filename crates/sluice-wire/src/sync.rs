//! Connection sync between LBs: the datagram format (version 1) an active
//! LB streams its sessions in, and a standby installs them from
//! (docs/HA.md, "Connection sync").
//!
//! Real and service slots are local to each LB, so an entry names the
//! service by its key (VIP, service port, protocol) and the real by its
//! address and configured port; the receiver maps them to its own slots.
//! Nothing in an entry is a clock value: the receiver stamps the session
//! with its own clock at install.
//!
//! Datagram (all integers big-endian):
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0 | 4 | magic `"SLSY"` |
//! | 4 | 1 | version, [`VERSION`] |
//! | 5 | 1 | kind: [`Kind::Sessions`] 1, [`Kind::ResyncRequest`] 2, [`Kind::Heartbeat`] 3 |
//! | 6 | 2 | number of entries (0 for a resync request) |
//! | 8 | 4 | sender's datagram sequence number (gaps are losses) |
//! | 12 | | the entries, back to back; nothing after the last |
//!
//! Entry (`A` = 4 bytes for family 4, 16 for family 6):
//!
//! | offset | bytes | field |
//! |-------:|------:|-------|
//! | 0 | 1 | family (4 or 6) |
//! | 1 | 1 | IP protocol |
//! | 2 | 1 | method byte (`maps::Method`) |
//! | 3 | 1 | session state (`maps::state`) |
//! | 4 | 1 | flags: bit 0 TOA sent, bit 1 local end present; others 0 |
//! | 5 | 1 | reserved, 0 |
//! | 6 | 6 | client MAC (`nat`, `fullnat`: the replies' next hop; else 0) |
//! | 12 | 2 | client port |
//! | 14 | 2 | VIP port (the flow's destination port) |
//! | 16 | 2 | service port (0: the service listens on every port) |
//! | 18 | 2 | real's configured port (`RealDef::port`, 0 = the flow's) |
//! | 20 | 2 | local port (`fullnat`; else 0) |
//! | 22 | A | client address |
//! | 22+A | A | VIP address |
//! | 22+2A | A | real's address |
//! | 22+3A | A | local address (only with flag bit 1) |
//!
//! So an IPv4 entry is 34 bytes (38 with a local end), an IPv6 one 70
//! (86): a [`MAX_DATAGRAM`]-byte datagram carries up to 40 IPv4 entries.

use crate::maps::{Addr, FlowKey, Method, addr_from_bytes, addr_to_bytes, family};

/// The format's version; a datagram of another is refused whole.
pub const VERSION: u8 = 1;
/// First bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"SLSY";
/// Bytes of the datagram header.
pub const HEADER_BYTES: usize = 12;
/// Largest datagram a sender builds (bytes of UDP payload): under the
/// 1500-byte Ethernet MTU with IPv6 and UDP headers, so never fragmented.
pub const MAX_DATAGRAM: usize = 1400;
/// Bytes of an entry's fixed part (before the addresses).
const ENTRY_FIXED_BYTES: usize = 22;
/// Entry flag: the connection's TOA has been sent (`FlowVal::toa_sent`).
const FLAG_TOA_SENT: u8 = 1;
/// Entry flag: a local address and port follow (`fullnat`).
const FLAG_LOCAL: u8 = 2;

/// What a datagram carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Session entries.
    Sessions = 1,
    /// "Send me all your sessions" (a node that starts asks its peers).
    ResyncRequest = 2,
    /// "The active node is alive": sent by the active node every
    /// poll in which it sent nothing else, so that its silence tells the
    /// peers it died sooner than VRRP can (docs/HA.md). No entries; its
    /// sequence number is not one of the sessions' sequence.
    Heartbeat = 3,
}

/// Why a datagram was refused (whole: nothing of it is installed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// Shorter than its header or than the entries it announces.
    Truncated,
    /// Not a sync datagram.
    BadMagic,
    /// Another version of the format.
    Version(u8),
    /// An unknown kind byte.
    Kind(u8),
    /// An entry's family byte is neither 4 nor 6.
    Family(u8),
    /// An entry's method byte names no method.
    Method(u8),
    /// Reserved bits or bytes are not zero.
    Reserved,
    /// Bytes after the last announced entry.
    TrailingBytes,
}

impl core::fmt::Display for SyncError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated sync datagram"),
            Self::BadMagic => f.write_str("not a sync datagram (bad magic)"),
            Self::Version(v) => write!(f, "sync format version {v}, expected {VERSION}"),
            Self::Kind(k) => write!(f, "unknown sync datagram kind {k}"),
            Self::Family(x) => write!(f, "unknown address family {x} in a sync entry"),
            Self::Method(m) => write!(f, "unknown method byte {m} in a sync entry"),
            Self::Reserved => f.write_str("reserved bits set in a sync entry"),
            Self::TrailingBytes => f.write_str("bytes after the last sync entry"),
        }
    }
}

/// One session as it travels between LBs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncEntry {
    /// The flow (client → VIP), as the session table keys it.
    pub key: FlowKey,
    /// The port of the service the flow belongs to (0: every port).
    pub service_port: u16,
    /// The service's method.
    pub method: Method,
    /// The session's state (`maps::state`).
    pub state: u8,
    /// The real's address.
    pub real: Addr,
    /// The real's configured port (`RealDef::port`).
    pub real_port: u16,
    /// `nat`/`fullnat`: the replies' next hop toward the client.
    pub client_mac: [u8; 6],
    /// `fullnat`: the local address and port the LB connects from.
    pub local: Option<(Addr, u16)>,
    /// `fullnat`: the connection's TOA has been sent.
    pub toa_sent: bool,
}

const fn addr_len(fam: u8) -> Option<usize> {
    match fam {
        family::V4 => Some(4),
        family::V6 => Some(16),
        _ => None,
    }
}

impl SyncEntry {
    /// Bytes this entry takes in a datagram (0 for a family that is
    /// neither 4 nor 6, which [`Writer::push`] refuses).
    pub const fn encoded_len(&self) -> usize {
        let Some(a) = addr_len(self.key.family) else {
            return 0;
        };
        ENTRY_FIXED_BYTES + a * if self.local.is_some() { 4 } else { 3 }
    }
}

/// Builds one datagram in a caller's buffer.
#[derive(Debug)]
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: u16,
}

impl<'a> Writer<'a> {
    /// A datagram of `kind` with sequence number `seq` in `buf` (at most
    /// [`MAX_DATAGRAM`] bytes of it are used). `None` if `buf` cannot
    /// hold the header.
    pub fn new(buf: &'a mut [u8], kind: Kind, seq: u32) -> Option<Self> {
        let end = buf.len().min(MAX_DATAGRAM);
        let buf = buf.get_mut(..end)?;
        let h = buf.get_mut(..HEADER_BYTES)?;
        h[..4].copy_from_slice(&MAGIC);
        h[4] = VERSION;
        h[5] = kind as u8;
        h[6..8].copy_from_slice(&0u16.to_be_bytes());
        h[8..12].copy_from_slice(&seq.to_be_bytes());
        Some(Self {
            buf,
            len: HEADER_BYTES,
            count: 0,
        })
    }

    /// Entries written so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Appends `e`; `false` (nothing written) when it does not fit or its
    /// family is unknown.
    pub fn push(&mut self, e: &SyncEntry) -> bool {
        let n = e.encoded_len();
        let Some(a) = addr_len(e.key.family) else {
            return false;
        };
        if n == 0 || self.count == u16::MAX {
            return false;
        }
        let Some(out) = self.buf.get_mut(self.len..self.len + n) else {
            return false;
        };
        let mut flags = 0;
        if e.toa_sent {
            flags |= FLAG_TOA_SENT;
        }
        if e.local.is_some() {
            flags |= FLAG_LOCAL;
        }
        out[0] = e.key.family;
        out[1] = e.key.proto;
        out[2] = e.method.to_byte();
        out[3] = e.state;
        out[4] = flags;
        out[5] = 0;
        out[6..12].copy_from_slice(&e.client_mac);
        let (laddr, lport) = e.local.unwrap_or_default();
        for (i, p) in [e.key.sport, e.key.dport, e.service_port, e.real_port, lport]
            .iter()
            .enumerate()
        {
            out[12 + 2 * i..14 + 2 * i].copy_from_slice(&p.to_be_bytes());
        }
        let addrs = [e.key.src, e.key.dst, e.real, laddr];
        let naddrs = if e.local.is_some() { 4 } else { 3 };
        for (i, ad) in addrs.iter().take(naddrs).enumerate() {
            let at = ENTRY_FIXED_BYTES + i * a;
            out[at..at + a].copy_from_slice(&addr_to_bytes(*ad)[..a]);
        }
        self.len += n;
        self.count += 1;
        true
    }

    /// Writes the entry count; the datagram is the first returned bytes.
    pub fn finish(self) -> usize {
        self.buf[6..8].copy_from_slice(&self.count.to_be_bytes());
        self.len
    }
}

/// A checked datagram: every entry parsed, so installing it never stops
/// half-way on a bad one.
#[derive(Clone, Copy, Debug)]
pub struct Datagram<'a> {
    /// What it carries.
    pub kind: Kind,
    /// The sender's sequence number.
    pub seq: u32,
    /// Number of entries.
    pub count: u16,
    entries: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Checks `buf` whole: header, version, every entry, no trailing bytes.
    pub fn parse(buf: &'a [u8]) -> Result<Self, SyncError> {
        let h = buf.get(..HEADER_BYTES).ok_or(SyncError::Truncated)?;
        if h[..4] != MAGIC {
            return Err(SyncError::BadMagic);
        }
        if h[4] != VERSION {
            return Err(SyncError::Version(h[4]));
        }
        let kind = match h[5] {
            1 => Kind::Sessions,
            2 => Kind::ResyncRequest,
            3 => Kind::Heartbeat,
            k => return Err(SyncError::Kind(k)),
        };
        let count = u16::from_be_bytes([h[6], h[7]]);
        let seq = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let entries = &buf[HEADER_BYTES..];
        let mut rest = entries;
        for _ in 0..count {
            let (_, n) = decode(rest)?;
            rest = &rest[n..];
        }
        if !rest.is_empty() {
            return Err(SyncError::TrailingBytes);
        }
        Ok(Self {
            kind,
            seq,
            count,
            entries,
        })
    }

    /// The entries.
    pub fn entries(&self) -> Entries<'a> {
        Entries { rest: self.entries }
    }
}

/// The entries of a [`Datagram`] (already checked).
#[derive(Clone, Debug)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl Iterator for Entries<'_> {
    type Item = SyncEntry;
    fn next(&mut self) -> Option<SyncEntry> {
        // Checked by `Datagram::parse`: an error here cannot happen, and
        // ends the iteration if it did.
        let (e, n) = decode(self.rest).ok()?;
        self.rest = &self.rest[n..];
        Some(e)
    }
}

/// The entry at the start of `b` and its length.
fn decode(b: &[u8]) -> Result<(SyncEntry, usize), SyncError> {
    let fixed = b.get(..ENTRY_FIXED_BYTES).ok_or(SyncError::Truncated)?;
    let fam = fixed[0];
    let a = addr_len(fam).ok_or(SyncError::Family(fam))?;
    let method = Method::from_byte(fixed[2]).ok_or(SyncError::Method(fixed[2]))?;
    let flags = fixed[4];
    if flags & !(FLAG_TOA_SENT | FLAG_LOCAL) != 0 || fixed[5] != 0 {
        return Err(SyncError::Reserved);
    }
    let has_local = flags & FLAG_LOCAL != 0;
    let n = ENTRY_FIXED_BYTES + a * if has_local { 4 } else { 3 };
    let b = b.get(..n).ok_or(SyncError::Truncated)?;
    let port = |i: usize| u16::from_be_bytes([b[12 + 2 * i], b[13 + 2 * i]]);
    let addr = |i: usize| {
        let mut x = [0u8; 16];
        let at = ENTRY_FIXED_BYTES + i * a;
        x[..a].copy_from_slice(&b[at..at + a]);
        addr_from_bytes(x)
    };
    let mut client_mac = [0u8; 6];
    client_mac.copy_from_slice(&b[6..12]);
    Ok((
        SyncEntry {
            key: FlowKey {
                src: addr(0),
                dst: addr(1),
                sport: port(0),
                dport: port(1),
                proto: fixed[1],
                family: fam,
                _pad: 0,
            },
            service_port: port(2),
            method,
            state: fixed[3],
            real: addr(2),
            real_port: port(3),
            client_mac,
            local: if has_local {
                Some((addr(3), port(4)))
            } else {
                None
            },
            toa_sent: flags & FLAG_TOA_SENT != 0,
        },
        n,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::maps::{addr_v4, state};

    fn v4_entry(cport: u16) -> SyncEntry {
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
            method: Method::Nat,
            state: state::TCP_ESTABLISHED,
            real: addr_v4([10, 0, 1, 2]),
            real_port: 8080,
            client_mac: [2, 0, 0, 0, 0, 9],
            local: None,
            toa_sent: false,
        }
    }

    fn v6_fullnat_entry() -> SyncEntry {
        let a = |last: u8| {
            let mut b = [0u8; 16];
            b[0] = 0xfd;
            b[15] = last;
            addr_from_bytes(b)
        };
        SyncEntry {
            key: FlowKey {
                src: a(9),
                dst: a(100),
                sport: 5555,
                dport: 443,
                proto: 17,
                family: family::V6,
                _pad: 0,
            },
            service_port: 0,
            method: Method::Fullnat,
            state: state::UDP,
            real: a(2),
            real_port: 0,
            client_mac: [2, 0, 0, 0, 0, 7],
            local: Some((a(200), 40001)),
            toa_sent: true,
        }
    }

    fn build(kind: Kind, seq: u32, entries: &[SyncEntry]) -> Vec<u8> {
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut w = Writer::new(&mut buf, kind, seq).unwrap();
        for e in entries {
            assert!(w.push(e));
        }
        let n = w.finish();
        buf[..n].to_vec()
    }

    #[test]
    fn entries_round_trip_in_both_families_and_with_a_local_end() {
        let es = [v4_entry(40000), v6_fullnat_entry(), v4_entry(40001)];
        let d = build(Kind::Sessions, 7, &es);
        assert_eq!(d.len(), HEADER_BYTES + 34 + 86 + 34);
        let p = Datagram::parse(&d).unwrap();
        assert_eq!((p.kind, p.seq, p.count), (Kind::Sessions, 7, 3));
        assert_eq!(p.entries().collect::<Vec<_>>(), es);
    }

    #[test]
    fn the_documented_layout_holds() {
        let d = build(Kind::Sessions, 0x0102_0304, &[v4_entry(0x4321)]);
        assert_eq!(&d[..4], b"SLSY");
        assert_eq!((d[4], d[5]), (VERSION, 1));
        assert_eq!(&d[6..8], &[0, 1]);
        assert_eq!(&d[8..12], &[1, 2, 3, 4]);
        let e = &d[HEADER_BYTES..];
        assert_eq!(&e[..6], &[4, 6, Method::Nat.to_byte(), 1, 0, 0]);
        assert_eq!(&e[6..12], &[2, 0, 0, 0, 0, 9]);
        assert_eq!(&e[12..22], &[0x43, 0x21, 0, 80, 0, 80, 0x1f, 0x90, 0, 0]);
        assert_eq!(&e[22..34], &[10, 0, 0, 9, 10, 0, 0, 100, 10, 0, 1, 2]);
    }

    #[test]
    fn a_full_datagram_refuses_more_and_stays_under_the_limit() {
        let mut buf = [0u8; 4096];
        let mut w = Writer::new(&mut buf, Kind::Sessions, 0).unwrap();
        let mut n = 0u16;
        while w.push(&v4_entry(n)) {
            n += 1;
        }
        assert_eq!(n, ((MAX_DATAGRAM - HEADER_BYTES) / 34) as u16);
        let len = w.finish();
        assert!(len <= MAX_DATAGRAM);
        assert_eq!(Datagram::parse(&buf[..len]).unwrap().count, n);
    }

    #[test]
    fn a_resync_request_and_a_heartbeat_have_no_entries() {
        for kind in [Kind::ResyncRequest, Kind::Heartbeat] {
            let d = build(kind, 1, &[]);
            assert_eq!(d.len(), HEADER_BYTES);
            assert_eq!(d[5], kind as u8);
            let p = Datagram::parse(&d).unwrap();
            assert_eq!((p.kind, p.count), (kind, 0));
            assert_eq!(p.entries().count(), 0);
        }
    }

    #[test]
    fn bad_datagrams_are_refused_whole_with_their_reason() {
        let good = build(Kind::Sessions, 1, &[v4_entry(1), v6_fullnat_entry()]);
        // Every truncation.
        for n in 0..good.len() {
            assert_eq!(
                Datagram::parse(&good[..n]).err(),
                Some(SyncError::Truncated),
                "{n} bytes"
            );
        }
        let mut d = good.clone();
        d.push(0);
        assert_eq!(Datagram::parse(&d).err(), Some(SyncError::TrailingBytes));
        let with = |at: usize, v: u8| {
            let mut d = good.clone();
            d[at] = v;
            Datagram::parse(&d).err()
        };
        assert_eq!(with(0, b'X'), Some(SyncError::BadMagic));
        assert_eq!(with(4, 2), Some(SyncError::Version(2)));
        assert_eq!(with(5, 9), Some(SyncError::Kind(9)));
        let e = HEADER_BYTES;
        assert_eq!(with(e, 5), Some(SyncError::Family(5)));
        assert_eq!(with(e + 2, 4), Some(SyncError::Method(4)));
        assert_eq!(with(e + 4, 4), Some(SyncError::Reserved));
        assert_eq!(with(e + 5, 1), Some(SyncError::Reserved));
        // The second entry is bad: the whole datagram is refused.
        assert_eq!(with(e + 34, 0), Some(SyncError::Family(0)));
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic walk over byte patterns behind a valid
        // header: every outcome is a value, never a panic.
        let mut x: u32 = 0x1234_5678;
        for len in 0..200usize {
            let mut d = build(Kind::Sessions, 0, &[]);
            d[6..8].copy_from_slice(&3u16.to_be_bytes());
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                d.push(x as u8);
            }
            let _ = Datagram::parse(&d).map(|p| p.entries().count());
        }
    }

    #[test]
    fn an_entry_of_an_unknown_family_is_not_written() {
        let mut e = v4_entry(1);
        e.key.family = 0;
        let mut buf = [0u8; MAX_DATAGRAM];
        let mut w = Writer::new(&mut buf, Kind::Sessions, 0).unwrap();
        assert!(!w.push(&e));
        assert_eq!(w.count(), 0);
    }
}
