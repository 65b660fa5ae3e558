//! Stateless stickiness: a signed cookie that names the backend.
//!
//! The value is `BACKEND.MAC` where `BACKEND` is the backend id in URL-safe base64 and
//! `MAC` is a truncated HMAC-SHA256 over `pool \0 backend` with the cluster-wide
//! `session.cookie_secret`. Every node holds the same secret, so any node can verify a
//! cookie that another node issued. A cookie that fails verification (forged, from another
//! pool, or naming a backend this pool no longer has) is ignored, never trusted.

use crate::request::lookup::HeaderLookup;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// 128 bits of MAC are plenty against forgery and keep the cookie short.
const MAC_LEN: usize = 16;

/// Signs and verifies affinity cookies for one pool.
#[derive(Clone)]
pub struct CookieSigner {
    key: HmacSha256,
    pool: String,
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieSigner")
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

impl CookieSigner {
    /// `None` only if the HMAC implementation refuses the key (it accepts any length).
    pub fn new(secret: &[u8], pool: &str) -> Option<Self> {
        let key = HmacSha256::new_from_slice(secret).ok()?;
        Some(CookieSigner {
            key,
            pool: pool.to_string(),
        })
    }

    fn mac(&self, backend: &str) -> [u8; MAC_LEN] {
        let mut mac = self.key.clone();
        mac.update(self.pool.as_bytes());
        mac.update(&[0]);
        mac.update(backend.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; MAC_LEN];
        out.copy_from_slice(&full[..MAC_LEN]);
        out
    }

    /// The cookie value naming `backend`.
    pub fn sign(&self, backend: &str) -> String {
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(backend.as_bytes()),
            URL_SAFE_NO_PAD.encode(self.mac(backend))
        )
    }

    /// The backend a cookie names, if the signature is valid.
    pub fn verify(&self, value: &str) -> Option<String> {
        let (id_part, mac_part) = value.split_once('.')?;
        let backend = String::from_utf8(URL_SAFE_NO_PAD.decode(id_part).ok()?).ok()?;
        let given = URL_SAFE_NO_PAD.decode(mac_part).ok()?;
        let mut mac = self.key.clone();
        mac.update(self.pool.as_bytes());
        mac.update(&[0]);
        mac.update(backend.as_bytes());
        // verify_truncated_left compares in constant time.
        mac.verify_truncated_left(&given).ok()?;
        (given.len() == MAC_LEN).then_some(backend)
    }
}

/// Finds cookie `name` in the request's `Cookie` headers.
pub fn find_cookie<'a, H: HeaderLookup>(headers: &'a H, name: &str) -> Option<&'a str> {
    headers
        .values("cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgery() {
        let s = CookieSigner::new(b"0123456789abcdef-secret", "app").unwrap();
        let v = s.sign("127.0.0.1:9001");
        assert_eq!(s.verify(&v).as_deref(), Some("127.0.0.1:9001"));
        // Same backend, tampered id.
        let forged = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode("127.0.0.1:9002"),
            v.split_once('.').unwrap().1
        );
        assert_eq!(s.verify(&forged), None);
        // Other pool or other key cannot reuse it.
        let other_pool = CookieSigner::new(b"0123456789abcdef-secret", "api").unwrap();
        assert_eq!(other_pool.verify(&v), None);
        let other_key = CookieSigner::new(b"another-secret-0123456", "app").unwrap();
        assert_eq!(other_key.verify(&v), None);
        // Garbage never panics.
        for junk in ["", ".", "a.b", "%%%.%%%", "....", &"x".repeat(5000)] {
            assert_eq!(s.verify(junk), None);
        }
        // A truncated MAC is refused.
        let short = &v[..v.len() - 4];
        assert_eq!(s.verify(short), None);
    }

    #[test]
    fn finds_cookie_among_several() {
        let mut h = http::HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; fulcrum_affinity=xyz".parse().unwrap(),
        );
        h.append(http::header::COOKIE, "b=2".parse().unwrap());
        assert_eq!(find_cookie(&h, "fulcrum_affinity"), Some("xyz"));
        assert_eq!(find_cookie(&h, "b"), Some("2"));
        assert_eq!(find_cookie(&h, "c"), None);
    }
}
