//! HTTP/2 clients over TLS (ALPN h2) end to end, through a real fulcrum process to
//! scripted HTTP/1.1 backends: concurrent streams on one connection over pooled
//! backend connections, what the backend sees (authority as `Host`, forwarding
//! headers, joined cookies, no hop-by-hop fields), request bodies with and without a
//! length, every response framing (length, chunked with trailers, close-delimited,
//! HEAD, a body larger than the client's window), hop-by-hop response fields removed,
//! a dead backend retried elsewhere, and malformed requests answered locally.

use fulcrum_tests::h2client::H2Bed;
use fulcrum_tests::raw_backend::{Action, After, RawBackend, Seen};
use http::{Request, StatusCode};

const BIG: usize = 3 * 1024 * 1024 + 17;

/// Answers by path: framing cases, else `200` with `path=TARGET`.
fn script(seen: &Seen) -> Action {
    let path = seen.path().to_string();
    match path.as_str() {
        "/chunked" => Action::raw(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        ),
        "/close" => Action::raw("HTTP/1.1 200 OK\r\n\r\nuntil close").then(After::Close),
        "/big" => {
            let body: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
            Action::ok(body)
        }
        "/hop" => Action::raw(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nVia: 1.1 origin\r\nContent-Length: 2\r\n\r\nok",
        ),
        "/early" => Action::raw("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"),
        "/upload" => Action::ok(format!("got {} bytes", seen.body.len())),
        _ => Action::ok(format!("path={path}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_reach_pooled_backend_connections_as_http11() {
    let backend = RawBackend::start(script).await;
    let bed = H2Bed::start(&backend.backend_list()).await;
    let client = bed.client().await;

    // 50 streams in flight on one connection.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let c = client.clone();
        tasks.push(tokio::spawn(async move {
            let (status, _, body) = c.get(&format!("/n/{i}?q={i}")).await;
            (i, status, body)
        }));
    }
    for task in tasks {
        let (i, status, body) = task.await.expect("task");
        assert_eq!(status, 200);
        assert_eq!(String::from_utf8_lossy(&body), format!("path=/n/{i}?q={i}"));
    }
    let opened = backend.connections();
    assert!((1..=50).contains(&opened), "{opened} backend connections");
    // One at a time, the pooled connections carry them: no new connection each.
    for i in 0..20 {
        let (status, _, _) = client.get(&format!("/seq/{i}")).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        backend.connections(),
        opened,
        "sequential streams reuse pooled backend connections"
    );

    // What the backend saw, with the client's cookie fields and a TE field.
    let req = Request::get("https://a.test/headers")
        .header("cookie", "a=1")
        .header("cookie", "b=2")
        .header("te", "trailers")
        .header("x-forwarded-for", "6.6.6.6")
        .header("via", "1.0 edge")
        .body(())
        .expect("request");
    let (status, _, _) = client.send(req, &[], false).await;
    assert_eq!(status, 200);
    let seen = backend.seen();
    let head = &seen.last().expect("seen").head;
    assert_eq!(head.start_line, "GET /headers HTTP/1.1");
    assert_eq!(head.get_all("host"), ["a.test"]);
    assert_eq!(head.get_all("cookie"), ["a=1; b=2"]);
    assert_eq!(head.get_all("x-forwarded-for"), ["127.0.0.1"], "{head:?}");
    assert_eq!(head.get("x-forwarded-proto"), Some("https"));
    assert_eq!(head.get("x-forwarded-host"), Some("a.test"));
    assert_eq!(head.get("via"), Some("1.0 edge, 2 fulcrum"));
    assert!(!head.has("te"), "{head:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_and_every_response_framing() {
    let backend = RawBackend::start(script).await;
    let bed = H2Bed::start(&backend.backend_list()).await;
    let client = bed.client().await;

    let (status, _, body) = client.get("/chunked").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"hello world".as_slice())
    );
    let (status, _, body) = client.get("/close").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"until close".as_slice())
    );
    let (status, _, body) = client.get("/early").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"final".as_slice())
    );
    let (status, headers, body) = client.get("/big").await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), BIG);
    assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8));
    assert_eq!(
        headers.get("content-length").map(|v| v.as_bytes()),
        Some(BIG.to_string().as_bytes())
    );
    let head = Request::head("https://a.test/big")
        .body(())
        .expect("request");
    let (status, _, body) = client.send(head, &[], false).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));

    let (status, headers, body) = client.get("/hop").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"ok".as_slice())
    );
    assert_eq!(
        headers.get("x-kept").map(|v| v.as_bytes()),
        Some(b"yes".as_slice())
    );
    for gone in ["x-secret", "keep-alive", "connection"] {
        assert!(!headers.contains_key(gone), "{gone} relayed: {headers:?}");
    }
    assert_eq!(
        headers.get("via").map(|v| v.as_bytes()),
        Some(b"1.1 origin, 1.1 fulcrum".as_slice())
    );

    // A body with a length, and one without (DATA frames only: chunked upstream).
    let payload: Vec<u8> = (0..100_000).map(|i| (i % 7) as u8).collect();
    let with_length = Request::post("https://a.test/upload")
        .header("content-length", payload.len())
        .body(())
        .expect("request");
    let (status, _, body) = client.send(with_length, &payload, true).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), "got 100000 bytes");
    let streamed = Request::post("https://a.test/upload")
        .body(())
        .expect("request");
    let (status, _, body) = client.send(streamed, &payload, true).await;
    assert_eq!(status, 200);
    assert_eq!(String::from_utf8_lossy(&body), "got 100000 bytes");
    let uploads: Vec<Seen> = backend
        .seen()
        .into_iter()
        .filter(|s| s.path() == "/upload")
        .collect();
    assert_eq!(uploads.len(), 2);
    assert_eq!(uploads[0].head.get("content-length"), Some("100000"));
    assert_eq!(uploads[1].head.get("transfer-encoding"), Some("chunked"));
    assert!(uploads.iter().all(|s| s.body == payload));

    // The connection still serves after all of that.
    let (status, _, body) = client.get("/after").await;
    assert_eq!(
        (status, body.as_slice()),
        (StatusCode::OK, b"path=/after".as_slice())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_backend_is_retried_elsewhere_and_bad_requests_answered_locally() {
    let live = RawBackend::start(script).await;
    // A port nothing listens on: every connect is refused.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let list = format!(
        "[{{ addr = \"{dead_addr}\" }}, {{ addr = \"{}\" }}]",
        live.addr
    );
    let bed = H2Bed::start(&list).await;
    let client = bed.client().await;
    for i in 0..10 {
        let (status, _, body) = client.get(&format!("/r/{i}")).await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(String::from_utf8_lossy(&body), format!("path=/r/{i}"));
    }
    assert_eq!(live.seen().len(), 10);

    // A path with a malformed escape: 400 from fulcrum, nothing sent upstream.
    let (status, _, body) = client.get("/a%zz").await;
    assert_eq!(status, 400);
    assert_eq!(String::from_utf8_lossy(&body), "bad request\n");
    assert_eq!(live.seen().len(), 10);
    // `Host` that disagrees with `:authority`: 400 too.
    let req = Request::get("https://a.test/x")
        .header("host", "b.test")
        .body(())
        .expect("request");
    let (status, _, _) = client.send(req, &[], false).await;
    assert_eq!(status, 400);
    assert_eq!(live.seen().len(), 10);
}
