//! The byte stream of one client connection as the serving code sees it: counted for
//! the idle and slow-head watchdog (`ActivityIo`, see `conn_watch`), able to replay bytes
//! read before it was wrapped (the HTTP/1.1 path's hand-off to hyper), and counted in the
//! `client_connections` gauge while it lives (`OpenConnection`). Every codec (`h1`,
//! hyper's, `http2`) and the TCP listeners (`l4`) use these; none of them serves
//! connections itself, so this module imports none of them.

use crate::conn_watch::ConnActivity;
use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One open client connection in the `client_connections` gauge, for as long as it
/// lives: the count goes down however the connection's task ends.
pub(crate) struct OpenConnection(prometheus_client::metrics::gauge::Gauge);

impl OpenConnection {
    pub(crate) fn count(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        OpenConnection(gauge.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Counts reads and writes so the watchdog can tell a quiet connection from a busy
/// one, and a head being read from a request being served, without reading the clock
/// on every I/O (see `conn_watch`). It can also replay bytes that were read from the
/// stream before it was wrapped (`with_prefix`).
pub(crate) struct ActivityIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
    /// Read first, before `inner`; boxed, as most connections never have one and this
    /// is part of every connection's task.
    prefix: Option<Box<Bytes>>,
}

impl<T> ActivityIo<T> {
    /// Wraps `inner`; every completed read or write is counted in `activity`.
    pub(crate) fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        ActivityIo {
            inner,
            activity,
            prefix: None,
        }
    }

    /// Like `new`, with `prefix` read before anything from `inner`.
    pub(crate) fn with_prefix(inner: T, prefix: Bytes, activity: Arc<ConnActivity>) -> Self {
        ActivityIo {
            inner,
            activity,
            prefix: (!prefix.is_empty()).then(|| Box::new(prefix)),
        }
    }

    /// The stream without the counting.
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(prefix) = self.prefix.as_mut() {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix.split_to(n));
            if prefix.is_empty() {
                self.prefix = None;
            }
            self.activity.note_read();
            return Poll::Ready(Ok(()));
        }
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            self.activity.note_read();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if polled.is_ready() {
            self.activity.note_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            self.activity.note_write();
        }
        polled
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
    async fn a_prefix_is_read_before_the_stream_and_counted() {
        let (mut far, near) = tokio::io::duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let activity = Arc::new(ConnActivity::default());
        let mut io = ActivityIo::with_prefix(near, Bytes::from_static(b"hello"), activity.clone());
        let mut all = String::new();
        io.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
        assert!(
            activity.io_count() >= 3,
            "prefix, data and EOF reads counted"
        );
    }
}
