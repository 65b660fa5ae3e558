//! Header rewriting between client and backend.
//!
//! Hop-by-hop headers describe one connection, not the message, so a proxy must drop
//! them in both directions (RFC 9110 §7.6.1): the fixed list below plus every header
//! named in `Connection`. Towards the backend we then add the forwarding headers
//! (`X-Forwarded-For` appended, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Via`).

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION,
    TE, TRAILER, TRANSFER_ENCODING, UPGRADE, VIA,
};

/// The fixed hop-by-hop headers, plus `Upgrade` (the upgrade path re-adds it).
static HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION,
    TE,
    TRAILER,
    TRANSFER_ENCODING,
    UPGRADE,
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including those listed in `Connection`. `Upgrade` is
/// removed too; the upgrade path re-adds it explicitly.
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

/// Adds the forwarding headers for a request that came from `client` (the address
/// as a header value) over `proto`. `host` is the host the client asked for (Host
/// header or :authority).
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&str>,
    http2: bool,
) {
    let prior = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|p| !p.is_empty());
    let xff = match prior {
        Some(prior) => client
            .to_str()
            .ok()
            .and_then(|c| HeaderValue::from_str(&format!("{prior}, {c}")).ok()),
        None => Some(client.clone()),
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        headers.insert(X_FORWARDED_HOST.clone(), v);
    }
    append_via(headers, if http2 { "2 fulcrum" } else { "1.1 fulcrum" });
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

/// The host a request is for: the Host header, or the URI authority (HTTP/2).
pub fn request_host<B>(req: &http::Request<B>) -> Option<String> {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_string()))
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

    #[test]
    fn appends_forwarded_for_and_sets_proto_host_via() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        add_forwarding(
            &mut h,
            &HeaderValue::from_static("10.1.2.3"),
            "http",
            Some("shop.example"),
            false,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example");
        assert_eq!(h["via"], "1.1 fulcrum");
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
