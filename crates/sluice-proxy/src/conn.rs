//! Per-client-connection state shared by the reader, the request handler and
//! the idle watchdog (HTTP mode): request-smuggling verdicts from
//! [`HeadScanner`], request/response progress, and the HTTP timers
//! `timeout http-request` and `timeout http-keep-alive`.
//!
//! hyper's own header-read timer starts whenever it waits for a head,
//! including the idle time after a response, so it cannot tell keep-alive
//! idleness from a slow head. The watchdog here can, because the reader sees
//! the first byte of each head:
//!
//! - before the first request: the connection may wait `timeout_http_request`
//!   from accept;
//! - after a response ended and before the next head's first byte:
//!   `timeout_http_keep_alive`;
//! - from a head's first byte to its end: `timeout_http_request`;
//! - while a request is being handled: no timer here (server, queue and
//!   client-body timers apply).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;

use crate::h1scan::HeadScanner;
use crate::policy::Violation;

/// "None" in the `u64` atomics below.
const UNSET: u64 = u64::MAX;

/// How often the watchdog re-reads the state when no timer runs (a request
/// in flight). State changes that start a timer also wake it at once, so
/// this only bounds the cost of a missed wake-up.
const WATCHDOG_RECHECK: Duration = Duration::from_secs(1);

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No complete request head within `timeout_http_request`.
    HttpRequest {
        /// Part of a head had arrived.
        partial: bool,
    },
    /// Idle after a response for `timeout_http_keep_alive`.
    KeepAlive,
}

/// The HTTP timers the watchdog applies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HttpTimers {
    pub(crate) http_request: Duration,
    pub(crate) keep_alive: Duration,
}

/// State of one client connection; see the module docs.
#[derive(Debug)]
pub(crate) struct ConnWatch {
    origin: Instant,
    /// From the scanner (HTTP/1 only): index of the first request the
    /// policy refuses, or [`UNSET`].
    first_bad: AtomicU64,
    /// Why ([`Violation::to_u8`]); written before `first_bad`.
    bad_why: AtomicU8,
    /// From the scanner: request heads completed.
    heads: AtomicU64,
    /// From the scanner: when the head in progress got its first byte
    /// (nanoseconds since `origin`), or [`UNSET`].
    head_start_ns: AtomicU64,
    /// Requests handed to the handler.
    dispatched: AtomicU64,
    /// Requests whose response ended (or was abandoned).
    finished: AtomicU64,
    /// When the connection last became idle: accept, then each response end.
    idle_since_ns: AtomicU64,
    /// Wakes the watchdog when a timer may have started.
    changed: Notify,
}

impl ConnWatch {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            first_bad: AtomicU64::new(UNSET),
            bad_why: AtomicU8::new(0),
            heads: AtomicU64::new(0),
            head_start_ns: AtomicU64::new(UNSET),
            dispatched: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            idle_since_ns: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(UNSET - 1)
    }

    /// When the connection last became idle (accept or the last response end).
    pub(crate) fn idle_since(&self) -> Instant {
        self.origin + Duration::from_nanos(self.idle_since_ns.load(Relaxed))
    }

    /// A request reached the handler: returns its guard, and the policy's
    /// reason to refuse it when the scanner found one in its raw head (the
    /// handler answers with it and closes).
    pub(crate) fn dispatch(self: &Arc<Self>) -> (RequestGuard, Option<Violation>) {
        let seq = self.dispatched.fetch_add(1, Relaxed);
        let bad = (self.first_bad.load(Relaxed) <= seq)
            .then(|| Violation::from_u8(self.bad_why.load(Relaxed)).unwrap_or(Violation::BadHead));
        (RequestGuard(self.clone()), bad)
    }

    /// The next deadline (nanoseconds since `origin`) and what expires then,
    /// or `None` while a request is in flight.
    fn deadline(&self, t: HttpTimers) -> Option<(u64, Expired)> {
        let dispatched = self.dispatched.load(Relaxed);
        if self.finished.load(Relaxed) < dispatched {
            return None;
        }
        let idle_since = self.idle_since_ns.load(Relaxed);
        let head_start = self.head_start_ns.load(Relaxed);
        let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(UNSET - 1);
        if head_start != UNSET {
            let from = head_start.max(idle_since);
            return Some((
                from.saturating_add(ns(t.http_request)),
                Expired::HttpRequest { partial: true },
            ));
        }
        if self.heads.load(Relaxed) > dispatched {
            // A complete head hyper has not dispatched yet (pipelining).
            return None;
        }
        Some(if dispatched == 0 {
            (
                idle_since.saturating_add(ns(t.http_request)),
                Expired::HttpRequest { partial: false },
            )
        } else {
            (
                idle_since.saturating_add(ns(t.keep_alive)),
                Expired::KeepAlive,
            )
        })
    }

    /// Returns when the connection has waited too long for a request.
    pub(crate) async fn watchdog(&self, timers: HttpTimers) -> Expired {
        loop {
            let wait = match self.deadline(timers) {
                Some((at, why)) => {
                    let now = self.now_ns();
                    if at <= now {
                        return why;
                    }
                    Duration::from_nanos(at - now)
                }
                None => WATCHDOG_RECHECK,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.changed.notified() => {}
            }
        }
    }

    /// Publish the scanner's findings after a read.
    fn scanned(&self, scan: &HeadScanner) {
        // One reader publishes, so a plain check-then-store is enough.
        if let Some((index, why)) = scan.first_bad()
            && self.first_bad.load(Relaxed) == UNSET
        {
            self.bad_why.store(why.to_u8(), Relaxed);
            self.first_bad.store(index, Relaxed);
        }
        self.heads.store(scan.heads(), Relaxed);
        if scan.in_head() {
            if self.head_start_ns.load(Relaxed) == UNSET {
                self.head_start_ns.store(self.now_ns(), Relaxed);
                self.changed.notify_one();
            }
        } else {
            self.head_start_ns.store(UNSET, Relaxed);
        }
    }
}

