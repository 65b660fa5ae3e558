//! A route's `timeout` bounds the whole exchange, the response body included (issue 19
//! item 5), through a real fulcrum process and a backend that answers its head at once
//! and then dribbles a 100-byte body one byte every 100 ms (10 s in all). With a 800 ms
//! route timeout the client gets the head, a few bytes, and then a cut-off response:
//! the HTTP/1.1 connection closes short of `Content-Length`, the HTTP/2 stream is reset.
//! Never the whole body, never a response that looks complete.
//!
//! Every HTTP path: the HTTP/1.1 fast path, hyper's (h2c prior knowledge) and HTTP/2
//! over TLS (`node/src/http2`).

use fulcrum_tests::config::Ports;
use fulcrum_tests::keepalive::web_and_tls_node;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::tls::{connect, verifying_config, TestCa};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The body's length and the pause between its bytes.
const BODY: usize = 100;
const DRIP: Duration = Duration::from_millis(100);
/// How long a cut-off may take at most (the route's limit is 800 ms): a liveness bound.
const CUT_WITHIN: Duration = Duration::from_secs(5);

/// A backend whose every answer is a 200 head at once, then the body byte by byte.
struct Dribbler {
    addr: String,
    task: JoinHandle<()>,
}

impl Dribbler {
    async fn start() -> Dribbler {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let task = tokio::spawn(async move {
            // At most a few dozen connections in a test: a bound on the accept loop.
            for _ in 0..64 {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(dribble(s));
            }
        });
        Dribbler { addr, task }
    }
}

impl Drop for Dribbler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn dribble(mut s: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {BODY}\r\n\r\n");
    if s.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    for _ in 0..BODY {
        tokio::time::sleep(DRIP).await;
        if s.write_all(b"x").await.is_err() {
            return;
        }
    }
}

/// What a client saw of one response.
#[derive(Debug)]
struct Seen {
    status: u16,
    body_bytes: usize,
    /// The response ended in an error (a reset stream) or short of its length.
    cut_off: bool,
    took: Duration,
}

/// A GET on a new HTTP/1.1 connection, read until the connection ends.
async fn h1(addr: &str) -> Seen {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /drip HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("send");
    let mut got = Vec::new();
    let read = tokio::time::timeout(CUT_WITHIN, s.read_to_end(&mut got)).await;
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&got);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body_bytes = text.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Seen {
        status,
        body_bytes,
        cut_off: read.is_ok() && body_bytes < BODY,
        took,
    }
}

/// A GET over HTTP/2 (`sender`), the body read until it ends or fails.
async fn h2(sender: &h2::client::SendRequest<bytes::Bytes>, uri: &str) -> Seen {
    let started = Instant::now();
    let req = http::Request::get(uri).body(()).expect("request");
    let mut ready = sender.clone().ready().await.expect("ready");
    let (resp, _) = ready.send_request(req, true).expect("send");
    let resp = tokio::time::timeout(CUT_WITHIN, resp)
        .await
        .expect("head within the bound")
        .expect("response head");
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut body_bytes = 0;
    let mut failed = false;
    let read = tokio::time::timeout(CUT_WITHIN, async {
        while let Some(frame) = body.data().await {
            match frame {
                Ok(data) => {
                    body_bytes += data.len();
                    let _ = body.flow_control().release_capacity(data.len());
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
    })
    .await;
    Seen {
        status,
        body_bytes,
        cut_off: read.is_ok() && failed && body_bytes < BODY,
        took: started.elapsed(),
    }
}

fn assert_cut_off(path: &str, seen: &Seen) {
    assert_eq!(seen.status, 200, "{path}: the head came in time: {seen:?}");
    assert!(
        seen.cut_off,
        "{path}: the body was cut off by the route timeout: {seen:?}"
    );
    // 800 ms of a byte per 100 ms: a handful of bytes got through, not the whole body.
    assert!(
        seen.body_bytes < BODY / 2,
        "{path}: the relay stopped at the deadline: {seen:?}"
    );
    assert!(
        seen.took >= Duration::from_millis(700),
        "{path}: not cut before the deadline: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_cuts_off_a_response_body_still_coming_on_every_path() {
    let dribbler = Dribbler::start().await;
    let ports = Ports::new();
    let tls_addr = format!("127.0.0.1:{}", fulcrum_tests::free_port());
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
    let pools = format!(
        "[[route]]\nlistener = \"web\"\npool = \"slow\"\ntimeout = \"800ms\"\n\n\
         [[route]]\nlistener = \"tls\"\npool = \"slow\"\ntimeout = \"800ms\"\n\n\
         [[pool]]\nname = \"slow\"\nbackends = [{{ addr = \"{}\" }}]\n",
        dribbler.addr
    );
    let cfg = web_and_tls_node(&ports.admin, &ports.web, &tls_addr, &cert, &key, &pools);
    let node = Fulcrum::start(&cfg, &ports.admin).await;

    assert_cut_off("http/1.1", &h1(&ports.web).await);

    let tcp = TcpStream::connect(&ports.web).await.expect("connect");
    let (h2c, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    assert_cut_off("h2c", &h2(&h2c, "http://a/drip").await);

    let stream = connect(&tls_addr, "a.test", verifying_config(&ca.pem(), &[b"h2"]))
        .await
        .expect("TLS connect");
    let (h2tls, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    tokio::spawn(conn);
    assert_cut_off("h2", &h2(&h2tls, "https://a.test/drip").await);
    drop(node);
}
