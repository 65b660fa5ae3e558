//! The hand-written HTTP/1.1 path: plain keep-alive requests without hyper.
//!
//! Most traffic through a load balancer is small HTTP/1.1 requests on kept-alive
//! connections. For those, hyper's general machinery (a header map per message, a task
//! per backend connection, a body type per direction) cost about half of fulcrum's CPU
//! per request. This path serves them directly: each client connection is one task
//! that reads a head into its buffer (`head`), picks the backend the same way the
//! hyper path does, writes the rewritten head and body to a pooled backend socket,
//! and relays the response, framing intact (`exchange`, `response`, `relay`,
//! `chunked`, `encode`). The read buffer and the per-request working memory are
//! lent to the connection while it serves a request and given back between requests
//! (`spare`, `crate::bufpool`): an idle keep-alive connection holds neither.
//!
//! Whatever it does not handle itself — HTTP/2 (h2c preface), HTTP/1.0, chunked or
//! `Expect` request bodies, upgrades, `CONNECT`, redirects to HTTPS, TLS backends — is
//! handed to hyper at a request boundary before a byte of that request is consumed:
//! hyper then serves the connection from that request on, reading the buffered bytes
//! first (`conn_io::ActivityIo::with_prefix`). So every feature keeps working and the
//! common case is fast.
//!
//! Idle and slow-head timeouts come from the same counter-based watchdog as hyper's
//! connections (`conn_watch`), run for all of a listener's connections by one sweep
//! (`crate::listener_sweep`); shutdown lets the request in progress finish. A request
//! whose relay makes no client I/O for the idle timeout (a backend or client that
//! stalled mid-body) is cut off; waiting for a response head is bounded by the pool's
//! `response_timeout` instead.

pub(crate) mod chunked;
mod encode;
mod exchange;
pub(crate) mod head;
mod io;
#[cfg(test)]
mod props;
mod relay;
pub(crate) mod response;
mod spare;
mod timer;
mod upload;

use crate::bufpool;
use crate::conn_io::ActivityIo;
use crate::conn_watch::ConnActivity;
use crate::dataplane::DataPlane;
use crate::listener_sweep::{event, Sweep};
use crate::request::conn::ConnInfo;
use bytes::{Bytes, BytesMut};
use exchange::{Client, Next};
use head::Parsed;
use io::write_both;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};

/// What every request of one connection shares. It lives in the connection's task for
/// the connection's whole life, so it is kept to pointers and a few bytes; it counts the
/// connection in `client_connections` while it exists.
pub(super) struct Ctx {
    dp: Arc<DataPlane>,
    conn: Arc<ConnInfo>,
    activity: Arc<ConnActivity>,
    max_header_bytes: u32,
    /// Finish the request in progress, then close (shutdown or idle).
    closing: AtomicBool,
    /// Where the request in progress is (a `Phase` as u8).
    phase: AtomicU8,
    /// Waiting for the next request holding no buffer and no unread byte: the
    /// connection can be parked (`crate::idle_park`).
    waiting: AtomicBool,
}

impl Drop for Ctx {
    fn drop(&mut self) {
        self.dp.metrics.client_connections.dec();
    }
}

/// Where a connection is in serving a request; decides what an idle timeout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Phase {
    /// Between requests: shutdown or an idle timeout closes at once.
    Between = 0,
    /// Waiting for the backend's response head, which `response_timeout` bounds: a
    /// quiet client connection is expected.
    AwaitingBackend = 1,
    /// Moving body bytes: no client I/O for the idle timeout means a side stalled.
    Relaying = 2,
    /// Accepted, no request served yet: the client has just connected to send one, so
    /// shutdown lets it come (and answers it with `Connection: close`); an idle timeout
    /// closes as between requests.
    Fresh = 3,
}

impl Ctx {
    fn new(
        dp: Arc<DataPlane>,
        conn: Arc<ConnInfo>,
        activity: Arc<ConnActivity>,
        max_header_bytes: usize,
    ) -> Self {
        dp.metrics.client_connections.inc();
        Ctx {
            dp,
            conn,
            activity,
            max_header_bytes: u32::try_from(max_header_bytes).unwrap_or(u32::MAX),
            closing: AtomicBool::new(false),
            phase: AtomicU8::new(Phase::Fresh as u8),
            waiting: AtomicBool::new(false),
        }
    }

