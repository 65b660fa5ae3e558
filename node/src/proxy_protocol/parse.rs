//! Decoding PROXY headers from bytes: pure functions, bounded, never panicking.
//!
//! Version 1 is one text line: `PROXY TCP4|TCP6|UNKNOWN SRC DST SPORT DPORT\r\n`, at most
//! 107 bytes. Version 2 is binary: a 12-byte signature, a version/command byte, a
//! family/transport byte, a big-endian length, then the address block (whose tail may
//! hold TLVs, which we skip). Every index below is checked with `get`, so malformed
//! input is an error value, not a panic.

use super::{ParseError, ProxyHeader, V1_MAX_LEN, V2_MAX_LEN, V2_SIGNATURE};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Parses a complete v1 header (`buf` ends with the CRLF; nothing follows it).
pub fn parse_v1(buf: &[u8]) -> Result<ProxyHeader, ParseError> {
    if !buf.starts_with(b"PROXY ") {
        return Err(ParseError::NotProxy);
    }
    if buf.len() > V1_MAX_LEN || !buf.ends_with(b"\r\n") {
        return Err(ParseError::V1TooLong);
    }
    let line = std::str::from_utf8(&buf[..buf.len() - 2])
        .map_err(|_| ParseError::V1Malformed("not ASCII"))?;
    let mut parts = line.split(' ');
    let _proxy = parts.next();
    let family = parts.next().ok_or(ParseError::V1Malformed("no family"))?;
    if family == "UNKNOWN" {
        // The rest of the line may be anything and must be ignored (spec §2.1).
        return Ok(ProxyHeader { addrs: None });
    }
    let want_v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ParseError::V1Malformed(
                "family must be TCP4, TCP6 or UNKNOWN",
            ))
        }
    };
    let fields: Vec<&str> = parts.collect();
    let [src, dst, sport, dport] = fields[..] else {
        return Err(ParseError::V1Malformed(
            "expected 4 fields after the family",
        ));
    };
    let ip = |s: &str| -> Result<IpAddr, ParseError> {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| ParseError::V1Malformed("bad address"))?;
        if ip.is_ipv4() != want_v4 {
            return Err(ParseError::V1Malformed("address does not match the family"));
        }
        Ok(ip)
    };
    let port = |s: &str| -> Result<u16, ParseError> {
        // The spec forbids leading zeros and signs; `parse::<u16>` accepts "+1", so check.
        if s.is_empty()
            || !s.bytes().all(|b| b.is_ascii_digit())
            || (s.len() > 1 && s.starts_with('0'))
        {
            return Err(ParseError::V1Malformed("bad port"));
        }
        s.parse().map_err(|_| ParseError::V1Malformed("bad port"))
    };
    let src = SocketAddr::new(ip(src)?, port(sport)?);
    let dst = SocketAddr::new(ip(dst)?, port(dport)?);
    Ok(ProxyHeader {
        addrs: Some((src, dst)),
    })
}

/// Given at least the first 16 bytes of a v2 header, its total length (16 + payload).
pub fn parse_v2_header_len(first: &[u8]) -> Result<usize, ParseError> {
    if first.len() < 16 || first[..12] != V2_SIGNATURE {
        return Err(ParseError::NotProxy);
    }
    let ver_cmd = first[12];
    // High nibble: version (must be 2). Low nibble: 0 = LOCAL, 1 = PROXY.
    if ver_cmd >> 4 != 2 || ver_cmd & 0x0F > 1 {
        return Err(ParseError::V2Command(ver_cmd));
    }
    let len = 16 + u16::from_be_bytes([first[14], first[15]]) as usize;
    if len > V2_MAX_LEN {
        return Err(ParseError::V2TooLong(len));
    }
    Ok(len)
}

