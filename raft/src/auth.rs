//! Mutual HMAC-SHA256 challenge-response run on every new peer connection, before any
//! byte reaches Raft.
//!
//! 1. client -> `Hello { client_nonce }`
//! 2. server -> `Challenge { server_nonce, server_proof = HMAC(k, "srv" | cn | sn) }`
//! 3. client checks `server_proof`, -> `Proof { HMAC(k, "cli" | sn | cn) }`
//! 4. server checks it, -> `Welcome`
//!
//! Both ends then derive the connection's frame keys from the secret and both nonces,
//! one per direction: `HMAC(k, "c2s" | cn | sn)` and `HMAC(k, "s2c" | cn | sn)`; every
//! later frame is sealed with them (`sealed`). Version 2 of the handshake: version 1
//! peers sent unsealed frames.
//!
//! Both sides contribute a fresh random nonce, so neither proof can be replayed, and the
//! distinct labels stop a proof from one direction being reflected back as the other.
//! Proofs are compared in constant time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{self, FrameError, MAX_HANDSHAKE_FRAME};
use crate::sealed::SessionKeys;

type HmacSha256 = Hmac<Sha256>;
const VERSION: u32 = 2;

/// Handshake failure: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("handshake i/o: {0}")]
    Frame(#[from] FrameError),
    #[error("peer failed to prove it knows the cluster secret")]
    BadProof,
    #[error("unsupported handshake version {0}")]
    Version(u32),
    #[error("empty cluster secret")]
    EmptySecret,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    version: u32,
    client_nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    server_nonce: [u8; 32],
    server_proof: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Proof {
    client_proof: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Welcome;

fn mac(secret: &[u8], label: &[u8], a: &[u8], b: &[u8]) -> Result<HmacSha256, AuthError> {
    let mut m = HmacSha256::new_from_slice(secret).map_err(|_| AuthError::EmptySecret)?;
    m.update(label);
    m.update(a);
    m.update(b);
    Ok(m)
}

/// The frame keys of the connection with nonces `cn` (client) and `sn` (server).
fn session_keys(
    secret: &[u8],
    client_nonce: &[u8],
    server_nonce: &[u8],
    client: bool,
) -> Result<SessionKeys, AuthError> {
    let key = |label: &[u8]| -> Result<[u8; 32], AuthError> {
        Ok(mac(secret, label, client_nonce, server_nonce)?
            .finalize()
            .into_bytes()
            .into())
    };
    let (c2s, s2c) = (key(b"c2s")?, key(b"s2c")?);
    Ok(if client {
        SessionKeys {
            send: c2s,
            recv: s2c,
        }
    } else {
        SessionKeys {
            send: s2c,
            recv: c2s,
        }
    })
}

fn check_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    Ok(())
}

/// Client side: prove we know `secret` and check that the server does too; returns the
/// keys that seal the connection's frames.
pub async fn client_handshake<S>(s: &mut S, secret: &[u8]) -> Result<SessionKeys, AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    check_secret(secret)?;
    let client_nonce: [u8; 32] = rand::random();
    let hello = Hello {
        version: VERSION,
        client_nonce,
    };
    frame::send(s, &hello).await?;
    let ch: Challenge = frame::recv(s, MAX_HANDSHAKE_FRAME).await?;
    mac(secret, b"srv", &client_nonce, &ch.server_nonce)?
        .verify_slice(&ch.server_proof)
        .map_err(|_| AuthError::BadProof)?;
    let proof = mac(secret, b"cli", &ch.server_nonce, &client_nonce)?;
    let proof = Proof {
        client_proof: proof.finalize().into_bytes().to_vec(),
    };
    frame::send(s, &proof).await?;
    let _: Welcome = frame::recv(s, MAX_HANDSHAKE_FRAME).await?;
    session_keys(secret, &client_nonce, &ch.server_nonce, true)
}

/// Server side: the peer is trusted only if this returns `Ok`, and only for frames sealed
/// with the returned keys.
pub async fn server_handshake<S>(s: &mut S, secret: &[u8]) -> Result<SessionKeys, AuthError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    check_secret(secret)?;
    let hello: Hello = frame::recv(s, MAX_HANDSHAKE_FRAME).await?;
    if hello.version != VERSION {
        return Err(AuthError::Version(hello.version));
    }
    let server_nonce: [u8; 32] = rand::random();
    let proof = mac(secret, b"srv", &hello.client_nonce, &server_nonce)?;
    let ch = Challenge {
        server_nonce,
        server_proof: proof.finalize().into_bytes().to_vec(),
    };
    frame::send(s, &ch).await?;
    let p: Proof = frame::recv(s, MAX_HANDSHAKE_FRAME).await?;
    mac(secret, b"cli", &server_nonce, &hello.client_nonce)?
        .verify_slice(&p.client_proof)
        .map_err(|_| AuthError::BadProof)?;
    frame::send(s, &Welcome).await?;
    session_keys(secret, &hello.client_nonce, &server_nonce, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Keys = Result<SessionKeys, AuthError>;

    async fn handshake(client_secret: &'static [u8], server_secret: &'static [u8]) -> (Keys, Keys) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let c = tokio::spawn(async move { client_handshake(&mut a, client_secret).await });
        let s = tokio::spawn(async move { server_handshake(&mut b, server_secret).await });
        (c.await.unwrap(), s.await.unwrap())
    }

    async fn run(client_secret: &'static [u8], server_secret: &'static [u8]) -> (bool, bool) {
        let (c, s) = handshake(client_secret, server_secret).await;
        (c.is_ok(), s.is_ok())
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways() {
        assert_eq!(run(b"k1", b"k1").await, (true, true));
    }

    /// Each end sends with the key the other receives with; the two directions differ,
    /// and a new connection gets new keys.
    #[tokio::test]
    async fn session_keys_pair_up_per_direction_and_per_connection() {
        let (c, s) = handshake(b"k1", b"k1").await;
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.send, s.recv);
        assert_eq!(c.recv, s.send);
        assert_ne!(c.send, c.recv);
        let (c2, _) = handshake(b"k1", b"k1").await;
        assert_ne!(c2.unwrap().send, c.send);
    }

    #[tokio::test]
    async fn different_secret_fails_on_both_sides() {
        // The client detects the bad server proof first and hangs up; the server then
        // sees the connection close, so neither side accepts the other.
        assert_eq!(run(b"k1", b"k2").await, (false, false));
    }
}
