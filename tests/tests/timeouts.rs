//! Per-route timeouts and the retry budget (issue 19 items 1 and 2), through a real
//! fulcrum process, a real HTTP backend and "stalled" backends that take requests and
//! never answer:
//! - `per_try_timeout`: a GET whose try runs out goes to another backend and is
//!   answered there; a request with a body, or with no other backend, gets 504 once
//!   its try runs out (not the pool's 30 s response timeout);
//! - `timeout`: the whole request, retries included, gets 504 when it runs out;
//! - `retry_budget`: once a pool's retries reach its share, failed tries are not
//!   retried (504 here, since the failure is a timed-out try), counted in
//!   `fulcrum_retry_budget_exhausted_total`.
//!
//! Every HTTP path is covered: the HTTP/1.1 fast path, hyper's (h2c prior knowledge)
//! and HTTP/2 over TLS (`node/src/http2`).

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::Ports;
use fulcrum_tests::hostile::metric;
use fulcrum_tests::keepalive::{exchange, h2_get, web_and_tls_node};
use fulcrum_tests::process::{check_config, Fulcrum};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Connections a stalled backend keeps at most.
const MAX_STALLED_CONNS: usize = 200;

/// A backend that reads requests and never answers; counts the request heads it got.
struct Stalled {
    addr: String,
    heads: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Stalled {
    async fn start() -> Stalled {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let heads = Arc::new(AtomicUsize::new(0));
        let counted = heads.clone();
        let task = tokio::spawn(async move {
            let mut conns = Vec::new();
            while conns.len() < MAX_STALLED_CONNS {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                let counted = counted.clone();
                conns.push(tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let mut tail = Vec::new();
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tail.extend_from_slice(&buf[..n]);
                        while let Some(end) = tail.windows(4).position(|w| w == b"\r\n\r\n") {
                            counted.fetch_add(1, Ordering::SeqCst);
                            tail.drain(..end + 4);
                        }
                    }
                }));
            }
            for c in conns {
                c.abort();
            }
        });
        Stalled { addr, heads, task }
    }

    fn heads(&self) -> usize {
        self.heads.load(Ordering::SeqCst)
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The routes of one listener: `/retry` (stalled + answering backend, 300 ms tries in
/// 5 s), `/alone` (only a stalled backend, 300 ms tries), `/overall` (only a stalled
/// backend, 500 ms in all), `/both` (two stalled backends, 400 ms tries in 600 ms),
/// `/budget` (stalled + answering, 200 ms tries, 2 retries per 2 s).
fn routes(listener: &str) -> String {
    [
        ("/retry", "mixed", "timeout = \"5s\"\nper_try_timeout = \"300ms\""),
        ("/alone", "stalled", "per_try_timeout = \"300ms\""),
        ("/overall", "stalled", "timeout = \"500ms\""),
        (
            "/both",
            "two-stalled",
            "timeout = \"600ms\"\nper_try_timeout = \"400ms\"",
        ),
        ("/budget", "budget", "per_try_timeout = \"200ms\""),
    ]
    .iter()
    .map(|(prefix, pool, extra)| {
        format!(
            "[[route]]\nlistener = \"{listener}\"\npath_prefix = \"{prefix}\"\npool = \"{pool}\"\n{extra}\n\n"
        )
    })
    .collect()
}

struct Bed {
    ports: Ports,
    /// The HTTP/2-over-TLS listener and the CA its certificate is from.
    tls_addr: String,
    ca: fulcrum_tests::tls::TestCa,
    _dir: tempfile::TempDir,
    node: Fulcrum,
    answering: TestBackend,
    stalled: Stalled,
    stalled2: Stalled,
    /// The `budget` pool's stalled backend.
    stalled3: Stalled,
}

impl Bed {
    async fn start() -> Bed {
        let answering = TestBackend::start("answering").await;
        let (stalled, stalled2, stalled3) = (
            Stalled::start().await,
            Stalled::start().await,
            Stalled::start().await,
        );
        let ports = Ports::new();
        let tls_addr = format!("127.0.0.1:{}", fulcrum_tests::free_port());
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = fulcrum_tests::tls::TestCa::new();
        let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
        let pools = format!(
            r#"{web_routes}{tls_routes}[[pool]]
name = "mixed"
backends = [{{ addr = "{s}" }}, {{ addr = "{a}" }}]

[[pool]]
name = "stalled"
backends = [{{ addr = "{s}" }}]

[[pool]]
name = "two-stalled"
backends = [{{ addr = "{s}" }}, {{ addr = "{s2}" }}]

[[pool]]
name = "budget"
backends = [{{ addr = "{s3}" }}, {{ addr = "{a}" }}]
retry_budget = {{ percent = 0, min_per_second = 1, window = "2s" }}
"#,
            web_routes = routes("web"),
            tls_routes = routes("tls"),
            s = stalled.addr,
            s2 = stalled2.addr,
            s3 = stalled3.addr,
            a = answering.addr,
        );
        let cfg = web_and_tls_node(&ports.admin, &ports.web, &tls_addr, &cert, &key, &pools);
        let node = Fulcrum::start(&cfg, &ports.admin).await;
        Bed {
            ports,
            tls_addr,
            ca,
            _dir: dir,
            node,
            answering,
            stalled,
            stalled2,
            stalled3,
        }
    }

    async fn metric(&self, name: &str, label: &str) -> f64 {
        metric(&self.node.admin, name, label).await
    }
}

/// One request on the HTTP/1.1 keep-alive connection `s`: status, `x-backend`, time.
async fn h1(s: &mut TcpStream, method: &str, path: &str) -> (u16, Option<String>, Duration) {
    let body = if method == "POST" { "x" } else { "" };
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let answer = exchange(s, req.as_bytes()).await;
    let backend = answer.header("x-backend").map(str::to_string);
    (answer.status, backend, answer.took)
}

/// A GET over an HTTP/2 connection (`sender`): status, `x-backend`, time.
async fn h2(
    sender: &h2::client::SendRequest<bytes::Bytes>,
    uri: &str,
) -> (u16, Option<String>, Duration) {
    let answer = h2_get(sender, uri).await;
    let backend = answer.header("x-backend").map(str::to_string);
    (answer.status, backend, answer.took)
}

/// Asserts a 504 that came when the limit `at` ran out (not at once, not at 30 s).
fn assert_timed_out(what: &str, got: (u16, Option<String>, Duration), at: u64) {
    let (status, _, took) = got;
    assert_eq!(status, 504, "{what}: {got:?}");
    let at = Duration::from_millis(at);
    assert!(
        took >= at - Duration::from_millis(50) && took < at + Duration::from_millis(1500),
        "{what}: 504 after {took:?}, the limit is {at:?}"
    );
}

/// The checks every path must pass; `send(path)` makes one GET on that path.
async fn check_path<F, Fut>(bed: &Bed, codec: &str, mut send: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: std::future::Future<Output = (u16, Option<String>, Duration)>,
{
    // A try that runs out goes to the answering backend; the stalled one stays in
    // the rotation (a slow try ejects nothing), so some tries go there and run out.
    let before = (
        bed.stalled.heads(),
        bed.metric("fulcrum_retries_total", "").await,
    );
    let mut slowest = Duration::ZERO;
    for i in 0..6 {
        let (status, backend, took) = send("/retry").await;
        assert_eq!(status, 200, "{codec} /retry {i}");
        assert_eq!(backend.as_deref(), Some("answering"), "{codec} /retry {i}");
        assert!(
            took < Duration::from_secs(3),
            "{codec} /retry {i}: {took:?}"
        );
        slowest = slowest.max(took);
    }
    let stalled_tries = bed.stalled.heads() - before.0;
    let retried = bed.metric("fulcrum_retries_total", "").await - before.1;
    assert!(
        stalled_tries >= 1,
        "{codec}: no try reached the stalled backend"
    );
    assert_eq!(
        retried, stalled_tries as f64,
        "{codec}: each timed-out try retried once"
    );
    assert!(
        slowest >= Duration::from_millis(250),
        "{codec}: a retried request waited for its try to run out ({slowest:?})"
    );

    // No other backend: the timed-out try is the answer, 504 after 300 ms.
    let before = bed.stalled.heads();
    assert_timed_out(&format!("{codec} /alone"), send("/alone").await, 300);
    assert_eq!(bed.stalled.heads() - before, 1, "{codec}: one try only");

    // The route's overall timeout (500 ms), well before the pool's 30 s.
    assert_timed_out(&format!("{codec} /overall"), send("/overall").await, 500);

    // Retries stop when the overall timeout does: 400 ms on one, 200 ms on the other.
    let before = (bed.stalled.heads(), bed.stalled2.heads());
    assert_timed_out(&format!("{codec} /both"), send("/both").await, 600);
    let tries = (bed.stalled.heads() - before.0) + (bed.stalled2.heads() - before.1);
    assert_eq!(
        tries, 2,
        "{codec}: the second try got what was left of the 600 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timed_out_tries_are_retried_elsewhere_and_route_timeouts_answer_504_on_every_path() {
    let bed = Bed::start().await;

    // The HTTP/1.1 fast path, one keep-alive connection.
    let conn = tokio::sync::Mutex::new(TcpStream::connect(&bed.ports.web).await.expect("connect"));
    check_path(&bed, "http/1.1", |path| {
        let conn = &conn;
        async move { h1(&mut *conn.lock().await, "GET", path).await }
    })
    .await;
    // A request with a body is not replayed: 504 when its only try runs out.
    let mut s = TcpStream::connect(&bed.ports.web).await.expect("connect");
    let before = bed.stalled.heads();
    assert_timed_out(
        "http/1.1 POST /alone",
        h1(&mut s, "POST", "/alone").await,
        300,
    );
    assert_eq!(bed.stalled.heads() - before, 1);
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(h1(&mut s, "POST", "/retry").await.0);
    }
    assert!(
        posts.iter().all(|s| *s == 200 || *s == 504),
        "a POST is answered by its one try: {posts:?}"
    );

    // hyper's path: h2c with prior knowledge.
    let tcp = TcpStream::connect(&bed.ports.web).await.expect("connect");
    let (sender, h2conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(h2conn);
    check_path(&bed, "h2c", |path| {
        let sender = sender.clone();
        async move { h2(&sender, &format!("http://a{path}")).await }
    })
    .await;

    // HTTP/2 over TLS.
    use fulcrum_tests::tls::{alpn, connect, verifying_config};
    let stream = connect(
        &bed.tls_addr,
        "a.test",
        verifying_config(&bed.ca.pem(), &[b"h2"]),
    )
    .await
    .expect("TLS connect");
    assert_eq!(alpn(&stream).as_deref(), Some(b"h2".as_slice()));
    let (sender, h2conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(h2conn);
    check_path(&bed, "h2", |path| {
        let sender = sender.clone();
        async move { h2(&sender, &format!("https://a.test{path}")).await }
    })
    .await;

    let timeouts = bed
        .metric("fulcrum_local_responses_total", "result=\"timeout\"")
        .await;
    assert!(timeouts >= 10.0, "504s are counted: {timeouts}");
    assert!(bed.answering.requests() >= 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_retry_budget_stops_retries_and_is_counted() {
    let bed = Bed::start().await;
    let mut s = TcpStream::connect(&bed.ports.web).await.expect("connect");
    let mut statuses = Vec::new();
    // 2 retries per 2 s window (percent = 0, min_per_second = 1): 12 requests in well
    // under 2 s... unless the machine is slow, which the counts below allow for.
    let started = Instant::now();
    for _ in 0..12 {
        let (status, _, _) = h1(&mut s, "GET", "/budget").await;
        statuses.push(status);
    }
    let took = started.elapsed();
    let stalled_tries = bed.stalled3.heads();
    let refused = bed
        .metric("fulcrum_retry_budget_exhausted_total", "pool=\"budget\"")
        .await;
    let timed_out = statuses.iter().filter(|s| **s == 504).count();
    let retried = bed.metric("fulcrum_retries_total", "").await;
    assert!(
        stalled_tries >= 3,
        "the stalled backend got {stalled_tries} tries"
    );
    assert_eq!(refused, timed_out as f64, "{statuses:?}");
    assert_eq!(retried + refused, stalled_tries as f64, "{statuses:?}");
    // Each window of 2 s allows 2 retries.
    let windows = took.as_secs() / 2 + 2;
    assert!(
        retried >= 2.0 && retried <= (2 * windows) as f64,
        "{retried} retries in {took:?}: {statuses:?}"
    );
    assert!(refused >= 1.0, "the budget refused nothing: {statuses:?}");
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count() + timed_out,
        12,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_timeouts_and_budgets_are_refused_with_their_location() {
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        r#"[node]
id = 1
admin = "{}"
data_dir = "/tmp"

[[listener]]
name = "web"
bind = "{}"

[[route]]
listener = "web"
pool = "app"
timeout = "1s"
per_try_timeout = "2s"

[[pool]]
name = "app"
backends = [{{ addr = "127.0.0.1:9" }}]
retry_budget = {{ percent = 150, window = "500ms" }}
"#,
        ports.admin, ports.web
    );
    let (ok, err, path) = check_config(&cfg, dir.path());
    assert!(!ok, "{err}");
    assert!(
        err.contains("per_try_timeout must not exceed the route's timeout"),
        "{err}"
    );
    assert!(err.contains("percent must be between 0 and 100"), "{err}");
    assert!(err.contains("window must be whole seconds"), "{err}");
    assert!(
        err.contains(&format!("{path}:")),
        "errors name file:line:column: {err}"
    );
    // And a good one passes, durations in humantime form.
    let good = cfg
        .replace("per_try_timeout = \"2s\"", "per_try_timeout = \"250ms\"")
        .replace("percent = 150, window = \"500ms\"", "percent = 25");
    let (ok, err, _) = check_config(&good, dir.path());
    assert!(ok, "{err}");
}
