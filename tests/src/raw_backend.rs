//! A scripted raw HTTP/1.1 backend: a tokio `TcpListener` on 127.0.0.1:0 whose answers
//! are bytes written verbatim, so tests control framing exactly (chunked with
//! trailers, close-delimited, `Connection: close`, bodiless 204/304/HEAD, silent
//! closes of idle keep-alive connections).
//!
//! Each connection reads requests with `wire::WireConn` (body framed by chunked or
//! `Content-Length`; `Expect: 100-continue` answered with a `100 Continue` first),
//! records them as `Seen` (with a per-backend connection number) and asks the test's
//! script for an `Action`: the bytes to write and what to do with the connection
//! afterwards. Connections and per-connection request counts are bounded.

use crate::wire::{request_framing, Head, WireConn};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// How long a backend connection waits for the next request before closing.
const IDLE: Duration = Duration::from_secs(60);
/// Requests served on one connection at most.
const MAX_REQUESTS_PER_CONN: usize = 1000;

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Number of the backend connection it came on (0, 1, ... in accept order).
    pub conn: usize,
    pub head: Head,
    pub body: Vec<u8>,
    /// Trailer fields of a chunked body, as sent.
    pub trailers: Vec<(String, String)>,
}

impl Seen {
    pub fn path(&self) -> &str {
        self.head.target()
    }
}

/// A request whose head arrived but whose body never did in full: the proxy closed
/// the connection, or left it silent, in the middle of the body.
#[derive(Debug, Clone)]
pub struct Broken {
    /// Number of the backend connection it came on.
    pub conn: usize,
    pub target: String,
    /// Why the body ended: `UnexpectedEof` when the proxy closed the connection,
    /// `TimedOut` when it left it open and silent, `InvalidData` for bad framing.
    pub ended: std::io::ErrorKind,
}

/// What happens to the connection after an answer.
#[derive(Debug, Clone, Copy)]
pub enum After {
    KeepOpen,
    Close,
    /// Close silently after a delay (no `Connection: close` was sent).
    CloseAfter(Duration),
}

/// The backend's answer to one request.
#[derive(Debug, Clone)]
pub struct Action {
    pub bytes: Vec<u8>,
    pub after: After,
}

impl Action {
    /// `200 OK` with `Content-Length` and `body`; the connection stays open.
    pub fn ok(body: impl AsRef<[u8]>) -> Action {
        let body = body.as_ref();
        let mut bytes =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        bytes.extend_from_slice(body);
        Action::raw(bytes)
    }

    /// Exactly these bytes; the connection stays open.
    pub fn raw(bytes: impl Into<Vec<u8>>) -> Action {
        Action {
            bytes: bytes.into(),
            after: After::KeepOpen,
        }
    }

    pub fn then(mut self, after: After) -> Action {
        self.after = after;
        self
    }
}

type Script = Arc<dyn Fn(&Seen) -> Action + Send + Sync>;

/// A running scripted backend; dropping it closes the listener and its connections.
pub struct RawBackend {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    heads: Arc<Mutex<Vec<(usize, String)>>>,
    broken: Arc<Mutex<Vec<Broken>>>,
    conns: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl RawBackend {
    /// Starts a backend that answers every request with `script(&request)`.
    pub async fn start(script: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw backend");
        let addr = listener.local_addr().expect("local addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let broken = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let log = Log {
            seen: seen.clone(),
            heads: heads.clone(),
            broken: broken.clone(),
        };
        let task = tokio::spawn(accept_loop(listener, Arc::new(script), log, conns.clone()));
        RawBackend {
            addr,
            seen,
            heads,
            broken,
            conns,
            task,
        }
    }

    /// A backend that answers `200` with body `path=TARGET` and keeps connections open.
    pub async fn echo_path() -> RawBackend {
        RawBackend::start(|s| Action::ok(format!("path={}", s.path()))).await
    }

    /// Every request received so far, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Every request head received, complete body or not: (connection, target).
    pub fn heads(&self) -> Vec<(usize, String)> {
        self.heads.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Requests whose body never arrived in full, in arrival order.
    pub fn broken(&self) -> Vec<Broken> {
        self.broken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// `backends = [...]` naming this backend, for a pool config.
    pub fn backend_list(&self) -> String {
        format!("[{{ addr = \"{}\" }}]", self.addr)
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where connections record what they received.
#[derive(Clone)]
struct Log {
    seen: Arc<Mutex<Vec<Seen>>>,
    heads: Arc<Mutex<Vec<(usize, String)>>>,
    broken: Arc<Mutex<Vec<Broken>>>,
}

async fn accept_loop(listener: TcpListener, script: Script, log: Log, conns: Arc<AtomicUsize>) {
    // Aborting the accept task drops the set, which aborts every connection task.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let n = conns.fetch_add(1, Ordering::SeqCst);
        connections.spawn(serve(
            WireConn::new(stream, IDLE),
            n,
            script.clone(),
            log.clone(),
        ));
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(mut conn: WireConn, n: usize, script: Script, log: Log) {
    for _ in 0..MAX_REQUESTS_PER_CONN {
        let Ok(Some(head)) = conn.read_head().await else {
            return;
        };
        let Ok(framing) = request_framing(&head) else {
            let _ = conn
                .send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await;
            return;
        };
        if head.has_token("expect", "100-continue")
            && conn.send(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err()
        {
            return;
        }
        let target = head.target().to_string();
        log.heads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((n, target.clone()));
        let msg = match conn.read_body(head, framing).await {
            Ok(msg) => msg,
            Err(e) => {
                let broken = Broken {
                    conn: n,
                    target,
                    ended: e.kind(),
                };
                log.broken
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(broken);
                return;
            }
        };
        let request = Seen {
            conn: n,
            head: msg.head,
            body: msg.body,
            trailers: msg.trailers,
        };
        let action = script(&request);
        log.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request);
        if conn.send(&action.bytes).await.is_err() {
            return;
        }
        match action.after {
            After::KeepOpen => {}
            After::Close => {
                let _ = conn.stream.shutdown().await;
                return;
            }
            After::CloseAfter(delay) => {
                tokio::time::sleep(delay).await;
                let _ = conn.stream.shutdown().await;
                return;
            }
        }
    }
}
