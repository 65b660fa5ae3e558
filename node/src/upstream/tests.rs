//! The pool against a real loopback backend: reuse, stale connections, idle aging.

use super::*;
use crate::proxy::body;
use http_body_util::BodyExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request with `ok`; after `per_conn` responses it
/// closes the connection (without announcing it, as a keep-alive timeout does).
async fn backend(per_conn: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for _ in 0..per_conn {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut chunk = [0u8; 1024];
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if sock.write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted)
}

fn get() -> Request<ProxyBody> {
    Request::builder()
        .uri("/")
        .header("host", "test")
        .body(body::empty())
        .expect("request")
}

async fn fetch(up: &Upstream) -> Result<String, UpstreamError> {
    let (resp, lease) = up.send(0, get()).await?;
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    lease.release();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn upstream(addr: SocketAddr, idle: Duration) -> Upstream {
    Upstream::new(
        vec![addr],
        Duration::from_secs(1),
        idle,
        None,
        Counter::default(),
    )
}

#[tokio::test]
async fn reuses_a_released_connection() {
    let (addr, accepted) = backend(usize::MAX).await;
    let up = upstream(addr, Duration::from_secs(30));
    for _ in 0..5 {
        assert_eq!(fetch(&up).await.expect("request"), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_dropped_lease_closes_its_connection() {
    let (addr, accepted) = backend(usize::MAX).await;
    let up = upstream(addr, Duration::from_secs(30));
    let (_resp, lease) = up.send(0, get()).await.expect("request");
    drop(lease);
    assert_eq!(fetch(&up).await.expect("request"), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_the_backend_closed_costs_nothing() {
    let (addr, accepted) = backend(1).await;
    let up = upstream(addr, Duration::from_secs(30));
    for _ in 0..4 {
        assert_eq!(fetch(&up).await.expect("request"), "ok");
        // Let the connection task notice the close, as it would between requests.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn idle_connections_age_out() {
    let (addr, accepted) = backend(usize::MAX).await;
    let up = upstream(addr, Duration::from_millis(150));
    assert_eq!(fetch(&up).await.expect("request"), "ok");
    assert_eq!(up.inner.idle[0].len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        up.inner.idle[0].len(),
        0,
        "the reaper closes idle connections"
    );
    assert_eq!(fetch(&up).await.expect("request"), "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_refused_connect_is_a_connection_failure_that_ejects() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let up = upstream(addr, Duration::from_secs(30));
    let err = fetch(&up).await.expect_err("nothing listens");
    assert!(err.is_connection_failure(), "{err}");
    assert_eq!(
        err.attempt_failure(true),
        Some(crate::request::retry::AttemptFailure::Connect { timed_out: false }),
        "{err}"
    );
}

/// A backend that writes `greeting` on every new connection, unasked, after `delay`.
async fn chatty_backend(greeting: &'static [u8], delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = sock.write_all(greeting).await;
                tokio::time::sleep(Duration::from_secs(5)).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_connection_with_unsolicited_bytes_is_dropped_and_counted() {
    let addr = chatty_backend(b"HTTP/1.1 200 OK\r\n", Duration::from_millis(50)).await;
    let counter = Counter::default();
    let up = Upstream::new(
        vec![addr],
        Duration::from_secs(1),
        Duration::from_secs(30),
        None,
        counter.clone(),
    );
    let conn = up.open_raw(0).await.expect("connect");
    // Quiet when returned, so it is pooled.
    up.put_raw(0, conn);
    assert_eq!(up.inner.raw_idle[0].len(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        up.take_raw(0, Reuse::Checked).is_none(),
        "a connection that spoke unasked is never handed out"
    );
    assert_eq!(counter.get(), 1);
    // A quiet one is handed out and marked reused.
    let quiet = chatty_backend(b"late", Duration::from_secs(3)).await;
    let up = Upstream::new(
        vec![quiet],
        Duration::from_secs(1),
        Duration::from_secs(30),
        None,
        counter.clone(),
    );
    let conn = up.open_raw(0).await.expect("connect");
    up.put_raw(0, conn);
    assert!(up.take_raw(0, Reuse::Optimistic).is_some_and(|c| c.reused));
    assert_eq!(counter.get(), 1);
}
