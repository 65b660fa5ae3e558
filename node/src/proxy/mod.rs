//! The HTTP proxy: one request from route lookup to streamed response.
//!
//! Steps, each in its own small function: check what the request asks for
//! (`request`: authority and normalised path, 400 when malformed), find the route
//! (404 when none), pick a backend (affinity first, then the pool's algorithm; 503
//! when no backend may take it), then either switch protocols (`upgrade`, only to a
//! protocol the route allows) or forward (`forward`).

pub mod body;
mod deadline;
mod forward;
pub mod headers;
mod upgrade;

use crate::request::choice::choose_backend;
pub use crate::request::conn::ConnInfo;
use crate::request::local::Local;
use crate::request::{rate_limit, split};

use crate::dataplane::DataPlane;
use crate::request::target::Target;
use crate::snapshot::Snapshot;
use body::{full, ProxyBody};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use std::convert::Infallible;
use std::sync::Arc;
use tracing::Instrument;

/// Entry point for every request on an HTTP listener. Never fails: problems become
/// a short local response.
pub async fn handle(
    dp: Arc<DataPlane>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = dp.snapshot();
    let abandoned = Abandoned(Some(&dp));
    let response = route_and_forward(&dp, &snapshot, &conn, req).await;
    abandoned.answered();
    Ok(response.unwrap_or_else(|local| local_response(&dp, local)))
}

/// Counts a request whose client left before it was answered — an HTTP/2 stream
/// reset (hyper then drops the request's future, mid-upload or mid-wait) — as a client
/// fault (`result="client"`), the same as a body the client broke on HTTP/1.1.
struct Abandoned<'a>(Option<&'a DataPlane>);

impl Abandoned<'_> {
    fn answered(mut self) {
        self.0 = None;
    }
}

impl Drop for Abandoned<'_> {
    fn drop(&mut self) {
        if let Some(dp) = self.0.take() {
            tracing::debug!("request abandoned by the client before its answer");
            dp.metrics.local_response("client");
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
    if let Some(secs) = local.retry_after() {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
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
    rate_limit::admit(
        route.limiter.as_ref(),
        conn,
        req.headers(),
        target.path.as_bytes(),
    )?
    .settle()
    .await?;
    if route.redirect_https && !conn.tls {
        return Ok(redirect_to_https(target.host(), req.uri()));
    }
    let candidates =
        split::candidates(dp, snap, route, conn, req.headers(), target.path.as_bytes());
    let (pool, keys) = candidates.settle().await.ok_or(Local::NoBackend)?;
    let span = tracing::debug_span!("request", method = %req.method(), path = %target.path, pool = %pool.name);
    let choice = choose_backend(&pool, conn, keys)
        .await
        .ok_or(Local::NoBackend)?;
    let upgrade = match req.version() {
        Version::HTTP_11 => headers::allowed_upgrade(req.headers(), |p| route.allows_upgrade(p)),
        _ => None,
    };
    if let Some(protocols) = upgrade {
        let timeouts = route.timeouts;
        return upgrade::forward(
            dp,
            &pool,
            choice.index,
            conn,
            req,
            target,
            protocols,
            timeouts,
        )
        .instrument(span)
        .await;
    }
    let forwarded = forward::forward(dp, pool, choice, conn, req, target, route.timeouts);
    // A disabled span (the usual case) would still be entered and left on every poll.
    if span.is_disabled() {
        forwarded.await
    } else {
        forwarded.instrument(span).await
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
