//! One HTTP/2 request sent to a backend as HTTP/1.1 over a pooled raw connection
//! (`upstream::BackendConn`, the HTTP/1.1 path's), and its response relayed as HTTP/2.
//!
//! The decisions are the request core's, as on the other paths: retry once more on
//! the same backend or once on another (`request::retry`, only for an idempotent
//! request without a body, or a connection that could not be made), eject a backend
//! only for its own faults, the access log and metrics (`request::finish`). The bytes:
//! the head is written from the h2 header block (`encode`), a request body streamed
//! after it (chunked when the client declared no length), the response head parsed
//! in the connection's buffer (`h1::response`) and turned into an h2 HEADERS frame
//! without its hop-by-hop fields, the body sent as DATA frames, de-chunked, within
//! the client's flow-control window. A response that fits in what was read with its
//! head goes out with no further wait. Informational heads are relayed as they come;
//! a request that expects `100 Continue` sends its body once the backend said so (or
//! stayed silent for `CONTINUE_WAIT`), not at all if the backend answered first.
//! Trailer fields cross both ways where the body is chunked (`trailers`). A gRPC
//! answer's status (`grpc-status` in the head, the chunked trailers, or a gRPC-Web
//! body's trailer frame) is counted (`grpc_watch`).

use super::backend::Up;
use super::encode::{self, BodyFraming};
use super::{trailers, Shared};
use crate::grpc_watch::GrpcWatch;
use crate::h1::chunked::ChunkScanner;
use crate::h1::head::{HeadView, Kind};
use crate::h1::response::{Framing, HeadReadError, ResponseHead};
use crate::pool::PoolRuntime;
use crate::request::answered::answered;
use crate::request::breaker;
use crate::request::choice::Choice;
use crate::request::course::Course;
use crate::request::failure::ExchangeFailure;
use crate::request::finish::{Pending, RequestDone, RequestLog};
use crate::request::local::Local;
use crate::request::retry::is_idempotent;
use crate::request::stale;
use crate::request::target::Target;
use crate::request::timeouts::{self, Expiry, RequestClock, RouteTimeouts, TryClock};
use crate::upstream::Reuse;
use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Informational (1xx) heads relayed before the final one, at most.
const MAX_INFORMATIONAL: usize = 8;
/// How long a request with `Expect: 100-continue` waits for the backend's
/// `100 Continue` before its body is sent anyway (curl's default).
const CONTINUE_WAIT: Duration = Duration::from_secs(1);
/// The most bytes of trailer lines taken from a chunked response.
const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Forwards the request; `Err` only while no response head went to the client.
pub(super) async fn forward(
    shared: &Shared,
    pool: Arc<PoolRuntime>,
    choice: Choice,
    req: Request<RecvStream>,
    target: Target,
    timeouts: RouteTimeouts,
    respond: &mut SendResponse<Bytes>,
) -> Result<(), Local> {
    let started = Instant::now();
    let clock = RequestClock::new(timeouts, started, pool.response_timeout);
    pool.note_request();
    let (parts, mut body) = req.into_parts();
    let has_body = !body.is_end_stream();
    let retryable = is_idempotent(&parts.method) && !has_body;
    let expect_continue = has_body
        && parts
            .headers
            .get(http::header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let log = RequestLog {
        method: parts.method.clone(),
        path: if shared.dp.access_log_enabled() {
            target.uri.to_string()
        } else {
            String::new()
        },
    };
    let origin = target
        .uri
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let mut head_bytes = Vec::with_capacity(512);
    let mut resp = ResponseHead::default();
    let mut course = Course::new(&shared.dp, &pool, &choice, &shared.conn, &clock, retryable);
    let mut log = Some(log);
    let (up, done) = loop {
        let index = course.index();
        let backend = &pool.backends[index];
        head_bytes.clear();
        let head = encode::Head {
            method: &parts.method,
            target: &origin,
            // A request without an authority gets the backend's address, as a
            // direct client would have sent.
            host: target.authority.as_deref().unwrap_or(&backend.id),
            headers: &parts.headers,
        };
        let framing = encode::request_head(&mut head_bytes, &head, &shared.conn, has_body);
        let occupied = breaker::occupy(&pool, index)?;
        let attempt = Attempt {
            head: &head_bytes,
            framing,
            reuse: stale::reuse_for(retryable),
            expect_continue,
            clock: clock.start_try(),
        };
        let fresh = course.fresh();
        let mut sent = send(&pool, index, &attempt, fresh, &mut body, &mut resp, respond).await;
        // `request::stale`: only a request without a body reuses unchecked.
        if stale::resend(&sent, attempt.reuse) {
            sent = send(&pool, index, &attempt, true, &mut body, &mut resp, respond).await;
        }
        let failure = match sent {
            Ok(up) => {
                let done = RequestDone::new(
                    shared.dp.clone(),
                    pool.clone(),
                    index,
                    shared.conn.client,
                    log.take().unwrap_or(RequestLog {
                        method: parts.method.clone(),
                        path: String::new(),
                    }),
                    started,
                    None,
                );
                occupied.hand_over();
                break (up, Pending::new(done));
            }
            Err(f) => f,
        };
        drop(occupied);
        let failure = failure.judge(&pool, index, has_body)?;
        course.after_failure(failure).await?;
    };
    let (index, set_cookie) = (course.index(), choice.set_cookie || course.moved());
    let head_request = parts.method == Method::HEAD;
    relay(
        &pool,
        index,
        up,
        done,
        (set_cookie, head_request),
        clock.deadline(),
        &mut resp,
        respond,
    )
    .await
}

/// One attempt's request bytes.
struct Attempt<'a> {
    head: &'a [u8],
    framing: BodyFraming,
    /// How a pooled connection is checked (`request::stale`).
    reuse: Reuse,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
    /// This try's limits.
    clock: TryClock,
}

