//! HTTP/2 and gRPC to backends (`pool.protocol = "h2"`), end to end: a real tonic
//! client, a real fulcrum process, real gRPC backends (h2c). Calls on one client
//! connection are balanced per request over two backends, each reached over one
//! shared connection; a server-streaming call is relayed message by message with its
//! trailers (`grpc-status`, `grpc-message`), over h2c and over TLS; an HTTP/1.1
//! client reaches the same pool; a backend that dies mid-stream ends the client's call
//! with an error rather than a hang.

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
