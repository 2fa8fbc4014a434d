//! Bounds-checked access to the frame. Every read and write of packet
//! bytes in this crate goes through [`ptr_at`] / [`ptr_at_mut`] / [`read`]:
//! the comparison against `data_end` in [`ptr_at`] is what the verifier
//! needs to accept the dereference that follows.
//!
//! Headers are copied to the stack whole (`read::<N>`) and picked apart
//! there, which compiles to a few wide loads instead of one bounds check
//! per field.

use aya_ebpf::programs::XdpContext;
use sluice_wire::maps::Addr;

/// Pointer to a `T` at `offset` in the frame, or `None` if the frame is too
/// short.
#[inline(always)]
pub(crate) fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return None;
    }
    Some((start + offset) as *const T)
}

/// [`ptr_at`] for writing.
#[inline(always)]
pub(crate) fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Reads `N` bytes at `offset`.
#[inline(always)]
pub(crate) fn read<const N: usize>(ctx: &XdpContext, offset: usize) -> Option<[u8; N]> {
    let p = ptr_at::<[u8; N]>(ctx, offset)?;
    // SAFETY: `ptr_at` checked that N bytes at `offset` are inside the frame;
    // `[u8; N]` has alignment 1.
    Some(unsafe { *p })
}

/// The IPv4 address at `off` of a header copy, as a map [`Addr`].
#[inline(always)]
pub(crate) fn v4_addr<const N: usize>(h: &[u8; N], off: usize) -> Addr {
    [
        u32::from_ne_bytes([h[off], h[off + 1], h[off + 2], h[off + 3]]),
        0,
        0,
        0,
    ]
}

/// The IPv6 address at `off` of a header copy, as a map [`Addr`].
#[inline(always)]
pub(crate) fn v6_addr<const N: usize>(h: &[u8; N], off: usize) -> Addr {
    let w =
        |i: usize| u32::from_ne_bytes([h[off + i], h[off + i + 1], h[off + i + 2], h[off + i + 3]]);
    [w(0), w(4), w(8), w(12)]
}

/// A big-endian (network order) 16-bit field.
#[inline(always)]
pub(crate) fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}
