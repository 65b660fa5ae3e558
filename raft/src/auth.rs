//! Mutual HMAC-SHA256 challenge-response run on every new peer connection, before any
//! byte reaches Raft.
//!
//! 1. client -> `Hello { client_nonce }`
//! 2. server -> `Challenge { server_nonce, server_proof = HMAC(k, "srv" | cn | sn) }`
//! 3. client checks `server_proof`, -> `Proof { HMAC(k, "cli" | sn | cn) }`
//! 4. server checks it, -> `Welcome`
//!
//! Both sides contribute a fresh random nonce, so neither proof can be replayed, and the
//! distinct labels stop a proof from one direction being reflected back as the other.
//! Proofs are compared in constant time (`Mac::verify_slice`).

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{self, FrameError, MAX_HANDSHAKE_FRAME};

type HmacSha256 = Hmac<Sha256>;
const VERSION: u32 = 1;

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

fn check_secret(secret: &[u8]) -> Result<(), AuthError> {
    if secret.is_empty() {
        return Err(AuthError::EmptySecret);
    }
    Ok(())
}

/// Client side: prove we know `secret` and check that the server does too.
pub async fn client_handshake<S>(s: &mut S, secret: &[u8]) -> Result<(), AuthError>
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
    Ok(())
}

/// Server side: the peer is trusted only if this returns `Ok`.
pub async fn server_handshake<S>(s: &mut S, secret: &[u8]) -> Result<(), AuthError>
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(client_secret: &'static [u8], server_secret: &'static [u8]) -> (bool, bool) {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let c = tokio::spawn(async move { client_handshake(&mut a, client_secret).await.is_ok() });
        let s = tokio::spawn(async move { server_handshake(&mut b, server_secret).await.is_ok() });
        (c.await.unwrap(), s.await.unwrap())
    }

    #[tokio::test]
    async fn same_secret_authenticates_both_ways() {
        assert_eq!(run(b"k1", b"k1").await, (true, true));
    }

    #[tokio::test]
    async fn different_secret_fails_on_both_sides() {
        // The client detects the bad server proof first and hangs up; the server then
        // sees the connection close, so neither side accepts the other.
        assert_eq!(run(b"k1", b"k2").await, (false, false));
    }
}
