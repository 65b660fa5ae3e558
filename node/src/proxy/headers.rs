//! Header rewriting between client and backend.
//!
//! Hop-by-hop headers describe one connection, not the message, so a proxy must drop
//! them in both directions (RFC 9110 §7.6.1): the fixed list below plus every header
//! named in `Connection`. Towards the backend we then add the forwarding headers
//! (`X-Forwarded-For` appended, `X-Forwarded-Proto`, `X-Forwarded-Host`, `Via`).

use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST, UPGRADE, VIA};
use std::net::IpAddr;

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including those listed in `Connection`. `Upgrade` is
/// removed too; the upgrade path re-adds it explicitly.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(UPGRADE);
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

/// Adds the forwarding headers for a request that came from `client` over `proto`.
/// `host` is the host the client asked for (Host header or :authority).
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: Option<&str>,
    http2: bool,
) {
    let client = client.to_canonical().to_string();
    let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.is_empty() => format!("{prior}, {client}"),
        _ => client,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
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
    fn appends_forwarded_for_and_sets_proto_host_via() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        add_forwarding(
            &mut h,
            "10.1.2.3".parse().unwrap(),
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
