//! One request served by hyper, from the chosen backend to the streamed response.
//!
//! The request is rewritten (hop-by-hop headers out, forwarding headers in, `Host`
//! set to the authority it was routed on, origin-form target), sent over the pool's
//! keep-alive connections with a response timeout, and retried once on another
//! backend when the connection could not even be made (idempotent requests without a
//! body only). A failure while a request body was on its way is nobody's health
//! problem: the client's own (its body broke: 400, `ClientBody`) or a backend that
//! stopped taking the body (502, not ejected); only failed connects and broken
//! body-less exchanges eject a backend. The response goes back with hop-by-hop headers
//! removed and, next to a transfer coding, without `Content-Length` (RFC 9112 §6.3).
//! The route's `timeout` bounds the whole exchange: the wait for the head, the
//! response body and the request body's upload, which hyper's client carries on after
//! the head came (`deadline`).

use super::body::{self, BodyError, ClientBody, ProxyBody, TrackedBody};
use super::deadline::{self, Direction};
use super::headers;
use crate::affinity::shared;
use crate::balance;
use crate::dataplane::DataPlane;
use crate::grpc_watch::GrpcWatch;
use crate::pool::PoolRuntime;
use crate::request::breaker;
use crate::request::choice::Choice;
use crate::request::conn::ConnInfo;
use crate::request::course::Course;
use crate::request::finish::{RequestDone, RequestLog};
use crate::request::local::{Cap, Local};
use crate::request::retry::is_idempotent;
use crate::request::retry::AttemptFailure;
use crate::request::target::Target;
use crate::request::timeouts::{Expiry, RequestClock, RouteTimeouts};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;

/// Forwards `req` (validated as `target`) to the backend `choice` names.
pub(super) async fn forward(
    dp: &Arc<DataPlane>,
    pool: Arc<PoolRuntime>,
    choice: Choice,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    target: Target,
    timeouts: RouteTimeouts,
) -> Result<Response<ProxyBody>, Local> {
    let started = Instant::now();
    let clock = RequestClock::new(timeouts, started, pool.response_timeout);
    pool.note_request();
    let (mut parts, body) = req.into_parts();
    let http2 = parts.version == Version::HTTP_2;
    let host = target.authority.as_deref();
    // `TE: trailers` is the one hop-by-hop header an HTTP/2 backend is told again
    // (gRPC servers look for it); the client's says whether it takes trailers.
    let te_trailers = pool.upstream.is_h2() && headers::takes_trailers(&parts.headers);
    headers::strip_hop_by_hop(&mut parts.headers);
    if te_trailers {
        parts
            .headers
            .insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
    headers::add_forwarding(&mut parts.headers, conn, host, http2);
    // The authority routing used: the absolute-form target's or `:authority`
    // replaces whatever `Host` said.
    if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert(http::header::HOST, h);
    }
    // A request without a body can be replayed on another backend if the connection
    // could not be made; one with a body was consumed by the first attempt.
    let has_body = !body.is_end_stream();
    let retryable = is_idempotent(&parts.method) && !has_body;
    // Only the access log needs a copy of the path; skip the allocation otherwise.
    let log = RequestLog {
        method: parts.method.clone(),
        path: if dp.access_log_enabled() {
            target.uri.path().to_string()
        } else {
            String::new()
        },
    };
    let client_body = ClientBody::new(body);
    let client_failed = client_body.failed();
    let mut upload = client_body.map_err(BodyError::from).boxed();
    if has_body {
        // The route's overall limit ends the upload too, also once the response head
        // is in (hyper's client sends the body on after it).
        upload = deadline::bound(upload, clock.deadline(), Direction::Request);
    }
    let mut body = Some(upload);
    // Up to three attempts: at most one more on the same backend and one on another
    // (`request::retry` decides).
    let mut course = Course::new(dp, &pool, &choice, conn, &clock, retryable);
    for attempt in 0..3 {
        let index = course.index();
        let backend = &pool.backends[index];
        // The last possible attempt takes the headers; an earlier one sends a copy.
        let headers = if retryable && attempt < 2 {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        let upstream = upstream_request(
            &parts.method,
            target.uri.clone(),
            headers,
            body.take(),
            backend,
        );
        let occupied = breaker::occupy(&pool, index)?;
        let (limit, expiry) = clock.start_try().wait();
        let sent = tokio::time::timeout(limit, pool.upstream.send(index, upstream)).await;
        if sent.is_err() {
            crate::request::outlier::observe_timeout(&pool, index);
        }
        let err = match sent {
            Ok(Ok((resp, _))) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                // Nobody asked it to switch (`Upgrade` was not forwarded).
                tracing::warn!(pool = %pool.name, backend = %backend.id, "unrequested 101 from backend");
                return Err(Local::BadGateway);
            }
            Ok(Ok((resp, lease))) => {
                backend.state.note_success();
                let mut learned = false;
                if pool.affinity_mode == fulcrum_config::AffinityMode::Learn {
                    if let Some(store) = &pool.sessions {
                        let sessions = shared::learned_sessions(&pool, resp.headers());
                        learned = shared::pin_learned(store, &pool, index, sessions).await;
                    }
                }
                let done = RequestDone::new(
                    dp.clone(),
                    pool.clone(),
                    index,
                    conn.client,
                    log,
                    started,
                    Some(lease),
                );
                occupied.hand_over();
                let set_cookie = choice.set_cookie || course.moved() || learned;
                let deadline = clock.deadline();
                return Ok(finish_response(
                    &pool, index, resp, done, set_cookie, deadline,
                ));
            }
            // The upload failed at the route's deadline (`deadline`): the request is over.
            Ok(Err(_)) if clock.expired() => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, "route timeout during the upload");
                return Err(Local::GatewayTimeout);
            }
            Ok(Err(e)) => Some(e),
            Err(_elapsed) if expiry == Expiry::PerTry => None,
            Err(_elapsed) => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, ?expiry, "backend response timeout");
                return Err(Local::GatewayTimeout);
            }
        };
        drop(occupied);
        let failure = match err {
            Some(err) => match attempt_failure(conn, &pool, backend, &client_failed, err, has_body)
            {
                Ok(failure) => failure,
                Err(answer) => return Err(answer),
            },
            None => {
                tracing::warn!(pool = %pool.name, backend = %backend.id, "backend try timeout");
                AttemptFailure::TryTimeout
            }
        };
        course.after_failure(failure).await?;
    }
    Err(Local::BadGateway)
}

