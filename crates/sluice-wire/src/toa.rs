//! TOA ("TCP Option Address"), the TCP option in which a FULLNAT load
//! balancer tells the real server who the client is: the one owner of
//! its format in sluice. `fullnat`'s XDP inserter calls the builder
//! ([`encode`]), the real server's reader (`sluice_toa`, and through its
//! map `sluice realserver toa --lookup`) calls the parser ([`find`]).
//!
//! Under `fullnat` the real sees the LB's local address and port as the
//! peer of every connection. The LB therefore adds, to the connection's
//! first ACK (and possibly its first data segment), an option carrying
//! the client's address and port, as Alibaba's LVS and DPVS do
//! (DPVS `include/ipvs/proto_tcp.h`, `struct tcpopt_addr`):
//!
//! ```text
//! IPv4: | kind 254 | len 8  | port (2, network order) | IPv4 address (4)  |
//! IPv6: | kind 254 | len 20 | port (2, network order) | IPv6 address (16) |
//! ```
//!
//! Both lengths are multiples of 4, so the option keeps a TCP header's
//! length a whole number of words without NOP padding. The option's
//! family is its own: an IPv6 client may be announced on an IPv4
//! connection to the real, and the other way round.
//!
//! Kind 254 is also RFC 6994's shared experimental kind (e.g. the
//! experimental TCP Fast Open cookie): an option of kind 254 with any
//! other length is not a TOA and is skipped like any other option.
//!
//! The parser never panics and never reads past the options area or
//! [`TCP_OPTIONS_MAX_LEN`] bytes: a malformed area (an option length
//! below 2 or past the end) ends the walk with "no TOA". It uses no
//! indexing that could panic, so the XDP program calls it unchanged.
//!
//! ```
//! use sluice_wire::maps::{addr_v4, family};
//! use sluice_wire::toa::{Toa, encode, find};
//! let client = Toa { family: family::V4, addr: addr_v4([192, 0, 2, 7]), port: 40000 };
//! let opt = encode(&client).unwrap();
//! assert_eq!(opt.as_bytes(), &[254, 8, 0x9c, 0x40, 192, 0, 2, 7]);
//! // After two NOPs and a timestamps option (kind 8, 10 bytes).
//! let mut area = [1u8, 1, 8, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
//! area[12..20].copy_from_slice(opt.as_bytes());
//! assert_eq!(find(&area), Some(client));
//! ```

use crate::checksum;
use crate::maps::{Addr, addr_from_bytes, addr_to_bytes, addr_v4, family};

/// The TCP option kind of TOA.
pub const TOA_KIND: u8 = 254;
/// Bytes of a TOA option carrying an IPv4 address (kind, length, port,
/// address).
pub const TOA_LEN_V4: u8 = 8;
/// Bytes of a TOA option carrying an IPv6 address.
pub const TOA_LEN_V6: u8 = 20;
/// Most bytes of options a TCP header can carry (its data offset is at
/// most 15 words, 5 of them the fixed header).
pub const TCP_OPTIONS_MAX_LEN: usize = 40;
/// Bytes of a TCP header without options.
pub const TCP_HDR_LEN: usize = 20;
/// Option kind "end of option list" (RFC 9293): nothing after it is an
/// option.
pub const TCP_OPT_EOL: u8 = 0;
/// Option kind "no operation" (RFC 9293): one byte of padding.
pub const TCP_OPT_NOP: u8 = 1;

/// Name of the map of `sluice_toa`, the real server's TOA reader:
/// `LruHashMap<ToaKey, ToaVal>`, one entry per connection whose segments
/// carried a TOA ([`TOA_CAPACITY`] entries; the least recently written
/// entries make room).
pub const MAP_TOA: &str = "SLUICE_TOA";
/// Entries of [`MAP_TOA`]: connections whose client is remembered. An
/// entry is 72 bytes (plus the kernel's element header), so about 5 MiB.
pub const TOA_CAPACITY: u32 = 65536;

/// A client address and port as TOA carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Toa {
    /// [`family`] of the address.
    pub family: u8,
    /// The address (IPv4 in the first four bytes, the rest zero).
    pub addr: Addr,
    /// The port, host order.
    pub port: u16,
}

