//! Plain backend connections for the hand-written HTTP/1.1 path (`crate::h1`).
//!
//! Such a connection is just the socket and its read buffer: the request task writes
//! the request and reads the response itself, with no connection task in between.
//! While idle it waits in the backend's idle stack like hyper's connections do.
//!
//! An idle connection must be silent: bytes a backend sends after a complete
//! response (a late body after a HEAD, a second response nobody asked for) would
//! otherwise be read as the answer to the next client's request. Whenever the pool
//! looks at a connection (`is_closed`: on return, while idle, on take) the reactor's
//! readiness tells, without a system call, about what it has noticed. Readiness can lag
//! behind bytes or a FIN that just arrived: for a request that could not be sent again,
//! `probe_now` asks the kernel itself right before the connection is handed out (one
//! `recv` with `MSG_PEEK`, `Reuse::Checked`); one that can be sent again goes without
//! (`Reuse::Optimistic`, `crate::request::stale`). A connection
//! that produced unsolicited bytes is dropped and counted
//! (`fulcrum_backend_unsolicited_total`); one the backend closed is just dropped.
//!
//! An idle connection holds no read buffer: it gives it back to `crate::bufpool` when
//! it enters the idle stack (`park`), and takes one only when the backend's answer
//! arrives (`bufpool::read_lent`): a request waiting for its response holds none.

use super::idle::Pooled;
use super::UpstreamError;
use bytes::BytesMut;
use prometheus_client::metrics::counter::Counter;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;

/// One plain TCP connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    pub stream: TcpStream,
    /// Bytes read from the backend and not yet relayed; lent from `crate::bufpool`
    /// while a response is read, empty (no allocation) otherwise.
    pub buf: BytesMut,
    /// The connection served a request before this one.
    pub reused: bool,
    /// Counts connections dropped for unsolicited bytes (shared by the pool).
    unsolicited: Counter,
}

/// What an idle connection's socket holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Idle {
    /// Nothing: it can carry a request.
    Quiet,
    /// The backend closed it (or it failed).
    Closed,
    /// Bytes nobody asked for.
    Unsolicited,
}

impl BackendConn {
    /// Opens a connection to `addr` within `timeout`.
    pub(super) async fn open(
        addr: SocketAddr,
        timeout: Duration,
        unsolicited: Counter,
    ) -> Result<Self, UpstreamError> {
        let stream = super::connect::tcp(addr, timeout).await?;
        Ok(BackendConn {
            stream,
            buf: BytesMut::new(),
            reused: false,
            unsolicited,
        })
    }

    /// Gives the (drained) read buffer back before the connection goes idle.
    pub(super) fn park(&mut self) {
        if self.buf.is_empty() {
            crate::bufpool::give(&mut self.buf);
        }
    }

    /// What the kernel holds for this socket right now (one system call).
    pub(super) fn probe_now(&self) -> Idle {
        if !self.buf.is_empty() {
            return self.count(Idle::Unsolicited);
        }
        let mut byte = [MaybeUninit::<u8>::uninit(); 1];
        let state = match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Idle::Quiet,
            Ok(0) | Err(_) => Idle::Closed,
            Ok(_) => Idle::Unsolicited,
        };
        self.count(state)
    }

    /// The same answer from the reactor's readiness, with a system call only when
    /// the reactor saw the socket become readable.
    fn probe_cached(&self) -> Idle {
        if !self.buf.is_empty() {
            return self.count(Idle::Unsolicited);
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => Idle::Quiet,
            Poll::Ready(Err(_)) => Idle::Closed,
            // Readable while idle: EOF, an error, or unsolicited bytes — unless the
            // readiness is stale, which the peek tells.
            Poll::Ready(Ok(())) => self.probe_now(),
        }
    }

    /// Counts `state` if it is unsolicited bytes (the caller drops the connection).
    fn count(&self, state: Idle) -> Idle {
        if state == Idle::Unsolicited {
            self.unsolicited.inc();
            tracing::debug!(backend = ?self.stream.peer_addr().ok(), "backend sent bytes nobody asked for; connection dropped");
        }
        state
    }
}

impl Pooled for BackendConn {
    fn is_closed(&self) -> bool {
        self.probe_cached() != Idle::Quiet
    }
}
