//! Protocol upgrades (WebSocket): forward the handshake, then splice the two streams.
//!
//! Only protocols the route allows (`upgrades`, default `websocket`) are offered to
//! the backend; `h2c` never is (the caller forwards a request offering nothing
//! allowed as a plain one), and a 101 must switch to one of the offered protocols.
//! The client's `OnUpgrade` must be taken before the request is moved. When the
//! backend answers `101 Switching Protocols`, both sides are upgraded and a tracked
//! task copies bytes both ways until either side closes. Tunnels are tracked
//! separately because hyper's graceful shutdown does not see them once the 101 is
//! sent.
//!
//! The handshake keeps the rules of any request: the route's `timeout` and
//! `per_try_timeout` bound the wait for the backend's answer (with the pool's
//! `response_timeout`), it counts towards `max_requests` until the answer and its
//! connect towards `max_pending` (503 beyond either), and a connect failure ejects the
//! backend within `outlier.max_ejection_percent`. The tunnel after a 101 has no
//! request timeout: it is a connection, ended by either side.

use super::body::{self, BodyError, ProxyBody};
use super::{headers, ConnInfo, Local};
use crate::dataplane::DataPlane;
use crate::pool::PoolRuntime;
use crate::request::breaker;
use crate::request::local::Cap;
use crate::request::target::Target;
use crate::request::timeouts::{RequestClock, RouteTimeouts};
use http::{HeaderValue, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Forwards an upgrade request offering `protocols` (the allowed ones only).
#[allow(clippy::too_many_arguments)]
pub(super) async fn forward(
    dp: &Arc<DataPlane>,
    pool: &Arc<PoolRuntime>,
    index: usize,
    conn: &Arc<ConnInfo>,
    mut req: Request<Incoming>,
    target: Target,
    protocols: HeaderValue,
    timeouts: RouteTimeouts,
) -> Result<Response<ProxyBody>, Local> {
    let clock = RequestClock::new(timeouts, std::time::Instant::now(), pool.response_timeout);
    let backend = &pool.backends[index];
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    let host = target.authority.as_deref();
    headers::add_forwarding(&mut parts.headers, conn, host, false);
    if let Some(h) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        parts.headers.insert(http::header::HOST, h);
    }
    parts
        .headers
        .insert(http::header::UPGRADE, protocols.clone());
    parts.headers.insert(
        http::header::CONNECTION,
        HeaderValue::from_static("upgrade"),
    );
    parts.uri = target.uri;
    parts.version = Version::HTTP_11;
    let upstream = Request::from_parts(parts, body.map_err(BodyError::from).boxed());
    let occupied = breaker::occupy(pool, index)?;
    let sent = pool.upstream.send_upgrade(index, upstream);
    let (limit, _) = clock.start_try().wait();
    let answer = tokio::time::timeout(limit, sent).await;
    drop(occupied);
    let mut resp = match answer {
        Ok(Ok(resp)) => resp,
        Ok(Err(crate::upstream::UpstreamError::Pending { .. })) => {
            tracing::warn!(pool = %pool.name, backend = %backend.id, "backend at max_pending: 503");
            return Err(Local::Overloaded(Cap::Pending));
        }
        Ok(Err(e)) => {
            // An upgrade is never retried, but a failure that is the backend's still counts.
            let fault = e.attempt_failure(false);
            if fault.is_some_and(crate::request::retry::is_backends_fault) {
                crate::request::redispatch::eject_locally(dp, pool, index);
            }
            tracing::warn!(backend = %backend.id, error = %e, "upgrade request failed");
            return Err(Local::BadGateway);
        }
        Err(_) => return Err(Local::GatewayTimeout),
    };
    backend.metrics.record_status(resp.status().as_u16());
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let (parts, body) = resp.into_parts();
        return Ok(Response::from_parts(
            parts,
            body.map_err(BodyError::from).boxed(),
        ));
    }
    if !switches_to_offered(&resp, &protocols) {
        tracing::warn!(backend = %backend.id, "101 to a protocol that was not offered");
        return Err(Local::BadGateway);
    }
    let backend_upgrade = hyper::upgrade::on(&mut resp);
    let load = backend.state.load.clone();
    load.connections.fetch_add(1, Ordering::Relaxed);
    let backend_id = backend.id.clone();
    dp.tunnels.spawn(async move {
        match tokio::try_join!(client_upgrade, backend_upgrade) {
            Ok((client_io, backend_io)) => {
                let mut client_io = TokioIo::new(client_io);
                let mut backend_io = TokioIo::new(backend_io);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client_io, &mut backend_io).await
                {
                    tracing::debug!(backend = %backend_id, error = %e, "tunnel closed with error");
                }
            }
            Err(e) => {
                tracing::debug!(backend = %backend_id, error = %e, "upgrade did not complete")
            }
        }
        load.connections.fetch_sub(1, Ordering::Relaxed);
    });
    let (parts, _) = resp.into_parts();
    Ok(Response::from_parts(parts, body::empty()))
}

/// Whether a 101 names (in `Upgrade`) one of the protocols that were offered.
fn switches_to_offered(resp: &Response<Incoming>, offered: &HeaderValue) -> bool {
    let Some(chosen) = resp
        .headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let chosen = chosen.trim();
    offered
        .to_str()
        .unwrap_or_default()
        .split(',')
        .any(|p| p.trim().eq_ignore_ascii_case(chosen))
}
