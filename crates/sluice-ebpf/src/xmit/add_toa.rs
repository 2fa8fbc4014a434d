//! `fullnat`'s TOA: the client's address and port, as a TCP option of
//! kind 254 (`sluice_wire::toa`, Alibaba LVS's format), inserted into a
//! connection's first ACK on its way to the real, so that a real behind
//! `fullnat` can still learn who the client is (`sluice realserver toa`).
//!
//! The frame grows at the front (`bpf_xdp_adjust_head`) and the Ethernet,
//! IP and fixed TCP headers move down into the new room, which leaves a
//! gap of the option's size right after the fixed TCP header, before any
//! other option (as DPVS does: an EOL among the client's options would
//! otherwise hide it); the option fills it. Lengths and checksums are updated incrementally
//! (`sluice_wire::toa::grown_check`). No room (the TCP options are full,
//! or the grown frame would exceed the egress MTU, the rule `tun` follows)
//! means no TOA: counted (`toa_no_room`), the packet goes on unchanged,
//! never truncated.
//!
//! So that it always fits, the real's SYN-ACK has its MSS option lowered
//! by the TOA's size on the way back ([`clamp_mss`]): the client's
//! segments, the first ACK with data included, then leave room for it.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};
use sluice_wire::{
    checksum,
    encap::surely_fits,
    maps::{Addr, Counter, addr_to_bytes, family},
    toa::{
        INSERT_LEN_V4, INSERT_LEN_V6, TCP_OPT_MSS, TCP_OPT_MSS_LEN, TCP_OPT_NOP, clamped_mss,
        encode_v4, encode_v6, field_check, grown_check, grown_offset_word, has_room,
    },
};

use crate::consts::{ETH_HDR_LEN, IPV4_HDR_LEN, IPV6_HDR_LEN, TCP_HDR_LEN};
use crate::frame::{be16, ptr_at_mut, read};

use super::too_big::exceeds_mtu;

/// Offset of the checksum in a TCP header.
const TCP_CHECK: usize = 16;
/// Offset of the data-offset / flags word in a TCP header.
const TCP_OFFSET_WORD: usize = 12;
/// NOPs [`clamp_mss`] skips before the first option.
const MSS_LEADING_NOPS: usize = 3;

/// What became of the TOA.
pub(super) enum Toa {
    /// Inserted.
    Inserted,
    /// Did not fit (`toa_no_room`).
    NoRoom,
}

/// Inserts the TOA of `client`:`cport` into the frame's TCP segment
/// (family `fam`; `parse` checked the headers: no IPv4 options or IPv6
/// extension headers). An error only if growing the frame failed after
/// it was found to fit (`drop_encap_failed`).
#[inline(always)]
pub(super) fn insert(ctx: &XdpContext, fam: u8, client: &Addr, cport: u16) -> Result<Toa, Counter> {
    let a = addr_to_bytes(*client);
    if fam == family::V4 {
        insert_block::<INSERT_LEN_V4, { ETH_HDR_LEN + IPV4_HDR_LEN + TCP_HDR_LEN }>(
            ctx,
            true,
            encode_v4([a[0], a[1], a[2], a[3]], cport),
        )
    } else {
        insert_block::<INSERT_LEN_V6, { ETH_HDR_LEN + IPV6_HDR_LEN + TCP_HDR_LEN }>(
            ctx,
            false,
            encode_v6(a, cport),
        )
    }
}

/// [`insert`] of the `N`-byte `block` into a frame whose Ethernet, IP and
/// fixed TCP headers take `H` bytes (`v4`: IPv4, else IPv6).
#[inline(always)]
fn insert_block<const N: usize, const H: usize>(
    ctx: &XdpContext,
    v4: bool,
    block: [u8; N],
) -> Result<Toa, Counter> {
    let l4 = H - TCP_HDR_LEN;
    let Some(t) = read::<TCP_HDR_LEN>(ctx, l4) else {
        return Err(Counter::DropTruncated);
    };
    let hdr_len = usize::from(t[TCP_OFFSET_WORD] >> 4) * 4;
    if hdr_len < TCP_HDR_LEN || !has_room(hdr_len, N) {
        return Ok(Toa::NoRoom);
    }
    let ip_len = (ctx.data_end() - ctx.data()).saturating_sub(ETH_HDR_LEN) as u32;
    if !surely_fits(ip_len, N as u32) && exceeds_mtu(ctx, N as u32).is_some() {
        return Ok(Toa::NoRoom);
    }
    // Everything the checksums need, before the frame moves.
    let seg_len = ip_len as usize - (l4 - ETH_HDR_LEN);
    let old_word = be16([t[TCP_OFFSET_WORD], t[TCP_OFFSET_WORD + 1]]);
    let check = grown_check(
        be16([t[TCP_CHECK], t[TCP_CHECK + 1]]),
        old_word,
        seg_len as u16,
        &block,
    );
    // SAFETY: the helper is called with the program's own context; every
    // packet pointer is derived again (bounds-checked) after it.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(N as i32)) } != 0 {
        return Err(Counter::DropEncapFailed);
    }
    // The Ethernet, IP and fixed TCP headers move down by N; the options
    // and the payload stay, so the gap opens right after the fixed TCP
    // header (where DPVS puts the TOA): before the other options, so an
    // EOL among them cannot hide it from the real's reader.
    let (Some(from), Some(to)) = (read::<H>(ctx, N), ptr_at_mut::<[u8; H]>(ctx, 0)) else {
        return Err(Counter::DropTruncated);
    };
    // SAFETY: `ptr_at_mut` checked that the bytes at 0 are in the frame;
    // byte arrays have alignment 1; `from` is a copy.
    unsafe { *to = from };
    let (Some(gap), Some(ow), Some(cp)) = (
        ptr_at_mut::<[u8; N]>(ctx, H),
        ptr_at_mut::<[u8; 2]>(ctx, l4 + TCP_OFFSET_WORD),
        ptr_at_mut::<[u8; 2]>(ctx, l4 + TCP_CHECK),
    ) else {
        return Err(Counter::DropTruncated);
    };
    // SAFETY: `ptr_at_mut` checked each field; alignment 1; they do not
    // overlap (the gap is after the fixed header, the word and the
    // checksum in it).
    unsafe {
        *gap = block;
        *ow = grown_offset_word(old_word, N).to_be_bytes();
        *cp = check.to_be_bytes();
    }
    grow_ip_length(ctx, v4, N as u16)
}

