//! The test bed's backend: a tiny HTTP server run as `fulcrum-chaos backend` in a backend
//! namespace.
//!
//! Every response carries `x-backend: NAME`. A request without a `JSESSIONID` cookie gets
//! `Set-Cookie: JSESSIONID=<random>` (the application session fulcrum learns for affinity).
//! Modes: `ok` (200), `hang` (accept and never answer), `500` (every answer is a 500,
//! health checks included). `POST /__chaos/mode?m=ok|hang|500` switches the mode at run
//! time, whatever the current mode, so faults need no restart.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::hash_map::RandomState;
use std::convert::Infallible;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Args)]
pub struct BackendArgs {
    /// Name put in the `x-backend` header.
    #[arg(long)]
    name: String,
    /// Listen address.
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: String,
    /// Initial mode: ok, hang or 500.
    #[arg(long, default_value = "ok")]
    mode: String,
}

const MODE_OK: u8 = 0;
const MODE_HANG: u8 = 1;
const MODE_500: u8 = 2;

/// Parses a mode name.
pub fn parse_mode(text: &str) -> Result<u8> {
    match text {
        "ok" => Ok(MODE_OK),
        "hang" => Ok(MODE_HANG),
        "500" => Ok(MODE_500),
        other => bail!("unknown backend mode {other:?} (ok, hang, 500)"),
    }
}

struct Shared {
    name: String,
    mode: AtomicU8,
}

/// Runs the backend until killed.
pub async fn run(args: BackendArgs) -> Result<()> {
    let shared = Arc::new(Shared {
        name: args.name,
        mode: AtomicU8::new(parse_mode(&args.mode)?),
    });
    let listener = TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/__chaos/mode" {
        let wanted = req
            .uri()
            .query()
            .and_then(|q| q.strip_prefix("m="))
            .unwrap_or("");
        return Ok(match parse_mode(wanted) {
            Ok(mode) => {
                shared.mode.store(mode, Ordering::SeqCst);
                reply(&shared.name, StatusCode::OK, format!("mode {wanted}\n"))
            }
            Err(e) => reply(&shared.name, StatusCode::BAD_REQUEST, format!("{e}\n")),
        });
    }
    match shared.mode.load(Ordering::SeqCst) {
        MODE_HANG => {
            // Accept and never answer (bounded so the task cannot live forever).
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(reply(
                &shared.name,
                StatusCode::GATEWAY_TIMEOUT,
                String::new(),
            ))
        }
        MODE_500 => Ok(reply(
            &shared.name,
            StatusCode::INTERNAL_SERVER_ERROR,
            "failing on purpose\n".to_string(),
        )),
        _ => {
            let has_session = req
                .headers()
                .get_all("cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .any(|v| v.split(';').any(|c| c.trim().starts_with("JSESSIONID=")));
            let mut resp = reply(&shared.name, StatusCode::OK, format!("{}\n", shared.name));
            if !has_session && req.uri().path() != "/healthz" {
                let cookie = format!("JSESSIONID={}; Path=/", session_id());
                if let Ok(value) = cookie.parse() {
                    resp.headers_mut().insert("set-cookie", value);
                }
            }
            Ok(resp)
        }
    }
}

fn reply(name: &str, status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(value) = name.parse() {
        resp.headers_mut().insert("x-backend", value);
    }
    resp
}

/// 128 random bits as hex (std's randomly keyed hasher; no extra dependency).
fn session_id() -> String {
    let a = RandomState::new().build_hasher().finish();
    let b = RandomState::new().build_hasher().finish();
    format!("{a:016x}{b:016x}")
}
