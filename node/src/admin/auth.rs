//! Bearer-token check for mutating admin calls.

use http::HeaderMap;

/// True when no token is configured, or the request presents exactly that token.
/// The comparison takes the same time wherever the first difference is.
pub fn authorized(expected: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(expected) = expected else {
        return true;
    };
    let Some(given) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    constant_time_eq(given.trim().as_bytes(), expected.as_bytes())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        let mut h = HeaderMap::new();
        assert!(authorized(None, &h));
        assert!(!authorized(Some("s3cret"), &h));
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        assert!(!authorized(Some("s3cret"), &h));
        h.insert("authorization", "Bearer s3cret".parse().unwrap());
        assert!(authorized(Some("s3cret"), &h));
        h.insert("authorization", "Basic s3cret".parse().unwrap());
        assert!(!authorized(Some("s3cret"), &h));
    }
}
