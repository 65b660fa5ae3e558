//! `fulcrum_grpc_responses_total` on every path that relays answers, for gRPC-Web:
//! a real tonic server behind tonic-web's translation, a real fulcrum process, gRPC-Web
//! calls written by hand (a message frame, `application/grpc-web+proto` or
//! `application/grpc-web-text`).
//!
//! gRPC-Web's status comes at the end of the body, in a frame of its own, or in the
//! head of a trailers-only answer. Counted:
//! - on the hand-written HTTP/1.1 path (`node/src/h1`) and the HTTP/2 one
//!   (`node/src/http2`), which talk HTTP/1.1 to a pool's backends: an HTTP/1.1 client
//!   and an HTTP/2-over-TLS client to an HTTP/1.1 pool;
//! - on hyper's path, which serves every request to an h2 pool: HTTP/1.1, h2c and
//!   HTTP/2-over-TLS clients to an h2 pool of the same backend.
//!
//! Native gRPC (`application/grpc`, status in HTTP/2 trailers) through an h2 pool is
//! counted in `tests/tests/grpc.rs`; it never reaches the two hand-written paths, which
//! hand every request for an h2 pool to hyper (`h1`) or leave such listeners to hyper
//! (`http2::eligible`).

use base64::Engine as _;
use fulcrum_tests::config::Ports;
use fulcrum_tests::grpc::{self, GrpcBackend};
use fulcrum_tests::h2client::{H2Client, Outgoing};
use fulcrum_tests::keepalive::web_and_tls_node;
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::tls::TestCa;
use tonic::{Code, Status};

/// A node with a plain listener `web` and an HTTPS one `tls`, both routed to pool `g`
/// of `backend` (`pool_extra` added to the pool).
struct Bed {
    ports: Ports,
    tls: String,
    ca: TestCa,
    _dir: tempfile::TempDir,
    node: Fulcrum,
}

impl Bed {
    async fn start(backend: &GrpcBackend, pool_extra: &str) -> Bed {
        let ports = Ports::new();
        let tls = format!("127.0.0.1:{}", fulcrum_tests::free_port());
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new();
        let (cert, key) = ca.leaf(&["a.test"]).write(dir.path(), "a");
        let pools = format!(
            "[[route]]\nlistener = \"web\"\npool = \"g\"\n\n\
             [[route]]\nlistener = \"tls\"\npool = \"g\"\n\n\
             [[pool]]\nname = \"g\"\nbackends = [{{ addr = \"{}\" }}]\n{pool_extra}\n",
            backend.addr
        );
        let cfg = web_and_tls_node(&ports.admin, &ports.web, &tls, &cert, &key, &pools);
        let node = Fulcrum::start(&cfg, &ports.admin).await;
        Bed {
            ports,
            tls,
            ca,
            _dir: dir,
            node,
        }
    }

    /// `fulcrum_grpc_responses_total` of `backend` with `code`.
    async fn count(&self, backend: &GrpcBackend, code: &str) -> f64 {
        let series = format!("backend=\"{}\",code=\"{code}\"", backend.addr);
        fulcrum_tests::hostile::metric(&self.ports.admin, "fulcrum_grpc_responses_total", &series)
            .await
    }

    /// The counts of the codes the calls here end with, and of `UNKNOWN`.
    async fn counts(&self, backend: &GrpcBackend) -> [f64; 4] {
        [
            self.count(backend, "OK").await,
            self.count(backend, "DATA_LOSS").await,
            self.count(backend, "INVALID_ARGUMENT").await,
            self.count(backend, "UNKNOWN").await,
        ]
    }
}

/// One gRPC-Web call's request body: a message frame, base64 for `-web-text`.
fn framed(message: &[u8], text: bool) -> Vec<u8> {
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(message);
    match text {
        true => base64::engine::general_purpose::STANDARD
            .encode(frame)
            .into_bytes(),
        false => frame,
    }
}

fn content_type(text: bool) -> &'static str {
    match text {
        true => "application/grpc-web-text",
        false => "application/grpc-web+proto",
    }
}

/// One gRPC-Web call over HTTP/1.1 on a new connection: the raw answer.
async fn h1_call(addr: &str, path: &str, message: &[u8], text: bool) -> String {
    let body = framed(message, text);
    let kind = content_type(text);
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: a.test\r\nContent-Type: {kind}\r\nAccept: {kind}\r\n\
         X-Grpc-Web: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    grpc::h1_exchange(addr, &head, &body).await
}

/// One gRPC-Web call over HTTP/2 (`scheme` `http` for h2c, `https` over TLS): the
/// answer's headers and body.
async fn h2_call(
    client: &H2Client,
    scheme: &str,
    path: &str,
    message: &[u8],
    text: bool,
) -> (http::HeaderMap, Vec<u8>) {
    let kind = content_type(text);
    let req = http::Request::post(format!("{scheme}://a.test{path}"))
        .header("content-type", kind)
        .header("accept", kind)
        .header("x-grpc-web", "1")
        .body(())
        .expect("request");
    let out = Outgoing {
        body: framed(message, text),
        ..Outgoing::default()
    };
    let reply = client.exchange(req, out).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    (reply.headers, reply.body)
}

