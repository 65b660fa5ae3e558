//! Pooled backend connections reused without asking the kernel first (issue 24:
//! `request::stale`), through a real fulcrum process, for the HTTP/1.1 and the HTTP/2
//! client paths (both take the same pooled raw connections).
//!
//! The backend keeps a connection alive in words but closes it 30 ms after each
//! answer (a short keep-alive timeout), without reading what came meanwhile. Requests
//! come back to back, so most go over a pooled connection that is still open when
//! taken and closes under the request (the backend's reset before any response
//! byte); paced ones find it closed while idle. Every one must be answered, and none
//! through the retry rule: the pool's retry budget is zero, so a request that needed
//! a retry would get a 502.

use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::h2client::{one_pool_config, H2Client};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::{Action, After, RawBackend};
use fulcrum_tests::tls::TestCa;
use fulcrum_tests::wire::WireConn;
use std::time::Duration;

/// Requests per client path.
const REQUESTS: usize = 40;
/// How long the backend keeps a connection after its answer.
const BACKEND_KEEP_ALIVE: Duration = Duration::from_millis(30);
/// No retry may be spent: a request the retry rule had to save fails instead.
const NO_RETRIES: &str = "retry_budget = { percent = 0, min_per_second = 0, window = \"10s\" }";

async fn closing_backend() -> RawBackend {
    RawBackend::start(|s| {
        Action::ok(format!("path={}", s.path())).then(After::CloseAfter(BACKEND_KEEP_ALIVE))
    })
    .await
}

/// Every fourth request waits until the backend closed the connection it would get.
fn pause_before(i: usize) -> Duration {
    match i % 4 {
        3 => BACKEND_KEEP_ALIVE * 2,
        _ => Duration::ZERO,
    }
}

/// What must hold after the run: every request reached the backend once, on
/// connections it really closed, and none was retried.
async fn assert_no_retries(backend: &RawBackend, admin: &str) {
    assert_eq!(backend.seen().len(), REQUESTS, "each answered once");
    assert!(
        backend.connections() >= REQUESTS,
        "the backend closed every connection after one answer: {} opened",
        backend.connections()
    );
    assert_eq!(metric(admin, "fulcrum_retries_total", "").await, 0.0);
    assert_eq!(
        metric(admin, "fulcrum_retry_budget_exhausted_total", "").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_clients_never_see_a_backend_closing_pooled_connections() {
    let backend = closing_backend().await;
    let ports = Ports::new();
    let config = single_node(&ports, &backend.backend_list(), NO_RETRIES, "");
    let _node = Fulcrum::start(&config, &ports.admin).await;
    let mut client = WireConn::connect(&ports.web).await.expect("connect");
    for i in 0..REQUESTS {
        tokio::time::sleep(pause_before(i)).await;
        let path = format!("/h1/{i}");
        let req = format!("GET {path} HTTP/1.1\r\nHost: a.test\r\n\r\n");
        client.send(req.as_bytes()).await.expect("send");
        let r = client
            .read_final_response(false)
            .await
            .unwrap_or_else(|e| panic!("request {i}: no response: {e}"));
        assert_eq!(r.head.status(), 200, "request {i}: {}", r.body_text());
        assert_eq!(r.body_text(), format!("path={path}"));
    }
    assert_no_retries(&backend, &ports.admin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_clients_never_see_a_backend_closing_pooled_connections() {
    let backend = closing_backend().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let ports = Ports::new();
    let config = one_pool_config(&ports, &cert, &key, &backend.backend_list(), NO_RETRIES);
    let _node = Fulcrum::start(&config, &ports.admin).await;
    let client = H2Client::connect(&ports.web, &ca).await;
    for i in 0..REQUESTS {
        tokio::time::sleep(pause_before(i)).await;
        let path = format!("/h2/{i}");
        let (status, _, body) = client.get(&path).await;
        let body = String::from_utf8_lossy(&body);
        assert_eq!(status, 200, "request {i}: {body}");
        assert_eq!(body, format!("path={path}"));
    }
    assert_no_retries(&backend, &ports.admin).await;
}