/// Parses a complete v2 header (exactly `parse_v2_header_len` bytes).
pub fn parse_v2(buf: &[u8]) -> Result<ProxyHeader, ParseError> {
    let total = parse_v2_header_len(buf)?;
    let body = buf.get(16..total).ok_or(ParseError::V2Short)?;
    let local = buf[12] & 0x0F == 0;
    let family = buf[13];
    if local {
        // LOCAL: the balancer talks for itself; addresses (if any) are ignored.
        return Ok(ProxyHeader { addrs: None });
    }
    let addrs = match family {
        // 0x11 / 0x12: IPv4 over STREAM / DGRAM.
        0x11 | 0x12 => {
            let b = body.get(..12).ok_or(ParseError::V2Short)?;
            let src = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let dst = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            let sp = u16::from_be_bytes([b[8], b[9]]);
            let dp = u16::from_be_bytes([b[10], b[11]]);
            Some((
                SocketAddr::new(IpAddr::V4(src), sp),
                SocketAddr::new(IpAddr::V4(dst), dp),
            ))
        }
        // 0x21 / 0x22: IPv6.
        0x21 | 0x22 => {
            let b = body.get(..36).ok_or(ParseError::V2Short)?;
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&b[..16]);
            d.copy_from_slice(&b[16..32]);
            let sp = u16::from_be_bytes([b[32], b[33]]);
            let dp = u16::from_be_bytes([b[34], b[35]]);
            Some((
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(s)), sp),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(d)), dp),
            ))
        }
        // UNSPEC, UNIX sockets and unknown families: no usable IP address.
        _ => None,
    };
    Ok(ProxyHeader { addrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_valid_and_unknown() {
        let h = parse_v1(b"PROXY TCP4 1.2.3.4 5.6.7.8 100 200\r\n").expect("valid");
        let (src, dst) = h.addrs.expect("addresses");
        assert_eq!(src, "1.2.3.4:100".parse::<SocketAddr>().expect("addr"));
        assert_eq!(dst, "5.6.7.8:200".parse::<SocketAddr>().expect("addr"));
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN\r\n"),
            Ok(ProxyHeader { addrs: None })
        );
        assert_eq!(
            parse_v1(b"PROXY UNKNOWN ff 1 2 3\r\n"),
            Ok(ProxyHeader { addrs: None })
        );
        let h = parse_v1(b"PROXY TCP6 ::1 2001:db8::2 1 65535\r\n").expect("v6");
        assert!(h.addrs.is_some());
    }

    #[test]
    fn v1_garbage_is_refused() {
        let bad: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 100\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 100 200 300\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 100 200\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 100 65536\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
            b"PROXY \xff\xfe\r\n",
            b"PROXY ",
        ];
        for b in bad {
            assert!(parse_v1(b).is_err(), "{:?}", String::from_utf8_lossy(b));
        }
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 100], b"\r\n"].concat();
        assert_eq!(parse_v1(&long), Err(ParseError::V1TooLong));
    }

    fn v2(cmd: u8, fam: u8, body: &[u8]) -> Vec<u8> {
        let mut v = V2_SIGNATURE.to_vec();
        v.push(cmd);
        v.push(fam);
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn v2_variants() {
        let body = [
            127, 0, 0, 9, 127, 0, 0, 1, 0x30, 0x39, 0, 80, 0x03, 0, 1, 0xAA,
        ];
        let h = parse_v2(&v2(0x21, 0x11, &body)).expect("ipv4 with a TLV tail");
        let (src, _) = h.addrs.expect("addrs");
        assert_eq!(src, "127.0.0.9:12345".parse::<SocketAddr>().expect("addr"));
        let local = parse_v2(&v2(0x20, 0x00, &[])).expect("local");
        assert_eq!(local.addrs, None);
        let unix = parse_v2(&v2(0x21, 0x31, &[0u8; 216])).expect("unix");
        assert_eq!(unix.addrs, None);
    }

    #[test]
    fn v2_garbage_is_refused() {
        assert_eq!(
            parse_v2(&v2(0x21, 0x11, &[1, 2, 3])),
            Err(ParseError::V2Short)
        );
        assert_eq!(
            parse_v2(&v2(0x21, 0x21, &[0; 20])),
            Err(ParseError::V2Short)
        );
        assert_eq!(
            parse_v2(&v2(0x11, 0x11, &[0; 12])),
            Err(ParseError::V2Command(0x11))
        );
        assert_eq!(
            parse_v2(&v2(0x2F, 0x11, &[0; 12])),
            Err(ParseError::V2Command(0x2F))
        );
        let mut huge = v2(0x21, 0x11, &[0; 12]);
        huge[14] = 0xFF;
        huge[15] = 0xFF;
        assert!(matches!(parse_v2(&huge), Err(ParseError::V2TooLong(_))));
        // Length says 12 but only 4 bytes follow: a truncated buffer.
        let mut cut = v2(0x21, 0x11, &[0; 12]);
        cut.truncate(20);
        assert_eq!(parse_v2(&cut), Err(ParseError::V2Short));
        assert_eq!(parse_v2(b"short"), Err(ParseError::NotProxy));
    }

    #[test]
    fn never_panics_on_prefixes_of_random_bytes() {
        // A cheap fuzz: every prefix of a deterministic pseudo-random stream, with and
        // without a valid signature in front.
        let mut x: u32 = 0x1234_5678;
        let mut noise = Vec::new();
        for _ in 0..512 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            noise.push(x as u8);
        }
        let signed = [V2_SIGNATURE.as_slice(), &noise].concat();
        let texty = [b"PROXY TCP4 ".as_slice(), &noise].concat();
        for buf in [&noise, &signed, &texty] {
            for n in 0..buf.len() {
                let _ = parse_v1(&buf[..n]);
                let _ = parse_v2(&buf[..n]);
                let _ = parse_v2_header_len(&buf[..n]);
            }
        }
    }
}
