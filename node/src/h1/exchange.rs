//! One request on the hand-written HTTP/1.1 path, from route lookup to the last byte
//! of the response.
//!
//! The decisions are the ones `crate::proxy` makes for hyper's requests — the same
//! route table, backend choice (affinity cookie, Redis pin, algorithm), retry once
//! elsewhere when an idempotent body-less request could not reach its backend, local
//! ejection, metrics and access log — but the bytes move differently: the request head
//! is rewritten into a reused buffer and written with the first body bytes in one call;
//! the response head is parsed in the backend connection's buffer, rewritten, and
//! written with the first body bytes; the body is relayed as it comes, framing intact.
//! No task per backend connection, no header map, no allocation per request once warm.

use super::encode::{self, Forwarding, ResponseExtras};
use super::head::{HeadView, RequestHead};
use super::io::write_both;
use super::relay::{relay_body, RelayError};
use super::response::{Framing, HeadReadError, ResponseHead};
use super::timer::ResponseTimer;
use super::upload::{self, Delivered, UploadError};
use super::{Ctx, Phase};
use crate::bufpool;
use crate::grpc_watch::GrpcWatch;
use crate::pool::PoolRuntime;
use crate::request::answered::answered;
use crate::request::choice::{self, Choice};
use crate::request::course::Course;
use crate::request::failure::ExchangeFailure;
use crate::request::finish::{Pending, RequestDone, RequestLog};
use crate::request::local::Local;
use crate::request::timeouts::{self, Expiry, RequestClock, RouteTimeouts, TryClock};
use crate::request::{authority, breaker, path, rate_limit, split, stale};
use crate::upstream::{BackendConn, Reuse};
use bytes::{Buf, BytesMut};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

/// Informational (1xx) heads relayed before the final one, at most.
const MAX_INFORMATIONAL: usize = 8;

/// What the connection does after a request.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    KeepAlive,
    Close,
    /// Nothing was consumed or sent: hyper serves this request and the rest.
    Handoff,
}

/// The client side of a connection: its stream and, while it serves a request, its
/// buffers (see `spare`).
pub(super) struct Client<S> {
    pub io: S,
    /// Bytes read from the client and not yet consumed.
    pub buf: BytesMut,
    /// The head being written (to the backend, then to the client).
    pub out: Vec<u8>,
    pub head: RequestHead,
    pub resp: ResponseHead,
    /// The current request's bytes have left `buf` (its body went to a backend).
    pub consumed: bool,
    /// Bounds each wait for a response head.
    pub timer: ResponseTimer,
    /// The current request's normalised path, when it differs from the one sent.
    pub path: Vec<u8>,
    /// `path` holds the path to forward (normalised, and the listener forwards that).
    pub forward_normalized: bool,
    /// `out`, `head`, `resp` and `path` are a lent working set (`spare`); between
    /// requests they are empty and hold no memory.
    pub lent: bool,
}

impl<S> Client<S> {
    /// How many bytes of the current request's body are already in `buf` (valid until
    /// the request is consumed).
    fn buffered_body(&self) -> usize {
        let length = self.head.content_length;
        length.min((self.buf.len() - self.head.len) as u64) as usize
    }
}

