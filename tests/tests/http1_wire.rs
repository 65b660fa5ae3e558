//! HTTP/1.1 wire behaviour of the proxy through a real fulcrum process, with raw
//! sockets on the client side and a scripted raw backend (`raw_backend`) where the
//! exact bytes matter: pipelining, chunked / close-delimited / bodiless responses,
//! large and `Expect: 100-continue` uploads, stale and closing backend connections,
//! hop-by-hop headers in responses, hostile request framing (smuggling), HTTP/1.0.
//!
//! These describe correct proxy behaviour, not an implementation: any HTTP/1.1 data
//! path must pass them. Header forwarding already covered by `proxy.rs`
//! (X-Forwarded-*, request `Via`, one Connection-listed request header) is not
//! repeated here.

use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::{Action, After, RawBackend};
use fulcrum_tests::wire::{Framing, Message, WireConn};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Starts one fulcrum node whose only pool is `backend`.
async fn proxy_to(backend: &RawBackend) -> (Fulcrum, Ports) {
    let ports = Ports::new();
    let cfg = single_node(&ports, &backend.backend_list(), "", "");
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    (node, ports)
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: wire.test\r\n\r\n")
}

/// Sends `req` on `conn` and reads the final response (panics on a wire error).
async fn exchange(conn: &mut WireConn, req: &str, to_head: bool) -> Message {
    conn.send(req.as_bytes()).await.expect("send request");
    conn.read_final_response(to_head)
        .await
        .unwrap_or_else(|e| panic!("no valid response to {req:?}: {e}"))
}

