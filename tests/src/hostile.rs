//! Hostile HTTP/1.1 input for tests: a corpus of attack requests, a way to send raw
//! bytes and see what came back, and a backend that answers early and closes.
//!
//! The corpus (`corpus`) is what the differential test sends to fulcrum and HAProxy
//! and what the panic test sends to a `panic = "abort"` build. Each case is one
//! connection's worth of bytes, a request the proxy should refuse or forward in one
//! well-defined way.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What came back on a connection after sending some bytes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub bytes: Vec<u8>,
    /// The peer closed (or reset) the connection within the wait.
    pub closed: bool,
}

impl Outcome {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Status of the first response, if the bytes start with a status line.
    pub fn status(&self) -> Option<u16> {
        statuses(&self.bytes).first().copied()
    }

    /// Status codes of every status line in the bytes, in order.
    pub fn statuses(&self) -> Vec<u16> {
        statuses(&self.bytes)
    }
}

fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.")
        .filter_map(|(i, _)| text.get(i + 9..i + 12))
        .filter_map(|code| code.parse().ok())
        .collect()
}

/// Sends `bytes` on a fresh connection to `addr`; reads until the peer closes, or
/// until nothing arrived for `quiet` (and at most 10 s in all).
pub async fn send_raw(addr: &str, bytes: &[u8], quiet: Duration) -> Outcome {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    read_until_quiet(&mut s, quiet).await
}

/// Reads from `s` until it closes or stays silent for `quiet` (10 s at most).
pub async fn read_until_quiet(s: &mut TcpStream, quiet: Duration) -> Outcome {
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        let wait = quiet.min(deadline.saturating_duration_since(Instant::now()));
        match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    Outcome { bytes: out, closed }
}

/// The value of metric `name` (summed over label sets whose labels contain
/// `label`, e.g. `result="client"`; "" for all) in a node's `/metrics`.
pub async fn metric(admin: &str, name: &str, label: &str) -> f64 {
    let url = format!("http://{admin}/metrics");
    let reply = crate::client::get(&crate::client::fresh_client(), &url, &[])
        .await
        .expect("metrics");
    reply
        .body
        .lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter(|l| {
            let series = l.split(' ').next().unwrap_or("");
            (series == name || series.starts_with(&format!("{name}{{"))) && series.contains(label)
        })
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// One hostile request: a name for the table, the bytes, and what class of attack.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
}

fn case(name: &'static str, bytes: impl Into<Vec<u8>>) -> Case {
    Case {
        name,
        bytes: bytes.into(),
    }
}

