//! A real HTTP backend (tokio + hyper, HTTP/1.1 and h2c): the end-to-end tests run it in
//! their own process, the chaos suite as `fulcrum-chaos backend` in a backend namespace.
//!
//! Every response carries `x-backend: NAME`. Paths:
//! - `/slow?ms=N`     — answers after N ms
//! - `/healthz`       — 200, or 503 after `set_healthy(false)`
//! - `/headers`       — echoes the request headers as `name: value` lines
//! - `/setcookie?c=V` — answers with `Set-Cookie: JSESSIONID=V`
//! - `/status?code=N` — answers with status N
//! - `/echo`          — reads the body, answers `NAME:LENGTH`
//! - `/__chaos/mode?m=ok|hang|500` — switches the [`Mode`] at run time
//! - any request with `Upgrade:` — 101, then echoes bytes on the upgraded stream
//! - anything else    — 200 with body NAME
//!
//! In mode `hang` it accepts and never answers, in mode `500` every answer (health checks
//! included) is a 500. With [`Options::hand_out_sessions`], a request without a
//! `JSESSIONID` cookie gets `Set-Cookie: JSESSIONID=<random>` (the application session
//! fulcrum learns for affinity).

use crate::BedError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How the backend answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    /// Answers (the paths above).
    Ok = 0,
    /// Accepts and never answers (bounded to an hour).
    Hang = 1,
    /// Every answer is a 500.
    Fail = 2,
}

impl Mode {
    /// `ok`, `hang` or `500`.
    pub fn parse(text: &str) -> Result<Mode, BedError> {
        match text {
            "ok" => Ok(Mode::Ok),
            "hang" => Ok(Mode::Hang),
            "500" => Ok(Mode::Fail),
            other => Err(BedError::Refused(format!(
                "unknown backend mode {other:?} (ok, hang, 500)"
            ))),
        }
    }

    fn from_u8(v: u8) -> Mode {
        match v {
            1 => Mode::Hang,
            2 => Mode::Fail,
            _ => Mode::Ok,
        }
    }
}

/// What a backend does beyond the paths above.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// Hand a new `JSESSIONID` to every request without one (not to `/healthz`).
    pub hand_out_sessions: bool,
    /// End the default body with a newline (`NAME\n`), as a one-line answer.
    pub line_body: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            mode: Mode::Ok,
            hand_out_sessions: false,
            line_body: false,
        }
    }
}

struct Shared {
    name: String,
    options: Options,
    mode: AtomicU8,
    healthy: AtomicBool,
    requests: AtomicU64,
    health_checks: AtomicU64,
}

/// A running backend. Dropping it (or `kill`) closes its listener and connections.
pub struct TestBackend {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl TestBackend {
    /// Starts a backend on a free loopback port (panics when it cannot bind).
    pub async fn start(name: &str) -> TestBackend {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), name).await
    }

    /// Starts a backend on a given address (to bring a killed one back); panics when it
    /// cannot bind.
    pub async fn start_on(addr: SocketAddr, name: &str) -> TestBackend {
        match Self::serve(addr, name, Options::default()).await {
            Ok(b) => b,
            Err(e) => panic!("backend {name}: {e}"),
        }
    }

    /// Starts a backend on `addr` with `options`.
    pub async fn serve(
        addr: SocketAddr,
        name: &str,
        options: Options,
    ) -> Result<TestBackend, BedError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| BedError::io(format!("binding {addr}"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BedError::io(format!("binding {addr}"), e))?;
        let shared = Arc::new(Shared {
            name: name.to_string(),
            options,
            mode: AtomicU8::new(options.mode as u8),
            healthy: AtomicBool::new(true),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(TestBackend { addr, shared, task })
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.shared.healthy.store(healthy, Ordering::SeqCst);
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.store(mode as u8, Ordering::SeqCst);
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

    /// Serves until the task ends (it ends only when aborted).
    pub async fn run_forever(mut self) {
        let _ = (&mut self.task).await;
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
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(10)).await;
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
    if path == "/__chaos/mode" {
        let wanted = query_param(&req, "m").unwrap_or("");
        return Ok(match Mode::parse(wanted) {
            Ok(mode) => {
                shared.mode.store(mode as u8, Ordering::SeqCst);
                reply(&shared, StatusCode::OK, format!("mode {wanted}\n"), vec![])
            }
            Err(e) => reply(&shared, StatusCode::BAD_REQUEST, format!("{e}\n"), vec![]),
        });
    }
    if path == "/healthz" {
        shared.health_checks.fetch_add(1, Ordering::SeqCst);
    } else {
        shared.requests.fetch_add(1, Ordering::SeqCst);
    }
    match Mode::from_u8(shared.mode.load(Ordering::SeqCst)) {
        Mode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return Ok(reply(
                &shared,
                StatusCode::GATEWAY_TIMEOUT,
                String::new(),
                vec![],
            ));
        }
        Mode::Fail => {
            let body = "failing on purpose\n".to_string();
            return Ok(reply(
                &shared,
                StatusCode::INTERNAL_SERVER_ERROR,
                body,
                vec![],
            ));
        }
        Mode::Ok => {}
    }
    if req.headers().contains_key(hyper::header::UPGRADE) {
        return Ok(upgrade_echo(&shared, &mut req));
    }
    let mut status = StatusCode::OK;
    let mut body = if shared.options.line_body {
        format!("{}\n", shared.name)
    } else {
        shared.name.clone()
    };
    let mut extra: Vec<(&'static str, String)> = Vec::new();
    if shared.options.hand_out_sessions && path != "/healthz" && !has_session(&req) {
        extra.push(("set-cookie", format!("JSESSIONID={}; Path=/", session_id())));
    }
    match path.as_str() {
        "/slow" => {
            let ms = query_param(&req, "ms")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
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
    Ok(reply(&shared, status, body, extra))
}

fn reply(
    shared: &Shared,
    status: StatusCode,
    body: String,
    extra: Vec<(&'static str, String)>,
) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(value) = shared.name.parse() {
        resp.headers_mut().insert("x-backend", value);
    }
    for (k, v) in extra {
        if let Ok(value) = v.parse() {
            resp.headers_mut().append(k, value);
        }
    }
    resp
}

/// Whether the request carries a `JSESSIONID` cookie.
fn has_session(req: &Request<Incoming>) -> bool {
    req.headers()
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(';').any(|c| c.trim().starts_with("JSESSIONID=")))
}

/// 128 random bits as hex (std's randomly keyed hasher; no extra dependency).
fn session_id() -> String {
    let a = RandomState::new().build_hasher().finish();
    let b = RandomState::new().build_hasher().finish();
    format!("{a:016x}{b:016x}")
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
    let mut resp = reply(
        shared,
        StatusCode::SWITCHING_PROTOCOLS,
        String::new(),
        vec![],
    );
    resp.headers_mut().insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    resp.headers_mut().insert(
        "connection",
        hyper::header::HeaderValue::from_static("upgrade"),
    );
    resp
}
