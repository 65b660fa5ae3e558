//! Plain backend connections for the hand-written HTTP/1.1 path (`crate::h1`).
//!
//! Such a connection is just the socket and its read buffer: the request task writes
//! the request and reads the response itself, with no connection task in between.
//! While idle it waits in the backend's idle stack like hyper's connections do. A
//! backend that closed an idle connection has made the socket readable (EOF), which the
//! reactor already knows, so `is_closed` checks that readiness without a system call
//! in the usual case.

use super::idle::Pooled;
use super::UpstreamError;
use bytes::BytesMut;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::net::TcpStream;

/// Read buffer size of a backend connection.
const BUFFER: usize = 16 * 1024;

/// One plain TCP connection to a backend.
#[derive(Debug)]
pub struct BackendConn {
    pub stream: TcpStream,
    /// Bytes read from the backend and not yet relayed.
    pub buf: BytesMut,
    /// The connection served a request before this one.
    pub reused: bool,
}

impl BackendConn {
    /// Opens a connection to `addr` within `timeout`.
    pub(super) async fn open(addr: SocketAddr, timeout: Duration) -> Result<Self, UpstreamError> {
        let stream = super::connect::tcp(addr, timeout).await?;
        Ok(BackendConn {
            stream,
            buf: BytesMut::with_capacity(BUFFER),
            reused: false,
        })
    }
}

impl Pooled for BackendConn {
    fn is_closed(&self) -> bool {
        // Bytes left over from the last response make the connection unusable.
        if !self.buf.is_empty() {
            return true;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            // Readable while idle: EOF, an error, or unsolicited bytes — unless the
            // readiness is stale, which one non-blocking read tells.
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(
                    self.stream.try_read(&mut probe),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
                )
            }
        }
    }
}
