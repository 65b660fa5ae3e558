//! The HTTP proxy: one request from route lookup to streamed response.
//!
//! Steps, each in its own small function: find the route (404 when none), pick a
//! backend (affinity first, then the pool's algorithm; 503 when no backend may take it),
//! rewrite headers, send over the pool's keep-alive client with a response timeout,
//! retry once on another backend when the connection could not even be made (idempotent
//! requests without a body only), and stream the response back while counting it.

pub mod body;
pub(crate) mod finish;
pub mod headers;
pub mod lookup;
mod upgrade;

use crate::affinity::cookie::find_cookie;
use crate::affinity::shared;
use crate::balance::{self, PickContext};
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::snapshot::Snapshot;
use body::{full, ProxyBody, TrackedBody};
use bytes::Bytes;
use finish::{RequestDone, RequestLog};
use fulcrum_config::HashKey;
use fulcrum_session::AffinityStore;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use lookup::HeaderLookup;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub tls: bool,
    /// The client address as an `X-Forwarded-For` entry, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
}

impl ConnInfo {
    pub fn new(listener: Arc<str>, client: SocketAddr, tls: bool) -> Self {
        let text = client.ip().to_canonical().to_string();
        ConnInfo {
            listener,
            client,
            tls,
            // An IP address is always a valid header value.
            client_ip: HeaderValue::from_str(&text)
                .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
        }
    }

    pub(crate) fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

/// Entry point for every request on an HTTP listener. Never fails: problems become
/// a short local response.
pub async fn handle(
    dp: Arc<DataPlane>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = dp.snapshot();
    let response = route_and_forward(&dp, &snapshot, &conn, req).await;
    Ok(response.unwrap_or_else(|local| local_response(&dp, local)))
}

/// A response fulcrum makes itself.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Local {
    /// A request the HTTP/1.1 fast path cannot make sense of (hyper answers its own).
    BadRequest,
    NoRoute,
    NoBackend,
    BadGateway,
    GatewayTimeout,
}

impl Local {
    /// The status, the body text, and the metric label of this response.
    pub(crate) fn parts(self) -> (StatusCode, &'static str, &'static str) {
        match self {
            Local::BadRequest => (StatusCode::BAD_REQUEST, "bad request\n", "bad_request"),
            Local::NoRoute => (StatusCode::NOT_FOUND, "no route\n", "no_route"),
            Local::NoBackend => (
                StatusCode::SERVICE_UNAVAILABLE,
                "no healthy backend\n",
                "no_backend",
            ),
            Local::BadGateway => (StatusCode::BAD_GATEWAY, "bad gateway\n", "bad_gateway"),
            Local::GatewayTimeout => (StatusCode::GATEWAY_TIMEOUT, "backend timeout\n", "timeout"),
        }
    }
}