/// How a failed send counts: the client's fault (400), an answer at once (502), or a
/// failed attempt for the retry rule.
fn attempt_failure(
    conn: &ConnInfo,
    pool: &PoolRuntime,
    backend: &crate::pool::PoolBackend,
    client_failed: &body::ClientFailed,
    err: crate::upstream::UpstreamError,
    has_body: bool,
) -> Result<AttemptFailure, Local> {
    if client_failed.load() {
        tracing::debug!(client = %conn.client, error = %err, "request body broken by the client");
        return Err(Local::ClientError);
    }
    if matches!(err, crate::upstream::UpstreamError::Pending { .. }) {
        tracing::warn!(pool = %pool.name, backend = %backend.id, "backend at max_pending: 503");
        return Err(Local::Overloaded(Cap::Pending));
    }
    tracing::warn!(pool = %pool.name, backend = %backend.id, error = %err, "backend request failed");
    err.attempt_failure(has_body).ok_or(Local::BadGateway)
}

/// The HTTP/1.1 request sent to `backend`. A request without `Host` (HTTP/1.0) gets
/// the backend's address, as a direct client would have sent.
fn upstream_request(
    method: &Method,
    uri: Uri,
    mut headers: http::HeaderMap,
    body: Option<ProxyBody>,
    backend: &crate::pool::PoolBackend,
) -> Request<ProxyBody> {
    if !headers.contains_key(http::header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&backend.id) {
            headers.insert(http::header::HOST, v);
        }
    }
    let mut req = Request::new(body.unwrap_or_else(body::empty));
    *req.method_mut() = method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    req
}

fn finish_response(
    pool: &PoolRuntime,
    index: usize,
    resp: Response<Incoming>,
    mut done: RequestDone,
    set_cookie: bool,
    deadline: Option<Instant>,
) -> Response<ProxyBody> {
    let backend = &pool.backends[index];
    let status = resp.status().as_u16();
    backend.metrics.record_status(status);
    let latency = done.started.elapsed();
    backend.metrics.duration.observe(latency.as_secs_f64());
    if pool.latency_aware {
        balance::observe_latency(&backend.state.load, latency);
    }
    done.status = status;
    let (mut parts, body) = resp.into_parts();
    // RFC 9112 §6.3: with a transfer coding, a Content-Length means nothing and must
    // not reach the client, who would frame the re-encoded body by it.
    if parts.headers.contains_key(http::header::TRANSFER_ENCODING) {
        parts.headers.remove(http::header::CONTENT_LENGTH);
    }
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_via(&mut parts.headers, "1.1 fulcrum");
    if set_cookie {
        if let Some(value) = pool.affinity_set_cookie(index) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                parts.headers.append(http::header::SET_COOKIE, v);
            }
        }
    }
    let mut body = TrackedBody::new(body, done);
    if let Some(watch) = GrpcWatch::start(&parts.headers, &backend.metrics.grpc) {
        body = body.watching_grpc(watch);
    }
    let body = body.map_err(BodyError::from).boxed();
    Response::from_parts(parts, deadline::bound(body, deadline, Direction::Response))
}
