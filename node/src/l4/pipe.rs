//! Copying bytes both ways between client and backend, with an idle timeout.
//!
//! `tokio::io::copy_bidirectional` does the copying (it also forwards a half-close: when
//! one side shuts its write half, the other side's write half is shut too, which
//! protocols like "send request, close, read reply" rely on). The idle watchdog counts
//! I/O on the client side — every byte either way passes through it — and closes the
//! pair when nothing moved for `idle_timeout`. It ticks at a quarter of the timeout, so
//! the close happens between 1 and 1.25 timeouts after the last byte.

use crate::conn_io::ActivityIo;
use crate::conn_watch::ConnActivity;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

/// How a piped connection ended.
#[derive(Debug)]
pub enum PipeEnd {
    /// Both sides closed; bytes client->backend and backend->client.
    Closed { up: u64, down: u64 },
    /// Nothing moved for the idle timeout.
    Idle,
    /// A socket error (reset, broken pipe).
    Error(io::Error),
}

/// Copies until both sides close, an error, or `idle_timeout` without traffic.
pub async fn pipe<C, U>(client: C, mut upstream: U, idle_timeout: Duration) -> PipeEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Arc::new(ConnActivity::default());
    let mut client = ActivityIo::new(client, activity.clone());
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    let tick = (idle_timeout / 4).max(Duration::from_millis(50));
    let mut ticker = tokio::time::interval(tick);
    let mut last_seen = 0u64;
    let mut quiet_for = Duration::ZERO;
    loop {
        tokio::select! {
            result = copy.as_mut() => {
                return match result {
                    Ok((up, down)) => PipeEnd::Closed { up, down },
                    Err(e) => PipeEnd::Error(e),
                };
            }
            _ = ticker.tick() => {
                let now = activity.io_count();
                quiet_for = if now == last_seen { quiet_for + tick } else { Duration::ZERO };
                last_seen = now;
                if quiet_for >= idle_timeout {
                    return PipeEnd::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_forwards_close() {
        let (client_far, client_near) = tokio::io::duplex(1024);
        let (backend_near, backend_far) = tokio::io::duplex(1024);
        let task = tokio::spawn(pipe(client_near, backend_near, Duration::from_secs(5)));
        let (mut c, mut b) = (client_far, backend_far);
        c.write_all(b"ping").await.expect("write");
        let mut buf = [0u8; 4];
        b.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"ping");
        b.write_all(b"pong").await.expect("write");
        c.read_exact(&mut buf).await.expect("read");
        assert_eq!(&buf, b"pong");
        drop(c);
        drop(b);
        match task.await.expect("join") {
            PipeEnd::Closed { up, down } => assert_eq!((up, down), (4, 4)),
            other => panic!("unexpected end {other:?}"),
        }
    }

    #[tokio::test]
    async fn idle_pair_is_closed() {
        let (_c, client_near) = tokio::io::duplex(64);
        let (backend_near, _b) = tokio::io::duplex(64);
        let started = std::time::Instant::now();
        let end = pipe(client_near, backend_near, Duration::from_millis(200)).await;
        assert!(matches!(end, PipeEnd::Idle), "{end:?}");
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
