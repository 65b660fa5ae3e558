//! HTTP/2 and gRPC to backends (`pool.protocol = "h2"`), end to end: a real tonic
//! client, a real fulcrum process, real gRPC backends (h2c). Calls on one client
//! connection are balanced per request over two backends, each reached over one
//! shared connection; a server-streaming call is relayed message by message with its
//! trailers (`grpc-status`, `grpc-message`), over h2c and over TLS; an HTTP/1.1
//! client reaches the same pool; a backend that dies mid-stream ends the client's call
//! with an error rather than a hang. Every call's `grpc-status` is counted in
//! `fulcrum_grpc_responses_total`, from trailers and from trailers-only answers, for
//! HTTP/2 and HTTP/1.1 clients.

use bytes::Bytes;
use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::grpc::{self, GrpcBackend, RawCodec};
use fulcrum_tests::h2client::one_pool_config;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::tls::TestCa;
use std::collections::HashSet;
use std::time::Duration;
use tonic::{Code, Status};

fn backends(list: &[&GrpcBackend]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|b| format!("{{ addr = \"{}\" }}", b.addr))
        .collect();
    format!("[{}]", items.join(", "))
}

const H2_POOL: &str = "algorithm = \"round-robin\"\nprotocol = \"h2\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_spread_over_backends_on_shared_connections() {
    let a = GrpcBackend::start("a", Status::ok("")).await;
    let b = GrpcBackend::start("b", Status::ok("")).await;
    let ports = Ports::new();
    let config = single_node(&ports, &backends(&[&a, &b]), H2_POOL, "");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let mut client = grpc::client(&format!("http://{}", ports.web), None).await;

    // Sequential calls, then 32 at once, all on the client's one connection.
    let mut answers = Vec::new();
    for i in 0..8 {
        let reply = grpc::unary(&mut client, &format!("m{i}")).await;
        answers.push(reply.expect("unary call"));
    }
    let calls = (0..32).map(|i| {
        let mut c = client.clone();
        async move { grpc::unary(&mut c, &format!("c{i}")).await }
    });
    for reply in futures_join_all(calls).await {
        answers.push(reply.expect("concurrent unary call"));
    }
    let by: HashSet<&str> = answers.iter().filter_map(|s| s.split(':').next()).collect();
    assert_eq!(by, HashSet::from(["a", "b"]), "{answers:?}");
    for (i, s) in answers[..8].iter().enumerate() {
        assert!(s.ends_with(&format!(":m{i}")), "{s}");
    }
    // Per-request balancing over one connection per backend.
    assert_eq!((a.accepted(), b.accepted()), (1, 1), "connections opened");

    // Server streaming: every message, in order, then an OK status from the trailers.
    let (got, status) = grpc::count(&mut client, 5).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(got.len(), 5, "{got:?}");
    let who = got[0].split(':').next().unwrap_or("").to_string();
    let expected: Vec<String> = (0..5).map(|i| format!("{who}:{i}")).collect();
    assert_eq!(got, expected);

    // An HTTP/1.1 client to the same pool: the backend sees HTTP/2.
    let url = ports.url("/plain");
    let reply = fulcrum_tests::client::get(&fulcrum_tests::client::fresh_client(), &url, &[])
        .await
        .expect("HTTP/1.1 request");
    assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
    assert!(
        reply.body.ends_with(" over HTTP/2.0 at /plain"),
        "{:?}",
        reply.body
    );
    assert_eq!((a.accepted(), b.accepted()), (1, 1), "connections opened");
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_and_message_cross_in_trailers_over_tls() {
    let a = GrpcBackend::start("a", Status::new(Code::DataLoss, "a ran dry")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let ports = Ports::new();
    let config = one_pool_config(&ports, &cert, &key, &backends(&[&a]), "protocol = \"h2\"");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let mut client = grpc::client(&format!("https://{}", ports.web), Some(&ca.pem())).await;

    let reply = grpc::unary(&mut client, "hello").await;
    assert_eq!(reply.expect("unary over TLS"), "a:hello");
    // Three messages, then the status the backend ended with, from its trailers.
    let (got, status) = grpc::count(&mut client, 3).await;
    assert_eq!(got, ["a:0", "a:1", "a:2"]);
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert_eq!(status.message(), "a ran dry");
    assert_eq!(a.accepted(), 1);
    // Counted from the trailers on this path too (hyper's, as for h2c).
    for (code, calls) in [("OK", 1.0), ("DATA_LOSS", 1.0), ("UNKNOWN", 0.0)] {
        let series = format!("backend=\"{}\",code=\"{code}\"", a.addr);
        let counted =
            fulcrum_tests::hostile::metric(&ports.admin, "fulcrum_grpc_responses_total", &series)
                .await;
        assert_eq!(counted, calls, "{code}");
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_dying_mid_stream_ends_the_call_with_an_error() {
    let a = GrpcBackend::start("a", Status::ok("")).await;
    let ports = Ports::new();
    let config = single_node(&ports, &backends(&[&a]), H2_POOL, "");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let mut client = grpc::client(&format!("http://{}", ports.web), None).await;
    client.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Count");
    // 200 messages 50 ms apart: 10 s if nothing cut it short.
    let req = tonic::Request::new(Bytes::from_static(b"200"));
    let mut stream = client
        .server_streaming(req, path, RawCodec)
        .await
        .expect("stream started")
        .into_inner();
    for i in 0..3 {
        let m = stream.message().await.expect("message").expect("not ended");
        assert_eq!(m, format!("a:{i}").as_bytes());
    }
    a.kill();
    let end = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the call ends within 5 s of the backend's death, not hangs");
    match end {
        Err(status) => assert_ne!(status.code(), Code::Ok, "{status:?}"),
        Ok(end) => panic!("the stream ended as if complete: {end:?}"),
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_status_codes_are_counted_per_backend_for_both_client_protocols() {
    let a = GrpcBackend::start("a", Status::new(Code::DataLoss, "a ran dry")).await;
    let ports = Ports::new();
    let config = single_node(&ports, &backends(&[&a]), H2_POOL, "");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let mut client = grpc::client(&format!("http://{}", ports.web), None).await;

    // HTTP/2 client: three OK unary calls and a stream ending in DATA_LOSS (status in
    // the trailers), a stream refused at once (INVALID_ARGUMENT, trailers-only).
    for i in 0..3 {
        assert_eq!(
            grpc::unary(&mut client, &format!("u{i}"))
                .await
                .expect("unary"),
            format!("a:u{i}")
        );
    }
    let (got, status) = grpc::count(&mut client, 2).await;
    assert_eq!(
        (got.len(), status.code()),
        (2, Code::DataLoss),
        "{status:?}"
    );
    client.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/test.Echo/Count");
    let refused = client
        .server_streaming(
            tonic::Request::new(Bytes::from_static(b"x")),
            path,
            RawCodec,
        )
        .await
        .err()
        .map(|s| s.code());
    assert_eq!(refused, Some(Code::InvalidArgument));

    // HTTP/1.1 client: one OK unary call (trailers), one refused stream (the status in
    // the head of a trailers-only answer, which reaches the client as a header).
    let ok = h1_grpc_call(&ports.web, "/test.Echo/Unary", b"hi").await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("a:hi"), "{ok}");
    let bad = h1_grpc_call(&ports.web, "/test.Echo/Count", b"x").await;
    assert!(bad.to_ascii_lowercase().contains("grpc-status: 3"), "{bad}");

    let count = |code: &'static str| {
        let (admin, backend) = (ports.admin.clone(), a.addr.clone());
        async move {
            let series = format!("backend=\"{backend}\",code=\"{code}\"");
            fulcrum_tests::hostile::metric(&admin, "fulcrum_grpc_responses_total", &series).await
        }
    };
    assert_eq!(count("OK").await, 4.0, "3 over HTTP/2 + 1 over HTTP/1.1");
    assert_eq!(count("DATA_LOSS").await, 1.0);
    assert_eq!(
        count("INVALID_ARGUMENT").await,
        2.0,
        "trailers-only, both clients"
    );
    assert_eq!(count("UNKNOWN").await, 0.0);
    drop(node);
}

/// One gRPC call (a single message) over HTTP/1.1 on a new connection: the raw answer.
async fn h1_grpc_call(addr: &str, path: &str, message: &[u8]) -> String {
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/grpc\r\nTE: trailers\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        framed.len()
    );
    grpc::h1_exchange(addr, &head, &framed).await
}

/// Runs `futs` concurrently; their results in order.
async fn futures_join_all<F, T>(futs: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}