/// A backend connection with a response head read into `resp`.
struct Sent {
    up: Up,
    /// The backend answered before the request body was sent (it did not want it):
    /// the connection cannot carry another request.
    body_unsent: bool,
}

/// Writes the request to backend `index` (a new connection when `fresh`) and reads
/// its response head into `resp`;
/// informational heads that come before the body is sent are relayed to `respond`.
async fn send(
    pool: &PoolRuntime,
    index: usize,
    attempt: &Attempt<'_>,
    fresh: bool,
    body: &mut RecvStream,
    resp: &mut ResponseHead,
    respond: &mut SendResponse<Bytes>,
) -> Result<Sent, ExchangeFailure> {
    let mut up = (Up::get(pool, index, fresh, attempt.reuse).await)
        .map_err(|e| ExchangeFailure::connect(pool, &e))?;
    let reused = up.reused();
    // A failed write may be the backend having answered and closed: read on.
    let mut whole = up.write_all(attempt.head).await.is_ok();
    if whole && attempt.framing != BodyFraming::None {
        let wanted = match attempt.expect_continue {
            true => await_continue(pool, &mut up, resp, respond).await?,
            false => true,
        };
        if !wanted {
            return Ok(Sent {
                up,
                body_unsent: true,
            });
        }
        let chunked = attempt.framing == BodyFraming::Chunked;
        let uploaded = timeouts::bounded(attempt.clock.deadline(), upload(&mut up, body, chunked));
        whole = uploaded
            .await
            .ok_or(ExchangeFailure::Timeout(Expiry::Overall))??;
    }
    let (limit, expiry) = attempt.clock.wait();
    let read = tokio::time::timeout(limit, read_head(&mut up, resp)).await;
    match read {
        Err(_) => Err(ExchangeFailure::Timeout(expiry)),
        Ok(Err(ExchangeFailure::Broken { .. }))
            if !whole && attempt.framing != BodyFraming::None =>
        {
            Err(ExchangeFailure::Aborted)
        }
        Ok(Err(ExchangeFailure::Broken { .. })) => Err(ExchangeFailure::Broken { reused }),
        Ok(Err(other)) => Err(other),
        Ok(Ok(())) => Ok(Sent {
            up,
            body_unsent: false,
        }),
    }
}

/// Waits, at most `CONTINUE_WAIT`, for the backend to say whether it wants the body:
/// `true` after its `100 Continue` (relayed, with any other informational head before
/// it) or when it stays silent, `false` when its final answer came first (in `resp`).
async fn await_continue(
    pool: &PoolRuntime,
    up: &mut Up,
    resp: &mut ResponseHead,
    respond: &mut SendResponse<Bytes>,
) -> Result<bool, ExchangeFailure> {
    let deadline = tokio::time::Instant::now() + CONTINUE_WAIT.min(pool.response_timeout);
    for _ in 0..MAX_INFORMATIONAL {
        match tokio::time::timeout_at(deadline, read_head(up, resp)).await {
            // Reading a head is cancel-safe: what arrived stays in the buffer.
            Err(_) => return Ok(true),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) if resp.is_informational() => {
                interim(resp, up.buf(), respond);
                up.buf().advance(resp.len);
                if resp.status == 100 {
                    return Ok(true);
                }
            }
            Ok(Ok(())) => return Ok(false),
        }
    }
    Err(ExchangeFailure::BadResponse)
}

/// Relays an informational (1xx) head to the client; a client that reset its
/// stream meanwhile is found out when the final head is sent.
fn interim(resp: &ResponseHead, buf: &[u8], respond: &mut SendResponse<Bytes>) {
    if let Some(head) = response_fields(resp, buf) {
        let _ = respond.send_informational(head);
    }
}

