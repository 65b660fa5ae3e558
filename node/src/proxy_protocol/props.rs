//! Property tests of the PROXY protocol parsers (issue 17 item 4): arbitrary bytes are
//! an error or a header, never a panic; a header written by `encode` is read back as
//! the same addresses, for both versions and both address families.

use super::encode::encode;
use super::parse::{parse_v1, parse_v2, parse_v2_header_len};
use fulcrum_config::ProxyVersion;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A pair of addresses of one family, as a proxy in front of us would send.
fn addresses() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    let v4 = (any::<u32>(), any::<u16>(), any::<u32>(), any::<u16>()).prop_map(|(a, p, b, q)| {
        (
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::from(b)), q),
        )
    });
    let v6 = (any::<u128>(), any::<u16>(), any::<u128>(), any::<u16>()).prop_map(|(a, p, b, q)| {
        (
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), p),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(b)), q),
        )
    });
    prop_oneof![v4, v6]
}

proptest! {
    #[test]
    fn any_bytes_are_an_error_or_a_header(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = parse_v1(&bytes);
        let _ = parse_v2_header_len(&bytes);
        let _ = parse_v2(&bytes);
        let mut v1 = b"PROXY ".to_vec();
        v1.extend(&bytes);
        v1.extend(b"\r\n");
        let _ = parse_v1(&v1);
        let mut v2 = super::V2_SIGNATURE.to_vec();
        v2.extend(&bytes);
        let _ = parse_v2_header_len(&v2);
        let _ = parse_v2(&v2);
    }

    #[test]
    fn what_encode_writes_parse_reads_back((src, dst) in addresses()) {
        let v1 = encode(ProxyVersion::V1, src, dst);
        prop_assert_eq!(parse_v1(&v1).map(|h| h.addrs), Ok(Some((src, dst))));
        let v2 = encode(ProxyVersion::V2, src, dst);
        prop_assert_eq!(parse_v2_header_len(&v2), Ok(v2.len()));
        prop_assert_eq!(parse_v2(&v2).map(|h| h.addrs), Ok(Some((src, dst))));
    }

    #[test]
    fn a_v2_header_cut_or_mutated_never_panics(
        (src, dst) in addresses(),
        cut in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut v2 = encode(ProxyVersion::V2, src, dst);
        let _ = parse_v2(&v2[..cut.index(v2.len())]);
        let i = at.index(v2.len());
        v2[i] = byte;
        let _ = parse_v2_header_len(&v2);
        let _ = parse_v2(&v2);
    }
}