    fn max_header_bytes(&self) -> usize {
        self.max_header_bytes as usize
    }

    fn closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Between,
            1 => Phase::AwaitingBackend,
            3 => Phase::Fresh,
            _ => Phase::Relaying,
        }
    }
}

/// How a connection's session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Closed,
    Handoff,
    /// Idle between requests and told it may park: its task ends, the socket lives on.
    Park,
}

/// How the connection left this path while still open.
pub(crate) enum Left<S> {
    /// A request needs hyper.
    Handoff(Handoff<S>),
    /// Idle between requests, nothing unread: the caller may park it
    /// (`crate::idle_park`); only a connection watched as parkable is left so.
    Idle { stream: S, conn: Arc<ConnInfo> },
}

/// A connection this path gives up at a request boundary: the stream, the bytes of
/// the next request already read from it, and what serving it needs. The caller
/// serves it with hyper (`listener::serve_h1`); this path never calls hyper itself.
pub(crate) struct Handoff<S> {
    pub stream: S,
    pub prefix: Bytes,
    pub conn: Arc<ConnInfo>,
    pub dp: Arc<DataPlane>,
}

/// Serves one plain client connection; returns it as a `Handoff` if a request needs
/// what only hyper does, or `Idle` when it is `parkable` and has been idle for more
/// than a sweep tick. Idle and slow-head timeouts and the listener's stop come from
/// its `sweep`.
///
/// The connection's state is set up here and moved into the returned future once
/// (an `async fn` would keep its arguments beside what it builds from them, for the
/// connection's whole life). While the connection is idle that future holds the
/// stream, `Ctx`, the sweep's slot and the wait for bytes: no buffer (see `session`).
pub(crate) fn serve<S>(
    stream: S,
    conn: Arc<ConnInfo>,
    dp: Arc<DataPlane>,
    max_header_bytes: usize,
    sweep: &Arc<Sweep>,
    parkable: bool,
) -> impl Future<Output = Option<Left<S>>> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(ConnActivity::default());
    let watched = sweep.watch(activity.clone(), parkable);
    let mut io = ActivityIo::new(stream, activity.clone());
    let ctx = Ctx::new(dp, conn, activity, max_header_bytes);
    async move {
        let (end, mut buf) = {
            let session = session(&mut io, &ctx);
            tokio::pin!(session);
            loop {
                tokio::select! {
                    biased;
                    ended = &mut session => break ended,
                    posted = std::future::poll_fn(|cx| ctx.activity.poll_events(cx)) => {
                        if let Some(end) = judge(&ctx, posted) {
                            break (end, BytesMut::new());
                        }
                    }
                }
            }
        };
        drop(watched);
        match end {
            End::Closed => {
                bufpool::give(&mut buf);
                None
            }
            End::Park => Some(Left::Idle {
                stream: io.into_inner(),
                conn: ctx.conn.clone(),
            }),
            End::Handoff => Some(Left::Handoff(Handoff {
                prefix: buf.freeze(),
                stream: io.into_inner(),
                conn: ctx.conn.clone(),
                dp: ctx.dp.clone(),
            })),
        }
    }
}

/// What the connection does about the events its sweep posted: `Some` to close (or
/// park) now.
fn judge(ctx: &Ctx, posted: u8) -> Option<End> {
    if posted & event::STOP != 0 {
        ctx.closing.store(true, Ordering::Relaxed);
        if ctx.phase() == Phase::Between {
            return Some(End::Closed);
        }
    }
    if posted & event::SLOW_HEAD != 0 {
        tracing::debug!(client = %ctx.conn.client, "request head too slow; closing");
        return Some(End::Closed);
    }
    if posted & event::IDLE != 0 {
        if ctx.phase() == Phase::AwaitingBackend {
            ctx.closing.store(true, Ordering::Relaxed);
        } else {
            tracing::debug!(client = %ctx.conn.client, "connection idle or stalled; closing");
            return Some(End::Closed);
        }
    }
    let parks = posted & event::PARK != 0 && !ctx.closing();
    (parks && ctx.waiting.load(Ordering::Relaxed)).then_some(End::Park)
}

