//! Wire framing for the peer channel: `u32` big-endian length, then a bincode 2 payload.
//!
//! A frame larger than the caller's limit is refused *before* reading its body, and the
//! caller closes the connection; nothing here panics on hostile input.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{self, CodecError};

/// Hard ceiling for any frame after authentication (snapshot chunks are ~3 MiB).
pub const MAX_FRAME: usize = 64 * 1024 * 1024;
/// Ceiling during the handshake: an unauthenticated peer gets almost nothing.
pub const MAX_HANDSHAKE_FRAME: usize = 1024;

/// Framing failure; the connection must be closed.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {len} bytes exceeds limit {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Codec(#[from] CodecError),
    /// A sealed frame whose tag does not verify (`sealed`): altered, forged, replayed,
    /// reordered or reflected.
    #[error("frame authentication failed: altered, forged or replayed frame")]
    BadMac,
}

/// Write one frame (header and body in a single write so Nagle never splits them).
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) -> Result<(), FrameError> {
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max: MAX_FRAME,
        });
    }
    let mut buf = Vec::with_capacity(4 + body.len());
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(body);
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Read one frame body of at most `max` bytes.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    // Grow as bytes arrive instead of trusting the header with a big allocation.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let got = r.take(len as u64).read_to_end(&mut body).await?;
    if got != len {
        return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(body)
}

/// Encode and send one message.
pub async fn send<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    msg: &T,
) -> Result<(), FrameError> {
    let body = codec::encode(msg)?;
    write_frame(w, &body).await
}

/// Receive and decode one message of at most `max` bytes.
pub async fn recv<R: AsyncRead + Unpin, T: DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<T, FrameError> {
    let body = read_frame(r, max).await?;
    if max <= MAX_HANDSHAKE_FRAME {
        return Ok(codec::decode_small(&body)?);
    }
    Ok(codec::decode(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        send(&mut a, &("hello".to_string(), 7u64)).await.unwrap();
        let got: (String, u64) = recv(&mut b, 1024).await.unwrap();
        assert_eq!(got, ("hello".to_string(), 7));

        // A header announcing more than the limit is refused without reading the body.
        a.write_all(&(2048u32).to_be_bytes()).await.unwrap();
        let err = read_frame(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { len: 2048, .. }));

        // Garbage that is not a valid encoding is a codec error, not a panic.
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, &[0xff; 9]).await.unwrap();
        let err = recv::<_, (String, u64)>(&mut b, 1024).await.unwrap_err();
        assert!(matches!(err, FrameError::Codec(_)));
    }
}