impl Toa {
    /// The client as a socket address (`None` for an unknown family).
    #[must_use]
    pub fn socket_addr(&self) -> Option<core::net::SocketAddr> {
        let b = addr_to_bytes(self.addr);
        let ip = match self.family {
            family::V4 => core::net::IpAddr::from([b[0], b[1], b[2], b[3]]),
            family::V6 => core::net::IpAddr::from(b),
            _ => return None,
        };
        Some(core::net::SocketAddr::new(ip, self.port))
    }

    /// The TOA of a socket address.
    #[must_use]
    pub fn from_socket_addr(sa: core::net::SocketAddr) -> Self {
        match sa.ip() {
            core::net::IpAddr::V4(v) => Self {
                family: family::V4,
                addr: addr_v4(v.octets()),
                port: sa.port(),
            },
            core::net::IpAddr::V6(v) => Self {
                family: family::V6,
                addr: addr_from_bytes(v.octets()),
                port: sa.port(),
            },
        }
    }
}

/// The bytes of one TOA option, as [`encode`] builds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ToaOption {
    bytes: [u8; TOA_LEN_V6 as usize],
    len: u8,
}

impl ToaOption {
    /// The option's bytes ([`TOA_LEN_V4`] or [`TOA_LEN_V6`] of them).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        // `len` is one of the two option lengths, both ≤ the array's.
        self.bytes.get(..self.len as usize).unwrap_or(&self.bytes)
    }

    /// The option's length in bytes.
    #[must_use]
    pub const fn len(&self) -> usize {
        self.len as usize
    }

    /// Always `false` (an option has at least its kind and length).
    #[must_use]
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The IPv4 TOA option of `addr:port` (`port` in host order).
#[must_use]
pub const fn encode_v4(addr: [u8; 4], port: u16) -> [u8; TOA_LEN_V4 as usize] {
    let p = port.to_be_bytes();
    [
        TOA_KIND, TOA_LEN_V4, p[0], p[1], addr[0], addr[1], addr[2], addr[3],
    ]
}

/// The IPv6 TOA option of `[addr]:port` (`port` in host order).
#[must_use]
pub const fn encode_v6(addr: [u8; 16], port: u16) -> [u8; TOA_LEN_V6 as usize] {
    let p = port.to_be_bytes();
    let a = addr;
    [
        TOA_KIND, TOA_LEN_V6, p[0], p[1], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8],
        a[9], a[10], a[11], a[12], a[13], a[14], a[15],
    ]
}

/// The TOA option announcing `client`; `None` for an unknown family.
#[must_use]
pub fn encode(client: &Toa) -> Option<ToaOption> {
    let b = addr_to_bytes(client.addr);
    let mut bytes = [0u8; TOA_LEN_V6 as usize];
    let len = match client.family {
        family::V4 => {
            let o = encode_v4([b[0], b[1], b[2], b[3]], client.port);
            bytes[..o.len()].copy_from_slice(&o);
            TOA_LEN_V4
        }
        family::V6 => {
            bytes = encode_v6(b, client.port);
            TOA_LEN_V6
        }
        _ => return None,
    };
    Some(ToaOption { bytes, len })
}

/// The first TOA in a TCP options area (the bytes after the fixed 20 of
/// the TCP header, as many as its data offset says), or `None`.
///
/// The walk follows RFC 9293: EOL ends the list, NOP is one byte, every
/// other option is kind, length (counting both), data. It stops with
/// `None` at an option whose length is below 2 or runs past the area,
/// and looks at no more than [`TCP_OPTIONS_MAX_LEN`] bytes.
#[must_use]
pub fn find(options: &[u8]) -> Option<Toa> {
    let end = if options.len() < TCP_OPTIONS_MAX_LEN {
        options.len()
    } else {
        TCP_OPTIONS_MAX_LEN
    };
    let mut i = 0usize;
    // Every turn moves on by at least one byte, so the loop ends after at
    // most `end` (≤ 40) turns. No separate turn counter: in the BPF
    // verifier, states that differ only in such a counter cannot be
    // pruned, and the walk's paths then exceed its budget.
    while i < end {
        let kind = *options.get(i)?;
        if kind == TCP_OPT_EOL {
            return None;
        }
        if kind == TCP_OPT_NOP {
            i += 1;
            continue;
        }
        let len = *options.get(i + 1)? as usize;
        if len < 2 || i + len > end {
            return None;
        }
        if kind == TOA_KIND
            && let Some(t) = decode(options, i, len)
        {
            return Some(t);
        }
        i += len;
    }
    None
}

