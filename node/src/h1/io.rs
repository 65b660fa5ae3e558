//! Small I/O pieces of the hand-written HTTP/1.1 path.
//!
//! - `write_both`: a head and the first body bytes in one vectored write, so a small
//!   message costs one system call.
//! - `Rewind`: a stream that first yields bytes already read from it. When a request
//!   is handed to hyper, the bytes of its head are in fulcrum's buffer, not the socket;
//!   hyper reads them back through `Rewind` as if nothing had happened.

use bytes::{Buf, Bytes};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Writes `first` then `second` completely, vectored while both have bytes left, and
/// flushes (a no-op on TCP; TLS may hold back a record otherwise).
pub(super) async fn write_both<W>(w: &mut W, first: &[u8], second: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    write_all_both(w, first, second).await?;
    w.flush().await
}

async fn write_all_both<W>(w: &mut W, mut first: &[u8], mut second: &[u8]) -> io::Result<()>
where
    W: AsyncWrite + Unpin,
{
    while !first.is_empty() {
        if second.is_empty() {
            return w.write_all(first).await;
        }
        let n = w
            .write_vectored(&[IoSlice::new(first), IoSlice::new(second)])
            .await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        if n >= first.len() {
            second = &second[n - first.len()..];
            first = &[];
        } else {
            first = &first[n..];
        }
    }
    w.write_all(second).await
}

/// A stream that replays `prefix` before reading from `inner`.
pub(crate) struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> Rewind<S> {
    pub(crate) fn new(prefix: Bytes, inner: S) -> Self {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.has_remaining() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
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
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_reads_on() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut rewound = Rewind::new(Bytes::from_static(b"hello"), near);
        let mut all = String::new();
        rewound.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }

    #[tokio::test]
    async fn write_both_writes_everything_in_order() {
        let (mut near, mut far) = tokio::io::duplex(7);
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            far.read_to_end(&mut got).await.unwrap();
            got
        });
        write_both(&mut near, b"HTTP/1.1 200 OK\r\n\r\n", b"body bytes")
            .await
            .unwrap();
        write_both(&mut near, b"", b"tail").await.unwrap();
        drop(near);
        assert_eq!(
            reader.await.unwrap(),
            b"HTTP/1.1 200 OK\r\n\r\nbody bytestail"
        );
    }
}
