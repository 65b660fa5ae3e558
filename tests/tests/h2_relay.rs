//! What the HTTP/2 path relays besides heads and bodies, end to end through a real
//! fulcrum process to scripted HTTP/1.1 backends, as hyper did before it: trailer
//! fields both ways (a client's trailers reach the backend in the chunked body's
//! trailer section; a chunked response's trailer section reaches the client as
//! trailers, what gRPC carries its status in), informational heads (`103 Early
//! Hints`, and `100 Continue` to a client that waits for it before its body),
//! a backend's final answer before `100 Continue` leaving the body unsent (and the
//! backend connection unused again), `CONNECT` answered as an unrouted request, and
//! a pool that starts speaking TLS to its backends while a connection is open
//! served on that same connection.

use fulcrum_tests::h2client::{one_pool_config, H2Bed, Outgoing};
use fulcrum_tests::raw_backend::{Action, RawBackend, Seen};
use fulcrum_tests::tls::tls_front;
use http::{HeaderMap, HeaderValue, Method, Request, StatusCode};
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers by path: a gRPC-like chunked response with trailers, a 103 before the
/// final answer, uploads by their size, else `200` with `path=TARGET`.
fn script(seen: &Seen) -> Action {
    match seen.path() {
        "/grpc" => Action::raw(
            "HTTP/1.1 200 OK\r\nContent-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\nGrpc-Status: 0\r\nGrpc-Message: all fine\r\nContent-Length: 99\r\n\r\n",
        ),
        "/plain-chunked" => Action::raw(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ),
        "/early" => Action::raw(
            "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
        ),
        "/upload" => Action::ok(format!("got {} bytes", seen.body.len())),
        path => Action::ok(format!("path={path}")),
    }
}

fn header<'a>(map: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    map.get(name).map(|v| v.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_cross_in_both_directions() {
    let backend = RawBackend::start(script).await;
    let bed = H2Bed::start(&backend.backend_list()).await;
    let client = bed.client().await;

    // A chunked response's trailer section arrives as the stream's trailers,
    // without the fields a trailer must not carry.
    let req = Request::post("https://a.test/grpc")
        .header("te", "trailers")
        .body(())
        .expect("request");
    let reply = client.exchange(req, Outgoing::default()).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, b"hello");
    let trailers = reply.trailers.expect("response trailers relayed");
    assert_eq!(header(&trailers, "grpc-status"), Some(&b"0"[..]));
    assert_eq!(header(&trailers, "grpc-message"), Some(&b"all fine"[..]));
    assert!(!trailers.contains_key("content-length"), "{trailers:?}");
    // No trailer section, no trailers.
    let req = Request::get("https://a.test/plain-chunked")
        .body(())
        .expect("request");
    let reply = client.exchange(req, Outgoing::default()).await;
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (StatusCode::OK, &b"ok"[..])
    );
    assert!(reply.trailers.is_none(), "{:?}", reply.trailers);

    // The client's trailers reach the backend after a chunked body.
    let mut sent = HeaderMap::new();
    sent.insert("x-checksum", HeaderValue::from_static("abc123"));
    sent.insert("grpc-status", HeaderValue::from_static("0"));
    let req = Request::post("https://a.test/upload")
        .body(())
        .expect("request");
    let out = Outgoing {
        body: vec![7u8; 2500],
        trailers: Some(sent),
        ..Outgoing::default()
    };
    let reply = client.exchange(req, out).await;
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&reply.body), "got 2500 bytes");
    let upload = backend.seen().pop().expect("upload seen");
    assert_eq!(upload.head.get("transfer-encoding"), Some("chunked"));
    let mut got = upload.trailers.clone();
    got.sort();
    assert_eq!(
        got,
        [
            ("grpc-status".to_string(), "0".to_string()),
            ("x-checksum".to_string(), "abc123".to_string())
        ]
    );
    // Trailers without any DATA frame: an empty chunked body with its trailers.
    let mut only = HeaderMap::new();
    only.insert("x-only", HeaderValue::from_static("1"));
    let req = Request::post("https://a.test/upload")
        .body(())
        .expect("request");
    let out = Outgoing {
        trailers: Some(only),
        ..Outgoing::default()
    };
    let reply = client.exchange(req, out).await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "got 0 bytes");
    let upload = backend.seen().pop().expect("upload seen");
    assert_eq!(upload.trailers, [("x-only".to_string(), "1".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn informational_heads_are_relayed_and_100_continue_releases_the_body() {
    let backend = RawBackend::start(script).await;
    let bed = H2Bed::start(&backend.backend_list()).await;
    let client = bed.client().await;

    // The client sends its body only after a 100 Continue, which the backend gives
    // when it sees the request's `Expect` (the test client waits 5 s for it).
    let body = vec![3u8; 5000];
    let req = Request::post("https://a.test/upload")
        .header("expect", "100-continue")
        .header("content-length", body.len())
        .body(())
        .expect("request");
    let out = Outgoing {
        body,
        wait_continue: true,
        ..Outgoing::default()
    };
    let reply = client.exchange(req, out).await;
    assert_eq!(reply.interim[0].0, StatusCode::CONTINUE);
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&reply.body), "got 5000 bytes");
    let upload = backend.seen().pop().expect("upload seen");
    assert_eq!(upload.head.get("expect"), Some("100-continue"));

    let req = Request::get("https://a.test/early")
        .body(())
        .expect("request");
    let reply = client.exchange(req, Outgoing::default()).await;
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (StatusCode::OK, &b"final"[..])
    );
    assert_eq!(reply.interim.len(), 1, "{:?}", reply.interim);
    let (status, fields) = &reply.interim[0];
    assert_eq!(*status, StatusCode::EARLY_HINTS);
    assert_eq!(header(fields, "link"), Some(&b"</a.css>; rel=preload"[..]));
    // The connection still serves.
    let (status, _, body) = client.get("/after").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"path=/after"[..])
    );
}