/// Serves the request whose head is parsed in `c.head`.
pub(super) async fn run<S>(c: &mut Client<S>, ctx: &Ctx) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let snapshot = ctx.dp.snapshot();
    let Some(table) = snapshot.routes.get(&*ctx.conn.listener) else {
        return local(c, ctx, Local::NoRoute).await;
    };
    let buf = c.buf.get(..c.head.len).unwrap_or_default();
    let sent_path = c.head.path(buf);
    let path = match path::normalize(sent_path, table.paths.merge_slashes, &mut c.path) {
        Ok(false) => sent_path,
        Ok(true) => c.path.as_slice(),
        Err(_) => return local(c, ctx, Local::BadRequest).await,
    };
    c.forward_normalized = path != sent_path && table.paths.forward_normalized;
    let host = authority::host_part(c.head.host(buf));
    let Some(route) = table.find(host, path, &c.head.view(buf)) else {
        return local(c, ctx, Local::NoRoute).await;
    };
    match rate_limit::admit(route.limiter.as_ref(), &ctx.conn, &c.head.view(buf), path) {
        Ok(rate_limit::Admit::Yes) => {}
        Ok(ask) => {
            if let Err(limited) = ask.settle().await {
                return local(c, ctx, limited).await;
            }
        }
        Err(limited) => return local(c, ctx, limited).await,
    }
    if route.redirect_https && !ctx.conn.tls {
        return Next::Handoff;
    }
    let candidates = split::candidates(
        &ctx.dp,
        &snapshot,
        route,
        &ctx.conn,
        &c.head.view(buf),
        path,
    );
    let Some((pool, keys)) = candidates.settle().await else {
        return local(c, ctx, Local::NoBackend).await;
    };
    if pool.upstream.needs_client() {
        return Next::Handoff;
    }
    let choice = choice::choose_backend(&pool, &ctx.conn, keys).await;
    let Some(choice) = choice else {
        return local(c, ctx, Local::NoBackend).await;
    };
    let span = tracing::debug_span!("request", method = %c.head.method, path = %String::from_utf8_lossy(path), pool = %pool.name);
    // A disabled span (the usual case) would still be entered and left on every poll.
    let timeouts = route.timeouts;
    if span.is_disabled() {
        forward(c, ctx, pool, choice, timeouts).await
    } else {
        forward(c, ctx, pool, choice, timeouts)
            .instrument(span)
            .await
    }
}

/// Sends the request to the chosen backend (and once more elsewhere if it could not
/// be delivered), then relays the response.
async fn forward<S>(
    c: &mut Client<S>,
    ctx: &Ctx,
    pool: Arc<PoolRuntime>,
    choice: Choice,
    timeouts: RouteTimeouts,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let clock = RequestClock::new(timeouts, started, pool.response_timeout);
    pool.note_request();
    let retryable =
        crate::request::retry::is_idempotent(&c.head.method) && c.head.content_length == 0;
    let forwarded_path = c.forward_normalized.then_some(c.path.as_slice());
    let log = RequestLog {
        method: c.head.method.clone(),
        path: if ctx.dp.access_log_enabled() {
            let sent = c.head.path(&c.buf);
            String::from_utf8_lossy(forwarded_path.unwrap_or(sent)).into_owned()
        } else {
            String::new()
        },
    };
    c.out.clear();
    let (client_ip, forwarded) = (ctx.conn.client_ip(), ctx.conn.forwarded());
    let fwd = Forwarding {
        client_ip: client_ip.as_bytes(),
        forwarded: forwarded.as_bytes(),
        proto: ctx.conn.proto(),
        trusted: ctx.conn.trusted,
    };
    encode::request_head(&mut c.out, &c.head, &c.buf, forwarded_path, &fwd);
    let mut course = Course::new(&ctx.dp, &pool, &choice, &ctx.conn, &clock, retryable);
    let reuse = stale::reuse_for(retryable);
    let (up, delivered, done) = loop {
        let index = course.index();
        let occupied = match breaker::occupy(&pool, index) {
            Ok(occupied) => occupied,
            Err(answer) => return local(c, ctx, answer).await,
        };
        let try_clock = clock.start_try();
        let mut sent = send(c, ctx, &pool, (index, course.fresh()), reuse, &try_clock).await;
        if stale::resend(&sent, reuse) {
            sent = send(c, ctx, &pool, (index, true), reuse, &try_clock).await;
        }
        let failure = match sent {
            Ok((up, delivered)) => {
                let done = RequestDone::new(
                    ctx.dp.clone(),
                    pool.clone(),
                    index,
                    ctx.conn.client,
                    log,
                    started,
                    None,
                );
                occupied.hand_over();
                break (up, delivered, Pending::new(done));
            }
            Err(f) => f,
        };
        drop(occupied);
        let failure = match failure.judge(&pool, index, false) {
            Ok(failure) => failure,
            Err(answer) => return local(c, ctx, answer).await,
        };
        if let Err(answer) = course.after_failure(failure).await {
            return local(c, ctx, answer).await;
        }
    };
    let (index, moved) = (course.index(), course.moved());
    if !c.consumed {
        c.buf.advance(c.head.len + c.buffered_body());
        c.consumed = true;
    }
    if c.buf.is_empty() {
        // Nothing of a next request: the read buffer goes back while the response is
        // relayed (which needs only the backend's).
        bufpool::give(&mut c.buf);
    }
    let set_cookie = choice.set_cookie || moved;
    let exchange = Exchange {
        up,
        done,
        set_cookie,
        delivered,
        deadline: clock.deadline(),
    };
    let next = respond(c, ctx, &pool, index, exchange).await;
    if delivered == Delivered::Partial {
        upload::linger(c).await;
        return Next::Close;
    }
    next
}

