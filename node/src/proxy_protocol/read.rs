//! Reading one PROXY header off a socket without over-reading.
//!
//! The payload after the header belongs to the next layer (TLS, HTTP, raw TCP), so we
//! must stop exactly at the header's end. Both versions are at least 15 bytes long
//! (`PROXY UNKNOWN\r\n`; v2 is 16+), so the first 15 bytes are always safe to read
//! at once. v2 then states its own length. v1 has no length: the rest of its line is
//! read one byte at a time up to the CRLF — at most 92 small reads, only for peers in
//! `proxy_from`, and never more than 107 bytes in total.
//!
//! The whole header must arrive within `timeout`, so a peer that connects and says
//! nothing cannot hold a task forever.

use super::parse::{parse_v1, parse_v2, parse_v2_header_len};
use super::{ParseError, ProxyHeader, V1_MAX_LEN, V2_SIGNATURE};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Why no PROXY header could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("no complete PROXY header within {0:?}")]
    Timeout(Duration),
    #[error("connection failed while reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// The minimum length of any PROXY header.
const MIN_LEN: usize = 15;

/// Reads exactly one PROXY header (v1 or v2) from `stream`.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    timeout: Duration,
) -> Result<ProxyHeader, ReadError> {
    match tokio::time::timeout(timeout, read_inner(stream)).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::Timeout(timeout)),
    }
}

async fn read_inner<S: AsyncRead + Unpin>(stream: &mut S) -> Result<ProxyHeader, ReadError> {
    let mut buf = vec![0u8; MIN_LEN];
    stream.read_exact(&mut buf).await?;
    if buf[..12] == V2_SIGNATURE {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[MIN_LEN..]).await?;
        let total = parse_v2_header_len(&buf)?;
        buf.resize(total, 0);
        stream.read_exact(&mut buf[16..]).await?;
        return Ok(parse_v2(&buf)?);
    }
    if !buf.starts_with(b"PROXY ") {
        return Err(ParseError::NotProxy.into());
    }
    while !buf.ends_with(b"\r\n") {
        if buf.len() >= V1_MAX_LEN {
            return Err(ParseError::V1TooLong.into());
        }
        let byte = stream.read_u8().await?;
        buf.push(byte);
    }
    Ok(parse_v1(&buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy_protocol::encode;
    use fulcrum_config::ProxyVersion;
    use tokio::io::AsyncWriteExt;

    const T: Duration = Duration::from_secs(2);

    async fn roundtrip(bytes: Vec<u8>) -> (Result<ProxyHeader, ReadError>, Vec<u8>) {
        let (mut a, mut b) = tokio::io::duplex(8192);
        let mut sent = bytes;
        sent.extend_from_slice(b"PAYLOAD");
        a.write_all(&sent).await.expect("write");
        drop(a);
        let header = read_header(&mut b, T).await;
        let mut rest = Vec::new();
        let _ = b.read_to_end(&mut rest).await;
        (header, rest)
    }

    #[tokio::test]
    async fn stops_exactly_at_the_end_of_the_header() {
        let src = "10.0.0.1:1234".parse().expect("addr");
        let dst = "10.0.0.2:80".parse().expect("addr");
        for v in [ProxyVersion::V1, ProxyVersion::V2] {
            let (h, rest) = roundtrip(encode(v, src, dst)).await;
            assert_eq!(h.expect("header").addrs, Some((src, dst)));
            assert_eq!(rest, b"PAYLOAD");
        }
        let (h, rest) = roundtrip(b"PROXY UNKNOWN\r\n".to_vec()).await;
        assert_eq!(h.expect("unknown").addrs, None);
        assert_eq!(rest, b"PAYLOAD");
    }

    #[tokio::test]
    async fn refuses_other_protocols_and_endless_lines() {
        let (h, _) = roundtrip(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()).await;
        assert!(matches!(h, Err(ReadError::Parse(ParseError::NotProxy))));
        let (h, _) = roundtrip([b"PROXY ".as_slice(), &[b'x'; 300]].concat()).await;
        assert!(matches!(h, Err(ReadError::Parse(ParseError::V1TooLong))));
        let (h, _) = roundtrip(b"PROX".to_vec()).await;
        assert!(matches!(h, Err(ReadError::Io(_))));
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (_a, mut b) = tokio::io::duplex(64);
        let r = read_header(&mut b, Duration::from_millis(50)).await;
        assert!(matches!(r, Err(ReadError::Timeout(_))));
    }
}