/// Streams the client's body to the backend; `Ok(false)` if the backend stopped
/// taking it.
async fn upload(
    up: &mut Up,
    body: &mut RecvStream,
    chunked: bool,
) -> Result<bool, ExchangeFailure> {
    while let Some(data) = body.data().await {
        let data = data.map_err(|_| ExchangeFailure::ClientGone)?;
        let _ = body.flow_control().release_capacity(data.len());
        if data.is_empty() {
            continue;
        }
        let written = match chunked {
            true => {
                let size = format!("{:x}\r\n", data.len());
                let mut frame = Vec::with_capacity(size.len() + data.len() + 2);
                frame.extend_from_slice(size.as_bytes());
                frame.extend_from_slice(&data);
                frame.extend_from_slice(b"\r\n");
                up.write_all(&frame).await
            }
            false => up.write_all(&data).await,
        };
        if written.is_err() {
            return Ok(false);
        }
    }
    if !chunked {
        // A body framed by its length cannot carry trailers to the backend.
        return Ok(true);
    }
    let fields = body
        .trailers()
        .await
        .map_err(|_| ExchangeFailure::ClientGone)?;
    let mut last = Vec::new();
    trailers::last_chunk(&mut last, fields.as_ref());
    Ok(up.write_all(&last).await.is_ok())
}

/// Reads until `resp` holds a complete head (`ResponseHead::read_from`).
async fn read_head(up: &mut Up, resp: &mut ResponseHead) -> Result<(), ExchangeFailure> {
    up.read_head(resp).await.map_err(|e| match e {
        HeadReadError::ClosedEmpty => ExchangeFailure::Broken { reused: false },
        HeadReadError::Malformed => ExchangeFailure::BadResponse,
    })
}

/// Sends the response head and body to the client, with the bookkeeping; the backend
/// connection goes back to the pool when the response was read whole. A body still
/// coming at the route's `deadline` is cut off (the stream reset).
#[allow(clippy::too_many_arguments)]
async fn relay(
    pool: &PoolRuntime,
    index: usize,
    sent: Sent,
    mut done: Pending,
    (set_cookie, head_request): (bool, bool),
    deadline: Option<Instant>,
    resp: &mut ResponseHead,
    respond: &mut SendResponse<Bytes>,
) -> Result<(), Local> {
    let Sent {
        mut up,
        body_unsent,
    } = sent;
    let mut informational = 0;
    while resp.is_informational() {
        informational += 1;
        interim(resp, up.buf(), respond);
        up.buf().advance(resp.len);
        let read = tokio::time::timeout(pool.response_timeout, read_head(&mut up, resp)).await;
        if informational > MAX_INFORMATIONAL || !matches!(read, Ok(Ok(()))) {
            done.set_status(502);
            return Err(Local::BadGateway);
        }
    }
    let status = resp.status;
    let headers = HeadView::new(&resp.headers, up.buf());
    let set_cookie = answered(pool, index, &headers, status, &mut done, set_cookie).await;
    let mut grpc = GrpcWatch::start(&headers, &pool.backends[index].metrics.grpc);
    let framing = resp.framing(up.buf(), head_request);
    let Some(head) = response_head(resp, up.buf(), pool, index, set_cookie) else {
        done.set_status(502);
        return Err(Local::BadGateway);
    };
    let keep_alive = resp.keep_alive && !body_unsent;
    up.buf().advance(resp.len);
    let Ok(mut send) = respond.send_response(head, framing == Framing::Empty) else {
        // The client reset the stream: the backend's answer is not read to its end.
        return Ok(());
    };
    let complete = match framing {
        Framing::Empty => true,
        _ => {
            let body = send_body(&mut up, &mut send, framing, &mut done.bytes, grpc.as_mut());
            let sent = timeouts::bounded(deadline, body).await;
            if sent.is_none() {
                tracing::warn!(pool = %pool.name, "route timeout during the response body: stream reset");
            }
            sent.unwrap_or(false)
        }
    };
    if complete {
        done.complete();
        if keep_alive && framing != Framing::UntilClose {
            up.give_back(pool, index);
        }
    } else {
        send.send_reset(h2::Reason::INTERNAL_ERROR);
    }
    Ok(())
}

