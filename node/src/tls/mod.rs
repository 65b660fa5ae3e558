//! TLS: terminating HTTPS on listeners and speaking TLS to backends (rustls, ring).
//!
//! - `certs`    — reading and checking a listener's certificate/key files: every problem
//!   (missing, unreadable, not PEM, expired, key not matching) is a `TlsError` naming
//!   the file, raised when a config is checked or applied, never at handshake time.
//! - `resolver` — picks the certificate for a handshake by SNI among the listener's
//!   certificates, using each certificate's own names (exact and `*.wildcard`).
//! - `server`   — the rustls server config (TLS 1.2 + 1.3, ALPN h2 + http/1.1), the
//!   HTTPS accept loop, and hot reloading (on config apply and when files change).
//! - `backend`  — the TLS client side for pools with `tls = { ... }` (CA, SNI, mTLS).
//!
//! The ring provider is passed explicitly everywhere (`builder_with_provider`), so no
//! process-wide default provider has to be installed.

pub(crate) mod backend;
mod certs;
mod resolver;
mod server;

pub use certs::check_config;
pub use server::{serve_https, TlsServer};

use std::path::PathBuf;
use std::sync::Arc;

/// The crypto provider used for every TLS context of the process.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate, key or TLS setting cannot be used. Messages name the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: String },
    #[error("certificate {}: {reason}", path.display())]
    BadCert { path: PathBuf, reason: String },
    #[error("certificate {} expired on {date}", path.display())]
    Expired { path: PathBuf, date: String },
    #[error("certificate {} is not valid before {date}", path.display())]
    NotYetValid { path: PathBuf, date: String },
    #[error("key {}: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("key {} does not match certificate {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("listener `{0}` has no certificate")]
    NoCertificate(String),
    #[error("TLS setup: {0}")]
    Setup(String),
    #[error("pool `{pool}`: {reason}")]
    Backend { pool: String, reason: String },
}
