//! HTTP clients for tests: a keep-alive client, one-shot requests, raw sockets.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What a test needs from a response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub backend: Option<String>,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A keep-alive client (connections reused between requests).
pub fn keepalive_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// A client that opens a new connection for every request.
pub fn fresh_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(HttpConnector::new())
}

/// A response body read to its end, as text (lossy); `Err` carries the error as text.
pub async fn body_text(body: hyper::body::Incoming) -> Result<String, String> {
    let bytes = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Sends one request; `Err` carries transport errors as text. 10 s bound.
pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Result<Reply, String> {
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let backend = headers
            .get("x-backend")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = body_text(resp.into_body()).await?;
        Ok(Reply {
            status,
            backend,
            headers,
            body,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// GET `url` with extra headers.
pub async fn get(
    client: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
) -> Result<Reply, String> {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(
        client,
        req.body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?,
    )
    .await
}

/// `GET /status` of an admin API as JSON, or None if it does not answer.
pub async fn get_status(admin: &str) -> Option<serde_json::Value> {
    let reply = get(&fresh_client(), &format!("http://{admin}/status"), &[])
        .await
        .ok()?;
    serde_json::from_str(&reply.body).ok()
}

/// Whether the first pool's backend `addr` is healthy by `/status`, if it says.
pub async fn backend_healthy(admin: &str, addr: &str) -> Option<bool> {
    let status = get_status(admin).await?;
    status["pools"][0]["backends"]
        .as_array()?
        .iter()
        .find(|b| b["addr"] == addr)
        .and_then(|b| b["healthy"].as_bool())
}

/// Waits until `/status` says backend `addr` has health `want` (polled every 50 ms,
/// panics after `within`); how long that took.
pub async fn wait_health(
    admin: &str,
    addr: &str,
    want: bool,
    within: std::time::Duration,
) -> std::time::Duration {
    let started = std::time::Instant::now();
    while started.elapsed() < within {
        if backend_healthy(admin, addr).await == Some(want) {
            return started.elapsed();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("backend {addr} never became healthy={want} within {within:?}");
}

/// An admin call with optional bearer token.
pub async fn admin_call(
    admin: &str,
    method: &str,
    path: &str,
    body: &str,
    token: Option<&str>,
) -> Result<Reply, String> {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{admin}{path}"));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    send(
        &fresh_client(),
        req.body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?,
    )
    .await
}

/// Writes raw bytes on a new connection and reads until close or `timeout`.
pub async fn raw_exchange(
    addr: &str,
    request: &[u8],
    timeout: Duration,
) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    Ok(out)
}

/// An HTTP/2 prior-knowledge (h2c) GET; returns (status, x-backend).
pub async fn h2c_get(addr: &str, path: &str) -> Result<(StatusCode, Option<String>), String> {
    let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http2::handshake::<_, _, Full<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    Ok((resp.status(), backend))
}
