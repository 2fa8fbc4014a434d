//! Internet checksums: RFC 1071 full sums and RFC 1624 incremental updates.
//!
//! Sums are carried in a `u32` accumulator and folded at the end, so callers
//! can add pseudo-headers and payloads piecewise.

/// Adds `data` (big-endian 16-bit words; an odd last byte is padded with zero)
/// to the running one's-complement sum `acc`.
pub fn sum(data: &[u8], mut acc: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for w in &mut chunks {
        acc = add(acc, u16::from_be_bytes([w[0], w[1]]) as u32);
    }
    if let [last] = chunks.remainder() {
        acc = add(acc, (*last as u32) << 8);
    }
    acc
}

/// One's-complement addition with end-around carry, kept within 17 bits so it
/// can never overflow however many words are added.
#[inline]
pub fn add(acc: u32, v: u32) -> u32 {
    let s = acc + v;
    (s & 0xffff) + (s >> 16)
}

/// Folds the accumulator and returns the checksum field value (the one's
/// complement of the sum).
#[inline]
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word of the covered
/// data changed from `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let mut acc = (!check) as u32;
    acc = add(acc, (!old) as u32);
    acc = add(acc, new as u32);
    finish_no_invert(acc)
}

/// RFC 1624 update for a 32-bit field (two words), e.g. an IPv4 address.
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let c = update16(check, (old >> 16) as u16, (new >> 16) as u16);
    update16(c, old as u16, new as u16)
}

/// RFC 1624 update for a field of `N` bytes (`N` even, network order),
/// e.g. an IPv6 address. Eqn. 3 over all its words at once: the sum of
/// the complemented old words is the complement of their sum (one's
/// complement arithmetic), so one [`update16`] with the two folded sums
/// does it. Summing first keeps one accumulator live; word-by-word
/// updates kept every word of both fields live, which the XDP programs
/// (10 registers) spilled to their 512-byte stack.
#[inline(always)]
pub fn update_bytes<const N: usize>(check: u16, old: &[u8; N], new: &[u8; N]) -> u16 {
    // Its own loop rather than [`sum`] over slices, which the XDP
    // programs would call as a BPF function (with a frame of its own).
    let (mut o, mut n) = (0u32, 0u32);
    let mut i = 0;
    while i + 1 < N {
        o = add(o, u32::from(u16::from_be_bytes([old[i], old[i + 1]])));
        n = add(n, u32::from(u16::from_be_bytes([new[i], new[i + 1]])));
        i += 2;
    }
    update16(check, fold(o), fold(n))
}

/// The accumulator folded to 16 bits, not complemented.
#[inline(always)]
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

#[inline]
fn finish_no_invert(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    // IPv4 header from RFC 1071-style worked examples (checksum 0xb861).
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn full_sum_matches_known_value() {
        assert_eq!(finish(sum(&HDR, 0)), 0xb861);
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x01], 0), 0x0100);
        assert_eq!(sum(&[0x01, 0x02, 0x03], 0), 0x0102 + 0x0300);
    }

    #[test]
    fn incremental_equals_recomputed() {
        let mut h = HDR;
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        // Change the TTL/proto word and the destination address.
        let old_w = u16::from_be_bytes([h[8], h[9]]);
        h[8] = 0x3f;
        let new_w = u16::from_be_bytes([h[8], h[9]]);
        let c1 = update16(0xb861, old_w, new_w);
        let old_a = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
        let new_a: u32 = 0x0a00_0005;
        h[16..20].copy_from_slice(&new_a.to_be_bytes());
        let c2 = update32(c1, old_a, new_a);
        h[10..12].copy_from_slice(&[0, 0]);
        assert_eq!(c2, finish(sum(&h, 0)));
    }

    #[test]
    fn update_bytes_equals_word_by_word_updates() {
        let old = [0xfdu8, 0x99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let new = [0xfdu8, 0x98, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        let mut buf = [0u8; 20];
        buf[..16].copy_from_slice(&old);
        buf[16..].copy_from_slice(&[0xab, 0xcd, 0x01, 0x02]);
        let c = finish(sum(&buf, 0));
        buf[..16].copy_from_slice(&new);
        assert_eq!(update_bytes(c, &old, &new), finish(sum(&buf, 0)));
        let a = 0x0a63_0002u32;
        let b = 0x0a63_000bu32;
        assert_eq!(
            update_bytes(0x1234, &a.to_be_bytes(), &b.to_be_bytes()),
            update32(0x1234, a, b)
        );
    }
}
