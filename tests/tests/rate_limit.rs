//! Per-route rate limits (issue 19 item 2), through a real fulcrum process and a real
//! backend: a key gets its burst, then 429 with `Retry-After`, then one request per
//! interval; another key has its own bucket; the refusals are counted in `/metrics`.
//! Every codec is covered: the HTTP/1.1 fast path (plain keep-alive clients), hyper's (an
//! h2c prior-knowledge client) and HTTP/2 over TLS; requests without the key share one
//! bucket.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::process::Fulcrum;
use http::{Request, StatusCode};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A node whose only route has `limit` as its `rate_limit`.
async fn node(limit: &str) -> (Ports, Fulcrum, TestBackend) {
    let backend = TestBackend::start("b0").await;
    let ports = Ports::new();
    let cfg = single_node(&ports, &backend_list(&[&backend], &[]), "", "").replace(
        "pool = \"app\"\n\n[[pool]]",
        &format!("pool = \"app\"\nrate_limit = {limit}\n\n[[pool]]"),
    );
    assert!(cfg.contains("rate_limit"), "{cfg}");
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    (ports, node, backend)
}

/// A keep-alive connection from source address `from`.
async fn connect_from(addr: &str, from: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let local: SocketAddr = format!("{from}:0").parse().expect("address");
    socket.bind(local).expect("bind the source address");
    socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("connect")
}

