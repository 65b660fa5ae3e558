//! Per-frame authentication of the peer channel after the handshake.
//!
//! The handshake (`auth`) proves both ends know the cluster secret, but on its own it
//! only authenticates the connection: without peer TLS, a host on path could splice its
//! own frames (`SetConfig`, `Elect`, AppendEntries) into the authenticated TCP stream.
//! So every frame after the handshake is sealed:
//!
//! ```text
//! u32 BE length | payload (bincode) | HMAC-SHA256(direction key, seq | len | payload)
//! ```
//!
//! - The direction keys come from the secret and *both* handshake nonces (`auth`), so
//!   they are fresh per connection and unknown to anyone without the secret.
//! - Each direction has its own key: a frame cannot be reflected back to its sender.
//! - `seq` counts the frames of one direction from 0 and is not sent: a dropped,
//!   replayed or reordered frame fails the check just like an altered one.
//!
//! A frame whose tag does not verify (constant-time compare) is refused with
//! `FrameError::BadMac` before its payload is decoded; the caller drops the connection.
//! The check also runs inside peer TLS: it is cheap, and one code path is simpler.

use hmac::{Hmac, Mac};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};

use crate::codec;
use crate::frame::{self, FrameError};

type HmacSha256 = Hmac<Sha256>;

/// Length of the tag after each payload.
pub const TAG_LEN: usize = 32;

/// The two keys of one connection, as seen from one end.
#[derive(Clone)]
pub struct SessionKeys {
    /// Seals the frames this end sends.
    pub send: [u8; 32],
    /// Checks the frames this end receives.
    pub recv: [u8; 32],
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// An authenticated stream whose frames are sealed in both directions.
pub struct SealedConn<S> {
    stream: S,
    keys: SessionKeys,
    sent: u64,
    received: u64,
}

fn tag(key: &[u8; 32], seq: u64, payload: &[u8]) -> HmacSha256 {
    // A 32-byte key is always a valid HMAC key: this cannot fail.
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    m.update(&seq.to_be_bytes());
    m.update(&(payload.len() as u64).to_be_bytes());
    m.update(payload);
    m
}

impl<S: AsyncRead + AsyncWrite + Unpin> SealedConn<S> {
    /// Wraps a stream that just completed the handshake which produced `keys`.
    pub fn new(stream: S, keys: SessionKeys) -> Self {
        SealedConn {
            stream,
            keys,
            sent: 0,
            received: 0,
        }
    }

    /// Encodes, seals and sends one message.
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        self.send_encoded(codec::encode(msg)?).await
    }

    /// Seals and sends one message already encoded (`codec::encode`).
    pub async fn send_encoded(&mut self, body: Vec<u8>) -> Result<(), FrameError> {
        seal_and_send(&mut self.stream, &self.keys.send, &mut self.sent, body).await
    }

    /// Receives one frame with a payload of at most `max` bytes, checks its tag, then
    /// decodes it.
    pub async fn recv<T: DeserializeOwned + Send + 'static>(
        &mut self,
        max: usize,
    ) -> Result<T, FrameError> {
        open_received(&mut self.stream, &self.keys.recv, &mut self.received, max).await
    }

    /// Splits into a receiving and a sending half (each keeps its own key and counter),
    /// for a stream read and written by two tasks at once, such as the lease stream.
    pub fn into_split(self) -> (SealedReader<ReadHalf<S>>, SealedWriter<WriteHalf<S>>) {
        let (rd, wr) = tokio::io::split(self.stream);
        (
            SealedReader {
                stream: rd,
                key: self.keys.recv,
                received: self.received,
            },
            SealedWriter {
                stream: wr,
                key: self.keys.send,
                sent: self.sent,
            },
        )
    }
}

/// The receiving half of a split [`SealedConn`].
pub struct SealedReader<R> {
    stream: R,
    key: [u8; 32],
    received: u64,
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    /// See [`SealedConn::recv`].
    pub async fn recv<T: DeserializeOwned + Send + 'static>(
        &mut self,
        max: usize,
    ) -> Result<T, FrameError> {
        open_received(&mut self.stream, &self.key, &mut self.received, max).await
    }
}

/// The sending half of a split [`SealedConn`].
pub struct SealedWriter<W> {
    stream: W,
    key: [u8; 32],
    sent: u64,
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    /// See [`SealedConn::send`].
    pub async fn send<T: Serialize>(&mut self, msg: &T) -> Result<(), FrameError> {
        seal_and_send(
            &mut self.stream,
            &self.key,
            &mut self.sent,
            codec::encode(msg)?,
        )
        .await
    }
}

async fn seal_and_send<W: AsyncWrite + Unpin>(
    stream: &mut W,
    key: &[u8; 32],
    sent: &mut u64,
    body: Vec<u8>,
) -> Result<(), FrameError> {
    let (key, seq) = (*key, *sent);
    let body = crate::offload::cpu(body.len(), move || {
        let mut body = body;
        let mac = tag(&key, seq, &body).finalize().into_bytes();
        body.extend_from_slice(&mac);
        body
    })
    .await?;
    frame::write_frame(stream, &body).await?;
    *sent += 1;
    Ok(())
}

