//! Trailer fields across the HTTP/2 / HTTP/1.1 boundary (gRPC sends its status in
//! them): a request's trailers (the HEADERS frame that ends the client's stream) go
//! to the backend as the trailer section of the chunked body (RFC 9112 §7.1.2); the
//! trailer section of a chunked response goes to the client as a HEADERS frame that
//! ends the stream. A body framed by a length has nowhere to carry trailers, so they
//! are dropped there, as on every HTTP/1.1 hop.
//!
//! Only plain end-to-end fields cross: a trailer must not carry framing, routing or
//! connection fields (RFC 9110 §6.5.1), and HTTP/2 refuses connection-specific ones
//! (RFC 9113 §8.2.2), so what `h1::head::classify` does not call `Plain` is left out.

use crate::h1::head::{classify, Kind};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Most trailer fields read from a backend's chunked body.
const MAX_TRAILERS: usize = 64;

/// Whether a trailer field may cross this hop.
fn crosses(name: &[u8]) -> bool {
    classify(name) == Kind::Plain
}

/// The last chunk and trailer section of a chunked request body: `0`, the fields of
/// `trailers` that may cross, the blank line.
pub(super) fn last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        if crosses(name.as_str().as_bytes()) {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The fields of a chunked body's trailer section (its lines with their CRLFs, as
/// `ChunkScanner::feed_parts` hands them over) that may cross; `None` when none is
/// left. The lines passed the chunk scanner's checks; one that still does not parse
/// ends the section there.
pub(super) fn parse(lines: &[u8]) -> Option<HeaderMap> {
    if lines.is_empty() {
        return None;
    }
    let mut section = Vec::with_capacity(lines.len() + 2);
    section.extend_from_slice(lines);
    section.extend_from_slice(b"\r\n");
    let mut raw = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let fields = match httparse::parse_headers(&section, &mut raw) {
        Ok(httparse::Status::Complete((_, fields))) => fields,
        _ => return None,
    };
    let mut map = HeaderMap::new();
    for field in fields.iter().filter(|f| crosses(f.name.as_bytes())) {
        let name = HeaderName::from_bytes(field.name.as_bytes());
        let value = HeaderValue::from_bytes(field.value);
        if let (Ok(name), Ok(value)) = (name, value) {
            map.append(name, value);
        }
    }
    (!map.is_empty()).then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_trailers_become_the_trailer_section_without_forbidden_fields() {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static("0"));
        map.insert("content-length", HeaderValue::from_static("5"));
        map.insert("connection", HeaderValue::from_static("close"));
        map.append("x-sum", HeaderValue::from_static("1"));
        map.append("x-sum", HeaderValue::from_static("2"));
        let mut out = Vec::new();
        last_chunk(&mut out, Some(&map));
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\nx-sum: 1\r\nx-sum: 2\r\n\r\n");
        out.clear();
        last_chunk(&mut out, None);
        assert_eq!(out, b"0\r\n\r\n");
    }

    #[test]
    fn response_trailer_lines_become_a_header_map() {
        let map = parse(b"Grpc-Status: 0\r\nTransfer-Encoding: x\r\ngrpc-message: a b\r\n")
            .expect("fields");
        assert_eq!(map.len(), 2);
        assert_eq!(
            map.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        assert_eq!(
            map.get("grpc-message").map(|v| v.as_bytes()),
            Some(&b"a b"[..])
        );
        assert!(parse(b"").is_none());
        assert!(parse(b"Content-Length: 3\r\n").is_none());
    }
}
