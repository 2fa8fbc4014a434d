//! One worker: a loop that claims request tickets, sends each request on its
//! own connection (new or reused) and records the outcome in local counters
//! and a local histogram. Workers share only two atomics (the ticket counter
//! and, with a progress bar, the finished counter); nothing on the hot path
//! takes a lock.

use std::error::Error as StdError;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{CONNECTION, HOST, HeaderValue, USER_AGENT};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::report::Errors;

/// Largest latency recorded, in microseconds; larger samples are clamped.
/// A request can wait for its scheduled slot for at most the whole run and
/// then take at most the longest timeout.
pub(crate) const MAX_LATENCY_US: u64 =
    (crate::spec::MAX_DURATION.as_secs() + crate::spec::MAX_TIMEOUT.as_secs()) * 1_000_000;

/// Significant digits of the latency histograms.
pub(crate) const HISTOGRAM_SIGFIG: u8 = 3;

/// `User-Agent` sent with every request.
pub(crate) const USER_AGENT_VALUE: &str = "sluice-bench";

/// State shared (read-only apart from the atomics) by all workers of a run.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) peer: SocketAddr,
    pub(crate) host_header: HeaderValue,
    pub(crate) path: http::Uri,
    pub(crate) keep_alive: bool,
    pub(crate) timeout: Duration,
    pub(crate) rate: Option<f64>,
    /// Tickets `0..max_tickets` are handed out; one ticket is one request.
    pub(crate) max_tickets: u64,
    pub(crate) start: Instant,
    pub(crate) deadline: Instant,
    pub(crate) next_ticket: AtomicU64,
    /// Finished requests, updated only when `count_progress` is set.
    pub(crate) finished: AtomicU64,
    pub(crate) count_progress: bool,
}

/// What one worker measured.
#[derive(Debug)]
pub(crate) struct WorkerStats {
    pub(crate) histogram: Histogram<u64>,
    pub(crate) responses: u64,
    pub(crate) ok: u64,
    pub(crate) connections: u64,
    pub(crate) body_bytes: u64,
    pub(crate) bytes_read: Arc<AtomicU64>,
    pub(crate) errors: Errors,
}

/// How one request ended.
#[derive(Debug)]
enum Outcome {
    Response { status: u16, body_bytes: u64 },
    Connect(String),
    Timeout(String),
    Io(String),
}

/// An open HTTP/1.1 client connection. The connection future runs in its own
/// task, which is aborted when this is dropped so that nothing outlives the
/// worker (a stalled server would otherwise keep the task alive).
#[derive(Debug)]
struct Conn {
    sender: SendRequest<Empty<Bytes>>,
    task: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs one worker until the tickets run out, the schedule passes the
/// deadline, or `stop` turns true.
/// `histogram` is this worker's empty histogram.
pub(crate) async fn run_worker(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    histogram: Histogram<u64>,
) -> WorkerStats {
    let mut w = Worker {
        stats: WorkerStats {
            histogram,
            responses: 0,
            ok: 0,
            connections: 0,
            body_bytes: 0,
            bytes_read: Arc::new(AtomicU64::new(0)),
            errors: Errors::default(),
        },
        conn: None,
        shared,
    };
    loop {
        // The coordinator also signals the deadline, but checking it here
        // keeps requests from starting after it while that signal is on
        // its way.
        if *stop.borrow() || Instant::now() >= w.shared.deadline {
            break;
        }
        let ticket = w.shared.next_ticket.fetch_add(1, Ordering::Relaxed);
        if ticket >= w.shared.max_tickets {
            break;
        }
        let started = match w.shared.rate {
            None => Instant::now(),
            Some(rate) => {
                let scheduled = w.shared.start + Duration::from_secs_f64(ticket as f64 / rate);
                if scheduled >= w.shared.deadline {
                    break;
                }
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|s| *s) => break,
                    () = tokio::time::sleep_until(scheduled) => {}
                }
                // Latency counts from the scheduled time: if every worker
                // was busy, the wait is part of what a user would see.
                scheduled
            }
        };
        let outcome = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            o = w.one_request() => o,
        };
        w.record(outcome, started);
    }
    // Close the connection before reporting so its task is gone too.
    w.conn = None;
    w.stats
}

struct Worker {
    stats: WorkerStats,
    conn: Option<Conn>,
    shared: Arc<Shared>,
}

impl Worker {
    async fn one_request(&mut self) -> Outcome {
        if !self.shared.keep_alive {
            return self.one_shot().await;
        }
        let deadline = Instant::now() + self.shared.timeout;
        // A closed keep-alive connection (the server sent `Connection:
        // close` or timed it out while idle) is replaced, not an error.
        let mut conn = match self.conn.take().filter(|c| !c.sender.is_closed()) {
            Some(conn) => conn,
            None => match tokio::time::timeout_at(deadline, self.connect()).await {
                Err(_) => {
                    return Outcome::Connect(format!(
                        "connect to {} timed out after {:?}",
                        self.shared.peer, self.shared.timeout
                    ));
                }
                Ok(Err(msg)) => return Outcome::Connect(msg),
                Ok(Ok(conn)) => {
                    self.stats.connections += 1;
                    conn
                }
            },
        };
        let request = self.request();
        let result = tokio::time::timeout_at(deadline, exchange(&mut conn.sender, request)).await;
        let outcome = match result {
            Err(_) => Outcome::Timeout(format!(
                "no complete response within {:?}",
                self.shared.timeout
            )),
            Ok(Err(e)) => Outcome::Io(error_chain(&e)),
            Ok(Ok((status, body_bytes))) => Outcome::Response { status, body_bytes },
        };
        // A connection that failed is in an unknown state; never reuse it.
        // Dropping `conn` aborts its task.
        if self.shared.keep_alive && matches!(outcome, Outcome::Response { .. }) {
            self.conn = Some(conn);
        }
        outcome
    }

