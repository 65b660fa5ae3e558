//! What a consistent-hash pool hashes on (`hash_key`), and the HTTP token syntax shared by
//! header and cookie names elsewhere in the file.

use std::fmt;

/// The request property a `consistent-hash` pool hashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HashKey {
    /// The client's IP address.
    SourceIp,
    /// The request path (without the query).
    Path,
    /// A request header; the name is stored lowercase, as HTTP header names are
    /// case-insensitive and `http::HeaderName` is lowercase.
    Header(String),
    /// A request cookie; the name is case-sensitive and kept as written.
    Cookie(String),
}

impl HashKey {
    /// Parses `source-ip`, `path`, `header:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Result<HashKey, String> {
        match s {
            "source-ip" => return Ok(HashKey::SourceIp),
            "path" => return Ok(HashKey::Path),
            _ => {}
        }
        let (kind, name) = s.split_once(':').ok_or_else(|| syntax_error(s))?;
        if !is_token(name) {
            return Err(format!(
                "hash_key `{s}`: `{name}` is not a valid {kind} name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ));
        }
        match kind {
            "header" => Ok(HashKey::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(HashKey::Cookie(name.to_string())),
            _ => Err(syntax_error(s)),
        }
    }

    /// True for keys that need an HTTP request (everything except `source-ip`).
    pub fn needs_http(&self) -> bool {
        !matches!(self, HashKey::SourceIp)
    }
}

impl fmt::Display for HashKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HashKey::SourceIp => f.write_str("source-ip"),
            HashKey::Path => f.write_str("path"),
            HashKey::Header(n) => write!(f, "header:{n}"),
            HashKey::Cookie(n) => write!(f, "cookie:{n}"),
        }
    }
}

fn syntax_error(s: &str) -> String {
    format!("hash_key `{s}` must be one of source-ip, path, header:NAME, cookie:NAME")
}

/// An RFC 9110 token: what header names and RFC 6265 cookie names are made of.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(HashKey::parse("source-ip"), Ok(HashKey::SourceIp));
        assert_eq!(HashKey::parse("path"), Ok(HashKey::Path));
        assert_eq!(
            HashKey::parse("header:X-User-Id"),
            Ok(HashKey::Header("x-user-id".into()))
        );
        assert_eq!(
            HashKey::parse("cookie:SID"),
            Ok(HashKey::Cookie("SID".into()))
        );
    }

    #[test]
    fn refuses_bad_forms() {
        for bad in [
            "header:",
            "cookie:",
            "header:a b",
            "cookie:a;b",
            "query:x",
            "src-ip",
            "",
        ] {
            assert!(HashKey::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in ["source-ip", "path", "header:x-a", "cookie:SID"] {
            assert_eq!(HashKey::parse(s).unwrap().to_string(), s);
        }
    }
}
