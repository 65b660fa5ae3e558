//! Header rewriting between client and backend.
//!
//! Hop-by-hop headers describe one connection, not the message, so a proxy must drop
//! them in both directions (RFC 9110 §7.6.1): the fixed list below plus every header
//! named in `Connection` — except `Host`, `Content-Length` and `Transfer-Encoding`,
//! which routing and framing depend on and which no sender may list (a `Connection:
//! content-length` from a backend must not unframe the body). Towards the backend we
//! then add the forwarding headers: `X-Forwarded-For`, `Forwarded` and `X-Real-IP`
//! replaced with fulcrum's view, or appended to for a trusted proxy (`add_forwarding`),
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `Via`.

use super::ConnInfo;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, FORWARDED, HOST,
    PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};

/// The fixed hop-by-hop headers, plus `Upgrade` (the upgrade path re-adds it) and
/// `HTTP2-Settings` (connection-specific, RFC 9113 §3.2.1: never forwarded).
static HOP_BY_HOP: [HeaderName; 10] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
    HeaderName::from_static("http2-settings"),
];

/// Never removed for being named in `Connection`.
static NOT_LISTABLE: [HeaderName; 3] = [HOST, CONTENT_LENGTH, TRANSFER_ENCODING];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Whether the client said it takes trailers (`TE: trailers`, maybe among others).
pub fn takes_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

/// Removes hop-by-hop headers, including those listed in `Connection` (but see
/// `NOT_LISTABLE`). `Upgrade` is removed too; the upgrade path re-adds it explicitly.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass of cheap name comparisons (no hashing) finds which fixed ones are
    // present; most messages carry none, or only `Connection: keep-alive`.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            // `close` and `keep-alive` are options, not header names to drop.
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok())
            .filter(|name| !NOT_LISTABLE.contains(name))
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

/// True when the request asks to switch protocols (WebSocket and friends).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE)
        && headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Adds the forwarding headers for a request that came over `conn`. `host` is the
/// authority the request was routed on (Host, absolute-form target or :authority).
pub fn add_forwarding(headers: &mut HeaderMap, conn: &ConnInfo, host: Option<&str>, http2: bool) {
    let trusted = conn.trusted;
    let client_ip = conn.client_ip().header_value();
    set_list(headers, &X_FORWARDED_FOR, &client_ip, trusted);
    if headers.contains_key(FORWARDED) {
        set_list(
            headers,
            &FORWARDED,
            &conn.forwarded().header_value(),
            trusted,
        );
    }
    let trusted_real_ip = trusted
        && headers
            .get(&X_REAL_IP)
            .is_some_and(|v| !v.as_bytes().is_empty());
    if headers.contains_key(&X_REAL_IP) && !trusted_real_ip {
        headers.insert(X_REAL_IP.clone(), client_ip);
    }
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(conn.proto()),
    );
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
    append_via(headers, if http2 { "2 fulcrum" } else { "1.1 fulcrum" });
}

/// Sets list header `name` to `ours`, after every earlier non-empty value when the
/// peer is `trusted` (all header lines, in order); an untrusted peer's are dropped.
fn set_list(headers: &mut HeaderMap, name: &HeaderName, ours: &HeaderValue, trusted: bool) {
    let mut joined = Vec::new();
    if trusted {
        for prior in headers.get_all(name).iter().map(HeaderValue::as_bytes) {
            if !prior.is_empty() {
                joined.extend_from_slice(prior);
                joined.extend_from_slice(b", ");
            }
        }
    }
    let value = if joined.is_empty() {
        ours.clone()
    } else {
        joined.extend_from_slice(ours.as_bytes());
        // Joined from valid values with ", ": valid unless a value was not, and then
        // ours alone is the safe answer.
        HeaderValue::from_bytes(&joined).unwrap_or_else(|_| ours.clone())
    };
    headers.insert(name.clone(), value);
}

/// For an upgrade request, the protocols it offers that `allowed` permits, as the
/// `Upgrade` value to forward; `None` when it is no upgrade request or offers nothing
/// allowed (it is then forwarded as a plain request, `Upgrade` stripped).
pub fn allowed_upgrade(
    headers: &HeaderMap,
    allowed: impl Fn(&[u8]) -> bool,
) -> Option<HeaderValue> {
    if !is_upgrade_request(headers) {
        return None;
    }
    let offered: Vec<&str> = headers
        .get_all(UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && allowed(t.as_bytes()))
        .collect();
    if offered.is_empty() {
        return None;
    }
    HeaderValue::from_str(&offered.join(", ")).ok()
}