/// The hostile corpus. Every request names a path starting `/c/` so a recording
/// backend can tell corpus traffic from anything else.
pub fn corpus() -> Vec<Case> {
    let smuggled = "GET /c/smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    vec![
        case("plain GET (control)", "GET /c/ok HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        case("non-ASCII Host", "GET /c/host-utf8 HTTP/1.1\r\nHost: é.example.com\r\n\r\n".as_bytes()),
        case("non-UTF-8 Host", &b"GET /c/host-bytes HTTP/1.1\r\nHost: \xff\xfe.example.com\r\n\r\n"[..]),
        case("Host with space", "GET /c/host-space HTTP/1.1\r\nHost: a b\r\n\r\n"),
        case("Host with userinfo", "GET /c/host-user HTTP/1.1\r\nHost: user@shop.example\r\n\r\n"),
        case("Host with two ports", "GET /c/host-ports HTTP/1.1\r\nHost: shop.example:80:80\r\n\r\n"),
        case("no Host (HTTP/1.1)", "GET /c/no-host HTTP/1.1\r\n\r\n"),
        case("two Hosts", "GET /c/two-hosts HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        case("Connection: host", "GET /c/conn-host HTTP/1.1\r\nHost: shop.example\r\nConnection: host\r\n\r\n"),
        case("absolute-form vs Host", "GET http://admin.example/c/absolute HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        case("h2c upgrade", "GET /c/h2c HTTP/1.1\r\nHost: shop.example\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"),
        case("dot segments", "GET /c/public/../private HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        case("encoded dot segments", "GET /c/public/%2e%2e/private HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        case("bad percent escape", "GET /c/bad%zz HTTP/1.1\r\nHost: shop.example\r\n\r\n"),
        case("non-ASCII target", "GET /c/café HTTP/1.1\r\nHost: shop.example\r\n\r\n".as_bytes()),
        case("two Content-Lengths", "POST /c/two-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nabcde"),
        case("negative Content-Length", "POST /c/neg-cl HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
        case("space before colon", "GET /c/space HTTP/1.1\r\nHost : x\r\n\r\n"),
        case("obs-fold", "GET /c/fold HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n"),
        case("NUL in header value", &b"GET /c/nul HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"[..]),
        case("CL.TE", format!("POST /c/cl-te HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}", 5 + smuggled.len())),
        case("TE.CL", format!("POST /c/te-cl HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n", smuggled.len())),
        case("TE not chunked last", "POST /c/te-gzip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"),
        case("bad chunk size", "POST /c/chunk-size HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
        case("bare LF in chunk", "POST /c/chunk-lf HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"),
        case("chunk data without CRLF", "POST /c/chunk-end HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX0\r\n\r\n"),
        case("overflowing chunk size", "POST /c/chunk-big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\na\r\n0\r\n\r\n"),
        case("pipelined bad second", "GET /c/first HTTP/1.1\r\nHost: x\r\n\r\nGET /c/second HTTP/1.1\r\nHost : x\r\n\r\n"),
        case("HTTP/1.0 without Host", "GET /c/ten HTTP/1.0\r\n\r\n"),
        case("HTTP/1.0 bad Host", "GET /c/ten-bad HTTP/1.0\r\nHost: é\r\n\r\n".as_bytes()),
        case("HTTP/2 preface garbage", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00garbage"),
        case("huge header", format!("GET /c/huge HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(70_000))),
        case("CONNECT", "CONNECT admin.example:443 HTTP/1.1\r\nHost: admin.example:443\r\n\r\n"),
        case("LF-only request line", "GET /c/lf HTTP/1.1\nHost: x\n\n"),
    ]
}

/// A backend that answers `200 NAME` to small requests and, to a request announcing
/// a body over `limit` bytes, answers `413` at once and closes without reading the
/// body (as a server with a body limit, or Go's net/http, does). Counts what it saw.
pub struct EarlyAnswerBackend {
    pub addr: SocketAddr,
    small: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: JoinHandle<()>,
}

impl EarlyAnswerBackend {
    pub async fn start(name: &'static str, limit: usize) -> EarlyAnswerBackend {
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let small = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let (s, r) = (small.clone(), refused.clone());
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((sock, _)) = listener.accept().await {
                conns.spawn(early_answer(sock, name, limit, s.clone(), r.clone()));
                while conns.try_join_next().is_some() {}
            }
        });
        EarlyAnswerBackend {
            addr,
            small,
            refused,
            task,
        }
    }

    /// Requests answered 200 so far.
    pub fn served(&self) -> usize {
        self.small.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Uploads refused early so far.
    pub fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for EarlyAnswerBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn early_answer(
    mut sock: TcpStream,
    name: &'static str,
    limit: usize,
    small: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::Ordering;
    let mut buf = Vec::new();
    for _ in 0..1000 {
        let Some(end) = read_head(&mut sock, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let chunked = head.contains("transfer-encoding: chunked");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if chunked || length > limit {
            refused.fetch_add(1, Ordering::SeqCst);
            let _ = sock
                .write_all(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 9\r\nConnection: close\r\n\r\ntoo large")
                .await;
            // Dropped with the body unread: the kernel answers the rest with a reset.
            return;
        }
        // A small body (already read or still coming) is skipped.
        while buf.len() < end + length {
            let mut chunk = [0u8; 4096];
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        small.fetch_add(1, Ordering::SeqCst);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
            name.len()
        );
        if sock.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; returns its length (through the blank line).
async fn read_head(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i + 4);
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}
