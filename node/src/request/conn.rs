//! `ConnInfo`: what a request's path knows about the client connection it came on (listener,
//! client address, TLS, trusted proxy). One is held by every open connection, idle or
//! not, so it is kept small (80 bytes with its `Arc`): the forwarding header values are
//! written from the address when a request is forwarded (`HopText`, on the stack), not
//! stored per connection.

use http::HeaderValue;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
}

/// A forwarding header value written on the stack: the longest, an IPv6 `Forwarded`
/// element (`for="[` 39 `]";proto=https`), is 59 bytes.
pub(crate) struct HopText {
    bytes: [u8; 64],
    len: u8,
}

impl HopText {
    fn write(args: std::fmt::Arguments<'_>) -> Self {
        let mut bytes = [0u8; 64];
        let mut cursor = std::io::Cursor::new(&mut bytes[..]);
        // Cannot fail: every value written here fits (see the type's comment).
        let _ = cursor.write_fmt(args);
        let len = cursor.position() as u8;
        HopText { bytes, len }
    }

    fn empty() -> Self {
        HopText {
            bytes: [0; 64],
            len: 0,
        }
    }

    /// Appends `more` (cut at the capacity, which every value written here fits).
    fn push(&mut self, more: &[u8]) {
        let at = usize::from(self.len);
        let end = (at + more.len()).min(self.bytes.len());
        self.bytes[at..end].copy_from_slice(&more[..end - at]);
        self.len = end as u8;
    }

    /// Appends an IPv4 address in dotted decimal without `core::fmt`: every forwarded
    /// request writes its client's address, and the formatting machinery cost about
    /// 1,600 instructions a request (callgrind) where the digits take a few dozen.
    fn push_v4(&mut self, v4: Ipv4Addr) {
        for (i, octet) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                self.push(b".");
            }
            let digits = [
                b'0' + octet / 100,
                b'0' + octet / 10 % 10,
                b'0' + octet % 10,
            ];
            let skip = match octet {
                100.. => 0,
                10..=99 => 1,
                _ => 2,
            };
            self.push(&digits[skip..]);
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// As a header value (an address, `for=`, quotes and brackets are all visible
    /// ASCII).
    pub(crate) fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(self.as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
    }
}

impl ConnInfo {
    pub fn new(listener: Arc<str>, client: SocketAddr, tls: bool, trusted: bool) -> Self {
        ConnInfo {
            listener,
            client,
            tls,
            trusted,
        }
    }

    /// The client address as an `X-Forwarded-For` entry (an IPv4-mapped IPv6 address
    /// as IPv4).
    pub(crate) fn client_ip(&self) -> HopText {
        match self.client.ip().to_canonical() {
            IpAddr::V4(v4) => {
                let mut text = HopText::empty();
                text.push_v4(v4);
                text
            }
            IpAddr::V6(v6) => HopText::write(format_args!("{v6}")),
        }
    }

    /// This hop as a `Forwarded` element (`for=...;proto=...`, RFC 7239; §6: an IPv6
    /// node is quoted and bracketed).
    pub(crate) fn forwarded(&self) -> HopText {
        let proto = self.proto();
        match self.client.ip().to_canonical() {
            IpAddr::V4(v4) => {
                let mut text = HopText::empty();
                text.push(b"for=");
                text.push_v4(v4);
                text.push(b";proto=");
                text.push(proto.as_bytes());
                text
            }
            IpAddr::V6(v6) => HopText::write(format_args!("for=\"[{v6}]\";proto={proto}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(addr: &str, tls: bool) -> ConnInfo {
        let client = addr.parse().expect("test address");
        ConnInfo::new(Arc::from("web"), client, tls, false)
    }

    #[test]
    fn forwarding_values_are_written_from_the_address() {
        let v4 = conn("10.1.2.3:5000", false);
        assert_eq!(v4.client_ip().as_bytes(), b"10.1.2.3");
        assert_eq!(v4.forwarded().as_bytes(), b"for=10.1.2.3;proto=http");
        let mapped = conn("[::ffff:10.1.2.3]:5000", true);
        assert_eq!(mapped.client_ip().as_bytes(), b"10.1.2.3");
        assert_eq!(mapped.forwarded().as_bytes(), b"for=10.1.2.3;proto=https");
        let v6 = conn("[2001:db8::1]:443", true);
        assert_eq!(v6.client_ip().as_bytes(), b"2001:db8::1");
        assert_eq!(
            v6.forwarded().as_bytes(),
            b"for=\"[2001:db8::1]\";proto=https"
        );
        assert_eq!(
            v6.forwarded().header_value(),
            "for=\"[2001:db8::1]\";proto=https"
        );
    }

    #[test]
    fn ipv4_digits_are_written_as_display_writes_them() {
        for octets in [
            [0, 0, 0, 0],
            [255, 255, 255, 255],
            [10, 0, 5, 99],
            [1, 20, 100, 9],
        ] {
            let v4 = Ipv4Addr::from(octets);
            let mut text = HopText::empty();
            text.push_v4(v4);
            assert_eq!(text.as_bytes(), v4.to_string().as_bytes());
        }
        for n in 0..=255u8 {
            let v4 = Ipv4Addr::new(n, n, n, n);
            let mut text = HopText::empty();
            text.push_v4(v4);
            assert_eq!(text.as_bytes(), v4.to_string().as_bytes());
        }
    }

    #[test]
    fn the_longest_address_fits() {
        let long = conn("[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]:1", true);
        let text = long.forwarded();
        assert_eq!(
            text.as_bytes(),
            b"for=\"[ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe]\";proto=https"
        );
    }

    /// Every open connection holds one `ConnInfo` in an `Arc` (two counters first):
    /// 80 bytes, one small allocation, and no other.
    #[test]
    fn a_connection_info_is_small() {
        assert!(std::mem::size_of::<ConnInfo>() + 16 <= 80);
    }
}
