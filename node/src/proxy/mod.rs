//! The HTTP proxy: one request from route lookup to streamed response.
//!
//! Steps, each in its own small function: check what the request asks for
//! (`request`: authority and normalised path, 400 when malformed), find the route
//! (404 when none), pick a backend (affinity first, then the pool's algorithm; 503
//! when no backend may take it), then either switch protocols (`upgrade`, only to a
//! protocol the route allows) or forward (`forward`).

pub mod authority;
pub mod body;
pub(crate) mod finish;
mod forward;
pub mod headers;
pub mod lookup;
pub mod path;
pub(crate) mod request;
mod upgrade;

use crate::affinity::cookie::find_cookie;
use crate::affinity::shared;
use crate::balance::PickContext;
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::snapshot::Snapshot;
use body::{full, ProxyBody};
use bytes::Bytes;
use fulcrum_config::HashKey;
use fulcrum_session::AffinityStore;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use lookup::HeaderLookup;
use request::Target;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tracing::Instrument;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub tls: bool,
    /// The client is one of the listener's `trusted_proxies`: its forwarding headers
    /// are appended to instead of replaced.
    pub trusted: bool,
    /// The client address as an `X-Forwarded-For` entry, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
    /// This hop as a `Forwarded` element (`for=...;proto=...`, RFC 7239).
    pub(crate) forwarded: HeaderValue,
}

impl ConnInfo {
    pub fn new(listener: Arc<str>, client: SocketAddr, tls: bool, trusted: bool) -> Self {
        let ip = client.ip().to_canonical();
        let proto = if tls { "https" } else { "http" };
        // RFC 7239 §6: an IPv6 node is quoted and bracketed.
        let forwarded = match ip {
            std::net::IpAddr::V4(v4) => format!("for={v4};proto={proto}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={proto}"),
        };
        // An IP address is always a valid header value.
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        ConnInfo {
            listener,
            client,
            tls,
            trusted,
            client_ip: value(ip.to_string()),
            forwarded: value(forwarded),
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
    /// A request that is malformed: bad or missing authority, bad path escapes.
    BadRequest,
    /// The client broke its own request (its body ended early or was malformed).
    ClientError,
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
            Local::ClientError => (StatusCode::BAD_REQUEST, "bad request\n", "client"),
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
    let table = snap.routes.get(&*conn.listener).ok_or(Local::NoRoute)?;
    let target = Target::read(&req, table.paths)?;
    let route = table
        .find(target.host(), target.path.as_bytes(), req.headers())
        .ok_or(Local::NoRoute)?;
    if route.redirect_https && !conn.tls {
        return Ok(redirect_to_https(target.host(), req.uri()));
    }
    let pool = snap.pools.get(&route.pool).ok_or(Local::NoBackend)?.clone();
    let span = tracing::debug_span!("request", method = %req.method(), path = %target.path, pool = %pool.name);
    let keys = ChoiceKeys::read(dp, &pool, conn, req.headers(), target.path.as_bytes());
    let choice = choose_backend(&pool, conn, keys)
        .await
        .ok_or(Local::NoBackend)?;
    let upgrade = match req.version() {
        Version::HTTP_11 => headers::allowed_upgrade(req.headers(), |p| route.allows_upgrade(p)),
        _ => None,
    };
    if let Some(protocols) = upgrade {
        return upgrade::forward(dp, &pool, choice.index, conn, req, target, protocols)
            .instrument(span)
            .await;
    }
    let forwarded = forward::forward(dp, pool, choice, conn, req, target);
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
        path: &[u8],
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
    path: &[u8],
) -> Option<Vec<u8>> {
    match key? {
        HashKey::SourceIp => Some(conn.client.ip().to_canonical().to_string().into_bytes()),
        HashKey::Path => Some(path.to_vec()),
        // Lower-cased when the config was parsed.
        HashKey::Header(name) => headers.first(name).map(<[u8]>::to_vec),
        HashKey::Cookie(name) => find_cookie(headers, name).map(|v| v.as_bytes().to_vec()),
    }
}

/// 308 to the same path on https; `host` is the routed host part (port dropped).
fn redirect_to_https(host: &[u8], uri: &Uri) -> Response<ProxyBody> {
    let host = match host {
        [] => "localhost",
        host => std::str::from_utf8(host).unwrap_or("localhost"),
    };
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
