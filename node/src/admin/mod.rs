//! The admin API on `node.admin`: status, metrics, config, drain and shifts.
//!
//! | method | path | auth | what |
//! |---|---|---|---|
//! | GET | /status | no | JSON: node, role, versions, pools and backends |
//! | GET | /metrics | no | Prometheus text |
//! | GET | /config | no | the TOML of the running config |
//! | PUT | /config | token | validate + apply a new config, `{"version": N}` |
//! | POST | /drain?pool=P&addr=A | token | stop sending new sessions to a backend |
//! | POST | /undrain?pool=P&addr=A | token | put it back |
//! | POST | /drain-node | token | withdraw this node's BGP prefixes, move its `[[vip]]` addresses away, take it out of DNS answers (keeps serving; committed through Raft in a cluster, so it survives a restart) |
//! | POST | /undrain-node | token | undo all three |
//! | GET | /members | no | cluster members |
//! | GET | /cluster | no | every member's `/status`, gathered by this node |
//! | GET | / or /dashboard | no | the dashboard page (drain buttons need the token) |
//! | POST | /shift?route=R&pool=P&to=N&step=N&every=D[&max_error_rate=F][&max_p99=D] | token | start a shift of a split route |
//! | POST | /shift/abort?route=R | token | stop it: back to the starting weights |
//! | POST | /members/add?id=N&raft=ADDR&admin=ADDR | token | add a node as learner |
//! | POST | /members/promote?id=N | token | make a learner a voter |
//! | POST | /members/remove?id=N | token | remove a node from the cluster |
//!
//! Mutating calls need `Authorization: Bearer TOKEN` when `node.admin_token_file` is set.

mod auth;
mod dashboard;
mod drain_node;
mod failover;
mod members;
mod shift;
mod status;

use crate::app::{ApplyError, Node};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Largest config accepted by `PUT /config`.
const MAX_CONFIG_BYTES: usize = 4 * 1024 * 1024;
/// Admin connections open at once; more wait in the kernel's queue.
const MAX_ADMIN_CONNECTIONS: usize = 256;
/// Time an admin client has to send a request head.
const ADMIN_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) type AdminResponse = Response<Full<Bytes>>;

/// Serves the admin API until the node stops.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    // Operators and scrapers need a handful of connections; a flood of them must not
    // take the node's file descriptors.
    let room = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            _ = node.stop.cancelled() => break,
            p = room.clone().acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        let accepted = tokio::select! {
            _ = node.stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let node = node.clone();
        tokio::spawn(async move {
            // hyper's header timer starts once it knows the protocol, which needs a first
            // byte: a client that never sends one is dropped here.
            let mut first = [0u8; 1];
            match tokio::time::timeout(ADMIN_HEADER_TIMEOUT, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let service = service_fn(move |req| handle(node.clone(), req));
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A client that connects and sends nothing (or trickles a head) is dropped.
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(ADMIN_HEADER_TIMEOUT);
            if let Err(e) = builder
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %e, "admin connection error");
            }
            drop(permit);
        });
    }
}

async fn handle(node: Arc<Node>, req: Request<Incoming>) -> Result<AdminResponse, Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let mutating = method != Method::GET && method != Method::HEAD;
    if mutating && !auth::authorized(node.admin_token.as_deref(), req.headers()) {
        tracing::warn!(%method, %path, "admin call refused: missing or wrong token");
        return Ok(text(
            StatusCode::UNAUTHORIZED,
            "unauthorized: send Authorization: Bearer TOKEN\n",
        ));
    }
    let resp = match (method, path.as_str()) {
        (Method::GET, "/status") => json(StatusCode::OK, &status::status(&node)),
        (Method::GET, "/metrics") => metrics(&node),
        (Method::GET, "/config") => text(StatusCode::OK, &node.dp.snapshot().source),
        (Method::GET, "/debug/failover") => json(StatusCode::OK, &failover::failover(&node)),
        (Method::GET, "/cluster") => json(
            StatusCode::OK,
            &crate::control::gather::gather(&node.local, node.cluster(), status::status(&node))
                .await,
        ),
        (Method::GET, "/" | "/dashboard") => dashboard::page(),
        (Method::GET, "/members") => json(StatusCode::OK, &status::members(&node).await),
        (Method::PUT, "/config") => put_config(&node, req).await,
        (Method::POST, "/drain") => drain(&node, &req, true).await,
        (Method::POST, "/undrain") => drain(&node, &req, false).await,
        (Method::POST, "/drain-node") => drain_node::drain_node(&node, true).await,
        (Method::POST, "/undrain-node") => drain_node::drain_node(&node, false).await,
        (Method::POST, "/shift") => shift::start(&node, &req).await,
        (Method::POST, "/shift/abort") => shift::abort(&node, &req).await,
        (Method::POST, "/members/add") => members::add(&node, query_params(&req)).await,
        (Method::POST, "/members/promote") => members::promote(&node, query_params(&req)).await,
        (Method::POST, "/members/remove") => members::remove(&node, query_params(&req)).await,
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(resp)
}

fn metrics(node: &Node) -> AdminResponse {
    status::refresh_gauges(node);
    let mut resp = text(StatusCode::OK, &node.dp.metrics.encode());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
    );
    resp
}

async fn put_config(node: &Node, req: Request<Incoming>) -> AdminResponse {
    let body = match Limited::new(req.into_body(), MAX_CONFIG_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("cannot read body: {e}\n"),
            )
        }
    };
    let Ok(toml) = std::str::from_utf8(&body) else {
        return text(StatusCode::BAD_REQUEST, "config must be UTF-8 TOML\n");
    };
    match node.change_config(toml, "PUT /config").await {
        Ok(version) => json(StatusCode::OK, &serde_json::json!({ "version": version })),
        Err(ApplyError::Invalid(errors)) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({
                "error": "invalid config",
                "errors": errors.0.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            }),
        ),
        Err(e @ ApplyError::Cluster(fulcrum_raft::ProposeError::Rejected(_))) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "error": e.to_string(), "errors": [e.to_string()] }),
        ),
        Err(e @ ApplyError::Cluster(_)) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "error": e.to_string(), "errors": [e.to_string()] }),
        ),
        Err(e) => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            &serde_json::json!({ "error": e.to_string(), "errors": [e.to_string()] }),
        ),
    }
}

/// Query parameters, percent-decoded.
pub(crate) fn query_params(req: &Request<Incoming>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), percent_decode(v)))
        .collect()
}

pub(crate) fn param(params: &[(String, String)], name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

async fn drain(node: &Node, req: &Request<Incoming>, drained: bool) -> AdminResponse {
    let params = query_params(req);
    let (Some(pool), Some(addr)) = (param(&params, "pool"), param(&params, "addr")) else {
        return text(StatusCode::BAD_REQUEST, "need ?pool=NAME&addr=HOST:PORT\n");
    };
    match node.change_drain(&pool, &addr, drained).await {
        Ok(true) => json(
            StatusCode::OK,
            &serde_json::json!({ "pool": pool, "addr": addr, "drained": drained }),
        ),
        Ok(false) => text(
            StatusCode::NOT_FOUND,
            &format!("no backend {addr} in pool {pool}\n"),
        ),
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, &format!("{e}\n")),
    }
}

/// Minimal `%XX` decoding for query values (addresses may contain `:` as `%3A`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(crate) fn text(status: StatusCode, body: &str) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> AdminResponse {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding() {
        assert_eq!(super::percent_decode("127.0.0.1%3A9001"), "127.0.0.1:9001");
        assert_eq!(super::percent_decode("a%2"), "a%2");
        assert_eq!(super::percent_decode("%"), "%");
    }
}
