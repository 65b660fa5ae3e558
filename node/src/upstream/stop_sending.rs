//! A backend socket that stops sending, instead of failing, once the backend stops
//! taking bytes.
//!
//! A backend may answer a request before it has read all of the body — a 413 from a
//! body limit, a 401, Go's net/http with an unread body — and close; the rest of the
//! upload then fails with a reset or a broken pipe. RFC 9112 §9.5: a client that sees
//! such a response while sending SHOULD stop sending and read it. hyper's client
//! instead fails the whole exchange on the write error, and the answer the backend
//! already sent is lost (the client got a 502). `StopSending` sits under hyper on the
//! backend's socket: after the first write that fails that way, every later write is
//! dropped as if sent, so hyper goes on to read the response that is there. When
//! there is none (the backend died), the read fails next and the exchange fails as
//! before. Used only for connections that never switch protocols.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) struct StopSending<S> {
    inner: S,
    /// The backend stopped taking bytes: writes are dropped from now on.
    stopped: bool,
}

impl<S> StopSending<S> {
    pub(super) fn new(inner: S) -> Self {
        StopSending {
            inner,
            stopped: false,
        }
    }
}

/// A write error that means the peer no longer reads (it may still have answered).
fn peer_stopped_reading(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for StopSending<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> StopSending<S> {
    /// `polled` with a peer-stopped error turned into "all `len` bytes written".
    fn absorb(&mut self, polled: Poll<io::Result<usize>>, len: usize) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(Err(e)) if peer_stopped_reading(&e) => {
                tracing::debug!(error = %e, "backend stopped reading the request; no more bytes sent");
                self.stopped = true;
                Poll::Ready(Ok(len))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StopSending<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.stopped {
            return Poll::Ready(Ok(buf.len()));
        }
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.absorb(polled, buf.len())
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len = bufs.iter().map(|b| b.len()).sum();
        if self.stopped {
            return Poll::Ready(Ok(len));
        }
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.absorb(polled, len)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.stopped {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Ready(Err(e)) if peer_stopped_reading(&e) => {
                self.stopped = true;
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.stopped {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    #[tokio::test]
    async fn an_answer_sent_before_a_reset_is_still_read() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backend = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 16];
            s.read_exact(&mut head).await.unwrap();
            s.write_all(b"answer").await.unwrap();
            // Dropped with unread bytes queued: the kernel resets the connection.
        });
        let mut up = StopSending::new(TcpStream::connect(addr).await.unwrap());
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..200 {
            up.write_all(&block)
                .await
                .expect("writes never fail once stopped");
        }
        assert!(up.stopped, "the reset was noticed");
        backend.await.unwrap();
        let mut answer = Vec::new();
        let _ = up.read_to_end(&mut answer).await;
        assert_eq!(answer, b"answer");
    }
}
