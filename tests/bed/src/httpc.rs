//! A minimal HTTP/1.1 client: one request on a fresh TCP connection, bounded by a timeout.
//!
//! Used for the admin API (`/status`, `PUT /config`), the backend's control path and the
//! load client's default mode (a new connection per request, so a failover is measured the
//! way a fresh client sees it). The socket is created in the calling thread's network
//! namespace. Errors are short texts for a report (`BedError::Http`).

use crate::BedError;
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
) -> Result<Reply, BedError> {
    tokio::time::timeout(timeout, exchange(addr, method, path, headers, body))
        .await
        .map_err(|_| http(format!("timeout after {} ms", timeout.as_millis())))?
}

async fn exchange(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Option<String>,
) -> Result<Reply, BedError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| http(format!("connect: {}", e.kind())))?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(format!("handshake: {e}")))?;
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
        .map_err(|e| http(format!("building request: {e}")))?;
    let result = send(&mut sender, req).await;
    conn_task.abort();
    result
}

/// Sends one request on an established connection and reads the whole reply.
pub async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<Reply, BedError> {
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| http(short_error(&e)))?;
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
        .map_err(|e| http(format!("body: {}", short_error(&e))))?
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

fn http(text: String) -> BedError {
    BedError::Http(text)
}

/// An error and its sources, `outer: inner: innermost` (as a report shows it).
pub fn chained(e: &dyn std::error::Error) -> BedError {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    BedError::Http(text)
}
