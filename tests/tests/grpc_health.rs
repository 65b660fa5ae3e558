//! Health checks by the gRPC health protocol (`health.kind = "grpc"`, issue 19): two
//! real gRPC backends serve tonic-health's `grpc.health.v1.Health` service beside a
//! plain answer naming them; fulcrum asks `Check` for the service `test.Echo` over
//! HTTP/2. When one backend says `NOT_SERVING` for that service (the server as a whole
//! still `SERVING`, so the service name is what decides), fulcrum marks it down and
//! sends every request to the other; when it says `SERVING` again it gets requests again.

use bytes::Bytes;
use fulcrum_tests::client::{fresh_client, get, wait_health};
use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::process::Fulcrum;

/// How long a health change may take to show in `/status` (a liveness bound).
const HEALTH_WITHIN: Duration = Duration::from_secs(10);
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tonic::codegen::Service;
use tonic::Status;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

const SERVICE: &str = "test.Echo";

/// An h2c backend: the gRPC health service, and `NAME` on every other path.
struct HealthBackend {
    addr: String,
    reporter: HealthReporter,
    tasks: JoinSet<()>,
}

impl HealthBackend {
    async fn start(name: &'static str) -> HealthBackend {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(SERVICE, ServingStatus::Serving)
            .await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            // A test opens a few connections: a bound on the accept loop.
            for _ in 0..64 {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let health = health.clone();
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let mut health = health.clone();
                        async move {
                            type Reply = http::Response<UnsyncBoxBody<Bytes, Status>>;
                            if req.uri().path().starts_with("/grpc.health.v1.Health/") {
                                let resp = match health.call(req).await {
                                    Ok(resp) => resp,
                                    Err(never) => match never {},
                                };
                                return Ok::<Reply, Infallible>(resp.map(|b| b.boxed_unsync()));
                            }
                            let body = Full::new(Bytes::from(name)).map_err(|never| match never {});
                            Ok(http::Response::new(body.boxed_unsync()))
                        }
                    });
                conns.spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        HealthBackend {
            addr,
            reporter,
            tasks,
        }
    }

    async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status(SERVICE, status).await;
    }
}

impl Drop for HealthBackend {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// Who answered `n` requests (HTTP/1.1 clients; the pool speaks HTTP/2 to backends).
async fn answerers(url: &str, n: usize) -> Vec<String> {
    let client = fresh_client();
    let mut who = Vec::new();
    for _ in 0..n {
        let reply = get(&client, url, &[]).await.expect("answer");
        assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
        who.push(reply.body);
    }
    who
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_not_serving_its_grpc_service_is_taken_out_and_back() {
    let a = HealthBackend::start("a").await;
    let b = HealthBackend::start("b").await;
    let ports = Ports::new();
    let backends = format!("[{{ addr = \"{}\" }}, {{ addr = \"{}\" }}]", a.addr, b.addr);
    let pool = format!(
        "algorithm = \"round-robin\"\nprotocol = \"h2\"\n\
         health = {{ kind = \"grpc\", service = \"{SERVICE}\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }}"
    );
    let node = Fulcrum::start(&single_node(&ports, &backends, &pool, ""), &ports.admin).await;
    wait_health(&node.admin, &a.addr, true, HEALTH_WITHIN).await;
    wait_health(&node.admin, &b.addr, true, HEALTH_WITHIN).await;
    let both: HashSet<String> = answerers(&ports.url("/"), 6).await.into_iter().collect();
    assert_eq!(both, HashSet::from(["a".to_string(), "b".to_string()]));

    a.set(ServingStatus::NotServing).await;
    let took = wait_health(&node.admin, &a.addr, false, HEALTH_WITHIN).await;
    eprintln!("a marked down {took:?} after NOT_SERVING");
    let only_b = answerers(&ports.url("/"), 10).await;
    assert!(only_b.iter().all(|w| w == "b"), "{only_b:?}");
    let failed = fulcrum_tests::hostile::metric(
        &node.admin,
        "fulcrum_health_checks_total",
        &format!("backend=\"{}\",result=\"fail\"", a.addr),
    )
    .await;
    assert!(failed >= 1.0, "failed checks counted: {failed}");

    a.set(ServingStatus::Serving).await;
    wait_health(&node.admin, &a.addr, true, HEALTH_WITHIN).await;
    let again: HashSet<String> = answerers(&ports.url("/"), 6).await.into_iter().collect();
    assert_eq!(again, HashSet::from(["a".to_string(), "b".to_string()]));
    drop(node);
}
