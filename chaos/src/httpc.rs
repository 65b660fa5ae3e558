//! A minimal HTTP/1.1 client: one request on a fresh TCP connection, bounded by a timeout.
//!
//! Used for the admin API (`/status`, `PUT /config`), the chaos backend's control path and
//! the load client's default mode (a new connection per request, so a failover is measured
//! the way a fresh client sees it). The socket is created in the calling thread's network
//! namespace.

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// What came back: status, the headers we care about, and the body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub backend: Option<String>,
    pub set_cookies: Vec<String>,
    pub body: Bytes,
}

/// One request on a new connection to `addr` (`HOST:PORT`); the whole exchange, body
/// included, must finish within `timeout`.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
    timeout: Duration,
) -> Result<Reply> {
    tokio::time::timeout(timeout, exchange(addr, method, path, headers, body))
        .await
        .map_err(|_| anyhow!("timeout after {} ms", timeout.as_millis()))?
}

async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Reply> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow!("connect: {}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("handshake")?;
    let conn_task = tokio::spawn(conn);
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr)
        .header("connection", "close");
    for (name, value) in headers {
        builder = builder.header(*name, value.as_str());
    }
    let req = builder
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .context("building request")?;
    let result = send(&mut sender, req).await;
    conn_task.abort();
    result
}

/// Sends one request on an established connection and reads the whole reply.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Reply> {
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| anyhow!("{}", short_error(&e)))?;
    let status = resp.status().as_u16();
    let backend = resp
        .headers()
        .get("x-backend")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let set_cookies = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::to_string)
        .collect();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| anyhow!("body: {}", short_error(&e)))?
        .to_bytes();
    Ok(Reply {
        status,
        backend,
        set_cookies,
        body,
    })
}

/// A compact error text for the report ("connection reset", "incomplete message", ...).
fn short_error(e: &hyper::Error) -> String {
    if e.is_incomplete_message() {
        return "incomplete message".to_string();
    }
    if e.is_closed() {
        return "connection closed".to_string();
    }
    let mut text = e.to_string();
    if let Some(source) = std::error::Error::source(e) {
        text = format!("{text}: {source}");
    }
    text
}

/// `GET /status` on an admin address, parsed as JSON.
pub async fn status(admin: &str, timeout: Duration) -> Result<serde_json::Value> {
    let reply = request(admin, "GET", "/status", &[], None, timeout).await?;
    if reply.status != 200 {
        bail!("GET /status on {admin}: HTTP {}", reply.status);
    }
    serde_json::from_slice(&reply.body).with_context(|| format!("/status of {admin} is not JSON"))
}

/// `PUT /config` with a TOML body; returns the committed version when the node says it.
pub async fn put_config(admin: &str, toml: String, timeout: Duration) -> Result<Option<u64>> {
    let headers = [("content-type", "application/toml".to_string())];
    let reply = request(admin, "PUT", "/config", &headers, Some(toml), timeout).await?;
    if reply.status != 200 {
        bail!(
            "PUT /config on {admin}: HTTP {}: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        );
    }
    let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    Ok(value.get("version").and_then(|v| v.as_u64()))
}