fn local_response(dp: &DataPlane, local: Local) -> Response<ProxyBody> {
    let (status, text, metric) = local.parts();
    dp.metrics.local_response(metric);
    let mut resp = Response::new(full(Bytes::from_static(text.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    resp
}

async fn route_and_forward(
    dp: &Arc<DataPlane>,
    snap: &Snapshot,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Local> {
    let host = headers::request_host(&req);
    let route = snap
        .routes
        .get(&*conn.listener)
        .and_then(|t| t.find(host.as_deref(), req.uri().path(), req.headers()))
        .ok_or(Local::NoRoute)?;
    if route.redirect_https && !conn.tls {
        return Ok(redirect_to_https(host.as_deref(), req.uri()));
    }
    let pool = snap.pools.get(&route.pool).ok_or(Local::NoBackend)?.clone();
    let span = tracing::debug_span!("request", method = %req.method(), path = req.uri().path(), pool = %pool.name);
    let keys = ChoiceKeys::read(dp, &pool, conn, req.headers(), req.uri().path());
    let choice = choose_backend(&pool, conn, keys)
        .await
        .ok_or(Local::NoBackend)?;
    if headers::is_upgrade_request(req.headers()) && req.version() == Version::HTTP_11 {
        return upgrade::forward(dp, &pool, choice.index, conn, req, host)
            .instrument(span)
            .await;
    }
    let forwarded = forward(dp, pool, choice, conn, req, host);
    // A disabled span (the usual case) would still be entered and left on every poll.
    if span.is_disabled() {
        forwarded.await
    } else {
        forwarded.instrument(span).await
    }
}

/// The backend chosen for a request and whether to (re)issue the affinity cookie (or,
/// in the shared modes, the fallback cookie).
pub(crate) struct Choice {
    pub index: usize,
    pub set_cookie: bool,
    /// The shared-affinity key, when the pick came from a Redis pin.
    session: Option<String>,
}

/// What backend choice reads from a request, taken before anything is awaited (so
/// the choice itself does not borrow the request).
pub(crate) struct ChoiceKeys {
    /// The backend a valid affinity cookie names, if it may take the request.
    cookie_pin: Option<usize>,
    hash_key: Option<Vec<u8>>,
    /// The shared-affinity (Redis) store and this request's key in it, when a store
    /// is configured and the pool's mode finds a key.
    session: Option<(Arc<AffinityStore>, String)>,
    /// The backend a valid fallback cookie names (shared-affinity pools).
    fallback_pin: Option<String>,
}

impl ChoiceKeys {
    pub(crate) fn read(
        dp: &DataPlane,
        pool: &PoolRuntime,
        conn: &ConnInfo,
        headers: &impl HeaderLookup,
        path: &str,
    ) -> Self {
        let cookie_pin = pool.cookie.as_ref().and_then(|cookie| {
            find_cookie(headers, &cookie.name)
                .and_then(|v| cookie.signer.verify(v))
                .and_then(|id| pool.sticky_target(&id))
        });
        if cookie_pin.is_some() {
            return ChoiceKeys {
                cookie_pin,
                hash_key: None,
                session: None,
                fallback_pin: None,
            };
        }
        let session = dp.sessions().and_then(|store| {
            shared::session_key(pool, headers, conn.client.ip()).map(|key| (store, key))
        });
        let fallback_pin = match (&session, &pool.fallback) {
            (Some(_), Some(fallback)) => {
                find_cookie(headers, &fallback.name).and_then(|v| fallback.verify(v))
            }
            _ => None,
        };
        ChoiceKeys {
            cookie_pin,
            hash_key: hash_key_bytes(pool.hash_key.as_ref(), conn, headers, path),
            session,
            fallback_pin,
        }
    }
}

/// Chooses the backend for a request: a valid affinity cookie or Redis pin first,
/// then the pool's algorithm.
pub(crate) async fn choose_backend(
    pool: &PoolRuntime,
    conn: &ConnInfo,
    keys: ChoiceKeys,
) -> Option<Choice> {
    if let Some(index) = keys.cookie_pin {
        return Some(Choice {
            index,
            set_cookie: false,
            session: None,
        });
    }
    let ctx = PickContext {
        hash_key: keys.hash_key.as_deref(),
        client_ip: Some(conn.client.ip()),
    };
    let pick = || pool.pick(&ctx, None);
    if let Some((store, session)) = keys.session {
        let hint = keys.fallback_pin.as_deref();
        let (index, issue) = shared::choose(&store, pool, &session, hint, pick).await?;
        return Some(Choice {
            index,
            set_cookie: issue && pool.fallback.is_some(),
            session: Some(session),
        });
    }
    let index = pick()?;
    Some(Choice {
        index,
        set_cookie: pool.cookie.is_some(),
        session: None,
    })
}

/// Extracts the consistent-hash key of a request per the pool's `hash_key`.
fn hash_key_bytes(
    key: Option<&HashKey>,
    conn: &ConnInfo,
    headers: &impl HeaderLookup,
    path: &str,
) -> Option<Vec<u8>> {
    match key? {
        HashKey::SourceIp => Some(conn.client.ip().to_canonical().to_string().into_bytes()),
        HashKey::Path => Some(path.as_bytes().to_vec()),
        // Lower-cased when the config was parsed.
        HashKey::Header(name) => headers.first(name).map(<[u8]>::to_vec),
        HashKey::Cookie(name) => find_cookie(headers, name).map(|v| v.as_bytes().to_vec()),
    }
}

fn redirect_to_https(host: Option<&str>, uri: &Uri) -> Response<ProxyBody> {
    let host = host.unwrap_or("localhost");
    let host = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host);
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&format!("https://{host}{path}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// Methods that may be sent twice without changing the outcome (RFC 9110 §9.2.2).
pub(crate) fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

async fn forward(
    dp: &Arc<DataPlane>,
    pool: Arc<PoolRuntime>,
    choice: Choice,
    conn: &Arc<ConnInfo>,
    req: Request<Incoming>,
    host: Option<String>,
) -> Result<Response<ProxyBody>, Local> {
    let started = Instant::now();
    let (mut parts, body) = req.into_parts();
    let http2 = parts.version == Version::HTTP_2;
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::add_forwarding(
        &mut parts.headers,
        &conn.client_ip,
        conn.proto(),
        host.as_deref(),
        http2,
    );
    if http2 {
        if let Some(h) = host.as_deref().and_then(|h| HeaderValue::from_str(h).ok()) {
            parts.headers.insert(http::header::HOST, h);
        }
    }
    // A request without a body can be replayed on another backend if the connection
    // could not be made; one with a body was consumed by the first attempt.
    let retryable = is_idempotent(&parts.method) && body.is_end_stream();
    let uri = origin_form(&parts.uri);
    // Only the access log needs a copy of the path; skip the allocation otherwise.
    let log = RequestLog {
        method: parts.method.clone(),
        path: if dp.access_log_enabled() {
            parts.uri.path().to_string()
        } else {
            String::new()
        },
    };
    let mut index = choice.index;
    let mut body = Some(body.boxed());
    for attempt in 0..2 {
        let backend = &pool.backends[index];
        // The last possible attempt takes the headers; an earlier one sends a copy.
        let headers = if retryable && attempt == 0 {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        let upstream = upstream_request(&parts.method, uri.clone(), headers, body.take(), backend);
        backend.state.load.begin_request();
        let sent =
            tokio::time::timeout(pool.response_timeout, pool.upstream.send(index, upstream)).await;
        let err = match sent {
            Ok(Ok((resp, lease))) => {
                backend.state.note_success();
                let mut learned = false;
                if pool.affinity_mode == fulcrum_config::AffinityMode::Learn {
                    if let Some(store) = dp.sessions() {
                        let sessions = shared::learned_sessions(&pool, resp.headers());
                        learned = shared::pin_learned(&store, &pool, index, sessions).await;
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
                return Ok(finish_response(
                    &pool,
                    index,
                    resp,
                    done,
                    choice.set_cookie || attempt > 0 || learned,
                ));
            }
            Ok(Err(e)) => e,
            Err(_elapsed) => {
                backend.state.load.end_request();
                tracing::warn!(pool = %pool.name, backend = %backend.id, "backend response timeout");
                return Err(Local::GatewayTimeout);
            }
        };
        backend.state.load.end_request();
        tracing::warn!(pool = %pool.name, backend = %backend.id, error = %err, "backend request failed");
        if !err.is_connection_failure() {
            return Err(Local::BadGateway);
        }
        if err.ejects_backend() {
            eject_locally(dp, &pool, index);
        }
        if !retryable || attempt > 0 {
            return Err(Local::BadGateway);
        }
        index = retry_target(dp, &pool, &choice, conn, index)
            .await
            .ok_or(Local::BadGateway)?;
        dp.metrics.retries.inc();
    }
    Err(Local::BadGateway)
}

/// Ejects a backend from new picks on this node after a failed connection.
pub(crate) fn eject_locally(dp: &DataPlane, pool: &PoolRuntime, index: usize) {
    let backend = &pool.backends[index];
    let backoff = backend.state.note_failure();
    dp.metrics
        .backend_ejections
        .get_or_create(&crate::metrics::BackendLabels {
            pool: pool.name.clone(),
            backend: backend.id.clone(),
        })
        .inc();
    tracing::info!(pool = %pool.name, backend = %backend.id, ?backoff, "backend ejected locally after connect failure");
}

/// Another backend for a request whose connection failed; a Redis-pinned session is
/// moved off the failed backend once, so every node follows.
pub(crate) async fn retry_target(
    dp: &DataPlane,
    pool: &PoolRuntime,
    choice: &Choice,
    conn: &ConnInfo,
    failed: usize,
) -> Option<usize> {
    let ctx = PickContext {
        hash_key: None,
        client_ip: Some(conn.client.ip()),
    };
    let pick = || pool.pick(&ctx, Some(failed));
    match (choice.session.as_deref(), dp.sessions()) {
        (Some(key), Some(store)) => {
            shared::repin(&store, pool, key, &pool.backends[failed].id, pick).await
        }
        _ => pick(),
    }
    .filter(|&i| i != failed)
}

/// The request target as a backend expects it: origin form (`/path?query`). HTTP/2
/// requests arrive in absolute form.
pub(super) fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    uri.path_and_query()
        .map(|pq| Uri::from(pq.clone()))
        .unwrap_or_else(|| Uri::from_static("/"))
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
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_via(&mut parts.headers, "1.1 fulcrum");
    if set_cookie {
        if let Some(value) = pool.affinity_set_cookie(index) {
            if let Ok(v) = HeaderValue::from_str(&value) {
                parts.headers.append(http::header::SET_COOKIE, v);
            }
        }
    }
    Response::from_parts(parts, TrackedBody::new(body, done).boxed())
}
