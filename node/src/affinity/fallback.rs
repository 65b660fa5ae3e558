//! The signed fallback cookie of shared-affinity pools (`learn`, `header`, `source-ip`).
//!
//! A session's pin lives in Redis, but a session that begins while Redis cannot take its pin
//! (an outage, a failover) would otherwise be known only to the node that chose its backend.
//! So when a node pins a session (or moves it), the response also carries a cookie
//! `<session.fallback_cookie>_<pool>` naming the backend, signed like the `cookie` mode's
//! cookie (`cookie.rs`). Any node that cannot get an answer from Redis, or finds no pin there
//! yet, routes the session by this cookie instead of by hash; a pin Redis holds always wins
//! over the cookie.
//!
//! Keys: the files of `session.fallback_keys` (the first signs, every one verifies, so a key
//! can be rotated in without breaking cookies already out), or, when none are given, a key
//! derived from the cluster secret (`HMAC-SHA256(secret, "fulcrum fallback cookie v1")`),
//! which every node has already. Without either there is no fallback cookie.

use crate::affinity::cookie::CookieSigner;
use fulcrum_config::{AffinityMode, Config};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;

/// Shortest key accepted from a `fallback_keys` file.
const MIN_KEY_BYTES: usize = 16;
const DERIVATION_LABEL: &[u8] = b"fulcrum fallback cookie v1";

/// Why the fallback cookie's keys could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FallbackKeyError {
    #[error("fallback key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("fallback key {path}: shorter than {MIN_KEY_BYTES} bytes")]
    TooShort { path: PathBuf },
}

/// The fallback cookie's name prefix and keys, read once per config version.
#[derive(Clone, Default)]
pub struct FallbackKeys {
    prefix: String,
    keys: Vec<Vec<u8>>,
}

impl std::fmt::Debug for FallbackKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FallbackKeys")
            .field("prefix", &self.prefix)
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl FallbackKeys {
    /// Reads the keys named by `[session]` (or derives one from the cluster secret). Empty
    /// (no cookie) when there is no Redis, the cookie is turned off, or no key is at hand.
    pub fn load(config: &Config) -> Result<Self, FallbackKeyError> {
        let Some(session) = config.session.as_ref() else {
            return Ok(Self::default());
        };
        let has_redis = session.redis.is_some() || !session.sentinels.is_empty();
        if !has_redis || session.fallback_cookie.is_empty() {
            return Ok(Self::default());
        }
        let keys = if session.fallback_keys.is_empty() {
            match &config.cluster {
                Some(cluster) => vec![derive(&read_key(&cluster.secret_file)?)],
                None => Vec::new(),
            }
        } else {
            session
                .fallback_keys
                .iter()
                .map(read_key)
                .collect::<Result<_, _>>()?
        };
        Ok(Self {
            prefix: session.fallback_cookie.clone(),
            keys,
        })
    }

    /// Keys given directly (tests).
    #[cfg(test)]
    pub fn new(prefix: &str, keys: Vec<Vec<u8>>) -> Self {
        Self {
            prefix: prefix.to_string(),
            keys,
        }
    }

    /// The fallback cookie of one pool, if the pool's mode shares pins through Redis.
    pub fn for_pool(&self, pool: &str, mode: AffinityMode) -> Option<FallbackCookie> {
        let shared = matches!(
            mode,
            AffinityMode::Learn | AffinityMode::Header | AffinityMode::SourceIp
        );
        if !shared || self.keys.is_empty() {
            return None;
        }
        let signers: Vec<CookieSigner> = self
            .keys
            .iter()
            .filter_map(|k| CookieSigner::new(k, pool))
            .collect();
        (!signers.is_empty()).then(|| FallbackCookie {
            name: format!("{}_{pool}", self.prefix),
            signers,
        })
    }
}

fn read_key(path: &PathBuf) -> Result<Vec<u8>, FallbackKeyError> {
    let bytes = std::fs::read(path).map_err(|source| FallbackKeyError::Read {
        path: path.clone(),
        source,
    })?;
    let key = bytes.trim_ascii().to_vec();
    if key.len() < MIN_KEY_BYTES {
        return Err(FallbackKeyError::TooShort { path: path.clone() });
    }
    Ok(key)
}

fn derive(secret: &[u8]) -> Vec<u8> {
    // HMAC accepts a key of any length, so this cannot fail; an empty key would still work.
    match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(DERIVATION_LABEL);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// One pool's fallback cookie.
#[derive(Debug, Clone)]
pub struct FallbackCookie {
    pub name: String,
    /// The first signs; all verify.
    signers: Vec<CookieSigner>,
}

impl FallbackCookie {
    /// The backend a cookie value names, if any key's signature matches.
    pub fn verify(&self, value: &str) -> Option<String> {
        self.signers.iter().find_map(|s| s.verify(value))
    }

    /// The `Set-Cookie` value naming `backend`.
    pub fn set_cookie(&self, backend: &str) -> String {
        let value = self.signers.first().map(|s| s.sign(backend));
        format!(
            "{}={}; Path=/; HttpOnly; SameSite=Lax",
            self.name,
            value.unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(set_cookie: &str) -> &str {
        let first = set_cookie.split(';').next().unwrap();
        first.split_once('=').unwrap().1
    }

    #[test]
    fn signs_with_the_first_key_and_verifies_with_all() {
        let old = FallbackKeys::new("pin", vec![b"old-key-0123456789".to_vec()]);
        let both = FallbackKeys::new(
            "pin",
            vec![
                b"new-key-0123456789".to_vec(),
                b"old-key-0123456789".to_vec(),
            ],
        );
        let old = old.for_pool("web", AffinityMode::Learn).unwrap();
        let both = both.for_pool("web", AffinityMode::Learn).unwrap();
        assert_eq!(both.name, "pin_web");
        let issued_before = old.set_cookie("10.0.0.1:80");
        assert_eq!(
            both.verify(value(&issued_before)).as_deref(),
            Some("10.0.0.1:80")
        );
        let issued_after = both.set_cookie("10.0.0.2:80");
        assert_eq!(old.verify(value(&issued_after)), None);
        assert_eq!(
            both.verify(value(&issued_after)).as_deref(),
            Some("10.0.0.2:80")
        );
        // Another pool's cookie does not verify.
        let api = FallbackKeys::new("pin", vec![b"new-key-0123456789".to_vec()])
            .for_pool("api", AffinityMode::Header)
            .unwrap();
        assert_eq!(api.verify(value(&issued_after)), None);
    }

    #[test]
    fn only_shared_modes_and_only_with_a_key() {
        let keys = FallbackKeys::new("pin", vec![b"k-0123456789abcdef".to_vec()]);
        assert!(keys.for_pool("p", AffinityMode::SourceIp).is_some());
        assert!(keys.for_pool("p", AffinityMode::Cookie).is_none());
        assert!(keys.for_pool("p", AffinityMode::None).is_none());
        assert!(FallbackKeys::default()
            .for_pool("p", AffinityMode::Learn)
            .is_none());
    }

    #[test]
    fn key_files_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "tiny\n").unwrap();
        assert!(matches!(
            read_key(&short),
            Err(FallbackKeyError::TooShort { .. })
        ));
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123\n").unwrap();
        assert_eq!(read_key(&good).unwrap(), b"0123456789abcdef0123");
        assert!(matches!(
            read_key(&dir.path().join("missing")),
            Err(FallbackKeyError::Read { .. })
        ));
        assert_ne!(derive(b"secret"), derive(b"other"));
        assert_eq!(derive(b"secret").len(), 32);
    }
}
