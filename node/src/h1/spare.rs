//! What a client connection holds only while it serves a request.
//!
//! Between requests a keep-alive connection needs nothing but its socket: its read
//! buffer comes from `crate::bufpool` when bytes arrive (`bufpool::read_lent`: a buffer is taken
//! for each read attempt and given back at once if the socket had nothing), and the
//! per-request working memory — the head being written, the parsed request and
//! response heads, the normalised path, the response timer — from a per-thread free
//! list (`Client::lend`).
//! Both go back once a request is answered and no pipelined byte is waiting
//! (`Client::park`). A connection with bytes of a next request (pipelining, a head
//! split across reads) keeps what it holds until it has parsed and served them.

use super::exchange::Client;
use super::head::RequestHead;
use super::response::ResponseHead;
use super::timer::ResponseTimer;
use crate::bufpool;
use std::cell::RefCell;

/// Working sets kept per thread.
const KEEP: usize = 64;
/// The initial capacity of the head being written.
const OUT: usize = 1024;
/// A working set whose output grew past this (a huge head) is freed, not kept.
const MAX_OUT: usize = 16 * 1024;

/// One request's working memory.
#[derive(Default)]
struct Scratch {
    out: Vec<u8>,
    head: RequestHead,
    resp: ResponseHead,
    path: Vec<u8>,
    timer: ResponseTimer,
}

thread_local! {
    static FREE: RefCell<Vec<Scratch>> = const { RefCell::new(Vec::new()) };
}

impl<S> Client<S> {
    /// Makes sure the connection holds a working set (from the free list if it can).
    pub(super) fn lend(&mut self) {
        if self.lent {
            return;
        }
        let s = FREE
            .with_borrow_mut(|free| free.pop())
            .unwrap_or_else(|| Scratch {
                out: Vec::with_capacity(OUT),
                ..Scratch::default()
            });
        self.out = s.out;
        self.head = s.head;
        self.resp = s.resp;
        self.path = s.path;
        self.timer = s.timer;
        self.lent = true;
    }

    /// Between requests: gives back the working set and the read buffer, unless the
    /// buffer holds bytes of a next request.
    pub(super) fn park(&mut self) {
        if !self.buf.is_empty() {
            return;
        }
        bufpool::give(&mut self.buf);
        if !self.lent {
            return;
        }
        self.lent = false;
        let mut s = Scratch {
            out: std::mem::take(&mut self.out),
            head: std::mem::take(&mut self.head),
            resp: std::mem::take(&mut self.resp),
            path: std::mem::take(&mut self.path),
            timer: std::mem::take(&mut self.timer),
        };
        if s.out.capacity() > MAX_OUT {
            return;
        }
        s.out.clear();
        bufpool::shelve(&FREE, s, KEEP);
    }

    /// Whether the connection holds neither a read buffer nor a working set.
    #[cfg(test)]
    pub(super) fn is_parked(&self) -> bool {
        self.buf.capacity() == 0 && !self.lent && self.out.capacity() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_waiting_read_holds_no_buffer_and_a_read_gets_one() {
        let (mut far, mut near) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        // Polled (pending) until the timeout drops it: the buffer went back at once.
        let waited = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            bufpool::read_lent(&mut near, &mut buf),
        )
        .await;
        assert!(waited.is_err(), "nothing to read yet");
        assert_eq!(buf.capacity(), 0, "no buffer held while waiting");
        far.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let n = bufpool::read_lent(&mut near, &mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n");
        // A partial head keeps its buffer and grows it.
        far.write_all(b"Host: a\r\n\r\n").await.unwrap();
        bufpool::read_lent(&mut near, &mut buf).await.unwrap();
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    }

    fn client() -> Client<()> {
        Client {
            io: (),
            buf: BytesMut::new(),
            out: Vec::new(),
            head: RequestHead::default(),
            resp: ResponseHead::default(),
            consumed: false,
            timer: ResponseTimer::default(),
            path: Vec::new(),
            forward_normalized: false,
            lent: false,
        }
    }

    #[tokio::test]
    async fn a_parked_connection_holds_nothing_unless_a_request_is_waiting() {
        let mut c = client();
        assert!(c.is_parked());
        c.buf = bufpool::take();
        c.buf
            .extend_from_slice(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next");
        c.lend();
        assert!(c.out.capacity() >= OUT);
        c.out.extend_from_slice(b"written head");
        // Pipelined bytes of the next request: everything is kept.
        bytes::Buf::advance(&mut c.buf, 27);
        c.park();
        assert!(c.lent && c.buf.capacity() > 0);
        assert_eq!(&c.buf[..], b"GET /next");
        bytes::Buf::advance(&mut c.buf, 9);
        c.park();
        assert!(c.is_parked());
        // The next request gets a cleared working set.
        c.lend();
        assert!(c.out.is_empty() && c.out.capacity() >= OUT);
    }
}