/// Adds `n` to the IP header's length field (IPv4: total length, with
/// its header checksum; IPv6: payload length).
#[inline(always)]
fn grow_ip_length(ctx: &XdpContext, v4: bool, n: u16) -> Result<Toa, Counter> {
    if v4 {
        let Some(ip) = ptr_at_mut::<[u8; IPV4_HDR_LEN]>(ctx, ETH_HDR_LEN) else {
            return Err(Counter::DropTruncated);
        };
        // SAFETY: `ptr_at_mut` checked the header; copied in, written back.
        let mut h = unsafe { *ip };
        let old = be16([h[2], h[3]]);
        let new = old.wrapping_add(n);
        let c = checksum::update16(be16([h[10], h[11]]), old, new);
        h[2..4].copy_from_slice(&new.to_be_bytes());
        h[10..12].copy_from_slice(&c.to_be_bytes());
        // SAFETY: as above.
        unsafe { *ip = h };
    } else {
        let Some(len) = ptr_at_mut::<[u8; 2]>(ctx, ETH_HDR_LEN + 4) else {
            return Err(Counter::DropTruncated);
        };
        // SAFETY: `ptr_at_mut` checked the field; alignment 1.
        unsafe { *len = be16(*len).wrapping_add(n).to_be_bytes() };
    }
    Ok(Toa::Inserted)
}

/// Lowers the MSS option of the frame's TCP segment (a real's SYN-ACK,
/// family `fam`) by the TOA's size, checksum updated. Only the first
/// option is looked at, after at most [`MSS_LEADING_NOPS`] NOPs: every
/// common stack (Linux, Windows, the BSDs) writes the MSS first, and a
/// walk of the whole option area costs the verifier nearly its whole
/// budget (each NOP-or-option branch doubles the paths it explores). An
/// MSS elsewhere is left as it is; the MTU rule of [`insert`] still holds
/// for the first ACK (no TOA rather than a truncated segment).
#[inline(always)]
pub(super) fn clamp_mss(ctx: &XdpContext, fam: u8) {
    let (l4, insert) = if fam == family::V4 {
        (ETH_HDR_LEN + IPV4_HDR_LEN, INSERT_LEN_V4)
    } else {
        (ETH_HDR_LEN + IPV6_HDR_LEN, INSERT_LEN_V6)
    };
    let Some(t) = read::<TCP_HDR_LEN>(ctx, l4) else {
        return;
    };
    let hdr_len = usize::from(t[TCP_OFFSET_WORD] >> 4) * 4;
    for nops in 0..=MSS_LEADING_NOPS {
        let off = TCP_HDR_LEN + nops;
        if off + usize::from(TCP_OPT_MSS_LEN) > hdr_len {
            return;
        }
        let Some([kind, len]) = read::<2>(ctx, l4 + off) else {
            return;
        };
        if kind == TCP_OPT_NOP {
            continue;
        }
        if kind != TCP_OPT_MSS || len != TCP_OPT_MSS_LEN {
            return;
        }
        let (Some(vp), Some(cp)) = (
            ptr_at_mut::<[u8; 2]>(ctx, l4 + off + 2),
            ptr_at_mut::<[u8; 2]>(ctx, l4 + TCP_CHECK),
        ) else {
            return;
        };
        // SAFETY: `ptr_at_mut` checked both fields; alignment 1; the MSS
        // value is in the options, the checksum in the fixed header: they
        // do not overlap.
        unsafe {
            let old = be16(*vp);
            let new = clamped_mss(old, insert);
            *cp = field_check(be16(*cp), old, new, (off + 2) % 2 == 1).to_be_bytes();
            *vp = new.to_be_bytes();
        }
        return;
    }
}
