//! Real HTTP backends for tests.
//!
//! Every response carries `x-backend: NAME`. Paths:
//! - `/slow?ms=N`     — answers after N ms
//! - `/healthz`       — 200, or 503 after `set_healthy(false)`
//! - `/headers`       — echoes the request headers as `name: value` lines
//! - `/setcookie?c=V` — answers with `Set-Cookie: JSESSIONID=V`
//! - `/status?code=N` — answers with status N
//! - any request with `Upgrade:` — 101, then echoes bytes on the upgraded stream
//! - anything else    — 200 with body NAME

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

struct Shared {
    name: String,
    healthy: AtomicBool,
    requests: AtomicU64,
    health_checks: AtomicU64,
}

/// A running test backend. Dropping it (or `kill`) closes its listener and connections.
pub struct TestBackend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend on a free loopback port.
    pub async fn start(name: &str) -> TestBackend {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), name).await
    }

    /// Starts a backend on a given address (to bring a killed one back).
    pub async fn start_on(addr: SocketAddr, name: &str) -> TestBackend {
        let listener = TcpListener::bind(addr).await.expect("bind backend");
        let addr = listener.local_addr().expect("local addr");
        let shared = Arc::new(Shared {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        TestBackend { addr, shared, task }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Requests served so far (health checks excluded).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// `/healthz` requests answered so far (whatever they answered).
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::SeqCst)
    }

    /// Stops accepting and drops every connection, like a killed process.
    pub fn kill(self) {
        self.task.abort();
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| respond(shared.clone(), req));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
    }
}

fn query_param<'a>(req: &'a Request<Incoming>, key: &str) -> Option<&'a str> {
    req.uri()
        .query()?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

async fn respond(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/healthz" {
        shared.health_checks.fetch_add(1, Ordering::SeqCst);
    } else {
        shared.requests.fetch_add(1, Ordering::SeqCst);
    }
    let mut status = StatusCode::OK;
    let mut body = shared.name.clone();
    let mut extra: Vec<(&str, String)> = Vec::new();
    if req.headers().contains_key(hyper::header::UPGRADE) {
        return Ok(upgrade_echo(&shared, &mut req));
    }
    match path.as_str() {
        "/slow" => {
            let ms = query_param(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        "/healthz" if !shared.healthy.load(Ordering::SeqCst) => {
            status = StatusCode::SERVICE_UNAVAILABLE;
            body = "sick".into();
        }
        "/headers" => {
            body = req
                .headers()
                .iter()
                .map(|(k, v)| format!("{}: {}\n", k, String::from_utf8_lossy(v.as_bytes())))
                .collect();
        }
        "/setcookie" => {
            let v = query_param(&req, "c").unwrap_or("x").to_string();
            extra.push(("set-cookie", format!("JSESSIONID={v}; Path=/")));
        }
        "/status" => {
            let code = query_param(&req, "code")
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            status = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
        }
        "/echo" => {
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            body = format!("{}:{}", shared.name, bytes.len());
        }
        _ => {}
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("x-backend", shared.name.parse().expect("header"));
    for (k, v) in extra {
        resp.headers_mut().append(k, v.parse().expect("header"));
    }
    Ok(resp)
}

fn upgrade_echo(shared: &Shared, req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io = TokioIo::new(upgraded);
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        }
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert("upgrade", "websocket".parse().expect("header"));
    resp.headers_mut()
        .insert("connection", "upgrade".parse().expect("header"));
    resp.headers_mut()
        .insert("x-backend", shared.name.parse().expect("header"));
    resp
}