/// Requests one after another until the client leaves, something fails, or a request
/// goes to hyper; how it ended, with the unread bytes (a request handed to hyper).
///
/// Between requests the connection waits for its client holding no buffer, and this
/// future is a few pointers: the buffer is taken from the pool when bytes arrive
/// (`bufpool::read_fresh`), and everything a request needs (its parsed heads, output,
/// timer and the exchange's state) is built in one allocation then (`busy`) and dropped
/// when the connection is idle again. Inline, that state would be part of every idle
/// connection's task.
async fn session<S>(io: &mut ActivityIo<S>, ctx: &Ctx) -> (End, BytesMut)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        ctx.waiting.store(true, Ordering::Relaxed);
        // The flag is cleared in the arm, not around the wait: a result kept in a local
        // across it would make this future (every connection's task) 40 bytes larger.
        let buf = match bufpool::read_fresh(io).await {
            Ok(Some(buf)) => {
                ctx.waiting.store(false, Ordering::Relaxed);
                buf
            }
            Ok(None) | Err(_) => return (End::Closed, BytesMut::new()),
        };
        if let Err(ended) = Box::pin(busy(io, buf, ctx)).await {
            return ended;
        }
    }
}

/// Serves requests while the client has bytes waiting; `Ok` once the connection is
/// idle again (its working set and buffer given back), else how the session ended and
/// the unread bytes.
async fn busy<S>(io: &mut ActivityIo<S>, buf: BytesMut, ctx: &Ctx) -> Result<(), (End, BytesMut)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut c = Client {
        io,
        buf,
        out: Vec::new(),
        head: Default::default(),
        resp: Default::default(),
        consumed: false,
        timer: Default::default(),
        path: Vec::new(),
        forward_normalized: false,
        lent: false,
    };
    let end = requests(&mut c, ctx).await;
    c.park();
    match end {
        None => Ok(()),
        Some(end) => Err((end, std::mem::take(&mut c.buf))),
    }
}

/// The requests of one busy period (see `busy`).
async fn requests<S>(c: &mut Client<S>, ctx: &Ctx) -> Option<End>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match read_head(c, ctx.max_header_bytes()).await {
            HeadRead::Ready => {}
            HeadRead::Closed => return Some(End::Closed),
            HeadRead::Handoff(reason) => {
                tracing::trace!(reason, "request handed to hyper");
                return Some(End::Handoff);
            }
            HeadRead::Reject(status) => {
                reject(c, status).await;
                return Some(End::Closed);
            }
        }
        c.consumed = false;
        ctx.activity.request_started(false);
        ctx.set_phase(Phase::Relaying);
        let next = exchange::run(c, ctx).await;
        ctx.activity.request_answered();
        ctx.set_phase(Phase::Between);
        match next {
            Next::KeepAlive if !ctx.closing() => {
                c.park();
                if c.buf.is_empty() {
                    return None;
                }
            }
            Next::Handoff => return Some(End::Handoff),
            Next::KeepAlive | Next::Close => return Some(End::Closed),
        }
    }
}

/// The result of waiting for a request head.
enum HeadRead {
    Ready,
    /// The client closed (or broke) the connection.
    Closed,
    Handoff(&'static str),
    Reject(u16),
}

/// Reads until `c.buf` starts with a complete head, parsed into `c.head`.
async fn read_head<S>(c: &mut Client<S>, max_header_bytes: usize) -> HeadRead
where
    S: AsyncRead + Unpin,
{
    loop {
        if !c.buf.is_empty() {
            c.lend();
            match c.head.parse(&c.buf) {
                Parsed::Head if c.head.len > max_header_bytes => return HeadRead::Reject(431),
                Parsed::Head => return HeadRead::Ready,
                Parsed::Handoff(reason) => return HeadRead::Handoff(reason),
                Parsed::Reject(status) => return HeadRead::Reject(status),
                Parsed::Partial if c.buf.len() > max_header_bytes => return HeadRead::Reject(431),
                Parsed::Partial => {}
            }
        }
        match bufpool::read_lent(&mut c.io, &mut c.buf).await {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

/// Answers a request that cannot be served (400, 431) and closes.
async fn reject<S: AsyncWrite + Unpin>(c: &mut Client<S>, status: u16) {
    let (reason, text) = match status {
        431 => (
            "Request Header Fields Too Large",
            "request head too large\n",
        ),
        _ => ("Bad Request", "bad request\n"),
    };
    c.lend();
    c.out.clear();
    encode::local_response(&mut c.out, status, reason, text, None, true);
    let _ = write_both(&mut c.io, &c.out, &[]).await;
}