/// The TOA whose option of `len` bytes starts at `at`; `None` unless the
/// length is one of TOA's.
#[inline(always)]
fn decode(options: &[u8], at: usize, len: usize) -> Option<Toa> {
    if len != TOA_LEN_V4 as usize && len != TOA_LEN_V6 as usize {
        return None;
    }
    let byte = |k: usize| options.get(at + k).copied();
    let port = u16::from_be_bytes([byte(2)?, byte(3)?]);
    if len == TOA_LEN_V4 as usize {
        let a = [byte(4)?, byte(5)?, byte(6)?, byte(7)?];
        return Some(Toa {
            family: family::V4,
            addr: addr_v4(a),
            port,
        });
    }
    if len == TOA_LEN_V6 as usize {
        let mut a = [0u8; 16];
        for (k, slot) in a.iter_mut().enumerate() {
            *slot = byte(4 + k)?;
        }
        return Some(Toa {
            family: family::V6,
            addr: addr_from_bytes(a),
            port,
        });
    }
    None
}

/// The first TOA in a whole TCP header (`tcp` starts at the source port
/// and holds at least the options): the options area is the data
/// offset's bytes after the fixed 20. `None` for a header shorter than
/// its data offset says, or a data offset below 5 words.
#[must_use]
pub fn find_in_tcp_header(tcp: &[u8]) -> Option<Toa> {
    let doff = (*tcp.get(12)? >> 4) as usize * 4;
    if doff < TCP_HDR_LEN {
        return None;
    }
    find(tcp.get(TCP_HDR_LEN..doff)?)
}

// === map layouts ===

/// Key of [`MAP_TOA`]: a TCP connection as the real server sees it.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ToaKey {
    /// The real server's own address (the packet's destination).
    pub local: Addr,
    /// The peer, i.e. under `fullnat` the LB's local address (the
    /// packet's source).
    pub peer: Addr,
    /// The real's port, host order.
    pub local_port: u16,
    /// The peer's port, host order.
    pub peer_port: u16,
    /// [`family`] of the connection.
    pub family: u8,
    /// Padding, zero.
    pub _pad: [u8; 3],
}

/// Value of [`MAP_TOA`]: who the connection is really from.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ToaVal {
    /// The client's address (family [`ToaVal::family`]).
    pub client: Addr,
    /// The client's port, host order.
    pub client_port: u16,
    /// [`family`] of the client's address (may differ from the
    /// connection's).
    pub family: u8,
    /// Padding, zero.
    pub _pad: [u8; 5],
    /// `bpf_ktime_get_ns()` when a segment last carried the TOA.
    pub last_seen_ns: u64,
}

impl ToaVal {
    /// The client as [`Toa`].
    #[must_use]
    pub const fn client(&self) -> Toa {
        Toa {
            family: self.family,
            addr: self.client,
            port: self.client_port,
        }
    }
}

const _: () = assert!(core::mem::size_of::<ToaKey>() == 40);
const _: () = assert!(core::mem::size_of::<ToaVal>() == 32);
const _: () =
    assert!((TOA_LEN_V4 as usize).is_multiple_of(4) && (TOA_LEN_V6 as usize).is_multiple_of(4));

// === Insertion (the LB's side, `fullnat`) ===

/// Bytes the LB inserts for an IPv4 client: the option itself (a
/// multiple of 4, as TCP's data offset needs).
pub const INSERT_LEN_V4: usize = TOA_LEN_V4 as usize;
/// Bytes the LB inserts for an IPv6 client: the option itself (20, a
/// multiple of 4 too).
pub const INSERT_LEN_V6: usize = TOA_LEN_V6 as usize;
/// Longest TCP header (data offset 15 × 4 bytes).
pub const TCP_HDR_MAX_LEN: usize = 60;

/// Whether a TCP header of `tcp_hdr_len` bytes has room for `insert`
/// more bytes of options.
#[must_use]
pub const fn has_room(tcp_hdr_len: usize, insert: usize) -> bool {
    tcp_hdr_len + insert <= TCP_HDR_MAX_LEN
}

/// The TCP header's data-offset / flags word (bytes 12–13) once `insert`
/// bytes (a multiple of 4) of options are added.
#[must_use]
pub const fn grown_offset_word(word: u16, insert: usize) -> u16 {
    word + (((insert / 4) as u16) << 12)
}