/// Appends our hop to `Via` (also used on responses).
pub fn append_via(headers: &mut HeaderMap, hop: &'static str) {
    let via = match headers.get(VIA).and_then(|v| v.to_str().ok()) {
        Some(prior) => HeaderValue::from_str(&format!("{prior}, {hop}")).ok(),
        None => Some(HeaderValue::from_static(hop)),
    };
    if let Some(v) = via {
        headers.insert(VIA, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_fixed_and_listed_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("x-kept", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn strips_keep_alive_and_upgrade_and_leaves_the_rest() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Keep-Alive, Upgrade".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("content-length", "3".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("content-length"));

        let mut untouched = HeaderMap::new();
        untouched.insert("host", "a".parse().unwrap());
        untouched.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        strip_hop_by_hop(&mut untouched);
        assert_eq!(untouched.len(), 2);
    }

    fn conn(trusted: bool) -> ConnInfo {
        ConnInfo::new(
            "web".into(),
            "10.1.2.3:5000".parse().unwrap(),
            false,
            trusted,
        )
    }

    fn hostile_forwarding() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.append("x-forwarded-for", "198.51.100.1".parse().unwrap());
        h.insert("forwarded", "for=203.0.113.9".parse().unwrap());
        h.insert("x-real-ip", "203.0.113.9".parse().unwrap());
        h
    }

    #[test]
    fn an_edge_listener_replaces_forwarding_headers() {
        let mut h = hostile_forwarding();
        add_forwarding(&mut h, &conn(false), Some("shop.example"), false);
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["forwarded"], "for=10.1.2.3;proto=http");
        assert_eq!(h["x-real-ip"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["via"], "1.1 fulcrum");
        let mut plain = HeaderMap::new();
        add_forwarding(&mut plain, &conn(false), None, false);
        assert_eq!(plain["x-forwarded-for"], "10.1.2.3");
        assert!(!plain.contains_key("forwarded") && !plain.contains_key("x-real-ip"));
    }

    #[test]
    fn a_trusted_proxy_is_appended_to() {
        let mut h = hostile_forwarding();
        add_forwarding(&mut h, &conn(true), Some("shop.example"), false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 198.51.100.1, 10.1.2.3");
        assert_eq!(h["forwarded"], "for=203.0.113.9, for=10.1.2.3;proto=http");
        assert_eq!(h["x-real-ip"], "203.0.113.9");
        let v6 = ConnInfo::new(
            "web".into(),
            "[2001:db8::1]:5000".parse().unwrap(),
            true,
            false,
        );
        assert_eq!(
            v6.forwarded().header_value(),
            "for=\"[2001:db8::1]\";proto=https"
        );
    }

    #[test]
    fn framing_and_host_are_never_stripped_as_listed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "host, content-length, x-a".parse().unwrap());
        h.insert("host", "a".parse().unwrap());
        h.insert("content-length", "5".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        h.insert("http2-settings", "AAMAAABkAAQ".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["content-length", "host"]);
    }

    #[test]
    fn only_allowed_upgrade_protocols_are_offered() {
        let mut h = HeaderMap::new();
        h.insert("connection", "Upgrade, HTTP2-Settings".parse().unwrap());
        h.insert("upgrade", "h2c, WebSocket".parse().unwrap());
        let websocket = |t: &[u8]| t.eq_ignore_ascii_case(b"websocket");
        assert_eq!(allowed_upgrade(&h, websocket).unwrap(), "WebSocket");
        h.insert("upgrade", "h2c".parse().unwrap());
        assert!(allowed_upgrade(&h, websocket).is_none());
        h.remove("connection");
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(
            allowed_upgrade(&h, websocket).is_none(),
            "no Connection: upgrade"
        );
    }

    #[test]
    fn detects_upgrade() {
        let mut h = HeaderMap::new();
        h.insert("upgrade", "websocket".parse().unwrap());
        assert!(!is_upgrade_request(&h));
        h.insert("connection", "keep-alive, Upgrade".parse().unwrap());
        assert!(is_upgrade_request(&h));
    }
}
