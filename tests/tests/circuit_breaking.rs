//! Circuit breaking (issue 19 item 4): a pool's per-backend caps on requests in flight
//! (`max_requests`) and on connects in progress (`max_pending`), through a real fulcrum
//! process, a real backend and one whose accept queue is full (its connects hang). A
//! request over a cap gets 503 at once with the reason, counted in
//! `fulcrum_local_responses_total{result=...}`; under the cap everything is served. The
//! HTTP/1.1 fast path, hyper's path (h2c) and HTTP/2 over TLS are covered.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::choked_backend::ChokedBackend;
use fulcrum_tests::config::Ports;
use fulcrum_tests::hostile::metric;
use fulcrum_tests::keepalive::{h2_get, web_and_tls_node};
use fulcrum_tests::process::Fulcrum;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One GET on a new HTTP/1.1 connection: status, body, time taken.
async fn h1_get(addr: &str, path: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got))
        .await
        .expect("answered within 10 s")
        .expect("read");
    let text = String::from_utf8_lossy(&got).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body, started.elapsed())
}

/// One GET over an HTTP/2 connection: status, body, time taken.
async fn h2(sender: &h2::client::SendRequest<bytes::Bytes>, uri: &str) -> (u16, String, Duration) {
    let answer = h2_get(sender, uri).await;
    let body = String::from_utf8_lossy(&answer.body).to_string();
    (answer.status, body, answer.took)
}

fn assert_refused(what: &str, got: &(u16, String, Duration), reason: &str) {
    assert_eq!(got.0, 503, "{what}: {got:?}");
    assert_eq!(got.1, format!("backend at {reason}\n"), "{what}: {got:?}");
    assert!(
        got.2 < Duration::from_millis(800),
        "{what}: refused at once, not after {:?}",
        got.2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_over_a_backends_caps_get_503_with_the_reason_on_every_path() {
    use fulcrum_tests::tls::{alpn, connect, verifying_config, TestCa};
    let backend = TestBackend::start("b0").await;
    let mut choked = ChokedBackend::start("choked").expect("choked backend");
    let ports = Ports::new();
    let tls_addr = format!("127.0.0.1:{}", fulcrum_tests::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let routes = |listener: &str| {
        format!(
            "[[route]]\nlistener = \"{listener}\"\npath_prefix = \"/\"\npool = \"capped\"\n\n\
             [[route]]\nlistener = \"{listener}\"\npath_prefix = \"/connect\"\npool = \"pending\"\n\n"
        )
    };
    let pools = format!(
        r#"{web_routes}{tls_routes}[[pool]]
name = "capped"
backends = [{{ addr = "{b}" }}]
max_requests = 2

[[pool]]
name = "pending"
backends = [{{ addr = "{c}" }}]
max_pending = 1
connect_timeout = "1500ms"
"#,
        web_routes = routes("web"),
        tls_routes = routes("tls"),
        b = backend.addr,
        c = choked.addr(),
    );
    let cfg = web_and_tls_node(&ports.admin, &ports.web, &tls_addr, &cert, &key, &pools);
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    let counted = |result: &'static str| {
        let admin = node.admin.clone();
        async move {
            metric(
                &admin,
                "fulcrum_local_responses_total",
                &format!("result=\"{result}\""),
            )
            .await
        }
    };

    // max_requests = 2: two slow requests occupy the backend, a third is refused.
    let web = ports.web.clone();
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let web = web.clone();
            tokio::spawn(async move { h1_get(&web, "/slow?ms=2500").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_refused("http/1.1", &h1_get(&ports.web, "/").await, "max_requests");
    let tcp = TcpStream::connect(&ports.web).await.expect("connect");
    let (h2c, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    assert_refused("h2c", &h2(&h2c, "http://a/").await, "max_requests");
    let stream = connect(&tls_addr, "a.test", verifying_config(&ca.pem(), &[b"h2"]))
        .await
        .expect("TLS connect");
    assert_eq!(alpn(&stream).as_deref(), Some(b"h2".as_slice()));
    let (h2tls, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(conn);
    assert_refused("h2", &h2(&h2tls, "https://a.test/").await, "max_requests");
    for s in slow {
        let (status, _, _) = s.await.expect("slow request");
        assert_eq!(status, 200, "requests under the cap are served");
    }
    assert_eq!(counted("max_requests").await, 3.0);
    // The slow ones are done: room again, on every path.
    assert_eq!(h1_get(&ports.web, "/").await.0, 200);
    assert_eq!(h2(&h2c, "http://a/").await.0, 200);
    assert_eq!(h2(&h2tls, "https://a.test/").await.0, 200);

    // max_pending = 1: one connect hangs (the backend's accept queue is full), a
    // second request to that backend is refused rather than queued behind it.
    assert_eq!(
        h1_get(&ports.web, "/connect").await.0,
        200,
        "served while open"
    );
    choked.choke().expect("choke");
    let hanging = {
        let web = web.clone();
        tokio::spawn(async move { h1_get(&web, "/connect").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_refused(
        "http/1.1",
        &h1_get(&ports.web, "/connect").await,
        "max_pending",
    );
    assert_refused("h2c", &h2(&h2c, "http://a/connect").await, "max_pending");
    assert_refused(
        "h2",
        &h2(&h2tls, "https://a.test/connect").await,
        "max_pending",
    );
    choked.unchoke_after(Duration::ZERO);
    let first = hanging.await.expect("hanging request");
    assert_ne!(
        first.0, 503,
        "the request that was connecting is not refused: {first:?}"
    );
    assert_eq!(counted("max_pending").await, 3.0);
    // Nothing pending any more: served again.
    assert_eq!(h1_get(&ports.web, "/connect").await.0, 200);
}

/// `max_pending` on a pool speaking HTTP/2 to its backends: the requests waiting for a
/// backend's one connection count as pending connects, so while that connect hangs a
/// request over the cap gets 503 at once instead of queueing behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_caps_requests_waiting_for_an_h2_backend_connection() {
    let mut choked = ChokedBackend::start("choked").expect("choked backend");
    let ports = Ports::new();
    let pool = "protocol = \"h2\"\nmax_pending = 1\nconnect_timeout = \"1500ms\"";
    let backends = format!("[{{ addr = \"{}\" }}]", choked.addr());
    let cfg = fulcrum_tests::config::single_node(&ports, &backends, pool, "");
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    choked.choke().expect("choke");
    let hanging = {
        let web = ports.web.clone();
        tokio::spawn(async move { h1_get(&web, "/first").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_refused(
        "http/1.1",
        &h1_get(&ports.web, "/second").await,
        "max_pending",
    );
    let tcp = TcpStream::connect(&ports.web).await.expect("connect");
    let (h2c, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    assert_refused("h2c", &h2(&h2c, "http://a/third").await, "max_pending");
    choked.unchoke_after(Duration::ZERO);
    let first = hanging.await.expect("hanging request");
    assert_ne!(
        first.0, 503,
        "the request that was connecting is not refused: {first:?}"
    );
    let refused = metric(
        &node.admin,
        "fulcrum_local_responses_total",
        "result=\"max_pending\"",
    )
    .await;
    assert_eq!(refused, 2.0);
}
