//! A route's `timeout` bounds the client's upload for the whole exchange, also after
//! the backend answered (issue 19 item 5): a real fulcrum process, a backend that
//! answers `200 ok` as soon as it has the request head and then reads whatever body
//! bytes come until the connection ends, and clients that keep uploading a byte every
//! 100 ms (10 s in all) after they got that answer. With a 800 ms route timeout the
//! upload is cut off within a few seconds — the backend connection closed, the client
//! connection closed or its HTTP/2 stream reset — on hyper's path (a chunked HTTP/1.1
//! upload, which the fast path hands to hyper; an h2c upload) as on the HTTP/1.1 fast
//! path (a `Content-Length` upload, which stops at the backend's early answer).

use fulcrum_tests::config::{one_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The client's pace and how long it would go on uploading if nothing stopped it.
const DRIP: Duration = Duration::from_millis(100);
const DRIPS: usize = 100;
/// How long a cut-off may take at most (the route's limit is 800 ms): a liveness bound
/// well below the 10 s the client would upload for.
const CUT_WITHIN: Duration = Duration::from_secs(5);

/// A backend that answers at once and then drains the upload; it records how long
/// each connection lasted and how many bytes came after the head.
struct EarlyAnswer {
    addr: String,
    /// (connection lifetime, bytes after the head), per ended connection.
    ended: Arc<Mutex<Vec<(Duration, usize)>>>,
    task: JoinHandle<()>,
}

impl EarlyAnswer {
    async fn start() -> EarlyAnswer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let ended = Arc::new(Mutex::new(Vec::new()));
        let record = ended.clone();
        let task = tokio::spawn(async move {
            // A few connections per test: a bound on the accept loop.
            for _ in 0..16 {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let bytes = answer_then_drain(s).await;
                    record
                        .lock()
                        .expect("record")
                        .push((started.elapsed(), bytes));
                });
            }
        });
        EarlyAnswer { addr, ended, task }
    }

    /// The connections that ended, as (lifetime, body bytes).
    fn ended(&self) -> Vec<(Duration, usize)> {
        self.ended.lock().expect("record").clone()
    }
}

impl Drop for EarlyAnswer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head, answers `200 ok`, then reads until the connection ends
/// (bounded: the client stops after 10 s anyway); the bytes read after the head.
async fn answer_then_drain(mut s: TcpStream) -> usize {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return 0,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    };
    let mut body = got.len() - head_end;
    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .await
        .is_err()
    {
        return body;
    }
    let drain = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body += n,
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(15), drain).await;
    body
}

/// How a client's upload ended.
#[derive(Debug)]
struct Upload {
    /// From the request's start to fulcrum ending it (a close, a reset).
    cut_after: Option<Duration>,
    /// Body bytes sent after the answer came.
    after_answer: usize,
}

/// HTTP/1.1: the head with `framing`, the answer, then a byte (`piece`) every 100 ms
/// until a write fails or fulcrum closes the connection.
async fn h1_upload(addr: &str, framing: &str, piece: &[u8]) -> Upload {
    let started = Instant::now();
    let s = TcpStream::connect(addr).await.expect("connect");
    let (mut rx, mut tx) = s.into_split();
    let head = format!("POST /up HTTP/1.1\r\nHost: a\r\n{framing}\r\n\r\n");
    tx.write_all(head.as_bytes()).await.expect("head");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(CUT_WITHIN, rx.read(&mut buf))
            .await
            .expect("answered in time")
            .expect("read");
        assert!(n > 0, "closed before the answer: {answer:?}");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    let closed = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return Instant::now(),
                Ok(_) => {}
            }
        }
    });
    let mut after_answer = 0;
    for _ in 0..DRIPS {
        tokio::time::sleep(DRIP).await;
        if closed.is_finished() || tx.write_all(piece).await.is_err() {
            break;
        }
        after_answer += 1;
    }
    let cut_at = match closed.is_finished() {
        true => closed.await.ok(),
        false => None,
    };
    Upload {
        cut_after: cut_at.map(|at| at - started),
        after_answer,
    }
}

/// h2c: a POST whose body is a byte every 100 ms after the answer, until the stream
/// is reset or a send fails.
async fn h2c_upload(addr: &str) -> Upload {
    let started = Instant::now();
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (sender, conn) = h2::client::handshake(tcp).await.expect("h2c handshake");
    tokio::spawn(conn);
    let req = http::Request::post("http://a/up")
        .body(())
        .expect("request");
    let mut ready = sender.ready().await.expect("ready");
    let (resp, mut tx) = ready.send_request(req, false).expect("send");
    tx.send_data(bytes::Bytes::from_static(b"x"), false)
        .expect("first byte");
    let resp = tokio::time::timeout(CUT_WITHIN, resp)
        .await
        .expect("answered in time")
        .expect("response");
    assert_eq!(resp.status(), 200);
    let mut after_answer = 0;
    let mut cut_after = None;
    for _ in 0..DRIPS {
        tokio::time::sleep(DRIP).await;
        let reset = std::future::poll_fn(|cx| match tx.poll_reset(cx) {
            std::task::Poll::Pending => std::task::Poll::Ready(false),
            std::task::Poll::Ready(_) => std::task::Poll::Ready(true),
        })
        .await;
        if reset
            || tx
                .send_data(bytes::Bytes::from_static(b"x"), false)
                .is_err()
        {
            cut_after = Some(started.elapsed());
            break;
        }
        after_answer += 1;
    }
    Upload {
        cut_after,
        after_answer,
    }
}

fn assert_cut(what: &str, upload: &Upload) {
    let cut = upload
        .cut_after
        .unwrap_or_else(|| panic!("{what}: the upload was never cut off: {upload:?}"));
    assert!(cut <= CUT_WITHIN, "{what}: cut off late: {upload:?}");
    assert!(
        upload.after_answer < DRIPS / 2,
        "{what}: the client went on uploading: {upload:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_timeout_ends_an_upload_that_goes_on_after_the_answer() {
    let backend = EarlyAnswer::start().await;
    let ports = Ports::new();
    let balance = format!(
        "[[listener]]\nname = \"web\"\nbind = \"{}\"\nheader_read_timeout = \"2s\"\n\n\
         [[route]]\nlistener = \"web\"\npool = \"early\"\ntimeout = \"800ms\"\n\n\
         [[pool]]\nname = \"early\"\nbackends = [{{ addr = \"{}\" }}]\n",
        ports.web, backend.addr
    );
    let node = Fulcrum::start(&one_node(&ports.admin, "10s", "", &balance), &ports.admin).await;

    // hyper's path: a chunked upload over HTTP/1.1, then over h2c.
    let chunked = h1_upload(&ports.web, "Transfer-Encoding: chunked", b"1\r\nx\r\n").await;
    assert_cut("HTTP/1.1 chunked", &chunked);
    let h2c = h2c_upload(&ports.web).await;
    assert_cut("h2c", &h2c);
    // The fast path, for comparison: a `Content-Length` upload.
    let sized = h1_upload(&ports.web, "Content-Length: 1000", b"x").await;
    assert_cut("HTTP/1.1 Content-Length", &sized);

    // Every backend connection that carried an upload ended within the bound too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ended = backend.ended();
    assert_eq!(ended.len(), 3, "{ended:?}");
    for (lifetime, bytes) in &ended {
        assert!(
            *lifetime <= CUT_WITHIN,
            "a backend connection lasted: {ended:?}"
        );
        assert!(*bytes < 200, "the upload was not cut off: {ended:?}");
    }
    drop(node);
}
