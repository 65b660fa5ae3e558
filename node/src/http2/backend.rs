//! The backend connection one HTTP/2 stream's request goes over: a pooled plain
//! connection (`upstream::BackendConn`, the HTTP/1.1 path's), or, for a pool that
//! speaks TLS to its backends, a TLS connection of the stream's own.
//!
//! A connection is served here only when every pool its routes lead to is plain
//! (`super::eligible`); hyper, with its pooled TLS client, serves the others. A pool
//! that starts speaking TLS while a connection is open (a config change) is still
//! served on that connection, over a new TLS connection per request, closed after its
//! response: correct, at the price of a handshake per request, and only until the
//! client opens its next connection.

use crate::h1::response::{HeadReadError, ResponseHead};
use crate::pool::PoolRuntime;
use crate::upstream::{BackendConn, Reuse, UpstreamError};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Bytes asked of the socket per read of a response body.
const READ_CHUNK: usize = 16 * 1024;

/// A connection to one backend, with the bytes read from it and not yet relayed.
pub(super) enum Up {
    Plain(BackendConn),
    Tls(Box<TlsUp>),
}

/// A TLS connection to a backend, never pooled.
pub(super) struct TlsUp {
    stream: TlsStream<TcpStream>,
    buf: BytesMut,
}

impl Drop for TlsUp {
    fn drop(&mut self) {
        crate::bufpool::give(&mut self.buf);
    }
}

impl Up {
    /// A connection to backend `index`: a pooled plain one (checked as `reuse`
    /// says) unless `fresh`, else a new one (TLS for a pool with `tls`).
    pub(super) async fn get(
        pool: &PoolRuntime,
        index: usize,
        fresh: bool,
        reuse: Reuse,
    ) -> Result<Up, UpstreamError> {
        if pool.upstream.is_tls() {
            let stream = pool.upstream.open_tls(index).await?;
            return Ok(Up::Tls(Box::new(TlsUp {
                stream,
                buf: crate::bufpool::take(),
            })));
        }
        let pooled = match fresh {
            true => None,
            false => pool.upstream.take_raw(index, reuse),
        };
        match pooled {
            Some(up) => Ok(Up::Plain(up)),
            None => pool.upstream.open_raw(index).await.map(Up::Plain),
        }
    }

    /// The connection carried a request before this one.
    pub(super) fn reused(&self) -> bool {
        match self {
            Up::Plain(up) => up.reused,
            Up::Tls(_) => false,
        }
    }

    /// The bytes read and not yet relayed.
    pub(super) fn buf(&mut self) -> &mut BytesMut {
        match self {
            Up::Plain(up) => &mut up.buf,
            Up::Tls(up) => &mut up.buf,
        }
    }

    pub(super) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Up::Plain(up) => up.stream.write_all(bytes).await,
            Up::Tls(up) => {
                up.stream.write_all(bytes).await?;
                // TLS holds written bytes in records until flushed.
                up.stream.flush().await
            }
        }
    }

    /// Reads what the backend sent next into `buf`; `Ok(0)` at its end.
    pub(super) async fn fill(&mut self) -> std::io::Result<usize> {
        match self {
            Up::Plain(up) => {
                up.buf.reserve(READ_CHUNK);
                up.stream.read_buf(&mut up.buf).await
            }
            Up::Tls(up) => {
                up.buf.reserve(READ_CHUNK);
                up.stream.read_buf(&mut up.buf).await
            }
        }
    }

    /// Reads until `resp` holds a complete head, parsed in `buf`.
    pub(super) async fn read_head(&mut self, resp: &mut ResponseHead) -> Result<(), HeadReadError> {
        match self {
            Up::Plain(up) => resp.read_from(up).await,
            Up::Tls(up) => resp.read_over(&mut up.stream, &mut up.buf).await,
        }
    }

    /// After a response read to its end: a plain connection goes back to the pool,
    /// a TLS one is closed.
    pub(super) fn give_back(self, pool: &PoolRuntime, index: usize) {
        if let Up::Plain(up) = self {
            pool.upstream.put_raw(index, up);
        }
    }
}
