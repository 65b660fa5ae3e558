//! Hostile or careless backends through a real fulcrum process (issue 22, response
//! side): each test makes a backend send the bytes and checks what the client got,
//! on the hand-written HTTP/1.1 path and on the hyper path (reached with a chunked
//! request body, which the fast path hands over).
//!
//! Classes: a backend answering an upload early and closing (must be relayed, not
//! ejected), `Connection` naming the framing headers (must not desync the client
//! connection), bytes a backend sends after a complete response (must not reach the
//! next client), `Content-Length` next to chunked, and malformed chunk framing.

use fulcrum_tests::config::Ports;
use fulcrum_tests::hostile::{metric, read_until_quiet, send_raw, EarlyAnswerBackend};
use fulcrum_tests::process::Fulcrum;
use fulcrum_tests::raw_backend::{Action, RawBackend};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const QUIET: Duration = Duration::from_millis(1500);

/// A one-node config: listener `web`, one route to pool `app` with `backends`
/// (a TOML list).
fn config(ports: &Ports, backends: &str) -> String {
    format!(
        "[node]\nid = 1\nadmin = \"{}\"\ndata_dir = \"/tmp\"\naccess_log = \"off\"\n\n\
         [[listener]]\nname = \"web\"\nbind = \"{}\"\nheader_read_timeout = \"2s\"\n\n\
         [[route]]\nlistener = \"web\"\npool = \"app\"\n\n\
         [[pool]]\nname = \"app\"\nalgorithm = \"round-robin\"\nbackends = {backends}\n",
        ports.admin, ports.web
    )
}

