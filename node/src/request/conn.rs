//! `ConnInfo`: what a request's path knows about the client connection it came on (listener,
//! client address, TLS, trusted proxy), with the forwarding header values formatted once per
//! connection.

use http::HeaderValue;
use std::net::SocketAddr;
use std::sync::Arc;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub tls: bool,
    /// The client is one of the listener's `trusted_proxies`: its forwarding headers
    /// are appended to instead of replaced.
    pub trusted: bool,
    /// The client address as an `X-Forwarded-For` entry, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
    /// This hop as a `Forwarded` element (`for=...;proto=...`, RFC 7239).
    pub(crate) forwarded: HeaderValue,
}

impl ConnInfo {
    pub fn new(listener: Arc<str>, client: SocketAddr, tls: bool, trusted: bool) -> Self {
        let ip = client.ip().to_canonical();
        let proto = if tls { "https" } else { "http" };
        // RFC 7239 §6: an IPv6 node is quoted and bracketed.
        let forwarded = match ip {
            std::net::IpAddr::V4(v4) => format!("for={v4};proto={proto}"),
            std::net::IpAddr::V6(v6) => format!("for=\"[{v6}]\";proto={proto}"),
        };
        // An IP address is always a valid header value.
        let value = |text: String| {
            HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("unknown"))
        };
        ConnInfo {
            listener,
            client,
            tls,
            trusted,
            client_ip: value(ip.to_string()),
            forwarded: value(forwarded),
        }
    }

    pub(crate) fn proto(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}
