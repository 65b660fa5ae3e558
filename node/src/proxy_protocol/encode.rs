//! Writing PROXY headers for backends (`send_proxy = "v1" | "v2"`).
//!
//! Both ends of one header must be of the same family. A dual-stack listener can see
//! an IPv4 client on an IPv6 socket (`::ffff:a.b.c.d`): such mapped addresses are
//! turned back into IPv4 first, and if the families still differ both are written as
//! IPv6 (IPv4 mapped), which every PROXY parser accepts.

use super::V2_SIGNATURE;
use fulcrum_config::ProxyVersion;
use std::net::{IpAddr, SocketAddr};

/// The header announcing a connection from `src` to `dst`.
pub fn encode(version: ProxyVersion, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let (src, dst) = same_family(src, dst);
    match version {
        ProxyVersion::V1 => encode_v1(src, dst),
        ProxyVersion::V2 => encode_v2(src, dst),
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn as_v6(a: SocketAddr) -> SocketAddr {
    match a.ip() {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), a.port()),
        IpAddr::V6(_) => a,
    }
}

fn same_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let (src, dst) = (canonical(src), canonical(dst));
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (as_v6(src), as_v6(dst))
    }
}

/// `PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n`
fn encode_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        src.ip(),
        dst.ip(),
        src.port(),
        dst.port()
    )
    .into_bytes()
}

/// Signature, `0x21` (version 2, command PROXY), family/transport, length, addresses.
fn encode_v2(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11); // AF_INET, STREAM
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            // `same_family` guarantees both are IPv6 here.
            let s = match s {
                IpAddr::V6(v6) => v6,
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            };
            let d = match d {
                IpAddr::V6(v6) => v6,
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            };
            out.push(0x21); // AF_INET6, STREAM
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::parse::{parse_v1, parse_v2};

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn v1_ipv4_text() {
        let h = encode(
            ProxyVersion::V1,
            addr("192.0.2.1:56324"),
            addr("198.51.100.1:443"),
        );
        assert_eq!(h, b"PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n");
    }

    #[test]
    fn v1_mixed_families_become_tcp6() {
        let h = encode(
            ProxyVersion::V1,
            addr("192.0.2.1:1"),
            addr("[2001:db8::1]:2"),
        );
        assert_eq!(h, b"PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1 2\r\n");
    }

    #[test]
    fn v2_ipv4_bytes() {
        let h = encode(ProxyVersion::V2, addr("10.1.2.3:4000"), addr("10.9.9.9:80"));
        assert_eq!(&h[..12], &V2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[10, 1, 2, 3]);
        assert_eq!(&h[20..24], &[10, 9, 9, 9]);
        assert_eq!(&h[24..28], &[0x0f, 0xa0, 0, 80]);
    }

    #[test]
    fn round_trips() {
        let pairs = [
            (addr("127.0.0.1:5"), addr("127.0.0.2:6")),
            (addr("[::1]:5"), addr("[2001:db8::7]:65535")),
            (addr("[::ffff:10.0.0.1]:9"), addr("10.0.0.2:10")),
        ];
        for (src, dst) in pairs {
            let expect = Some((canonical(src), canonical(dst)));
            let v1 = encode(ProxyVersion::V1, src, dst);
            assert_eq!(parse_v1(&v1).map(|h| h.addrs), Ok(expect), "v1 {src} {dst}");
            let v2 = encode(ProxyVersion::V2, src, dst);
            assert_eq!(parse_v2(&v2).map(|h| h.addrs), Ok(expect), "v2 {src} {dst}");
        }
    }
}
