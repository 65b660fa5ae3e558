//! The authority a request is for, as both HTTP paths read it.
//!
//! A `Host` value (or the authority of an absolute-form target, or HTTP/2's
//! `:authority`) must be `uri-host [":" port]` (RFC 9112 §3.2, RFC 3986 §3.2.2); any
//! other value is answered with 400. Everything here works on ASCII bytes and never
//! slices text at a computed offset, so no client input can make it panic: routing
//! compares the host part with `eq_ignore_ascii_case` on bytes.

/// The most digits a port may have (RFC 3986 allows any number; none means anything
/// above 65535).
const MAX_PORT_DIGITS: usize = 5;

/// Whether `value` is `uri-host [":" port]`. An empty value is valid: RFC 9112 §3.2
/// has a client send an empty `Host` when the target URI has no authority.
pub fn is_valid(value: &[u8]) -> bool {
    let (host, port) = split_port(value);
    let port_ok =
        port.is_none_or(|p| p.len() <= MAX_PORT_DIGITS && p.iter().all(u8::is_ascii_digit));
    port_ok && is_uri_host(host)
}

/// The host part of a valid authority: without the port, with a trailing dot of a
/// fully qualified name removed (`Shop.Example.:8080` -> `Shop.Example`); an IPv6
/// literal keeps its brackets.
pub fn host_part(value: &[u8]) -> &[u8] {
    let host = split_port(value).0;
    match host.split_last() {
        Some((b'.', rest)) if !rest.is_empty() => rest,
        _ => host,
    }
}

/// Whether two valid authorities name the same host and port (case-insensitive;
/// RFC 9113 §8.3.1 asks for a comparison of normalised values).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let (host_a, port_a) = split_port(a);
    let (host_b, port_b) = split_port(b);
    host_part(host_a).eq_ignore_ascii_case(host_part(host_b))
        && port_a.filter(|p| !p.is_empty()) == port_b.filter(|p| !p.is_empty())
}

/// Splits `host[:port]` at the port's colon; an IPv6 literal's colons are inside its
/// brackets and never mistaken for it.
fn split_port(value: &[u8]) -> (&[u8], Option<&[u8]>) {
    let host_end = if value.first() == Some(&b'[') {
        match value.iter().position(|&b| b == b']') {
            Some(close) => close + 1,
            None => return (value, None),
        }
    } else {
        match value.iter().rposition(|&b| b == b':') {
            Some(colon) => colon,
            None => return (value, None),
        }
    };
    match value.split_at(host_end) {
        (host, []) => (host, None),
        (host, [b':', port @ ..]) => (host, Some(port)),
        // Bytes after `]` that are not a port: leave them in the host, which then
        // fails validation.
        _ => (value, None),
    }
}

/// `IP-literal / IPv4address / reg-name` (RFC 3986 §3.2.2).
fn is_uri_host(host: &[u8]) -> bool {
    match host {
        [b'[', inner @ .., b']'] => is_ip_literal(inner),
        _ => is_reg_name(host),
    }
}

/// `IPv6address / IPvFuture` between the brackets.
fn is_ip_literal(inner: &[u8]) -> bool {
    if let [b'v' | b'V', rest @ ..] = inner {
        return match rest.iter().position(|&b| b == b'.') {
            Some(dot) if dot > 0 && dot + 1 < rest.len() => {
                rest[..dot].iter().all(u8::is_ascii_hexdigit)
                    && rest[dot + 1..]
                        .iter()
                        .all(|&b| is_unreserved(b) || is_sub_delim(b) || b == b':')
            }
            _ => false,
        };
    }
    inner
        .iter()
        .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        && std::str::from_utf8(inner).is_ok_and(|text| text.parse::<std::net::Ipv6Addr>().is_ok())
}

/// `*( unreserved / pct-encoded / sub-delims )`, which covers IPv4 addresses too.
fn is_reg_name(name: &[u8]) -> bool {
    let mut rest = name;
    while let Some((&b, tail)) = rest.split_first() {
        rest = match (b, tail) {
            (b'%', [hi, lo, after @ ..]) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                after
            }
            (b'%', _) => return false,
            _ if is_unreserved(b) || is_sub_delim(b) => tail,
            _ => return false,
        };
    }
    true
}

/// `ALPHA / DIGIT / "-" / "." / "_" / "~"` (RFC 3986 §2.3).
pub(crate) fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_authorities() {
        for ok in [
            "shop.example",
            "Shop.Example:8080",
            "shop.example:",
            "",
            "10.0.0.1:80",
            "[::1]",
            "[::1]:443",
            "[2001:db8::7]:8080",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "a%2Db.example",
            "under_score.example",
        ] {
            assert!(is_valid(ok.as_bytes()), "{ok:?} should be valid");
        }
    }

    #[test]
    fn invalid_authorities() {
        let cases: [&[u8]; 15] = [
            "bücher.example".as_bytes(),
            b"\xff\xfe",
            b"a b",
            b"a/b",
            b"a@b",
            b"user@shop.example",
            b"shop.example:80:80",
            b"shop.example:http",
            b"shop.example:123456",
            b"[::1",
            b"[::1]x",
            b"[::g]",
            b"[fe80::1%25eth0]",
            b"a%zz",
            b"a%4",
        ];
        for bad in cases {
            assert!(
                !is_valid(bad),
                "{:?} should be invalid",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn host_part_drops_port_and_trailing_dot() {
        assert_eq!(host_part(b"Shop.Example.:8080"), b"Shop.Example");
        assert_eq!(host_part(b"shop.example"), b"shop.example");
        assert_eq!(host_part(b"[::1]:80"), b"[::1]");
        assert_eq!(host_part(b"[::1]"), b"[::1]");
        assert_eq!(host_part(b"."), b".");
        assert_eq!(host_part(b""), b"");
    }

    #[test]
    fn same_authority_ignores_case_and_an_empty_port() {
        assert!(same(b"Shop.Example", b"shop.example"));
        assert!(same(b"shop.example:", b"shop.example"));
        assert!(same(b"shop.example.:8080", b"SHOP.example:8080"));
        assert!(!same(b"shop.example:8080", b"shop.example"));
        assert!(!same(b"admin.example", b"shop.example"));
    }
}
