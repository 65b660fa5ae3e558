//! Gathering the HTTP/2 codec's writes into one write per flush.
//!
//! The codec writes each frame's header and each DATA payload as separate buffers and
//! then flushes. TLS turns every write into a record of its own and a system call, so
//! ten small responses ready at once would cost some twenty records and syscalls.
//! `Coalesce` keeps the bytes until the codec flushes (or until `LIMIT` of them wait),
//! then hands them to the stream below in one write: one record, one syscall.
//!
//! Its buffer is lent (`crate::bufpool`) while bytes wait and given back once they are
//! written, so an idle connection holds none.

use bytes::{Buf, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes gathered before they are written without waiting for a flush.
const LIMIT: usize = crate::bufpool::BUFFER;

/// A stream whose writes wait for the next flush.
pub(super) struct Coalesce<S> {
    inner: S,
    pending: BytesMut,
}

impl<S> Coalesce<S> {
    pub(super) fn new(inner: S) -> Self {
        Coalesce {
            inner,
            pending: BytesMut::new(),
        }
    }
}

impl<S: AsyncWrite + Unpin> Coalesce<S> {
    /// Writes what waits to `inner`; `Ready(Ok)` once nothing waits.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.advance(n);
        }
        crate::bufpool::give(&mut self.pending);
        Poll::Ready(Ok(()))
    }

    /// Makes room for `more` bytes: writes what waits first if they would not fit.
    fn room_for(&mut self, cx: &mut Context<'_>, more: usize) -> Poll<io::Result<()>> {
        if self.pending.len() + more > LIMIT && !self.pending.is_empty() {
            ready!(self.drain(cx))?;
        }
        if self.pending.capacity() == 0 {
            self.pending = crate::bufpool::take();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalesce<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalesce<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.room_for(cx, buf.len()))?;
        // A write larger than the limit takes what fits; the caller sends the rest.
        let n = buf
            .len()
            .min(LIMIT.saturating_sub(self.pending.len()).max(1));
        self.pending.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        ready!(self.room_for(cx, total))?;
        let mut room = LIMIT.saturating_sub(self.pending.len()).max(1);
        let mut written = 0;
        for b in bufs {
            let n = b.len().min(room);
            self.pending.extend_from_slice(&b[..n]);
            written += n;
            room -= n;
            if room == 0 {
                break;
            }
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::IoSlice;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Counts the writes that reach the stream below.
    struct Counting {
        writes: usize,
        bytes: Vec<u8>,
    }

    impl AsyncWrite for Counting {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes += 1;
            self.bytes.extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn small_writes_reach_the_stream_once_per_flush() {
        let mut c = Coalesce::new(Counting {
            writes: 0,
            bytes: Vec::new(),
        });
        for _ in 0..20 {
            c.write_all(b"frame").await.unwrap();
        }
        let slices = [IoSlice::new(b"head"), IoSlice::new(b"data")];
        let n = c.write_vectored(&slices).await.unwrap();
        assert_eq!(n, 8);
        assert_eq!(c.inner.writes, 0, "nothing written before the flush");
        c.flush().await.unwrap();
        assert_eq!(c.inner.writes, 1);
        assert_eq!(c.inner.bytes.len(), 20 * 5 + 8);
        assert_eq!(c.pending.capacity(), 0, "the buffer went back to the pool");
    }

    #[tokio::test]
    async fn large_writes_go_out_in_limited_pieces_and_in_order() {
        let mut c = Coalesce::new(Counting {
            writes: 0,
            bytes: Vec::new(),
        });
        let big: Vec<u8> = (0..3 * LIMIT + 17).map(|i| i as u8).collect();
        c.write_all(b"x").await.unwrap();
        c.write_all(&big).await.unwrap();
        c.flush().await.unwrap();
        let mut expected = b"x".to_vec();
        expected.extend_from_slice(&big);
        assert_eq!(c.inner.bytes, expected);
        assert!(c.inner.writes <= 5, "{} writes", c.inner.writes);
    }

    #[tokio::test]
    async fn reads_pass_through() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b"ping").await.unwrap();
        drop(far);
        let mut c = Coalesce::new(near);
        let mut s = String::new();
        c.read_to_string(&mut s).await.unwrap();
        assert_eq!(s, "ping");
    }
}
