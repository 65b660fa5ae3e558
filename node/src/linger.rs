//! Lingering close for connections hyper serves: when hyper shuts a connection down
//! (for example after relaying a backend's early answer to an upload whose body was not
//! read), first a FIN, then what the client still sends is read and dropped, bounded in
//! time and bytes, before the socket closes. Closing with unread bytes in the receive
//! queue makes the kernel send a reset, and a reset can discard the answer before the
//! client has read it. The HTTP/1.1 fast path does the same in `h1::upload::linger`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// How long, and how many bytes, a client's unread request is drained before closing.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(1);
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;

/// An IO whose `poll_shutdown` lingers (see the module doc).
pub(crate) struct Linger<S> {
    inner: S,
    state: State,
}

enum State {
    Open,
    /// The FIN went out; draining until EOF, the byte budget or the deadline.
    Draining {
        drained: usize,
        deadline: Pin<Box<Sleep>>,
    },
    Closed,
}

impl<S> Linger<S> {
    pub(crate) fn new(inner: S) -> Self {
        Linger {
            inner,
            state: State::Open,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Linger<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Linger<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Open => {
                    ready!(Pin::new(&mut this.inner).poll_shutdown(cx))?;
                    this.state = State::Draining {
                        drained: 0,
                        deadline: Box::pin(tokio::time::sleep(LINGER_TIME)),
                    };
                }
                State::Draining { drained, deadline } => {
                    if *drained >= LINGER_BYTES || deadline.as_mut().poll(cx).is_ready() {
                        this.state = State::Closed;
                        continue;
                    }
                    let mut scratch = [0u8; 4096];
                    let mut buf = ReadBuf::new(&mut scratch);
                    match ready!(Pin::new(&mut this.inner).poll_read(cx, &mut buf)) {
                        Ok(()) if !buf.filled().is_empty() => *drained += buf.filled().len(),
                        // EOF or an error: the client is done.
                        _ => this.state = State::Closed,
                    }
                }
                State::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn shutdown_sends_fin_then_drains_what_the_client_still_sends() {
        let (client, server) = tokio::io::duplex(64);
        let mut server = Linger::new(server);
        let (mut client_rd, mut client_wr) = tokio::io::split(client);
        server.write_all(b"413").await.expect("answer");
        let sender = tokio::spawn(async move {
            // The client is still sending its body when the answer arrives.
            for _ in 0..50 {
                if client_wr.write_all(&[b'x'; 1000]).await.is_err() {
                    return;
                }
            }
            let _ = client_wr.shutdown().await;
        });
        let shut = tokio::spawn(async move { server.shutdown().await });
        let mut answer = Vec::new();
        client_rd
            .read_to_end(&mut answer)
            .await
            .expect("read to FIN");
        assert_eq!(answer, b"413", "the answer and then a FIN");
        shut.await.expect("task").expect("shutdown");
        sender.await.expect("sender");
    }

    #[tokio::test(start_paused = true)]
    async fn draining_stops_at_the_deadline() {
        let (_client, server) = tokio::io::duplex(64);
        let mut server = Linger::new(server);
        let started = tokio::time::Instant::now();
        server.shutdown().await.expect("shutdown");
        assert!(started.elapsed() >= LINGER_TIME, "{:?}", started.elapsed());
    }
}
