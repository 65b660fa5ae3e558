//! Read buffers lent per thread, so an idle connection holds none.
//!
//! A keep-alive connection spends most of its life waiting for its next request; a
//! pooled backend connection, for its next use. Neither needs a read buffer then. So
//! the hand-written HTTP/1.1 path (`crate::h1`) and its backend connections
//! (`crate::upstream::BackendConn`) take a buffer when bytes arrive and give it back
//! once it is drained (`read_lent`), like HAProxy's and nginx's buffer pools. Each thread keeps a
//! short free list of them: taking and giving is a `Vec` pop and push, no allocation
//! in the steady state. A task may give a buffer back on another thread than the one
//! it took it on (work stealing); each list is bounded, so that only shifts which
//! thread frees it. Buffers that grew past `MAX_POOLED` (a large head) are freed rather
//! than kept.

use bytes::BytesMut;
use std::cell::RefCell;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The size of a lent buffer: what one read asks the kernel for.
pub(crate) const BUFFER: usize = 16 * 1024;
/// Free buffers kept per thread (at most 1 MiB of them).
const KEEP: usize = 64;
/// A buffer larger than this is freed on return instead of being kept.
const MAX_POOLED: usize = 4 * BUFFER;

thread_local! {
    static FREE: RefCell<Vec<BytesMut>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of at least `BUFFER` bytes.
pub(crate) fn take() -> BytesMut {
    FREE.with_borrow_mut(|free| free.pop())
        .unwrap_or_else(|| BytesMut::with_capacity(BUFFER))
}

/// Returns `buf`, which must hold no unread byte (anything left is discarded); the
/// caller's field is left empty with no allocation.
pub(crate) fn give(buf: &mut BytesMut) {
    let mut buf = std::mem::take(buf);
    if buf.capacity() == 0 {
        return;
    }
    buf.clear();
    // Reclaims the space in front of the cursor (no copy: nothing is left to move).
    buf.reserve(BUFFER);
    if buf.capacity() > MAX_POOLED {
        return;
    }
    // `try_with`: a connection dropped while its thread shuts down just frees it.
    shelve(&FREE, buf, KEEP);
}

/// Keeps `item` on this thread's free list `list` unless it already holds `keep` items (or
/// the thread is shutting down and its locals are gone).
pub(crate) fn shelve<T: 'static>(
    list: &'static std::thread::LocalKey<RefCell<Vec<T>>>,
    item: T,
    keep: usize,
) {
    let _ = list.try_with(|free| {
        if let Ok(mut free) = free.try_borrow_mut() {
            if free.len() < keep {
                free.push(item);
            }
        }
    });
}

/// Reads from `io` into `buf`. A `buf` without capacity (an idle connection) gets a
/// lent buffer for each attempt, returned at once when nothing could be read, so a
/// connection waiting for its peer (a client's next request, a backend's answer)
/// holds none; one that holds bytes grows by a read.
pub(crate) async fn read_lent<R>(io: &mut R, buf: &mut BytesMut) -> io::Result<usize>
where
    R: AsyncRead + Unpin,
{
    if buf.capacity() > 0 {
        buf.reserve(BUFFER);
        return io.read_buf(buf).await;
    }
    poll_fn(|cx| {
        if buf.capacity() == 0 {
            *buf = take();
        }
        let read = pin!(io.read_buf(&mut *buf)).poll(cx);
        if read.is_pending() && buf.is_empty() {
            give(buf);
        }
        read
    })
    .await
}

/// Waits until `io` has bytes and returns them in a buffer from the pool; `None` at
/// the end of the stream. The wait itself holds no buffer, and its future only `io`: a
/// buffer is taken for each read attempt and given back at once if nothing came (an
/// idle connection waits here, `crate::h1`).
pub(crate) async fn read_fresh<R>(io: &mut R) -> io::Result<Option<BytesMut>>
where
    R: AsyncRead + Unpin,
{
    poll_fn(|cx| {
        let mut buf = take();
        let read = pin!(io.read_buf(&mut buf)).poll(cx);
        match read {
            Poll::Ready(Ok(n)) if n > 0 => Poll::Ready(Ok(Some(buf))),
            other => {
                give(&mut buf);
                other.map(|done| done.map(|_| None))
            }
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Buf, BufMut};

    #[test]
    fn a_returned_buffer_is_lent_again_whole_and_empty() {
        let mut buf = take();
        assert!(buf.capacity() >= BUFFER);
        buf.put_slice(&[7; 100]);
        buf.advance(60);
        let ptr = buf.as_ptr() as usize - 60;
        give(&mut buf);
        assert_eq!(buf.capacity(), 0, "the caller keeps nothing");
        let again = take();
        assert!(again.is_empty());
        assert!(again.capacity() >= BUFFER);
        assert_eq!(again.as_ptr() as usize, ptr, "the same allocation, rewound");
    }

    #[test]
    fn oversized_and_empty_buffers_are_not_kept() {
        while FREE.with_borrow(|f| !f.is_empty()) {
            drop(take());
        }
        let mut big = BytesMut::with_capacity(MAX_POOLED * 2);
        give(&mut big);
        let mut none = BytesMut::new();
        give(&mut none);
        assert_eq!(FREE.with_borrow(|f| f.len()), 0);
        for _ in 0..KEEP + 5 {
            let mut b = BytesMut::with_capacity(BUFFER);
            give(&mut b);
        }
        assert_eq!(FREE.with_borrow(|f| f.len()), KEEP);
    }

    #[tokio::test]
    async fn a_fresh_read_holds_no_buffer_while_it_waits() {
        use tokio::io::AsyncWriteExt;
        let (mut near, mut far) = tokio::io::duplex(64);
        let pooled = || FREE.with_borrow(|free| free.len());
        give(&mut take());
        let before = pooled();
        {
            let waiting = read_fresh(&mut near);
            tokio::pin!(waiting);
            let polled = futures_util::poll!(waiting.as_mut());
            assert!(polled.is_pending(), "nothing sent yet");
            assert_eq!(pooled(), before, "the buffer went back while waiting");
        }
        far.write_all(b"GET").await.unwrap();
        let buf = read_fresh(&mut near).await.unwrap().expect("bytes");
        assert_eq!(&buf[..], b"GET");
        assert!(buf.capacity() >= BUFFER);
        assert_eq!(pooled(), before - 1, "the buffer with the bytes is out");
        drop(far);
        let end = read_fresh(&mut near).await.unwrap();
        assert!(end.is_none(), "end of stream");
        assert_eq!(pooled(), before, "the end of the stream holds no buffer");
    }
}
