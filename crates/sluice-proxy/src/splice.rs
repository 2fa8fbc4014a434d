//! The `mode tcp` relay between two plain TCP sockets, with splice(2).
//!
//! Each direction is a loop of its own: read from one socket, write
//! everything to the other, and on end of stream pass the half-close on
//! (`shutdown(SHUT_WR)`), so a client that shuts down its sending side
//! still gets the server's answer. A direction moves its bytes either by
//! copying them through a user-space buffer or, once it switches (see
//! [`Splice`]), with splice(2) through a pipe of its own: socket → pipe,
//! then pipe → socket, the data never entering user space. A direction
//! always empties its pipe before it reads again, so bytes leave in the
//! order they came and the pipe never holds more than one read.

use std::io;
use std::net::Shutdown;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};

use nix::fcntl::{FcntlArg, OFlag, SpliceFFlags, fcntl, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::config::Splice;
use crate::io::Activity;
use crate::stats::Counters;

/// Size of the copy buffer of one direction of a relay, unit: bytes. Also
/// the yardstick of `splice = "auto"`: a read that fills it is a sign of
/// bulk.
pub const COPY_BUF_BYTES: usize = 16 * 1024;
/// `splice = "auto"`: reads in a row that fill the whole copy buffer before
/// a direction switches to splice.
pub const SPLICE_AUTO_FULL_READS: u32 = 4;
/// Capacity asked of each relay pipe (`F_SETPIPE_SZ`), unit: bytes; the
/// most one splice moves. The kernel's default pipe is 64 KiB; if it
/// refuses more, the default stays.
pub const PIPE_BYTES: usize = 256 * 1024;

/// Relays between `client` and `server` until both directions have ended
/// (or one fails). `up` and `down` record the client's and the server's
/// reads; `spliced` counts the bytes moved by splice(2). The caller closes
/// both sockets when it returns: the direction that ends last leaves its
/// FIN to that close instead of a `shutdown` call of its own.
pub(crate) async fn relay(
    client: &TcpStream,
    server: &TcpStream,
    up: &Activity,
    down: &Activity,
    mode: Splice,
    spliced: &AtomicU64,
) -> io::Result<()> {
    let ended = AtomicBool::new(false);
    tokio::try_join!(
        pump(client, server, up, mode, spliced, &ended),
        pump(server, client, down, mode, spliced, &ended),
    )?;
    Ok(())
}

/// One direction: `from` → `to`, then the half-close.
async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    activity: &Activity,
    mode: Splice,
    spliced: &AtomicU64,
    other_ended: &AtomicBool,
) -> io::Result<()> {
    // No pipe (out of file descriptors) only means copying.
    let mut pipe = match mode {
        Splice::Always => Pipe::new().ok(),
        Splice::Auto | Splice::Never => None,
    };
    let mut buf: Vec<u8> = Vec::new();
    let mut full_reads = 0u32;
    loop {
        if let Some(p) = &pipe {
            let n = splice_in(from, p).await?;
            if n == 0 {
                break;
            }
            activity.touch(n);
            splice_out(p, to, n).await?;
            Counters::add(spliced, n as u64);
            continue;
        }
        // Allocated on first use, never zeroed (reads go into its spare
        // capacity): most sessions are short, and zeroing 16 KiB per
        // direction showed in profiles of a connection per request.
        if buf.capacity() == 0 {
            buf = Vec::with_capacity(COPY_BUF_BYTES);
        }
        buf.clear();
        let n = read(from, &mut buf).await?;
        if n == 0 {
            break;
        }
        activity.touch(n);
        write_all(to, &buf[..n]).await?;
        if mode == Splice::Auto {
            full_reads = if n == COPY_BUF_BYTES {
                full_reads + 1
            } else {
                0
            };
            if full_reads >= SPLICE_AUTO_FULL_READS {
                pipe = Pipe::new().ok();
                if pipe.is_some() {
                    buf = Vec::new();
                }
            }
        }
    }
    // The other direction already ended: `to` has nothing left to read,
    // so the caller's close sends the FIN (one system call fewer per
    // session). Otherwise half-close now: the peer may still answer.
    if other_ended.swap(true, Relaxed) {
        return Ok(());
    }
    match socket2::SockRef::from(to).shutdown(Shutdown::Write) {
        // The peer may be gone already; its own direction reports that.
        Err(e) if e.kind() != io::ErrorKind::NotConnected => Err(e),
        _ => Ok(()),
    }
}

/// A pipe for splicing, both ends non-blocking.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new() -> io::Result<Self> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        let size = i32::try_from(PIPE_BYTES).unwrap_or(i32::MAX);
        // Best effort: a smaller pipe only means more, smaller splices.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(size));
        Ok(Self { read, write })
    }
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// Moves what `from` has (up to the pipe's size) into the empty pipe `p`;
/// 0 at end of stream.
async fn splice_in(from: &TcpStream, p: &Pipe) -> io::Result<usize> {
    loop {
        from.readable().await?;
        match from.try_io(Interest::READABLE, || {
            splice(from, None, &p.write, None, PIPE_BYTES, flags()).map_err(io::Error::from)
        }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            r => return r,
        }
    }
}

/// Moves the `n` bytes in `p` to `to`.
async fn splice_out(p: &Pipe, to: &TcpStream, mut n: usize) -> io::Result<()> {
    while n > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(&p.read, None, to, None, n, flags()).map_err(io::Error::from)
        }) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(m) => n -= m.min(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads into the spare capacity of `buf` (appending).
///
/// A read that returns less than it had room for emptied the socket's
/// receive queue, so the next read could only fail with `EAGAIN`: the
/// socket's read readiness is cleared right away instead, and the next
/// call waits for the reactor's next edge without that system call (one
/// per burst and direction; two per request of a keep-alive exchange).
/// The clearing is race-free because it happens inside `try_io`, which
/// clears only the readiness it observed *before* the read: an edge that
/// arrives during or after the read is newer and survives.
async fn read(from: &TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    loop {
        from.readable().await?;
        let room = buf.capacity() - buf.len();
        let mut got = None;
        let r = from.try_io(Interest::READABLE, || {
            // The inner call reads into spare capacity without unsafe code;
            // its own `WouldBlock` (a spurious wake-up) passes through.
            let n = from.try_read_buf(buf)?;
            got = Some(n);
            if n > 0 && n < room {
                // Drained: have `try_io` clear the readiness it observed.
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(n)
        });
        match (r, got) {
            (_, Some(n)) => return Ok(n),
            (Err(e), None) if e.kind() == io::ErrorKind::WouldBlock => {}
            (r, None) => return r,
        }
    }
}

/// Writes all of `data` to `to`.
pub(crate) async fn write_all(to: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        to.writable().await?;
        match to.try_write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