    /// A new connection for one request (ab mode). The connection future is
    /// driven in this task next to the request instead of in a task of its
    /// own: one spawn and cross-task wake-up fewer per request matters when
    /// the client is the bottleneck, as ab mode usually is.
    async fn one_shot(&mut self) -> Outcome {
        let deadline = Instant::now() + self.shared.timeout;
        let peer = self.shared.peer;
        let tcp = match tokio::time::timeout_at(deadline, TcpStream::connect(peer)).await {
            Err(_) => {
                return Outcome::Connect(format!(
                    "connect to {peer} timed out after {:?}",
                    self.shared.timeout
                ));
            }
            Ok(Err(e)) => return Outcome::Connect(format!("connect to {peer}: {e}")),
            Ok(Ok(tcp)) => tcp,
        };
        self.stats.connections += 1;
        let io = self.wrap(tcp);
        let request = self.request();
        let work = async {
            let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
            // The connection may finish (the server closes after the
            // response) before the body is drained from its channel; it
            // then waits forever so that only the exchange decides.
            let connection = async {
                let _ = connection.await;
                std::future::pending::<std::convert::Infallible>().await
            };
            tokio::select! {
                r = exchange(&mut sender, request) => r,
                never = connection => match never {},
            }
        };
        match tokio::time::timeout_at(deadline, work).await {
            Err(_) => Outcome::Timeout(format!(
                "no complete response within {:?}",
                self.shared.timeout
            )),
            Ok(Err(e)) => Outcome::Io(error_chain(&e)),
            Ok(Ok((status, body_bytes))) => Outcome::Response { status, body_bytes },
        }
    }

    /// The socket as hyper's IO, counting the bytes read.
    fn wrap(&self, tcp: TcpStream) -> TokioIo<CountingStream> {
        // Small requests: don't let Nagle delay them behind delayed ACKs.
        let _ = tcp.set_nodelay(true);
        TokioIo::new(CountingStream {
            inner: tcp,
            bytes_read: Arc::clone(&self.stats.bytes_read),
        })
    }

    async fn connect(&self) -> Result<Conn, String> {
        let peer = self.shared.peer;
        let tcp = TcpStream::connect(peer)
            .await
            .map_err(|e| format!("connect to {peer}: {e}"))?;
        let io = self.wrap(tcp);
        let (sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|e| format!("HTTP/1.1 handshake with {peer}: {}", error_chain(&e)))?;
        let task = tokio::spawn(async move {
            // Errors surface through the request's response future too.
            let _ = connection.await;
        });
        Ok(Conn { sender, task })
    }

    fn request(&self) -> http::Request<Empty<Bytes>> {
        let mut req = http::Request::new(Empty::new());
        *req.uri_mut() = self.shared.path.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, self.shared.host_header.clone());
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if !self.shared.keep_alive {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        req
    }

    fn record(&mut self, outcome: Outcome, started: Instant) {
        let s = &mut self.stats;
        match outcome {
            Outcome::Response { status, body_bytes } => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                // `record` grows the auto-resizing histogram (the
                // `saturating_*` variants would not); clamping bounds its
                // memory, and a failed resize falls back to saturating.
                let micros = micros.clamp(1, MAX_LATENCY_US);
                if s.histogram.record(micros).is_err() {
                    s.histogram.saturating_record(micros);
                }
                s.responses += 1;
                s.body_bytes += body_bytes;
                if (200..300).contains(&status) {
                    s.ok += 1;
                } else {
                    s.errors.count_status(status);
                }
            }
            Outcome::Connect(msg) => {
                s.errors.connect += 1;
                s.errors.note_first(&msg);
            }
            Outcome::Timeout(msg) => {
                s.errors.timeout += 1;
                s.errors.note_first(&msg);
            }
            Outcome::Io(msg) => {
                s.errors.io += 1;
                s.errors.note_first(&msg);
            }
        }
        if self.shared.count_progress {
            self.shared.finished.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends `request` and reads the whole response body, returning the status
/// and the body length.
async fn exchange(
    sender: &mut SendRequest<Empty<Bytes>>,
    request: http::Request<Empty<Bytes>>,
) -> Result<(u16, u64), hyper::Error> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let mut body = response.into_body();
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            body_bytes += data.len() as u64;
        }
    }
    Ok((status, body_bytes))
}

/// `error: cause: cause ...`, so that "connection closed" carries its reason.
fn error_chain(err: &dyn StdError) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = cause.source();
    }
    msg
}

/// A TCP stream that counts the bytes read from it (status lines, headers
/// and bodies as they came off the wire).
#[derive(Debug)]
struct CountingStream {
    inner: TcpStream,
    bytes_read: Arc<AtomicU64>,
}

impl AsyncRead for CountingStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        if read > 0 {
            self.bytes_read.fetch_add(read as u64, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for CountingStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
