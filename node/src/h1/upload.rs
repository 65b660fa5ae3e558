//! A request body on its way to the backend, and what happens when the backend
//! answers before it has all of it.
//!
//! A backend may answer early — a 413 from a body limit, a 401, Go's net/http with an
//! unread body — and close (RFC 9112 §9.5: a client SHOULD watch for such a response
//! while sending and stop). So the body relay watches the backend's side too: as soon
//! as the backend sends anything (or closes), or a write to it fails, the relay stops
//! and reports `Delivered::Partial`; the caller then reads the response the backend
//! sent, relays it, and closes the client connection (its unread body makes it
//! unusable), after `linger`ing so the client reads that answer instead of a reset.
//! None of this says the backend is unhealthy: it is never ejected for it.

use super::exchange::Client;
use super::relay::READ_CHUNK;
use crate::upstream::BackendConn;
use bytes::Buf;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::linger::{LINGER_BYTES, LINGER_TIME};

/// How much of a request reached the backend before it began to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivered {
    Whole,
    /// The backend answered (or closed) before the body was through.
    Partial,
}

/// Why a request body could not be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UploadError {
    /// The client closed or broke its connection before the body ended.
    ClientGone,
}

/// Copies the `left` body bytes still to come from the client to `up`, unless the
/// backend answers first.
pub(super) async fn relay<S>(
    c: &mut Client<S>,
    up: &mut BackendConn,
    mut left: u64,
) -> Result<Delivered, UploadError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut from_backend, mut to_backend) = up.stream.split();
    let mut probe = [0u8; 1];
    while left > 0 {
        c.buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            biased;
            _ = from_backend.peek(&mut probe) => return Ok(Delivered::Partial),
            read = c.io.read_buf(&mut c.buf) => read,
        };
        match read {
            Ok(0) | Err(_) => return Err(UploadError::ClientGone),
            Ok(_) => {}
        }
        let take = (c.buf.len() as u64).min(left) as usize;
        let chunk = c.buf.get(..take).unwrap_or_default();
        let wrote = tokio::select! {
            biased;
            _ = from_backend.peek(&mut probe) => return Ok(Delivered::Partial),
            wrote = to_backend.write_all(chunk) => wrote,
        };
        if wrote.is_err() {
            return Ok(Delivered::Partial);
        }
        c.buf.advance(take);
        left -= take as u64;
    }
    Ok(Delivered::Whole)
}

/// After answering a request whose body was not read to its end: says so with a
/// FIN, then reads and drops what the client still sends (bounded in time and
/// bytes), so that closing does not reset the connection under the answer.
pub(super) async fn linger<S>(c: &mut Client<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = c.io.shutdown().await;
    let drain = async {
        let mut drained = 0;
        while drained < LINGER_BYTES {
            c.buf.clear();
            c.buf.reserve(READ_CHUNK);
            match c.io.read_buf(&mut c.buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