async fn open_received<R: AsyncRead + Unpin, T: DeserializeOwned + Send + 'static>(
    stream: &mut R,
    key: &[u8; 32],
    received: &mut u64,
    max: usize,
) -> Result<T, FrameError> {
    let mut body = frame::read_frame(stream, max.saturating_add(TAG_LEN)).await?;
    let Some(split) = body.len().checked_sub(TAG_LEN) else {
        return Err(FrameError::BadMac);
    };
    let mac = body.split_off(split);
    let (key, seq) = (*key, *received);
    let opened = crate::offload::cpu(body.len(), move || -> Result<T, FrameError> {
        tag(&key, seq, &body)
            .verify_slice(&mac)
            .map_err(|_| FrameError::BadMac)?;
        Ok(codec::decode(&body)?)
    })
    .await??;
    *received += 1;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    fn keys() -> (SessionKeys, SessionKeys) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            SessionKeys { send: a, recv: b },
            SessionKeys { send: b, recv: a },
        )
    }

    fn pair() -> (SealedConn<DuplexStream>, SealedConn<DuplexStream>) {
        let (x, y) = tokio::io::duplex(1 << 16);
        let (kx, ky) = keys();
        (SealedConn::new(x, kx), SealedConn::new(y, ky))
    }

    #[tokio::test]
    async fn sealed_frames_round_trip_both_ways() {
        let (mut a, mut b) = pair();
        for i in 0..3u64 {
            a.send(&("to b".to_string(), i)).await.unwrap();
            b.send(&i).await.unwrap();
            let got: (String, u64) = b.recv(1024).await.unwrap();
            assert_eq!(got, ("to b".to_string(), i));
            assert_eq!(a.recv::<u64>(1024).await.unwrap(), i);
        }
    }

    /// The raw bytes of `msg` sealed as the first frame from the `a` end.
    async fn sealed_bytes<T: Serialize>(msg: &T) -> Vec<u8> {
        let (sink, mut wire) = tokio::io::duplex(1 << 16);
        let mut a = SealedConn::new(sink, keys().0);
        a.send(msg).await.unwrap();
        drop(a);
        let mut bytes = Vec::new();
        wire.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    /// Hands `bytes` to a fresh `b` end; returns its first received message.
    async fn deliver<T: DeserializeOwned + Send + 'static>(bytes: &[u8]) -> Result<T, FrameError> {
        let (mut into_b, b_side) = tokio::io::duplex(1 << 16);
        let mut b = SealedConn::new(b_side, keys().1);
        into_b.write_all(bytes).await.unwrap();
        drop(into_b);
        b.recv::<T>(1024).await
    }

    #[tokio::test]
    async fn one_changed_byte_anywhere_after_the_header_is_refused() {
        let bytes = sealed_bytes(&"SetConfig v2".to_string()).await;
        assert_eq!(deliver::<String>(&bytes).await.unwrap(), "SetConfig v2");
        assert_eq!(bytes.len(), 4 + 1 + "SetConfig v2".len() + TAG_LEN);
        for at in 4..bytes.len() {
            let mut altered = bytes.clone();
            altered[at] ^= 0x01;
            let r = deliver::<String>(&altered).await;
            assert!(matches!(r, Err(FrameError::BadMac)), "byte {at}: {r:?}");
        }
        // A changed length header cuts the frame elsewhere: refused or incomplete.
        let mut altered = bytes.clone();
        altered[3] -= 1;
        assert!(deliver::<String>(&altered).await.is_err());
    }

    #[tokio::test]
    async fn replayed_reflected_and_unsealed_frames_are_refused() {
        // Replay: the same sealed frame twice; the second has the wrong sequence number.
        let frame_bytes = sealed_bytes(&7u64).await;
        let (mut into_b, b_side) = tokio::io::duplex(1 << 16);
        let mut b = SealedConn::new(b_side, keys().1);
        into_b.write_all(&frame_bytes).await.unwrap();
        into_b.write_all(&frame_bytes).await.unwrap();
        assert_eq!(b.recv::<u64>(1024).await.unwrap(), 7);
        assert!(matches!(b.recv::<u64>(1024).await, Err(FrameError::BadMac)));

        // Reflection: a's own frame sent back to a (a checks with the other key).
        let (mut into_a, a_side) = tokio::io::duplex(1 << 16);
        let mut a = SealedConn::new(a_side, keys().0);
        into_a.write_all(&frame_bytes).await.unwrap();
        assert!(matches!(a.recv::<u64>(1024).await, Err(FrameError::BadMac)));

        // An unsealed frame, as an on-path injector without the key would write it.
        let mut unsealed = Vec::new();
        frame::send(
            &mut unsealed,
            &"evil, a 32-byte-long payload....".to_string(),
        )
        .await
        .unwrap();
        let r = deliver::<String>(&unsealed).await;
        assert!(matches!(r, Err(FrameError::BadMac)), "{r:?}");
    }
}
