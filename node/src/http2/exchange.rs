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
//! head goes out with no further wait.

use super::encode::{self, BodyFraming};
use super::Shared;
use crate::affinity::shared as affinity;
use crate::balance;
use crate::h1::chunked::ChunkScanner;
use crate::h1::head::{HeadView, Kind};
use crate::h1::response::{Framing, HeadReadError, ResponseHead};
use crate::pool::PoolRuntime;
use crate::request::choice::Choice;
use crate::request::failure::ExchangeFailure;
use crate::request::finish::{Pending, RequestDone, RequestLog};
use crate::request::local::Local;
use crate::request::redispatch::{self, Retry};
use crate::request::retry::{is_idempotent, Retries};
use crate::request::target::Target;
use crate::upstream::BackendConn;
use bytes::{Buf, Bytes, BytesMut};
use fulcrum_config::AffinityMode;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Informational (1xx) heads skipped before the final one, at most.
const MAX_INFORMATIONAL: usize = 8;
const READ_CHUNK: usize = 16 * 1024;

/// Forwards the request; `Err` only while no response head went to the client.
pub(super) async fn forward(
    shared: &Shared,
    pool: Arc<PoolRuntime>,
    choice: Choice,
    req: Request<RecvStream>,
    target: Target,
    respond: &mut SendResponse<Bytes>,
) -> Result<(), Local> {
    let started = Instant::now();
    let (parts, mut body) = req.into_parts();
    let has_body = !body.is_end_stream();
    let retryable = is_idempotent(&parts.method) && !has_body;
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
    let mut index = choice.index;
    let (mut fresh, mut moved) = (false, false);
    let mut retries = Retries::default();
    let mut log = Some(log);
    let (up, done) = loop {
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
        let occupied = backend.state.load.occupy();
        let attempt = Attempt {
            head: &head_bytes,
            framing,
            fresh,
        };
        let failure = match send(&pool, index, &attempt, &mut body, &mut resp).await {
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
        let (dp, conn) = (&shared.dp, &shared.conn);
        let next = redispatch::after_failure(
            dp,
            &pool,
            &choice,
            conn,
            &mut retries,
            index,
            failure,
            retryable,
        );
        match next.await.ok_or(Local::BadGateway)? {
            Retry::SameBackend => fresh = true,
            Retry::Other(other) => {
                moved = true;
                index = other;
            }
        }
    };
    let set_cookie = choice.set_cookie || moved;
    let head_request = parts.method == Method::HEAD;
    relay(
        &pool,
        index,
        up,
        done,
        set_cookie,
        head_request,
        &mut resp,
        respond,
    )
    .await
}

/// One attempt's request bytes.
struct Attempt<'a> {
    head: &'a [u8],
    framing: BodyFraming,
    /// Open a new connection instead of taking a pooled one.
    fresh: bool,
}

/// Writes the request to backend `index` and reads its response head into `resp`.
async fn send(
    pool: &PoolRuntime,
    index: usize,
    attempt: &Attempt<'_>,
    body: &mut RecvStream,
    resp: &mut ResponseHead,
) -> Result<BackendConn, ExchangeFailure> {
    let pooled = match attempt.fresh {
        true => None,
        false => pool.upstream.take_raw(index),
    };
    let mut up = match pooled {
        Some(up) => up,
        None => pool.upstream.open_raw(index).await.map_err(|e| {
            tracing::warn!(pool = %pool.name, error = %e, "backend connect failed");
            ExchangeFailure::Connect {
                timed_out: e.is_connect_timeout(),
            }
        })?,
    };
    let reused = up.reused;
    // A failed write may be the backend having answered and closed: read on.
    let mut whole = up.stream.write_all(attempt.head).await.is_ok();
    if whole && attempt.framing != BodyFraming::None {
        whole = upload(&mut up, body, attempt.framing == BodyFraming::Chunked).await?;
    }
    let read = tokio::time::timeout(pool.response_timeout, read_head(&mut up, resp)).await;
    match read {
        Err(_) => Err(ExchangeFailure::Timeout),
        Ok(Err(ExchangeFailure::Broken { .. }))
            if !whole && attempt.framing != BodyFraming::None =>
        {
            Err(ExchangeFailure::Aborted)
        }
        Ok(Err(ExchangeFailure::Broken { .. })) => Err(ExchangeFailure::Broken { reused }),
        Ok(Err(other)) => Err(other),
        Ok(Ok(())) => Ok(up),
    }
}

/// Streams the client's body to the backend; `Ok(false)` if the backend stopped
/// taking it.
async fn upload(
    up: &mut BackendConn,
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
                up.stream.write_all(&frame).await
            }
            false => up.stream.write_all(&data).await,
        };
        if written.is_err() {
            return Ok(false);
        }
    }
    // Request trailers are not forwarded (HTTP/1.1 backends rarely read them).
    if chunked && up.stream.write_all(b"0\r\n\r\n").await.is_err() {
        return Ok(false);
    }
    Ok(true)
}

/// Reads until `resp` holds a complete head (`ResponseHead::read_from`).
async fn read_head(up: &mut BackendConn, resp: &mut ResponseHead) -> Result<(), ExchangeFailure> {
    resp.read_from(up).await.map_err(|e| match e {
        HeadReadError::ClosedEmpty => ExchangeFailure::Broken { reused: false },
        HeadReadError::Malformed => ExchangeFailure::BadResponse,
    })
}