/// One GET on `s` with `extra` header lines; the status and the `Retry-After` value.
async fn request(s: &mut TcpStream, extra: &str) -> (u16, Option<u64>) {
    let req = format!("GET / HTTP/1.1\r\nHost: a\r\n{extra}\r\n");
    s.write_all(req.as_bytes()).await.expect("send");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "connection closed after {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        let Some(end) = text.find("\r\n\r\n") else {
            continue;
        };
        let head = &text[..end];
        let length: usize = header(head, "content-length")
            .and_then(|v| v.parse().ok())
            .expect("a Content-Length");
        if got.len() < end + 4 + length {
            continue;
        }
        let status = text
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .expect("status");
        let retry = header(head, "retry-after").and_then(|v| v.parse().ok());
        return (status, retry);
    }
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn rate_limited_count(admin: &str) -> f64 {
    metric(
        admin,
        "fulcrum_local_responses_total",
        "result=\"rate_limited\"",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_its_burst_then_429_with_retry_after_and_others_are_not_affected() {
    let (ports, _node, _backend) =
        node("{ requests_per_second = 1, burst = 4, key = \"source-ip\" }").await;
    let mut first = connect_from(&ports.web, "127.0.0.1").await;
    let started = Instant::now();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..10 {
        let (status, retry) = request(&mut first, "").await;
        statuses.push(status);
        if status == 429 {
            retry_after = retry_after.or(retry);
        }
    }
    let quick = started.elapsed() < Duration::from_secs(1);
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // The burst, plus one more if a second passed while sending.
    assert!(
        ok == 4 || (!quick && ok == 5),
        "{statuses:?} in {:?}",
        started.elapsed()
    );
    assert_eq!(ok + refused, 10, "{statuses:?}");
    assert_eq!(
        &statuses[..4],
        &[200; 4],
        "the burst comes first: {statuses:?}"
    );
    assert_eq!(retry_after, Some(1), "a 429 says when to come back");
    assert_eq!(rate_limited_count(&ports.admin).await, refused as f64);

    // Another source address has its own bucket, untouched.
    let mut second = connect_from(&ports.web, "127.0.0.2").await;
    for i in 0..4 {
        assert_eq!(
            request(&mut second, "").await.0,
            200,
            "request {i} of 127.0.0.2"
        );
    }
    assert_eq!(request(&mut second, "").await.0, 429);

    // After Retry-After, the first client may send again (one per second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(request(&mut first, "").await.0, 200);
    assert_eq!(request(&mut first, "").await.0, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_key_gives_each_api_key_its_own_bucket_on_both_codecs() {
    let (ports, _node, _backend) =
        node("{ requests_per_second = 0.2, burst = 2, key = \"header:X-Api-Key\" }").await;
    // The HTTP/1.1 fast path.
    let mut c = connect_from(&ports.web, "127.0.0.1").await;
    for key in ["alpha", "beta"] {
        let line = format!("X-Api-Key: {key}\r\n");
        assert_eq!(request(&mut c, &line).await.0, 200, "{key} 1");
        assert_eq!(request(&mut c, &line).await.0, 200, "{key} 2");
        let (status, retry) = request(&mut c, &line).await;
        assert_eq!(status, 429, "{key} 3");
        // 0.2 requests per second: the next token is up to 5 s away.
        assert!(retry.is_some_and(|r| (1..=5).contains(&r)), "{retry:?}");
    }
    // Requests without the header share one bucket.
    assert_eq!(request(&mut c, "").await.0, 200);
    assert_eq!(request(&mut c, "").await.0, 200);
    assert_eq!(request(&mut c, "").await.0, 429);

    // hyper's codec (h2c with prior knowledge): same table, same buckets.
    let tcp = TcpStream::connect(&ports.web).await.expect("connect");
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    let get = |key: &'static str| {
        let sender = sender.clone();
        async move {
            let req = Request::get("http://a/")
                .header("x-api-key", key)
                .body(())
                .expect("request");
            let mut sender = sender.ready().await.expect("ready");
            let (resp, _) = sender.send_request(req, true).expect("send");
            let resp = tokio::time::timeout(Duration::from_secs(5), resp)
                .await
                .expect("answered in time")
                .expect("response");
            let retry = resp
                .headers()
                .get(http::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (resp.status(), retry)
        }
    };
    let (status, retry) = get("alpha").await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "alpha's bucket is empty"
    );
    assert!(retry.is_some(), "hyper's 429 has Retry-After");
    assert_eq!(get("gamma").await.0, StatusCode::OK);
    assert_eq!(get("gamma").await.0, StatusCode::OK);
    assert_eq!(get("gamma").await.0, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rate_limit_is_refused_with_its_location() {
    let ports = Ports::new();
    let backend = TestBackend::start("b0").await;
    let cfg = single_node(&ports, &backend_list(&[&backend], &[]), "", "").replace(
        "pool = \"app\"\n\n[[pool]]",
        "pool = \"app\"\nrate_limit = { requests_per_second = 0, key = \"header:\" }\n\n[[pool]]",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("fulcrum.toml");
    std::fs::write(&path, cfg).expect("write");
    let out = std::process::Command::new(fulcrum_tests::process::fulcrum_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run fulcrum check");
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("requests_per_second must be above 0"), "{err}");
    assert!(err.contains("rate_limit hash_key `header:`"), "{err}");
    assert!(
        err.contains("fulcrum.toml:"),
        "errors name file:line:column: {err}"
    );
}

/// The HTTP/2-over-TLS codec (`node/src/http2`) applies the same limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_streams_are_limited_too() {
    use fulcrum_tests::tls::{alpn, connect, verifying_config, TestCa};
    let backend = TestBackend::start("b0").await;
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let cfg = single_node(&ports, &backend_list(&[&backend], &[]), "", "")
        .replace(
            "header_read_timeout = \"2s\"\n",
            &format!(
                "header_read_timeout = \"2s\"\nprotocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n",
                cert.display(),
                key.display()
            ),
        )
        .replace(
            "pool = \"app\"\n\n[[pool]]",
            "pool = \"app\"\nrate_limit = { requests_per_second = 0.5, burst = 3 }\n\n[[pool]]",
        );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let stream = connect(&ports.web, "a.test", verifying_config(&ca.pem(), &[b"h2"]))
        .await
        .expect("TLS connect");
    assert_eq!(alpn(&stream).as_deref(), Some(b"h2".as_slice()));
    let (sender, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(conn);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let req = Request::get("https://a.test/").body(()).expect("request");
        let mut ready = sender.clone().ready().await.expect("ready");
        let (resp, _) = ready.send_request(req, true).expect("send");
        let resp = tokio::time::timeout(Duration::from_secs(5), resp)
            .await
            .expect("answered in time")
            .expect("response");
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp.headers().get(http::header::RETRY_AFTER).cloned();
        }
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    assert!(
        retry_after.as_ref().is_some_and(|v| v == "1" || v == "2"),
        "{retry_after:?}"
    );
    assert_eq!(rate_limited_count(&ports.admin).await, 2.0);
}
