//! Relaying a response body from a backend connection to the client.
//!
//! The body goes through unchanged, framing and all; `BodyEnd` only tracks where it
//! ends (a byte count, the chunked framing via `ChunkScanner`, or the backend closing)
//! so that nothing past it is relayed and the backend connection can be reused. The
//! head is written together with the first body bytes, after they were checked, so
//! framing found malformed there is reported before anything went out (`Unsent`).
//! A gRPC answer's body bytes and trailer section are also shown to its status watch
//! (`grpc_watch`); other answers pay one check of an `Option` per read.

use super::chunked::{ChunkError, ChunkScanner};
use super::exchange::Client;
use super::io::write_both;
use super::response::Framing;
use crate::grpc_watch::GrpcWatch;
use crate::upstream::BackendConn;
use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// How much is read from a socket at a time.
pub(super) const READ_CHUNK: usize = 16 * 1024;

/// Why relaying a response body stopped short.
#[derive(Debug, thiserror::Error)]
pub(super) enum RelayError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("backend closed before the body was complete")]
    Truncated,
    #[error(transparent)]
    Chunk(#[from] ChunkError),
    /// The framing was malformed in the bytes that came with the head: nothing has
    /// been written to the client, which can still get a 502.
    #[error("{0} (before any byte reached the client)")]
    Unsent(ChunkError),
}

/// Writes the response head in `c.out`, then the body as framed, from `up` to the
/// client. The first body bytes go out with the head; `sent` counts body bytes;
/// `grpc` sees the body of a gRPC answer.
pub(super) async fn relay_body<S>(
    c: &mut Client<S>,
    up: &mut BackendConn,
    framing: Framing,
    sent: &mut u64,
    mut grpc: Option<&mut GrpcWatch>,
) -> Result<(), RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut body = BodyEnd::new(framing);
    let mut first = true;
    loop {
        let take = match body.take(&up.buf, grpc.as_deref_mut()) {
            Err(RelayError::Chunk(e)) if first => return Err(RelayError::Unsent(e)),
            taken => taken?,
        };
        let head: &[u8] = if first { &c.out } else { &[] };
        write_both(&mut c.io, head, &up.buf[..take]).await?;
        first = false;
        up.buf.advance(take);
        *sent += take as u64;
        if body.is_done() {
            return Ok(());
        }
        up.buf.reserve(READ_CHUNK);
        if up.stream.read_buf(&mut up.buf).await? == 0 {
            return match framing {
                Framing::UntilClose => Ok(()),
                _ => Err(RelayError::Truncated),
            };
        }
    }
}

/// Where a response body ends, as its bytes arrive.
enum BodyEnd {
    Length(u64),
    Chunked(ChunkScanner),
    UntilClose,
}

impl BodyEnd {
    fn new(framing: Framing) -> Self {
        match framing {
            Framing::Empty => BodyEnd::Length(0),
            Framing::Length(n) => BodyEnd::Length(n),
            Framing::Chunked => BodyEnd::Chunked(ChunkScanner::default()),
            Framing::UntilClose => BodyEnd::UntilClose,
        }
    }

    /// How many of `bytes` belong to the body; `grpc` is shown them.
    fn take(&mut self, bytes: &[u8], grpc: Option<&mut GrpcWatch>) -> Result<usize, RelayError> {
        let Some(grpc) = grpc else {
            return Ok(match self {
                BodyEnd::Length(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    take as usize
                }
                BodyEnd::Chunked(scanner) => scanner.feed(bytes)?,
                BodyEnd::UntilClose => bytes.len(),
            });
        };
        if let BodyEnd::Chunked(scanner) = self {
            return Ok(watch_chunked(scanner, bytes, grpc)?);
        }
        let take = self.take(bytes, None)?;
        grpc.data(&bytes[..take]);
        Ok(take)
    }

    fn is_done(&self) -> bool {
        match self {
            BodyEnd::Length(left) => *left == 0,
            BodyEnd::Chunked(scanner) => scanner.is_done(),
            BodyEnd::UntilClose => false,
        }
    }
}

/// `ChunkScanner::feed`, showing `grpc` the chunk data and the trailer section.
fn watch_chunked(
    scanner: &mut ChunkScanner,
    bytes: &[u8],
    grpc: &mut GrpcWatch,
) -> Result<usize, ChunkError> {
    let mut trailer = Vec::new();
    let used = scanner.feed_parts(bytes, |run| grpc.data(&bytes[run]), |b| trailer.push(b))?;
    for b in trailer {
        grpc.trailer_byte(b);
    }
    if scanner.is_done() {
        grpc.trailer_lines_done();
    }
    Ok(used)
}