/// The HEADERS of the response: `response_fields`, `Via` with this hop, and the
/// affinity cookie when one is due.
fn response_head(
    resp: &ResponseHead,
    buf: &[u8],
    pool: &PoolRuntime,
    index: usize,
    set_cookie: bool,
) -> Option<Response<()>> {
    let mut head = response_fields(resp, buf)?;
    let headers = head.headers_mut();
    let mut via: Vec<u8> = Vec::new();
    for h in resp.headers.iter().filter(|h| h.kind == Kind::Via) {
        let value = &buf[h.value.clone()];
        if !value.is_empty() {
            via.extend_from_slice(value);
            via.extend_from_slice(b", ");
        }
    }
    via.extend_from_slice(b"1.1 fulcrum");
    if let Ok(v) = HeaderValue::from_bytes(&via) {
        headers.append(http::header::VIA, v);
    }
    if set_cookie {
        if let Some(v) = pool
            .affinity_set_cookie(index)
            .and_then(|c| HeaderValue::from_str(&c).ok())
        {
            headers.append(http::header::SET_COOKIE, v);
        }
    }
    Some(head)
}

/// A response head as HTTP/2 carries it: the status and the backend's fields
/// without the hop-by-hop ones, without framing (which HTTP/2 does itself) and
/// without `Via` (which `response_head` extends). `None` for a status HTTP/2 cannot
/// carry.
fn response_fields(resp: &ResponseHead, buf: &[u8]) -> Option<Response<()>> {
    let mut head = Response::new(());
    *head.status_mut() = StatusCode::from_u16(resp.status).ok()?;
    let headers = head.headers_mut();
    let coded = resp.has_transfer_encoding();
    for h in &resp.headers {
        match h.kind {
            Kind::HopByHop | Kind::Connection | Kind::TransferEncoding | Kind::Via => continue,
            Kind::ContentLength if coded => continue,
            Kind::ContentLength => {}
            _ if resp.is_listed(buf, h) => continue,
            _ => {}
        }
        let name = HeaderName::from_bytes(&buf[h.name.clone()]);
        let value = HeaderValue::from_bytes(&buf[h.value.clone()]);
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
        }
    }
    Some(head)
}

/// Relays the body as DATA frames, and a chunked body's trailer fields as the
/// HEADERS frame that ends the stream; `true` when it was read and sent to its end.
/// A gRPC answer's body and trailers are shown to its status watch, `grpc`.
async fn send_body(
    up: &mut Up,
    send: &mut SendStream<Bytes>,
    framing: Framing,
    sent: &mut u64,
    mut grpc: Option<&mut GrpcWatch>,
) -> bool {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut chunks = ChunkScanner::default();
    let mut trailer_lines = Vec::new();
    let mut first = true;
    loop {
        if up.buf().is_empty() {
            match up.fill().await {
                Ok(0) if framing == Framing::UntilClose => {
                    return send.send_data(Bytes::new(), true).is_ok();
                }
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        let buf = up.buf();
        let data = match framing {
            Framing::Chunked => {
                let mut runs = Vec::new();
                let fed = chunks.feed_parts(buf, |r| runs.push(r), |b| trailer_lines.push(b));
                let Ok(used) = fed else {
                    return false;
                };
                if trailer_lines.len() > MAX_TRAILER_BYTES {
                    return false;
                }
                let mut data = BytesMut::new();
                for r in runs {
                    data.extend_from_slice(&buf[r]);
                }
                buf.advance(used);
                data.freeze()
            }
            _ => {
                let take = (buf.len() as u64).min(left) as usize;
                left -= take as u64;
                buf.split_to(take).freeze()
            }
        };
        let end = match framing {
            Framing::Chunked => chunks.is_done(),
            Framing::Length(_) => left == 0,
            _ => false,
        };
        let fields = match end {
            true => trailers::parse(&trailer_lines),
            false => None,
        };
        if let Some(watch) = grpc.as_deref_mut() {
            watch.data(&data);
            if end {
                let status = fields.as_ref().and_then(|f| f.get("grpc-status"));
                watch.trailers(status.map(|v| v.as_bytes()));
            }
        }
        let end_stream = end && fields.is_none();
        *sent += data.len() as u64;
        // A body that came whole with its head goes out at once; anything longer
        // waits for the client's window.
        let sent_ok = match first && end {
            true => send.send_data(data, end_stream).is_ok(),
            false => send_within_window(send, data, end_stream).await,
        };
        first = false;
        if !sent_ok {
            return false;
        }
        if end {
            return fields.is_none_or(|f| send.send_trailers(f).is_ok());
        }
    }
}

/// Sends `data` as the client's flow-control window allows.
async fn send_within_window(send: &mut SendStream<Bytes>, mut data: Bytes, end: bool) -> bool {
    if data.is_empty() {
        return !end || send.send_data(data, true).is_ok();
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        while send.capacity() == 0 {
            match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return false,
            }
        }
        let piece = data.split_to(send.capacity().min(data.len()));
        if send.send_data(piece, end && data.is_empty()).is_err() {
            return false;
        }
    }
    true
}