/// Writes the request to backend `index` (on a new connection when `fresh`, else a
/// pooled one taken as `reuse`) and waits for its response head, which may come before
/// the whole body went out.
async fn send<S>(
    c: &mut Client<S>,
    ctx: &Ctx,
    pool: &PoolRuntime,
    (index, fresh): (usize, bool),
    reuse: Reuse,
    clock: &TryClock,
) -> Result<(BackendConn, Delivered), ExchangeFailure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let pooled = if fresh {
        None
    } else {
        pool.upstream.take_raw(index, reuse)
    };
    let mut up = match pooled {
        Some(up) => up,
        None => {
            (pool.upstream.open_raw(index).await).map_err(|e| ExchangeFailure::connect(pool, &e))?
        }
    };
    let reused = up.reused;
    let (head_len, length, buffered) = (c.head.len, c.head.content_length, c.buffered_body());
    let body = c.buf.get(head_len..head_len + buffered).unwrap_or_default();
    // A failed write may be the backend having answered and closed: read on.
    let mut delivered = match write_both(&mut up.stream, &c.out, body).await {
        Ok(()) => Delivered::Whole,
        Err(_) => Delivered::Partial,
    };
    if delivered == Delivered::Whole && length > buffered as u64 {
        c.buf.advance(head_len + buffered);
        c.consumed = true;
        let upload = upload::relay(c, &mut up, length - buffered as u64);
        delivered = timeouts::bounded(clock.deadline(), upload)
            .await
            .ok_or(ExchangeFailure::Timeout(Expiry::Overall))?
            .map_err(|UploadError::ClientGone| ExchangeFailure::ClientGone)?;
    }
    ctx.set_phase(Phase::AwaitingBackend);
    let (limit, expiry) = clock.wait();
    let read = c.timer.within(limit, read_head(&mut up, &mut c.resp)).await;
    ctx.set_phase(Phase::Relaying);
    match read {
        None => Err(ExchangeFailure::Timeout(expiry)),
        Some(Err(ExchangeFailure::Broken { .. }))
            if delivered == Delivered::Partial && length > 0 =>
        {
            Err(ExchangeFailure::Aborted)
        }
        Some(Err(ExchangeFailure::Broken { .. })) => Err(ExchangeFailure::Broken { reused }),
        Some(Err(other)) => Err(other),
        Some(Ok(())) => Ok((up, delivered)),
    }
}

/// Reads until `resp` holds a complete head (`ResponseHead::read_from`).
async fn read_head(up: &mut BackendConn, resp: &mut ResponseHead) -> Result<(), ExchangeFailure> {
    resp.read_from(up).await.map_err(|e| match e {
        HeadReadError::ClosedEmpty => ExchangeFailure::Broken { reused: false },
        HeadReadError::Malformed => ExchangeFailure::BadResponse,
    })
}

/// A request delivered to its backend, whose response head is in.
struct Exchange {
    up: BackendConn,
    done: Pending,
    set_cookie: bool,
    delivered: Delivered,
    /// The route's overall limit, which the body's relay must end within.
    deadline: Option<Instant>,
}

