//! One HTTP/2 stream, from the request head to the end of its response, through the
//! request core: target checks (`request::target`), route, backend choice with
//! affinity (`request::choice`), then the backend exchange (`exchange`). A request
//! that cannot be served gets the same local answer as on the other paths
//! (`request::local`).

use super::exchange;
use super::Shared;
use crate::request::choice::choose_backend;
use crate::request::local::Local;
use crate::request::target::Target;
use crate::request::{rate_limit, split};
use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::{HeaderValue, Method, Request, Response};
use tracing::Instrument;

/// Serves one stream; every failure ends in a response or a reset, never an error.
pub(super) async fn serve(
    shared: &Shared,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) {
    if let Err(local) = route_and_forward(shared, req, &mut respond).await {
        send_local(shared, &mut respond, local);
    }
}

async fn route_and_forward(
    shared: &Shared,
    req: Request<RecvStream>,
    respond: &mut SendResponse<Bytes>,
) -> Result<(), Local> {
    let snapshot = shared.dp.snapshot();
    let table = snapshot
        .routes
        .get(&*shared.conn.listener)
        .ok_or(Local::NoRoute)?;
    // CONNECT asks for a tunnel to an authority and names no path: no route leads
    // there (routes match a host and a path), so it gets the 404 any unrouted
    // request gets, as Envoy answers it without a CONNECT route configured. The
    // request is well formed, so not 400; nothing reaches a backend.
    if req.method() == Method::CONNECT {
        return Err(Local::NoRoute);
    }
    let target = Target::read(&req, table.paths)?;
    let route = table
        .find(target.host(), target.path.as_bytes(), req.headers())
        .ok_or(Local::NoRoute)?;
    let admitted = rate_limit::admit(
        route.limiter.as_ref(),
        &shared.conn,
        req.headers(),
        target.path.as_bytes(),
    )?;
    let candidates = split::candidates(
        &shared.dp,
        &snapshot,
        route,
        &shared.conn,
        req.headers(),
        target.path.as_bytes(),
    );
    let timeouts = route.timeouts;
    drop(snapshot);
    admitted.settle().await?;
    let (pool, keys) = candidates.settle().await.ok_or(Local::NoBackend)?;
    let choice = choose_backend(&pool, &shared.conn, keys)
        .await
        .ok_or(Local::NoBackend)?;
    let span = tracing::debug_span!("request", method = %req.method(), path = %target.path, pool = %pool.name);
    let forwarded = exchange::forward(shared, pool, choice, req, target, timeouts, respond);
    // A disabled span (the usual case) would still be entered and left on every poll.
    if span.is_disabled() {
        forwarded.await
    } else {
        forwarded.instrument(span).await
    }
}

/// Answers with a response fulcrum makes itself (when no response head went out yet).
pub(super) fn send_local(shared: &Shared, respond: &mut SendResponse<Bytes>, local: Local) {
    let (status, text, metric) = local.parts();
    shared.dp.metrics.local_response(metric);
    let mut head = Response::new(());
    *head.status_mut() = status;
    let headers = head.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    if let Some(secs) = local.retry_after() {
        headers.insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
    }
    // The client may have reset the stream already: nothing to tell it then.
    if let Ok(mut body) = respond.send_response(head, false) {
        let _ = body.send_data(Bytes::from_static(text.as_bytes()), true);
    }
}