/// Marks a request finished when dropped (its response ended or was
/// abandoned); the connection is idle from then on if nothing else is in flight.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<ConnWatch>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let w = &self.0;
        w.idle_since_ns.store(w.now_ns(), Relaxed);
        w.finished.fetch_add(1, Relaxed);
        w.changed.notify_one();
    }
}

/// An HTTP/1 client stream whose reads go through a [`HeadScanner`].
#[derive(Debug)]
pub(crate) struct Scanned<S> {
    inner: S,
    scan: HeadScanner,
    watch: Arc<ConnWatch>,
}

impl<S> Scanned<S> {
    pub(crate) fn new(inner: S, max_head_bytes: usize, watch: Arc<ConnWatch>) -> Self {
        Self {
            inner,
            scan: HeadScanner::new(max_head_bytes),
            watch,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Scanned<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            let this = &mut *self;
            this.scan.feed(&buf.filled()[before..]);
            this.watch.scanned(&this.scan);
            if this.scan.broken_body() {
                // hyper must not read on: what follows cannot be framed.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "malformed chunked request body",
                )));
            }
        }
        res
    }
}

crate::io::write_through!(Scanned);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TIMERS: HttpTimers = HttpTimers {
        http_request: Duration::from_millis(200),
        keep_alive: Duration::from_millis(80),
    };

    #[tokio::test]
    async fn scanned_reads_pass_bytes_through_and_flag_requests() {
        let (mut client, server) = tokio::io::duplex(4096);
        let watch = ConnWatch::new();
        let mut s = Scanned::new(server, 1024, watch.clone());
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        client.write_all(input).await.unwrap();
        drop(client);
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
        let (_g0, bad0) = watch.dispatch();
        let (_g1, bad1) = watch.dispatch();
        assert_eq!(bad0, None);
        assert_eq!(bad1, Some(Violation::LengthAndChunked));
    }

    #[tokio::test]
    async fn deadlines_follow_the_connection_phase() {
        let w = ConnWatch::new();
        // Before the first request: http-request from accept.
        let (at, why) = w.deadline(TIMERS).unwrap();
        assert_eq!(why, Expired::HttpRequest { partial: false });
        assert_eq!(at, 200_000_000);
        // The first head arrives, then its request is in flight: no timer.
        let mut scan = HeadScanner::new(1024);
        scan.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        w.scanned(&scan);
        let (g, _) = w.dispatch();
        assert_eq!(w.deadline(TIMERS), None);
        tokio::time::sleep(Duration::from_millis(5)).await;
        drop(g);
        // Idle after a response: keep-alive from the response end.
        let (at, why) = w.deadline(TIMERS).unwrap();
        assert_eq!(why, Expired::KeepAlive);
        let idle = w.idle_since_ns.load(Relaxed);
        assert!(idle >= 5_000_000);
        assert_eq!(at, idle + 80_000_000);
        // First byte of the next head: http-request from then.
        scan.feed(b"GET /");
        w.scanned(&scan);
        let (at, why) = w.deadline(TIMERS).unwrap();
        assert_eq!(why, Expired::HttpRequest { partial: true });
        assert_eq!(at, w.head_start_ns.load(Relaxed) + 200_000_000);
        // Head complete but not yet dispatched: no timer.
        scan.feed(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        w.scanned(&scan);
        assert_eq!(w.deadline(TIMERS), None);
    }

    #[tokio::test]
    async fn watchdog_fires_on_keep_alive_and_is_woken_by_a_head() {
        let w = ConnWatch::new();
        drop(w.dispatch());
        let t = Instant::now();
        assert_eq!(w.watchdog(TIMERS).await, Expired::KeepAlive);
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(75) && e < Duration::from_millis(500),
            "{e:?}"
        );

        // A head starting while the watchdog sleeps on a long keep-alive
        // switches it to the (shorter here) http-request timer.
        let timers = HttpTimers {
            http_request: Duration::from_millis(50),
            keep_alive: Duration::from_secs(30),
        };
        let w = ConnWatch::new();
        drop(w.dispatch());
        let w2 = w.clone();
        let t = Instant::now();
        let dog = tokio::spawn(async move { w2.watchdog(timers).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut scan = HeadScanner::new(1024);
        scan.feed(b"GE");
        w.scanned(&scan);
        assert_eq!(dog.await.unwrap(), Expired::HttpRequest { partial: true });
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(65) && e < Duration::from_secs(2),
            "{e:?}"
        );
    }
}