/// Relays informational heads, then the final head and body, with the bookkeeping.
/// After a `Partial` request the client connection closes and the backend
/// connection, mid-request, is never reused.
async fn respond<S>(
    c: &mut Client<S>,
    ctx: &Ctx,
    pool: &PoolRuntime,
    index: usize,
    exchange: Exchange,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Exchange {
        mut up,
        mut done,
        set_cookie,
        delivered,
        deadline,
    } = exchange;
    let mut informational = 0;
    while c.resp.is_informational() {
        informational += 1;
        c.out.clear();
        encode::response_head(
            &mut c.out,
            &c.resp,
            &up.buf,
            &ResponseExtras {
                set_cookie: None,
                close: false,
            },
        );
        up.buf.advance(c.resp.len);
        if informational > MAX_INFORMATIONAL || write_both(&mut c.io, &c.out, &[]).await.is_err() {
            return Next::Close;
        }
        let read =
            tokio::time::timeout(pool.response_timeout, read_head(&mut up, &mut c.resp)).await;
        if !matches!(read, Ok(Ok(()))) {
            return Next::Close;
        }
    }
    let status = c.resp.status;
    let headers = HeadView::new(&c.resp.headers, &up.buf);
    let set_cookie = answered(pool, index, &headers, status, &mut done, set_cookie).await;
    let backend = &pool.backends[index];
    let mut grpc = GrpcWatch::start(&headers, &backend.metrics.grpc);
    // `c.head` still describes the request: only its bytes left the buffer.
    let framing = c.resp.framing(&up.buf, c.head.method == http::Method::HEAD);
    let cookie = match set_cookie {
        true => pool.affinity_set_cookie(index),
        false => None,
    };
    let close = c.head.close
        || framing == Framing::UntilClose
        || ctx.closing()
        || delivered == Delivered::Partial;
    c.out.clear();
    let extras = ResponseExtras {
        set_cookie: cookie.as_deref(),
        close,
    };
    encode::response_head(&mut c.out, &c.resp, &up.buf, &extras);
    let backend_keep_alive = c.resp.keep_alive;
    up.buf.advance(c.resp.len);
    let relayed = relay_body(c, &mut up, framing, &mut done.bytes, grpc.as_mut());
    let relayed = timeouts::bounded(deadline, relayed);
    let Some(relayed) = relayed.await else {
        tracing::warn!(pool = %pool.name, backend = %backend.id, "route timeout during the response body: cut off");
        return Next::Close;
    };
    match relayed {
        Ok(()) => {
            done.complete();
            let reusable = backend_keep_alive
                && framing != Framing::UntilClose
                && delivered == Delivered::Whole;
            if reusable {
                // Bytes past the response (a body after a HEAD, say) are counted
                // and the connection closed.
                pool.upstream.put_raw(index, up);
            }
            if close {
                Next::Close
            } else {
                Next::KeepAlive
            }
        }
        Err(RelayError::Unsent(e)) => {
            // Nothing reached the client yet: it gets a proper answer, not a bare close.
            tracing::warn!(pool = %pool.name, backend = %backend.id, error = %e, "malformed response body");
            done.set_status(502);
            local(c, ctx, Local::BadGateway).await
        }
        Err(e) => {
            tracing::debug!(pool = %pool.name, backend = %backend.id, error = %e, "response relay ended early");
            Next::Close
        }
    }
}

/// Answers with a response fulcrum makes itself. The request's body is skipped when it
/// is all here; otherwise the connection closes after the answer.
async fn local<S>(c: &mut Client<S>, ctx: &Ctx, what: Local) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (status, text, metric) = what.parts();
    ctx.dp.metrics.local_response(metric);
    let whole = c.head.len as u64 + c.head.content_length;
    let close = c.consumed || c.head.close || (c.buf.len() as u64) < whole || ctx.closing();
    if !close {
        c.buf.advance(whole as usize);
        c.consumed = true;
    }
    c.out.clear();
    let reason = status.canonical_reason().unwrap_or("");
    let retry_after = what.retry_after();
    encode::local_response(
        &mut c.out,
        status.as_u16(),
        reason,
        text,
        retry_after,
        close,
    );
    if write_both(&mut c.io, &c.out, &[]).await.is_err() || close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}