/// The TCP checksum `check` after `block` is inserted among the options
/// (at an even offset of the segment), the data-offset word goes from
/// `old_word` to [`grown_offset_word`], and the pseudo-header's length
/// from `seg_len` to `seg_len + N` (RFC 1624, as `crate::nat` updates).
#[must_use]
pub fn grown_check<const N: usize>(
    check: u16,
    old_word: u16,
    seg_len: u16,
    block: &[u8; N],
) -> u16 {
    let c = checksum::update16(check, old_word, grown_offset_word(old_word, N));
    let c = checksum::update16(c, seg_len, seg_len.wrapping_add(N as u16));
    checksum::update_bytes(c, &[0u8; N], block)
}

/// TCP option kind of the maximum segment size (RFC 9293).
pub const TCP_OPT_MSS: u8 = 2;
/// Length of the MSS option (kind, length, 2-byte value).
pub const TCP_OPT_MSS_LEN: u8 = 4;

/// The MSS a real's SYN-ACK announces once clamped so that the client's
/// segments leave room for `insert` bytes of TOA: `mss - insert`, or
/// `mss` itself when that would not leave a usable segment.
#[must_use]
pub const fn clamped_mss(mss: u16, insert: usize) -> u16 {
    let i = insert as u16;
    if mss > i { mss - i } else { mss }
}