/// A backend that refuses every request at its head (`417`, without reading a
/// body or sending `100 Continue`) and keeps its connections open; counts them.
async fn refusing_backend() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                loop {
                    let Ok(n) = tcp.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        seen.clear();
                        let refusal =
                            b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n";
                        if tcp.write_all(refusal).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, conns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_final_answer_before_100_continue_leaves_the_body_unsent() {
    let (addr, conns) = refusing_backend().await;
    let bed = H2Bed::start(&format!("[{{ addr = \"{addr}\" }}]")).await;
    let client = bed.client().await;
    for round in 1..=2 {
        let req = Request::put("https://a.test/big-upload")
            .header("expect", "100-continue")
            .header("content-length", 4000)
            .body(())
            .expect("request");
        let out = Outgoing {
            body: vec![1u8; 4000],
            wait_continue: true,
            ..Outgoing::default()
        };
        let reply = client.exchange(req, out).await;
        assert_eq!(reply.status, StatusCode::EXPECTATION_FAILED);
        assert!(reply.interim.is_empty(), "{:?}", reply.interim);
        // The backend still waits for a body it will never get: its connection
        // cannot carry the next request.
        assert_eq!(conns.load(Ordering::SeqCst), round, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_answered_as_an_unrouted_request() {
    let backend = RawBackend::start(script).await;
    let bed = H2Bed::start(&backend.backend_list()).await;
    let client = bed.client().await;
    let req = Request::builder()
        .method(Method::CONNECT)
        .uri("backend.example:443")
        .body(())
        .expect("request");
    let reply = client.exchange(req, Outgoing::default()).await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(String::from_utf8_lossy(&reply.body), "no route\n");
    assert!(backend.seen().is_empty(), "nothing reaches a backend");
    let (status, _, _) = client.get("/after").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_that_turns_to_tls_is_served_on_an_open_connection() {
    let plain = RawBackend::start(|s| Action::ok(format!("plain {}", s.path()))).await;
    let secure = RawBackend::start(|s| match s.path() {
        "/upload" => Action::ok(format!("secure got {}", s.body.len())),
        path => Action::ok(format!("secure {path}")),
    })
    .await;
    let bed = H2Bed::start(&plain.backend_list()).await;
    let before = bed.client().await;
    let (status, _, body) = before.get("/one").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, &b"plain /one"[..])
    );

    let front = tls_front(&bed.ca, secure.addr).await;
    let ca = bed.ca.write(bed.dir.path());
    let tls = format!(
        "tls = {{ ca = \"{}\", server_name = \"backend.test\" }}",
        ca.display()
    );
    let backends = format!("[{{ addr = \"{front}\" }}]");
    let config = one_pool_config(&bed.ports, &bed.cert, &bed.key, &backends, &tls);
    bed.node.rewrite_config(&config);
    bed.node.signal(Signal::SIGHUP);
    // A new connection shows when the reload took effect.
    let started = Instant::now();
    loop {
        let (_, _, body) = bed.client().await.get("/probe").await;
        if body == b"secure /probe" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "reload not applied: {}",
            bed.node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The connection opened before the change reaches the TLS backend too.
    let (status, _, body) = before.get("/two").await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (StatusCode::OK, "secure /two")
    );
    let req = Request::post("https://a.test/upload")
        .header("content-length", 3000)
        .body(())
        .expect("request");
    let (status, _, body) = before.send(req, &[1u8; 3000], true).await;
    assert_eq!(
        (status, String::from_utf8_lossy(&body).as_ref()),
        (StatusCode::OK, "secure got 3000")
    );
    assert_eq!(secure.seen().len(), 3, "{:?}", secure.heads());
}