/// The checksum the upload backend reports: sum of bytes mod 2^32.
fn checksum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |s, &b| s.wrapping_add(u32::from(b)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_get_their_responses_in_order() {
    let backend = RawBackend::echo_path().await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let both = format!("{}{}", get_req("/first"), get_req("/second"));
    c.send(both.as_bytes()).await.unwrap();
    for want in ["path=/first", "path=/second"] {
        let r = c
            .read_final_response(false)
            .await
            .expect("pipelined response");
        assert_eq!(r.head.status(), 200, "{:?}", r.head);
        assert_eq!(r.body_text(), want, "responses out of order or mixed up");
    }
    // The connection is still in sync for a third request.
    let r = exchange(&mut c, &get_req("/third"), false).await;
    assert_eq!(r.body_text(), "path=/third");
}

/// A backend answering with several chunks (one with an extension, one of 16 KiB),
/// optionally followed by a trailer field; the body is `PATH:hello, world` + `big`.
async fn chunked_backend(big: &str, trailer: bool) -> RawBackend {
    let big = big.to_string();
    RawBackend::start(move |s| {
        let mut out = String::from("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n");
        out.push_str(if trailer {
            "Trailer: X-Checksum\r\n\r\n"
        } else {
            "\r\n"
        });
        for part in [s.path(), ":", "hello, ", "world"] {
            out.push_str(&format!("{:x}\r\n{part}\r\n", part.len()));
        }
        out.push_str(&format!("{:x};ext=1\r\n{big}\r\n", big.len()));
        out.push_str(if trailer {
            "0\r\nX-Checksum: 42\r\n\r\n"
        } else {
            "0\r\n\r\n"
        });
        Action::raw(out)
    })
    .await
}

/// Two GETs on one client connection against `chunked_backend`: exact decoded
/// bodies, and both requests on one backend connection.
async fn chunked_twice_on_one_connection(trailer: bool) {
    let big = "0123456789abcdef".repeat(1024);
    let backend = chunked_backend(&big, trailer).await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    for path in ["/one", "/two"] {
        let r = exchange(&mut c, &get_req(path), false).await;
        assert_eq!(r.head.status(), 200);
        assert_eq!(r.body_text(), format!("{path}:hello, world{big}"));
    }
    let seen = backend.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].conn, seen[1].conn, backend.connections()),
        (0, 0, 1),
        "the backend connection must be reused after a complete chunked body"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_is_decoded_and_backend_connection_reused() {
    chunked_twice_on_one_connection(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_response_with_trailer_keeps_backend_connection() {
    chunked_twice_on_one_connection(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_delimited_response_reaches_the_client_whole() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let sent = body.clone();
    let backend = RawBackend::start(move |_| {
        let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
        out.extend_from_slice(&sent);
        Action::raw(out).then(After::Close)
    })
    .await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    // Whatever framing the proxy picks (chunked, or close after the body), the
    // reader follows it; a proxy that neither delimits nor closes times out here.
    let r = exchange(&mut c, &get_req("/eof"), false).await;
    assert_eq!(r.head.status(), 200);
    assert_eq!(r.body.len(), body.len(), "framing {:?}", r.framing);
    assert!(r.body == body, "body corrupted");
    if r.framing != Framing::Close {
        // The response was delimited, so the client connection can go on.
        let again = exchange(&mut c, &get_req("/again"), false).await;
        assert_eq!(again.body.len(), body.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_and_expect_continue_arrive_intact() {
    let backend =
        RawBackend::start(|s| Action::ok(format!("{} {}", s.body.len(), checksum(&s.body)))).await;
    let (_node, ports) = proxy_to(&backend).await;
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 256) as u8).collect();
    let want = format!("{} {}", body.len(), checksum(&body));

    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: wire.test\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut req = head.into_bytes();
    req.extend_from_slice(&body);
    c.send(&req).await.unwrap();
    let r = c.read_final_response(false).await.unwrap();
    assert_eq!(r.head.status(), 200);
    assert_eq!(r.body_text(), want, "1 MiB body not delivered intact");

    // Expect: 100-continue on a fresh connection: the body goes only after the 100.
    let small = &body[..64 * 1024];
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let head = format!(
        "POST /expect HTTP/1.1\r\nHost: wire.test\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        small.len()
    );
    c.send(head.as_bytes()).await.unwrap();
    let interim = c.read_response(false).await.expect("a 100 Continue");
    assert_eq!(interim.head.status(), 100, "{:?}", interim.head);
    c.send(small).await.unwrap();
    let r = c.read_final_response(false).await.unwrap();
    assert_eq!(r.head.status(), 200);
    assert_eq!(
        r.body_text(),
        format!("{} {}", small.len(), checksum(small))
    );
    let paths: Vec<String> = backend
        .seen()
        .iter()
        .map(|s| s.path().to_string())
        .collect();
    assert_eq!(paths, ["/upload", "/expect"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_pooled_connections_cost_clients_nothing() {
    // Keep-alive in words, but every connection is closed 50 ms after its answer.
    let backend = RawBackend::start(|s| {
        Action::ok(format!("path={}", s.path())).then(After::CloseAfter(Duration::from_millis(50)))
    })
    .await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    for i in 0..30 {
        let path = format!("/stale/{i}");
        let r = exchange(&mut c, &get_req(&path), false).await;
        assert_eq!(
            r.head.status(),
            200,
            "request {i}: {:?} {}",
            r.head,
            r.body_text()
        );
        assert_eq!(r.body_text(), format!("path={path}"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(backend.seen().len(), 30);
    assert!(
        backend.connections() >= 30,
        "the backend really closed them"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_connection_close_on_every_response_is_absorbed() {
    let backend = RawBackend::start(|s| {
        let body = format!("path={}", s.path());
        Action::raw(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .then(After::Close)
    })
    .await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    for i in 0..20 {
        let path = format!("/closing/{i}");
        let r = exchange(&mut c, &get_req(&path), false).await;
        assert_eq!(r.head.status(), 200, "request {i}");
        assert_eq!(r.body_text(), format!("path={path}"));
        assert!(
            !r.head.has_token("connection", "close"),
            "the backend's Connection: close is hop-by-hop; the client connection stays"
        );
    }
    assert_eq!(
        backend.connections(),
        20,
        "a closed connection is never reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodiless_responses_keep_the_client_connection_in_sync() {
    let backend = RawBackend::start(|s| match (s.head.method(), s.path()) {
        ("HEAD", _) => Action::raw("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
        (_, "/204") => Action::raw("HTTP/1.1 204 No Content\r\n\r\n"),
        (_, "/304") => Action::raw("HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"),
        _ => Action::ok(format!("path={}", s.path())),
    })
    .await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let head = exchange(&mut c, "HEAD /h HTTP/1.1\r\nHost: wire.test\r\n\r\n", true).await;
    assert_eq!(head.head.status(), 200);
    if let Some(len) = head.head.get("content-length") {
        assert_eq!(len, "100", "HEAD must report the GET length, if any");
    }
    assert_eq!(
        exchange(&mut c, &get_req("/after-head"), false)
            .await
            .body_text(),
        "path=/after-head"
    );
    for (path, status) in [("/204", 204), ("/304", 304)] {
        let r = exchange(&mut c, &get_req(path), false).await;
        assert_eq!(r.head.status(), status);
        // Were a body (even an empty chunked one) sent, the next read would not
        // start with a status line.
        let next = format!("/after{path}");
        let r = exchange(&mut c, &get_req(&next), false).await;
        assert_eq!(r.body_text(), format!("path={next}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let backend = RawBackend::start(|_| {
        Action::raw(
            "HTTP/1.1 200 OK\r\nConnection: x-internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n\
             Via: 1.1 origin-cache\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
        )
    })
    .await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let req = "GET /hop HTTP/1.1\r\nHost: wire.test\r\nConnection: X-Secret, keep-alive\r\n\
               X-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Public: yes\r\n\r\n";
    let r = exchange(&mut c, req, false).await;
    assert_eq!((r.head.status(), r.body_text().as_str()), (200, "ok"));
    for name in ["x-internal", "keep-alive"] {
        assert!(!r.head.has(name), "response leaked {name}: {:?}", r.head);
    }
    assert!(
        !r.head.has_token("connection", "x-internal"),
        "{:?}",
        r.head
    );
    assert_eq!(r.head.get("x-kept"), Some("yes"));
    let via = r.head.get_all("via").join(", ");
    assert!(via.contains("fulcrum"), "Via: {via:?}");
    assert!(
        via.contains("origin-cache"),
        "the backend's Via is appended to: {via:?}"
    );

    let seen = backend.seen();
    let h = &seen[0].head;
    for name in ["x-secret", "keep-alive"] {
        assert!(!h.has(name), "backend received {name}: {h:?}");
    }
    assert!(!h.has_token("connection", "x-secret"), "{h:?}");
    assert_eq!(h.get("x-public"), Some("yes"));
    // The client connection is unaffected by what the backend said in Connection.
    assert_eq!(
        exchange(&mut c, &get_req("/again"), false)
            .await
            .head
            .status(),
        200
    );
}

/// Sends `bytes` on a fresh connection; returns what came back and whether the
/// proxy closed the connection within 5 s.
async fn hostile(addr: &str, bytes: &[u8]) -> (String, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_framing_is_refused_and_never_smuggled() {
    let backend = RawBackend::echo_path().await;
    let (_node, ports) = proxy_to(&backend).await;
    let bad: [(&str, &[u8]); 4] = [
        ("two Content-Lengths", b"POST /bad-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"),
        ("control byte in target", b"GET /bad-\x01 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("space before colon", b"GET /bad-space HTTP/1.1\r\nHost : x\r\n\r\n"),
        ("negative length", b"POST /bad-neg HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
    ];
    for (what, bytes) in bad {
        let (out, closed) = hostile(&ports.web, bytes).await;
        assert!(
            out.is_empty() || out.starts_with("HTTP/1.1 400") || out.starts_with("HTTP/1.0 400"),
            "{what}: expected 400 or a bare close, got {out:?}"
        );
        assert!(
            closed,
            "{what}: the connection must be closed after a framing error"
        );
    }
    // Smuggling, both ways round: Transfer-Encoding must win and the connection
    // must close, so neither trailing bytes nor chunk data become a request.
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let cl_te = format!(
        "POST /cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}",
        5 + smuggled.len()
    );
    let te_cl = format!(
        "POST /te-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    for (what, req) in [("CL.TE", cl_te), ("TE.CL", te_cl)] {
        let (out, closed) = hostile(&ports.web, req.as_bytes()).await;
        assert!(
            out.matches("HTTP/1.").count() <= 1,
            "{what}: answered more than one request: {out:?}"
        );
        assert!(
            closed,
            "{what}: must close after a message with both framings"
        );
    }
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    assert_eq!(
        exchange(&mut c, &get_req("/fine"), false).await.body_text(),
        "path=/fine"
    );
    for s in backend.seen() {
        // If forwarded at all, the body is the chunked one.
        match s.path() {
            "/cl-te" => assert!(s.body.is_empty(), "CL.TE body: {s:?}"),
            "/te-cl" => assert_eq!(s.body, smuggled.as_bytes(), "TE.CL body"),
            _ => {}
        }
        assert!(
            !s.path().contains("smuggled"),
            "smuggled request reached the backend: {s:?}"
        );
        assert!(
            !s.path().starts_with("/bad-"),
            "malformed request forwarded: {s:?}"
        );
        assert!(
            !(s.head.has("content-length") && s.head.has("transfer-encoding")),
            "forwarded both Content-Length and Transfer-Encoding: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_without_host_is_served_then_closed() {
    let backend = RawBackend::echo_path().await;
    let (_node, ports) = proxy_to(&backend).await;
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let r = exchange(&mut c, "GET /ten HTTP/1.0\r\n\r\n", false).await;
    assert_eq!(
        (r.head.status(), r.body_text().as_str()),
        (200, "path=/ten")
    );
    assert!(
        r.framing == Framing::Close || c.closed_within(Duration::from_secs(5)).await,
        "an HTTP/1.0 connection without keep-alive closes after the response"
    );
    let h = &backend.seen()[0].head;
    if h.version() == "HTTP/1.1" {
        assert_eq!(
            h.get_all("host").len(),
            1,
            "HTTP/1.1 upstream needs one Host: {h:?}"
        );
    }

    // With keep-alive asked for, the proxy may keep the connection (then with a
    // delimited response and a working second request) or close it.
    let mut c = WireConn::connect(&ports.web).await.unwrap();
    let ka = "GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let r = exchange(&mut c, ka, false).await;
    assert_eq!(r.body_text(), "path=/ka");
    if r.head.has_token("connection", "keep-alive") {
        assert_ne!(
            r.framing,
            Framing::Close,
            "kept alive without a delimited body"
        );
        assert_eq!(exchange(&mut c, ka, false).await.body_text(), "path=/ka");
    } else if r.framing != Framing::Close {
        assert!(
            c.closed_within(Duration::from_secs(5)).await,
            "neither kept alive nor closed"
        );
    }
}
