//! `sluice_toa`, the real server's TOA reader: under `fullnat` the real
//! sees the LB's local address and port as the peer of every
//! connection, and the LB announces the client in a TCP option (TOA,
//! `sluice_wire::toa`) on the connection's first ACK. No kernel module
//! reads it here, so this program does: for every TCP segment that
//! carries a TOA it records
//!
//! ```text
//! (own address:port = destination, LB address:port = source, family) → (client address:port, last seen)
//! ```
//!
//! in `SLUICE_TOA`, an LRU hash that the loader pins in bpffs and
//! `sluice realserver toa --lookup` reads. It never drops or changes a
//! frame: every verdict is `XDP_PASS`. Frames it cannot read (not
//! Ethernet + IPv4 without options or IPv6 without extension headers,
//! not TCP, IPv4 fragments past the first, truncated headers) pass
//! unrecorded.

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_ktime_get_ns,
    macros::{map, xdp},
    maps::LruHashMap,
    programs::XdpContext,
};
use sluice_wire::maps::{Addr, family};
use sluice_wire::toa::{TCP_OPTIONS_MAX_LEN, ToaKey, ToaVal, find};

use crate::consts::{
    ETH_HDR_LEN, ETH_P_IP, ETH_P_IPV6, IPV4_HDR_LEN, IPV6_HDR_LEN, PROTO_TCP, TCP_HDR_LEN,
};
use crate::frame::{be16, read, v4_addr, v6_addr};

/// Bytes copied from the frame per step of the options copy: options
/// areas are whole 32-bit words (the data offset counts words).
const OPTION_WORD: usize = 4;

/// Entries `SLUICE_TOA` is declared with. Every load of the object
/// creates all its maps, and an LRU hash is allocated whole when it is
/// created: declared at its real size it would cost every `sluice run`
/// and every helper program megabytes for a map only the TOA reader
/// uses. The reader's loader sizes it (`sluice_wire::toa::TOA_CAPACITY`).
const UNSIZED_ENTRIES: u32 = 1;

/// `sluice_wire::toa::MAP_TOA`: connection → client. One LRU list for
/// all CPUs (no `BPF_F_NO_COMMON_LRU`): entries are written about twice
/// per connection, so the shared list's lock is not a hot spot, and a
/// per-CPU list would evict entries of one CPU while others had room.
#[map(name = "SLUICE_TOA")]
static SLUICE_TOA: LruHashMap<ToaKey, ToaVal> = LruHashMap::with_max_entries(UNSIZED_ENTRIES, 0);

/// Records the TOA of a TCP segment, if it has one; passes every frame.
#[xdp]
pub fn sluice_toa(ctx: XdpContext) -> u32 {
    record(&ctx);
    xdp_action::XDP_PASS
}

/// The connection of a segment as the real sees it.
struct Conn {
    /// Offset of the TCP header in the frame.
    l4: usize,
    /// Source (the peer: the LB under `fullnat`).
    src: Addr,
    /// Destination (this host).
    dst: Addr,
    family: u8,
}

/// Parses the frame and writes the map entry; `None` whenever there is
/// nothing to record.
#[inline(always)]
fn record(ctx: &XdpContext) -> Option<()> {
    let conn = ip(ctx)?;
    let tcp = read::<TCP_HDR_LEN>(ctx, conn.l4)?;
    // Data offset in words; at most 15, so at most 40 bytes of options.
    let opt_len = ((tcp[12] >> 4) as usize * 4).checked_sub(TCP_HDR_LEN)?;
    if opt_len == 0 {
        return None;
    }
    let mut opts = [0u8; TCP_OPTIONS_MAX_LEN];
    let start = conn.l4 + TCP_HDR_LEN;
    // A bounded copy, a word at a time, each read checked against the
    // frame's end (a header shorter than its data offset: no record).
    for (w, chunk) in opts.chunks_exact_mut(OPTION_WORD).enumerate() {
        let at = w * OPTION_WORD;
        if at >= opt_len {
            break;
        }
        chunk.copy_from_slice(&read::<OPTION_WORD>(ctx, start + at)?);
    }
    // The parser indexes the copy by offsets it compares with the area's
    // length, so the verifier must know that length's bound. Computed
    // from the data offset above, LLVM folds the bound into arithmetic
    // the verifier cannot follow ("invalid variable-offset read from
    // stack"); reloaded opaquely and checked against the constant, it
    // is a plain 0..=40.
    // SAFETY: a volatile read of a local variable, properly aligned and
    // initialised.
    let opt_len = unsafe { core::ptr::read_volatile(&opt_len) };
    if opt_len > TCP_OPTIONS_MAX_LEN {
        return None;
    }
    let client = find(opts.get(..opt_len)?)?;
    let key = ToaKey {
        local: conn.dst,
        peer: conn.src,
        local_port: be16([tcp[2], tcp[3]]),
        peer_port: be16([tcp[0], tcp[1]]),
        family: conn.family,
        _pad: [0; 3],
    };
    let val = ToaVal {
        client: client.addr,
        client_port: client.port,
        family: client.family,
        _pad: [0; 5],
        // SAFETY: a helper without arguments or side effects.
        last_seen_ns: unsafe { bpf_ktime_get_ns() },
    };
    // A full table evicts its least recently used entry; an insert can
    // still fail (e.g. memory pressure), and then there is nothing to do
    // but pass the frame.
    let _ = SLUICE_TOA.insert(&key, &val, 0);
    Some(())
}

/// The IPv4 or IPv6 header of a TCP segment this program reads.
#[inline(always)]
fn ip(ctx: &XdpContext) -> Option<Conn> {
    let ethertype = read::<2>(ctx, 12)?;
    match be16(ethertype) {
        ETH_P_IP => {
            let h = read::<IPV4_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            // Version 4 without options; a fragment offset other than 0
            // has no TCP header.
            if h[0] != 0x45 || h[9] != PROTO_TCP || be16([h[6], h[7]]) & 0x1fff != 0 {
                return None;
            }
            Some(Conn {
                l4: ETH_HDR_LEN + IPV4_HDR_LEN,
                src: v4_addr(&h, 12),
                dst: v4_addr(&h, 16),
                family: family::V4,
            })
        }
        ETH_P_IPV6 => {
            let h = read::<IPV6_HDR_LEN>(ctx, ETH_HDR_LEN)?;
            // TCP right after the fixed header (extension headers are
            // not walked).
            if h[0] >> 4 != 6 || h[6] != PROTO_TCP {
                return None;
            }
            Some(Conn {
                l4: ETH_HDR_LEN + IPV6_HDR_LEN,
                src: v6_addr(&h, 8),
                dst: v6_addr(&h, 24),
                family: family::V6,
            })
        }
        _ => None,
    }
}