/// Sends the response head and body to the client, with the bookkeeping; the backend
/// connection goes back to the pool when the response was read whole.
#[allow(clippy::too_many_arguments)]
async fn relay(
    pool: &PoolRuntime,
    index: usize,
    mut up: BackendConn,
    mut done: Pending,
    set_cookie: bool,
    head_request: bool,
    resp: &mut ResponseHead,
    respond: &mut SendResponse<Bytes>,
) -> Result<(), Local> {
    let mut informational = 0;
    while resp.is_informational() {
        informational += 1;
        up.buf.advance(resp.len);
        let read = tokio::time::timeout(pool.response_timeout, read_head(&mut up, resp)).await;
        if informational > MAX_INFORMATIONAL || !matches!(read, Ok(Ok(()))) {
            done.set_status(502);
            return Err(Local::BadGateway);
        }
    }
    let backend = &pool.backends[index];
    backend.state.note_success();
    let mut set_cookie = set_cookie;
    if pool.affinity_mode == AffinityMode::Learn {
        if let Some(store) = &pool.sessions {
            let learned = affinity::learned_sessions(pool, &HeadView::new(&resp.headers, &up.buf));
            set_cookie |= affinity::pin_learned(store, pool, index, learned).await;
        }
    }
    let status = resp.status;
    backend.metrics.record_status(status);
    let latency = done.started().elapsed();
    backend.metrics.duration.observe(latency.as_secs_f64());
    if pool.latency_aware {
        balance::observe_latency(&backend.state.load, latency);
    }
    done.set_status(status);
    let framing = resp.framing(&up.buf, head_request);
    let Some(head) = response_head(resp, &up.buf, pool, index, set_cookie) else {
        done.set_status(502);
        return Err(Local::BadGateway);
    };
    let keep_alive = resp.keep_alive;
    up.buf.advance(resp.len);
    let Ok(mut send) = respond.send_response(head, framing == Framing::Empty) else {
        // The client reset the stream: the backend's answer is not read to its end.
        return Ok(());
    };
    let complete = match framing {
        Framing::Empty => true,
        _ => send_body(&mut up, &mut send, framing, &mut done.bytes).await,
    };
    if complete {
        done.complete();
        if keep_alive && framing != Framing::UntilClose {
            pool.upstream.put_raw(index, up);
        }
    } else {
        send.send_reset(h2::Reason::INTERNAL_ERROR);
    }
    Ok(())
}

/// The HEADERS of the response: status, the backend's fields without the hop-by-hop
/// ones (and without framing, which HTTP/2 does itself), `Via` with this hop, and
/// the affinity cookie when one is due. `None` for a status HTTP/2 cannot carry.
fn response_head(
    resp: &ResponseHead,
    buf: &[u8],
    pool: &PoolRuntime,
    index: usize,
    set_cookie: bool,
) -> Option<Response<()>> {
    let mut head = Response::new(());
    *head.status_mut() = StatusCode::from_u16(resp.status).ok()?;
    let headers = head.headers_mut();
    let coded = resp.has_transfer_encoding();
    let mut via: Vec<u8> = Vec::new();
    for h in &resp.headers {
        let value = &buf[h.value.clone()];
        match h.kind {
            Kind::HopByHop | Kind::Connection | Kind::TransferEncoding => continue,
            Kind::ContentLength if coded => continue,
            Kind::Via => {
                if !value.is_empty() {
                    via.extend_from_slice(value);
                    via.extend_from_slice(b", ");
                }
                continue;
            }
            Kind::ContentLength => {}
            _ if resp.is_listed(buf, h) => continue,
            _ => {}
        }
        let name = HeaderName::from_bytes(&buf[h.name.clone()]);
        let value = HeaderValue::from_bytes(value);
        if let (Ok(name), Ok(value)) = (name, value) {
            headers.append(name, value);
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

/// Relays the body as DATA frames; `true` when it was read and sent to its end.
async fn send_body(
    up: &mut BackendConn,
    send: &mut SendStream<Bytes>,
    framing: Framing,
    sent: &mut u64,
) -> bool {
    let mut left = match framing {
        Framing::Length(n) => n,
        _ => u64::MAX,
    };
    let mut chunks = ChunkScanner::default();
    let mut first = true;
    loop {
        if up.buf.is_empty() {
            up.buf.reserve(READ_CHUNK);
            match up.stream.read_buf(&mut up.buf).await {
                Ok(0) if framing == Framing::UntilClose => {
                    return send.send_data(Bytes::new(), true).is_ok();
                }
                Ok(0) | Err(_) => return false,
                Ok(_) => {}
            }
        }
        let data = match framing {
            Framing::Chunked => {
                let mut runs = Vec::new();
                let used = match chunks.feed_data(&up.buf, |r| runs.push(r)) {
                    Ok(used) => used,
                    Err(_) => return false,
                };
                let mut data = BytesMut::new();
                for r in runs {
                    data.extend_from_slice(&up.buf[r]);
                }
                up.buf.advance(used);
                data.freeze()
            }
            _ => {
                let take = (up.buf.len() as u64).min(left) as usize;
                left -= take as u64;
                up.buf.split_to(take).freeze()
            }
        };
        let end = match framing {
            Framing::Chunked => chunks.is_done(),
            Framing::Length(_) => left == 0,
            _ => false,
        };
        *sent += data.len() as u64;
        // A body that came whole with its head goes out at once; anything longer
        // waits for the client's window.
        let sent_ok = match first && end {
            true => send.send_data(data, true).is_ok(),
            false => send_within_window(send, data, end).await,
        };
        first = false;
        if !sent_ok {
            return false;
        }
        if end {
            return true;
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
