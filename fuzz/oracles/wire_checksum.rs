//! Oracle of the `wire_checksum` fuzz target, shared with the replay test
//! `crates/sluice-wire/tests/fuzz_replay.rs` (included there by path, so the
//! fuzzer and `cargo test` judge an input by the very same code).
//!
//! sluice-wire has no packet parser yet; what the NAT data plane will rely
//! on is its header-rewrite arithmetic, so that is what is fuzzed:
//!
//! * Input layout: byte 0 gives the covered length in 16-bit words (a
//!   header, or a pseudo-header plus L4 header), the next bytes are that
//!   header, and the rest is a list of field rewrites: an op byte (bit 7: a
//!   32-bit field such as an IPv4 address, else a 16-bit one such as a port;
//!   the low bits: the word it starts at) and the new value, big-endian.
//! * After every rewrite, the checksum kept up to date by
//!   `update16`/`update32` (RFC 1624) must equal a full recompute
//!   (`finish(sum(..))`), and the header with that checksum in it must
//!   verify (sum folds to zero).
//! * `sum` must be piecewise: summing at any even split, the first part's
//!   sum carried into the second, equals the sum of the whole (how
//!   pseudo-header and payload are added); an odd last byte is a byte
//!   followed by a zero.
//! * `hash::addr_hash` / `hash::flow_hash` must equal a plain MurmurHash3
//!   x86_32 of the same words (what the module documents, and what a
//!   userspace prediction of the kernel's choice would compute).

use sluice_wire::checksum::{finish, sum, update16, update32};
use sluice_wire::hash::{addr_hash, flow_hash};

/// Largest covered length: an IPv6 pseudo-header (40 bytes) plus a TCP
/// header with the most options (60 bytes), in 16-bit words.
const MAX_COVERED_WORDS: usize = 50;

/// Op-byte bit that makes a rewrite 32 bits wide.
const OP_WIDE: u8 = 0x80;

/// Bytes of hash material: a 16-byte address, two ports, the protocol and a
/// 4-byte seed.
const HASH_MATERIAL_BYTES: usize = 16 + 2 + 2 + 1 + 4;

/// Runs every invariant on `data`; panics when one breaks.
pub(crate) fn check(data: &[u8]) {
    check_hash(data);
    let Some((&words, rest)) = data.split_first() else {
        return;
    };
    let len = (usize::from(words) % (MAX_COVERED_WORDS + 1) * 2).min(rest.len());
    let mut covered = rest[..len].to_vec();
    let mut edits = &rest[len..];
    check_piecewise(&covered);

    let mut check = finish(sum(&covered, 0));
    expect_matches(&covered, check, "initial");
    // Only whole words can be rewritten (an odd last byte is padding).
    let word_count = covered.len() / 2;
    while let Some((&op, tail)) = edits.split_first() {
        let wide = op & OP_WIDE != 0;
        let value_len = if wide { 4 } else { 2 };
        let (Some(value), true) = (tail.get(..value_len), word_count >= value_len / 2) else {
            break;
        };
        edits = &tail[value_len..];
        let fields = word_count + 1 - value_len / 2;
        let at = usize::from(op & !OP_WIDE) % fields * 2;
        let field = &mut covered[at..at + value_len];
        if wide {
            let old = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            let new = u32::from_be_bytes([value[0], value[1], value[2], value[3]]);
            field.copy_from_slice(value);
            check = update32(check, old, new);
        } else {
            let old = u16::from_be_bytes([field[0], field[1]]);
            let new = u16::from_be_bytes([value[0], value[1]]);
            field.copy_from_slice(value);
            check = update16(check, old, new);
        }
        expect_matches(&covered, check, "after a rewrite");
    }
}

/// The incrementally kept `check` must be the recomputed checksum, and the
/// data with it appended must verify (fold to zero).
fn expect_matches(covered: &[u8], check: u16, when: &str) {
    let full = finish(sum(covered, 0));
    // One's complement has two zeros. When every covered byte is zero the
    // recompute gives 0xffff, and RFC 1624's update, which is exact
    // modulo 0xffff, may give the other zero, 0x0000. A real IPv4 header
    // (version 4) or pseudo-header (protocol) is never all zero, so the NAT
    // path cannot meet this; anything else must match bit for bit.
    let other_zero = check == 0 && covered.iter().all(|&b| b == 0);
    assert!(
        check == full || other_zero,
        "{when}: incremental 0x{check:04x}, recomputed 0x{full:04x} over {covered:02x?}"
    );
    if other_zero {
        // Zero data with a +0 field sums to +0, not to the -0 (0xffff) a
        // receiver's check wants: the reason a recompute is preferred there.
        return;
    }
    let mut with = covered.to_vec();
    if with.len() % 2 == 1 {
        with.push(0);
    }
    with.extend_from_slice(&check.to_be_bytes());
    assert_eq!(
        finish(sum(&with, 0)),
        0,
        "{when}: 0x{check:04x} does not verify over {covered:02x?}"
    );
}

fn check_piecewise(covered: &[u8]) {
    let whole = finish(sum(covered, 0));
    for k in (0..=covered.len()).step_by(2) {
        let (a, b) = covered.split_at(k);
        assert_eq!(
            finish(sum(b, sum(a, 0))),
            whole,
            "split at {k} of {covered:02x?}"
        );
    }
    if covered.len() % 2 == 1 {
        let mut padded = covered.to_vec();
        padded.push(0);
        assert_eq!(finish(sum(&padded, 0)), whole, "odd byte padding");
    }
}

fn check_hash(data: &[u8]) {
    let mut m = [0u8; HASH_MATERIAL_BYTES];
    let n = data.len().min(HASH_MATERIAL_BYTES);
    m[..n].copy_from_slice(&data[..n]);
    let word = |at: usize| u32::from_le_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let addr = [word(0), word(4), word(8), word(12)];
    let sport = u16::from_be_bytes([m[16], m[17]]);
    let dport = u16::from_be_bytes([m[18], m[19]]);
    let proto = m[20];
    let seed = word(21);

    let mut key = [0u8; 24];
    for (i, w) in addr.iter().enumerate() {
        key[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
    }
    assert_eq!(
        addr_hash(&addr, seed),
        murmur3_x86_32(&key[..16], seed),
        "addr_hash of {addr:08x?} seed {seed:08x}"
    );
    let ports = (u32::from(sport) << 16) | u32::from(dport);
    key[16..20].copy_from_slice(&ports.to_le_bytes());
    key[20..24].copy_from_slice(&u32::from(proto).to_le_bytes());
    assert_eq!(
        flow_hash(&addr, sport, dport, proto, seed),
        murmur3_x86_32(&key, seed),
        "flow_hash of {addr:08x?} {sport} {dport} {proto} seed {seed:08x}"
    );
}

/// MurmurHash3 x86_32 (Austin Appleby's reference, public domain), written
/// out independently of sluice-wire's unrolled version: blocks of four
/// little-endian bytes, a tail, the length, the finaliser.
pub(crate) fn murmur3_x86_32(key: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut blocks = key.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, &b) in tail.iter().enumerate() {
            k ^= u32::from(b) << (8 * i);
        }
        h ^= k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
    }
    // The reference mixes in the length as a 32-bit value.
    h ^= key.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}