/// The TCP checksum `check` after a 16-bit field changed from `old` to
/// `new`; `odd`: the field starts at an odd offset of the segment (an
/// MSS option after a lone NOP), so it straddles two checksum words and
/// counts byte-swapped (RFC 1071's byte-order independence).
#[must_use]
pub fn field_check(check: u16, old: u16, new: u16, odd: bool) -> u16 {
    if odd {
        checksum::update16(check, old.swap_bytes(), new.swap_bytes())
    } else {
        checksum::update16(check, old, new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    extern crate std;
    use std::vec;

    use super::*;

    const V4: Toa = Toa {
        family: family::V4,
        addr: addr_v4([198, 51, 100, 23]),
        port: 0xbeef,
    };
    const V6_BYTES: [u8; 16] = [
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34,
    ];
    const V6: Toa = Toa {
        family: family::V6,
        addr: addr_from_bytes(V6_BYTES),
        port: 443,
    };

    #[test]
    fn builds_the_dpvs_layout() {
        assert_eq!(
            encode(&V4).unwrap().as_bytes(),
            &[254, 8, 0xbe, 0xef, 198, 51, 100, 23]
        );
        let six = encode(&V6).unwrap();
        assert_eq!(six.len(), 20);
        assert_eq!(&six.as_bytes()[..4], &[254, 20, 0x01, 0xbb]);
        assert_eq!(&six.as_bytes()[4..], &V6_BYTES);
        assert_eq!(encode_v6(V6_BYTES, 443), six.as_bytes());
        assert_eq!(encode(&Toa { family: 0, ..V4 }), None);
    }

    #[test]
    fn round_trips_alone_and_after_other_options() {
        for t in [V4, V6] {
            let opt = encode(&t).unwrap();
            assert_eq!(find(opt.as_bytes()), Some(t));
            // MSS (4), NOP NOP, SACK-permitted (2), then the TOA, then EOL.
            let mut area = [0u8; 40];
            let head = [2u8, 4, 0x05, 0xb4, 1, 1, 4, 2];
            area[..8].copy_from_slice(&head);
            area[8..8 + opt.len()].copy_from_slice(opt.as_bytes());
            assert_eq!(find(&area[..8 + opt.len()]), Some(t));
            assert_eq!(find(&area), Some(t));
        }
    }

    #[test]
    fn socket_addresses_convert_both_ways() {
        let sa: core::net::SocketAddr = "[2001:db8::1234]:443".parse().unwrap();
        assert_eq!(Toa::from_socket_addr(sa), V6);
        assert_eq!(V6.socket_addr(), Some(sa));
        let sa4: core::net::SocketAddr = "198.51.100.23:48879".parse().unwrap();
        assert_eq!(Toa::from_socket_addr(sa4), V4);
        assert_eq!(V4.socket_addr(), Some(sa4));
        assert_eq!(Toa { family: 9, ..V4 }.socket_addr(), None);
    }

    #[test]
    fn the_first_toa_wins() {
        let mut area = [0u8; 28];
        area[..20].copy_from_slice(encode(&V6).unwrap().as_bytes());
        area[20..].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find(&area), Some(V6));
    }

    #[test]
    fn other_experimental_options_of_kind_254_are_skipped() {
        // RFC 6994: kind 254, length 4, ExID 0xf989 (experimental TFO).
        let mut area = [254u8, 4, 0xf9, 0x89, 0, 0, 0, 0, 0, 0, 0, 0];
        area[4..].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find(&area), Some(V4));
        assert_eq!(find(&area[..4]), None);
    }

    #[test]
    fn eol_ends_the_list_and_nothing_after_it_counts() {
        let mut area = [0u8; 12];
        area[0] = TCP_OPT_NOP;
        area[1] = TCP_OPT_EOL;
        area[4..].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find(&area), None);
    }

    #[test]
    fn malformed_lengths_end_the_walk() {
        let toa = encode(&V4).unwrap();
        for bad_len in [0u8, 1] {
            let mut area = [0u8; 12];
            area[..2].copy_from_slice(&[3, bad_len]);
            area[4..].copy_from_slice(toa.as_bytes());
            assert_eq!(find(&area), None, "length {bad_len}");
        }
        // An option running past the area.
        assert_eq!(find(&[5, 30, 0, 0]), None);
        // A TOA cut short by the end of the area, at every length.
        let six = encode(&V6).unwrap();
        for cut in 0..six.len() {
            assert_eq!(find(&six.as_bytes()[..cut]), None, "cut at {cut}");
        }
        // A kind byte with no length byte after it.
        assert_eq!(find(&[1, 1, 1, 254]), None);
    }

    #[test]
    fn nothing_past_forty_bytes_is_read() {
        // 36 NOPs, then a TOA straddling byte 40.
        let mut area = [TCP_OPT_NOP; 48];
        area[36..44].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find(&area), None);
        // 32 NOPs and a TOA ending exactly at 40: found.
        let mut area = [TCP_OPT_NOP; 40];
        area[32..].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find(&area), Some(V4));
    }

    #[test]
    fn whole_tcp_headers() {
        let mut h = [0u8; 28];
        h[12] = 7 << 4; // data offset: 7 words = 28 bytes.
        h[20..].copy_from_slice(encode(&V4).unwrap().as_bytes());
        assert_eq!(find_in_tcp_header(&h), Some(V4));
        // Data offset larger than the bytes given, and below 5 words.
        h[12] = 8 << 4;
        assert_eq!(find_in_tcp_header(&h), None);
        h[12] = 4 << 4;
        assert_eq!(find_in_tcp_header(&h), None);
        assert_eq!(find_in_tcp_header(&h[..12]), None);
        // No options.
        let mut bare = [0u8; 20];
        bare[12] = 5 << 4;
        assert_eq!(find_in_tcp_header(&bare), None);
    }

    /// A small deterministic generator (xorshift64*), so the garbage
    /// below is the same on every run.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// A reference walk written the obvious way (indexing, a `while`
    /// loop), to hold [`find`] to on garbage.
    fn reference(options: &[u8]) -> Option<Toa> {
        let area = &options[..options.len().min(TCP_OPTIONS_MAX_LEN)];
        let mut i = 0;
        while i < area.len() {
            match area[i] {
                TCP_OPT_EOL => return None,
                TCP_OPT_NOP => i += 1,
                kind => {
                    let len = *area.get(i + 1)? as usize;
                    if len < 2 || i + len > area.len() {
                        return None;
                    }
                    let o = &area[i..i + len];
                    if kind == TOA_KIND && (len == 8 || len == 20) {
                        let port = u16::from_be_bytes([o[2], o[3]]);
                        let addr = if len == 8 {
                            addr_v4([o[4], o[5], o[6], o[7]])
                        } else {
                            let mut a = [0u8; 16];
                            a.copy_from_slice(&o[4..20]);
                            addr_from_bytes(a)
                        };
                        let family = if len == 8 { family::V4 } else { family::V6 };
                        return Some(Toa { family, addr, port });
                    }
                    i += len;
                }
            }
        }
        None
    }

    /// Garbage areas of every length up to 48, biased toward the bytes
    /// that matter (EOL, NOP, kind 254, the two TOA lengths, small
    /// lengths): `find` never panics and agrees with the reference.
    #[test]
    fn garbage_never_panics_and_matches_the_reference() {
        const ROUNDS: usize = 200_000;
        const INTERESTING: [u8; 9] = [0, 1, 2, 4, 8, 20, 40, 254, 255];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; 48];
        let mut found = 0;
        for _ in 0..ROUNDS {
            let len = (rng.next() % 49) as usize;
            for b in buf.iter_mut().take(len) {
                let r = rng.next();
                *b = if r.is_multiple_of(3) {
                    INTERESTING[(r >> 8) as usize % INTERESTING.len()]
                } else {
                    (r >> 16) as u8
                };
            }
            let area = &buf[..len];
            let got = find(area);
            assert_eq!(got, reference(area), "{area:?}");
            found += usize::from(got.is_some());
        }
        // The generator does reach the interesting cases.
        assert!(found > 100, "only {found} TOAs found in garbage");
    }

    /// The incremental update after an insertion equals the checksum of
    /// the grown segment computed in full.
    #[test]
    fn insertion_checksum_matches_a_full_computation() {
        // A TCP/IPv4 ACK: 20-byte header with 12 bytes of options
        // (NOP NOP timestamps), 5 bytes of payload.
        let src = [10u8, 99, 0, 2];
        let dst = [10u8, 99, 0, 11];
        let mut seg = vec![
            0x9c, 0x40, 0x1f, 0x90, 0, 0, 0x03, 0xe8, 0, 0, 0x07, 0xd0, 0x80, 0x10, 0xfa, 0xf0, 0,
            0, 0, 0, 1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2,
        ];
        seg.extend_from_slice(b"hello");
        let full = |seg: &[u8]| {
            let mut pseudo = vec![];
            pseudo.extend_from_slice(&src);
            pseudo.extend_from_slice(&dst);
            pseudo.extend_from_slice(&[0, 6]);
            pseudo.extend_from_slice(&(seg.len() as u16).to_be_bytes());
            let mut s = seg.to_vec();
            s[16] = 0;
            s[17] = 0;
            checksum::finish(checksum::sum(&s, checksum::sum(&pseudo, 0)))
        };
        let c = full(&seg);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        let block = encode_v4([192, 0, 2, 7], 5555);
        assert!(has_room(32, block.len()));
        let old_word = u16::from_be_bytes([seg[12], seg[13]]);
        let want_check = grown_check(c, old_word, seg.len() as u16, &block);
        // Inserted right after the fixed header, before the other options.
        let mut grown = seg[..20].to_vec();
        grown.extend_from_slice(&block);
        grown.extend_from_slice(&seg[20..]);
        grown[12..14].copy_from_slice(&grown_offset_word(old_word, block.len()).to_be_bytes());
        assert_eq!(grown[12] >> 4, 10, "data offset 8 words + 2");
        assert_eq!(want_check, full(&grown));
        assert_eq!(find_in_tcp_header(&grown[..40]).map(|t| t.port), Some(5555));
        let b6 = encode_v6([0xfd; 16], 80);
        assert_eq!(b6.len() % 4, 0);
        assert!(!has_room(44, b6.len()));
        assert!(has_room(40, b6.len()));
    }

    /// A field at an odd offset: the swapped update equals a full
    /// computation.
    #[test]
    fn an_odd_field_updates_the_checksum_byte_swapped() {
        let mut seg = vec![0u8; 28];
        seg[20] = TCP_OPT_NOP;
        seg[21] = TCP_OPT_MSS;
        seg[22] = TCP_OPT_MSS_LEN;
        seg[23..25].copy_from_slice(&1460u16.to_be_bytes());
        let full = |s: &[u8]| checksum::finish(checksum::sum(s, 0));
        let c = full(&seg);
        let new = clamped_mss(1460, INSERT_LEN_V4);
        assert_eq!(new, 1452);
        let mut grown = seg.clone();
        grown[23..25].copy_from_slice(&new.to_be_bytes());
        assert_eq!(field_check(c, 1460, new, true), full(&grown));
        let mut even = seg.clone();
        even[20..24].copy_from_slice(&[TCP_OPT_MSS, TCP_OPT_MSS_LEN, 0x05, 0xb4]);
        let c = full(&even);
        let mut e2 = even.clone();
        e2[22..24].copy_from_slice(&new.to_be_bytes());
        assert_eq!(field_check(c, 1460, new, false), full(&e2));
        assert_eq!(clamped_mss(20, INSERT_LEN_V6), 20);
        assert_eq!(clamped_mss(1440, INSERT_LEN_V6), 1420);
    }
}