/// Sends a `len`-byte upload (`chunked`: as one chunk, which sends it to hyper)
/// while reading what comes back, as a client that watches for an early answer
/// does. Returns what the client read.
async fn upload(addr: &str, path: &str, len: usize, chunked: bool) -> String {
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = s.into_split();
    let head = if chunked {
        format!("POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{len:x}\r\n")
    } else {
        format!("POST {path} HTTP/1.1\r\nHost: a\r\nContent-Length: {len}\r\n\r\n")
    };
    let writer = tokio::spawn(async move {
        if wr.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        let block = vec![b'u'; 16 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(block.len());
            if wr.write_all(&block[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        if chunked {
            let _ = wr.write_all(b"\r\n0\r\n\r\n").await;
        }
    });
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => out.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    writer.abort();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_an_upload_is_relayed_and_ejects_nobody() {
    let (one, two) = (
        EarlyAnswerBackend::start("one", 1024).await,
        EarlyAnswerBackend::start("two", 1024).await,
    );
    let ports = Ports::new();
    let backends = format!(
        "[{{ addr = \"{}\" }}, {{ addr = \"{}\" }}]",
        one.addr, two.addr
    );
    let _node = Fulcrum::start(&config(&ports, &backends), &ports.admin).await;
    for i in 0..8 {
        let chunked = i % 2 == 1;
        let kind = if chunked { "hyper" } else { "fast" };
        let reply = upload(&ports.web, "/c/upload", 4 * 1024 * 1024, chunked).await;
        assert!(
            reply.starts_with("HTTP/1.1 413"),
            "{kind} upload {i}: the backend's answer was not relayed: {reply:?}"
        );
        assert!(reply.ends_with("too large"), "{kind} upload {i}: {reply:?}");
    }
    assert_eq!(one.refused() + two.refused(), 8);
    assert_eq!(
        metric(&ports.admin, "fulcrum_backend_ejections_total", "").await,
        0.0
    );
    // Both backends still take their share.
    for _ in 0..20 {
        let out = send_raw(
            &ports.web,
            b"GET /c/small HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            QUIET,
        )
        .await;
        assert_eq!(out.status(), Some(200), "{}", out.text());
    }
    assert_eq!(
        (one.served(), two.served()),
        (10, 10),
        "round robin skewed by ejection"
    );
}

/// A response whose `Connection` header names its own framing header.
fn listing_framing(body: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "content-length",
            format!(
                "HTTP/1.1 200 OK\r\nConnection: content-length\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ),
        ),
        (
            "transfer-encoding",
            format!(
                "HTTP/1.1 200 OK\r\nConnection: transfer-encoding, keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            ),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_named_in_connection_never_desync_the_client() {
    for (what, answer) in listing_framing("first-body") {
        let b = RawBackend::start(move |_| Action::raw(answer.clone())).await;
        let ports = Ports::new();
        let _node = Fulcrum::start(&config(&ports, &b.backend_list()), &ports.admin).await;
        // Two requests on one kept-alive client connection: two complete responses,
        // each framed so that the second is not read as the first one's body.
        let two = "GET /c/1 HTTP/1.1\r\nHost: a\r\n\r\nGET /c/2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let chunked_two = "POST /c/1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
                           POST /c/2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        for (path_kind, req) in [("fast", two), ("hyper", chunked_two)] {
            let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
            let responses = split_responses(&out.bytes);
            assert_eq!(
                responses,
                ["first-body", "first-body"],
                "{what} ({path_kind}): {:?}",
                out.text()
            );
        }
    }
}

/// Reads responses off `bytes` the way a client does (Content-Length, chunked,
/// or to the end); returns their bodies. A response with no framing header
/// swallows everything after it, as it would for a real client.
fn split_responses(bytes: &[u8]) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else {
            bodies.push(format!("<garbage {:?}>", String::from_utf8_lossy(rest)));
            break;
        };
        let head = String::from_utf8_lossy(&rest[..end]).to_ascii_lowercase();
        let mut body_rest = &rest[end + 4..];
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok());
        if head.contains("transfer-encoding: chunked") {
            let mut body = Vec::new();
            loop {
                let Some(line_end) = body_rest.windows(2).position(|w| w == b"\r\n") else {
                    bodies.push("<cut chunked>".into());
                    return bodies;
                };
                let size_text = String::from_utf8_lossy(&body_rest[..line_end]).into_owned();
                let Ok(size) = usize::from_str_radix(size_text.trim(), 16) else {
                    bodies.push(format!("<bad chunk size {size_text:?}>"));
                    return bodies;
                };
                body_rest = &body_rest[line_end + 2..];
                if size == 0 {
                    body_rest = body_rest.get(2..).unwrap_or_default();
                    break;
                }
                let Some(data) = body_rest.get(..size) else {
                    bodies.push("<cut chunk>".into());
                    return bodies;
                };
                body.extend_from_slice(data);
                body_rest = body_rest.get(size + 2..).unwrap_or_default();
            }
            bodies.push(String::from_utf8_lossy(&body).into_owned());
            rest = body_rest;
        } else if let Some(n) = length {
            let n = n.min(body_rest.len());
            bodies.push(String::from_utf8_lossy(&body_rest[..n]).into_owned());
            rest = &body_rest[n..];
        } else {
            bodies.push(String::from_utf8_lossy(body_rest).into_owned());
            break;
        }
    }
    bodies
}

/// A backend that answers every request with `200 good`, and after the first
/// answer on each connection sends, `late` later, a second response nobody asked
/// for.
async fn late_bytes_backend(late: Duration) -> (String, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((mut s, _)) = listener.accept().await {
            conns.spawn(async move {
                let mut buf = Vec::new();
                for n in 0..100 {
                    if !read_request_head(&mut s, &mut buf).await {
                        return;
                    }
                    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ngood";
                    if s.write_all(reply).await.is_err() {
                        return;
                    }
                    if n == 0 {
                        tokio::time::sleep(late).await;
                        let evil = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil";
                        if s.write_all(evil).await.is_err() {
                            return;
                        }
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    (addr, task)
}

/// Reads one body-less request head off `s` (buffering what follows it).
async fn read_request_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..i + 4);
            return true;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(30), s.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_a_backend_sends_late_never_reach_the_next_client() {
    let (addr, task) = late_bytes_backend(Duration::from_millis(150)).await;
    let ports = Ports::new();
    let backends = format!("[{{ addr = \"{addr}\" }}]");
    let _node = Fulcrum::start(&config(&ports, &backends), &ports.admin).await;
    for round in 0..3 {
        let first = send_raw(
            &ports.web,
            b"GET /c/first HTTP/1.1\r\nHost: a\r\n\r\n",
            Duration::from_millis(400),
        )
        .await;
        assert!(
            first.text().ends_with("good"),
            "round {round}: {}",
            first.text()
        );
        // The next client comes after the late bytes arrived on the pooled connection.
        let mut next = TcpStream::connect(&ports.web).await.expect("connect");
        next.write_all(b"GET /c/next HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let out = read_until_quiet(&mut next, Duration::from_millis(400)).await;
        assert!(
            !out.text().contains("evil"),
            "round {round}: unsolicited bytes relayed: {}",
            out.text()
        );
        assert!(
            out.text().ends_with("good"),
            "round {round}: {}",
            out.text()
        );
    }
    let dropped = metric(&ports.admin, "fulcrum_backend_unsolicited_total", "").await;
    assert!(dropped >= 3.0, "unsolicited connections counted: {dropped}");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_length_next_to_chunked_never_cuts_the_body() {
    let b = RawBackend::start(|_| {
        Action::raw(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n\
             b\r\nhello world\r\n0\r\n\r\n",
        )
    })
    .await;
    let ports = Ports::new();
    let _node = Fulcrum::start(&config(&ports, &b.backend_list()), &ports.admin).await;
    let fast = "GET /c/cl-te HTTP/1.1\r\nHost: a\r\n\r\n";
    let hyper = "POST /c/cl-te HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
    for (path_kind, req) in [("fast", fast), ("hyper", hyper)] {
        let out = send_raw(&ports.web, req.as_bytes(), QUIET).await;
        assert_eq!(
            split_responses(&out.bytes),
            ["hello world"],
            "{path_kind}: {:?}",
            out.text()
        );
        let head = out.text().to_ascii_lowercase();
        assert!(!head.contains("content-length"), "{path_kind}: {head}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_chunk_framing_is_a_502_and_never_relayed() {
    for (what, body) in [
        ("bare LF after size", "5\nhello\r\n0\r\n\r\n"),
        ("bare CR after size", "5\rhello\r\n0\r\n\r\n"),
        ("bare LF after data", "5\r\nhello\n0\r\n\r\n"),
        ("bad size", "zz\r\nhello\r\n0\r\n\r\n"),
    ] {
        let answer = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        let b = RawBackend::start(move |_| Action::raw(answer.clone())).await;
        let ports = Ports::new();
        let _node = Fulcrum::start(&config(&ports, &b.backend_list()), &ports.admin).await;
        let out = send_raw(
            &ports.web,
            b"GET /c/chunks HTTP/1.1\r\nHost: a\r\n\r\n",
            QUIET,
        )
        .await;
        assert_eq!(out.status(), Some(502), "{what} (fast): {:?}", out.text());
        assert!(
            !out.text().contains("hello"),
            "{what} (fast): {:?}",
            out.text()
        );
        // hyper decodes and re-frames; whatever it relays is well framed.
        let hyper =
            "POST /c/chunks HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        let out = send_raw(&ports.web, hyper.as_bytes(), QUIET).await;
        let text = out.text();
        assert!(
            !text.contains("5\nhello") && !text.contains("5\rhello"),
            "{what} (hyper): {text:?}"
        );
        assert!(!text.contains("hello\n0"), "{what} (hyper): {text:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_named_in_connection_never_desync_a_tls_client() {
    use fulcrum_tests::tls::{connect, verifying_config, TestCa};
    let ca = TestCa::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = ca.leaf(&["localhost"]).write(dir.path(), "web");
    for (what, answer) in listing_framing("tls-body") {
        let b = RawBackend::start(move |_| Action::raw(answer.clone())).await;
        let ports = Ports::new();
        let cfg = config(&ports, &b.backend_list()).replace(
            "header_read_timeout = \"2s\"\n",
            &format!(
                "header_read_timeout = \"2s\"\nprotocol = \"https\"\ntls = [{{ cert = \"{}\", key = \"{}\" }}]\n",
                cert.display(),
                key.display()
            ),
        );
        let _node = Fulcrum::start(&cfg, &ports.admin).await;
        let tls = verifying_config(&ca.pem(), &[b"http/1.1"]);
        let mut s = connect(&ports.web, "localhost", tls)
            .await
            .expect("tls connect");
        let two = "GET /c/1 HTTP/1.1\r\nHost: localhost\r\n\r\nGET /c/2 HTTP/1.1\r\nHost: localhost\r\n\r\n";
        s.write_all(two.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout(QUIET, s.read(&mut buf)).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(
            split_responses(&out),
            ["tls-body", "tls-body"],
            "{what}: {:?}",
            String::from_utf8_lossy(&out)
        );
    }
}