/// The body's text, base64 decoded for `-web-text`, for looking into.
fn readable(body: &[u8], text: bool) -> String {
    let bytes = match text {
        true => body
            .split(|&b| b == b'=')
            .filter(|piece| !piece.is_empty())
            .flat_map(|piece| {
                let mut padded = piece.to_vec();
                while padded.len() % 4 != 0 {
                    padded.push(b'=');
                }
                base64::engine::general_purpose::STANDARD
                    .decode(padded)
                    .unwrap_or_default()
            })
            .collect(),
        false => body.to_vec(),
    };
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Four calls over HTTP/1.1: a unary call in each encoding (OK, in the trailer frame),
/// a stream ending in DATA_LOSS (trailer frame), a stream refused at once
/// (INVALID_ARGUMENT in a trailers-only head). Asserts what the client got.
async fn four_h1_calls(addr: &str) {
    for text in [false, true] {
        let ok = h1_call(addr, "/test.Echo/Unary", b"hi", text).await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        let (_, body) = ok.split_once("\r\n\r\n").expect("a head and a body");
        let body = readable(&dechunk(body), text);
        assert!(body.contains("w:hi"), "{body:?}");
        assert!(body.contains("grpc-status:0"), "{body:?}");
    }
    let lost = h1_call(addr, "/test.Echo/Count", b"2", false).await;
    assert!(lost.contains("w:1"), "{lost}");
    assert!(lost.contains("grpc-status:15"), "{lost}");
    let refused = h1_call(addr, "/test.Echo/Count", b"x", false).await;
    assert!(
        refused.to_ascii_lowercase().contains("grpc-status: 3"),
        "{refused}"
    );
}

/// The same four calls over HTTP/2.
async fn four_h2_calls(client: &H2Client, scheme: &str) {
    for text in [false, true] {
        let (_, body) = h2_call(client, scheme, "/test.Echo/Unary", b"hi", text).await;
        let body = readable(&body, text);
        assert!(body.contains("w:hi"), "{body:?}");
        assert!(body.contains("grpc-status:0"), "{body:?}");
    }
    let (_, lost) = h2_call(client, scheme, "/test.Echo/Count", b"2", false).await;
    let lost = String::from_utf8_lossy(&lost);
    assert!(lost.contains("grpc-status:15"), "{lost}");
    let (head, _) = h2_call(client, scheme, "/test.Echo/Count", b"x", false).await;
    assert_eq!(
        head.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"3"[..])
    );
}

/// A chunked body without its framing (what a client that reads HTTP/1.1 would see).
fn dechunk(body: &str) -> Vec<u8> {
    let bytes = body.as_bytes();
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(eol) = bytes[at..].windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&bytes[at..at + eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        let start = at + eol + 2;
        let end = (start + size).min(bytes.len());
        out.extend_from_slice(&bytes[start..end]);
        at = end + 2;
        if at >= bytes.len() {
            break;
        }
    }
    out
}

/// Per call set: OK 2, DATA_LOSS 1, INVALID_ARGUMENT 1, UNKNOWN none.
const FOUR: [f64; 4] = [2.0, 1.0, 1.0, 0.0];

fn plus(a: [f64; 4], b: [f64; 4]) -> [f64; 4] {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3]]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_status_is_counted_on_the_http1_and_http2_paths() {
    let w = GrpcBackend::start_web("w", Status::new(Code::DataLoss, "w ran dry")).await;
    let bed = Bed::start(&w, "").await;
    assert_eq!(bed.counts(&w).await, [0.0; 4]);

    // HTTP/1.1 client, HTTP/1.1 pool: the hand-written HTTP/1.1 path.
    four_h1_calls(&bed.ports.web).await;
    assert_eq!(bed.counts(&w).await, FOUR, "the HTTP/1.1 path");

    // HTTP/2 over TLS, HTTP/1.1 pool: the hand-written HTTP/2 path.
    let client = H2Client::connect(&bed.tls, &bed.ca).await;
    four_h2_calls(&client, "https").await;
    assert_eq!(bed.counts(&w).await, plus(FOUR, FOUR), "the HTTP/2 path");
    drop(bed.node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_web_status_through_an_h2_pool_is_counted_for_every_client_protocol() {
    let w = GrpcBackend::start_web("w", Status::new(Code::DataLoss, "w ran dry")).await;
    let bed = Bed::start(&w, "protocol = \"h2\"").await;
    let mut expected = [0.0; 4];

    // HTTP/1.1 client: hyper's path (the h1 path hands an h2 pool's requests over).
    four_h1_calls(&bed.ports.web).await;
    expected = plus(expected, FOUR);
    assert_eq!(bed.counts(&w).await, expected, "HTTP/1.1 client");

    // h2c prior knowledge: hyper's path.
    let tcp = tokio::net::TcpStream::connect(&bed.ports.web)
        .await
        .expect("connect");
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    four_h2_calls(&H2Client { sender }, "http").await;
    expected = plus(expected, FOUR);
    assert_eq!(bed.counts(&w).await, expected, "h2c client");

    // HTTP/2 over TLS: hyper's path (a listener leading to an h2 pool stays there).
    let client = H2Client::connect(&bed.tls, &bed.ca).await;
    four_h2_calls(&client, "https").await;
    expected = plus(expected, FOUR);
    assert_eq!(bed.counts(&w).await, expected, "HTTP/2-over-TLS client");
    // One shared h2c connection to the backend carried them all.
    assert_eq!(w.accepted(), 1);
    drop(bed.node);
}
