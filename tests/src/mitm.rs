//! A forwarding man-in-the-middle for peer connections: every connection to its address
//! is forwarded to `upstream`; while armed, the first occurrence of `from` in the
//! client-to-server bytes is rewritten to `to` (same length, so the framing stays valid
//! and only the content is forged), once per arming. It records what it did and whether
//! the server hung up on a connection it had tampered with.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Shared by every forwarder of a test: one arming alters one frame in total.
#[derive(Default)]
pub struct Tamper {
    pub armed: AtomicBool,
    /// Frames altered so far.
    pub altered: AtomicUsize,
    /// Tampered connections the server side closed.
    pub closed_by_server: AtomicUsize,
}

/// A running forwarder; it stops when dropped.
pub struct Mitm {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Mitm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Mitm {
    /// Listens on `listen` (e.g. `127.0.0.1:0`) and forwards to `upstream`.
    pub async fn start(
        listen: &str,
        upstream: SocketAddr,
        from: &'static [u8],
        to: &'static [u8],
        tamper: Arc<Tamper>,
    ) -> Mitm {
        assert_eq!(from.len(), to.len(), "same length keeps the framing");
        let listener = TcpListener::bind(listen).await.expect("bind mitm");
        let addr = listener.local_addr().expect("mitm addr");
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                conns.spawn(forward(client, server, from, to, tamper.clone()));
            }
        });
        Mitm { addr, task }
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    from: &'static [u8],
    to: &'static [u8],
    tamper: Arc<Tamper>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let tampered = Arc::new(AtomicBool::new(false));
    let (seen, t) = (tampered.clone(), tamper.clone());
    let down = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = sr.read(&mut buf).await {
            if n == 0 || cw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        if seen.load(Ordering::SeqCst) {
            t.closed_by_server.fetch_add(1, Ordering::SeqCst);
        }
    });
    // A marker split across two reads is missed; the test sends it again (retries).
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = cr.read(&mut buf).await {
        if n == 0 {
            break;
        }
        let chunk = &mut buf[..n];
        if let Some(at) = chunk.windows(from.len()).position(|w| w == from) {
            if tamper.armed.swap(false, Ordering::SeqCst) {
                chunk[at..at + to.len()].copy_from_slice(to);
                tampered.store(true, Ordering::SeqCst);
                tamper.altered.fetch_add(1, Ordering::SeqCst);
            }
        }
        if sw.write_all(chunk).await.is_err() {
            break;
        }
    }
    let _ = down.await;
}
