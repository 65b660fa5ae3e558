//! The HTTP/1.1 request head sent to a backend for an HTTP/2 request, written straight
//! from the decoded h2 header block into a byte buffer (no header map is built or
//! changed on the way).
//!
//! It says what `h1::encode::request_head` says for an HTTP/1.1 client: the client's
//! headers minus the hop-by-hop ones, `Host` set to the authority the request was
//! routed on (`:authority`, or `Host`, which must agree with it), the forwarding
//! headers replaced from the edge or appended to for a trusted proxy, fulcrum's
//! `X-Forwarded-Proto` / `-Host`, and `Via` with this hop ("2 fulcrum": the client
//! spoke HTTP/2). HTTP/2 may split `Cookie` into several fields; HTTP/1.1 wants one
//! line (RFC 9113 §8.2.3), so they are joined with "; ". A request body without a
//! `Content-Length` goes to the backend chunked.

use crate::h1::head::{classify, Kind};
use crate::request::conn::ConnInfo;
use http::{HeaderMap, Method};

const VIA_HOP: &[u8] = b"2 fulcrum";

/// How the request body reaches the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body (the request's HEADERS frame ended the stream).
    None,
    /// The client declared a `Content-Length`, which is forwarded.
    Length,
    /// No length declared: chunked to the backend.
    Chunked,
}

/// The parts of the request the head is made of.
pub(super) struct Head<'a> {
    pub method: &'a Method,
    /// The origin-form target (`/path?query`).
    pub target: &'a str,
    /// The authority routed on, or the backend's address when the request named none.
    pub host: &'a str,
    pub headers: &'a HeaderMap,
}

/// Appends the head for the backend to `out` and tells how the body must be framed.
pub(super) fn request_head(
    out: &mut Vec<u8>,
    head: &Head,
    conn: &ConnInfo,
    has_body: bool,
) -> BodyFraming {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(head.host.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut length = false;
    let mut cookies = 0;
    for (name, value) in head.headers {
        let name_bytes = name.as_str().as_bytes();
        match classify(name_bytes) {
            Kind::Plain if name == http::header::COOKIE => {
                out.extend_from_slice(if cookies == 0 { b"cookie: " } else { b"; " });
                out.extend_from_slice(value.as_bytes());
                cookies += 1;
                continue;
            }
            Kind::Plain => {}
            Kind::ContentLength if has_body && !length => length = true,
            _ => continue,
        }
        if cookies > 0 {
            // A cookie line is open only while cookie fields follow each other.
            out.extend_from_slice(b"\r\n");
            cookies = 0;
        }
        out.extend_from_slice(name_bytes);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if cookies > 0 {
        out.extend_from_slice(b"\r\n");
    }
    forwarding(out, head.headers, conn);
    out.extend_from_slice(b"X-Forwarded-Proto: ");
    out.extend_from_slice(conn.proto().as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(head.host.as_bytes());
    out.extend_from_slice(b"\r\nVia: ");
    for prior in head.headers.get_all(http::header::VIA) {
        if !prior.is_empty() {
            out.extend_from_slice(prior.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(VIA_HOP);
    out.extend_from_slice(b"\r\n");
    let framing = match (has_body, length) {
        (false, _) => BodyFraming::None,
        (true, true) => BodyFraming::Length,
        (true, false) => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            BodyFraming::Chunked
        }
    };
    out.extend_from_slice(b"\r\n");
    framing
}

/// `X-Forwarded-For`, and `Forwarded` / `X-Real-IP` when the client sent them: the
/// client's own values only from a trusted proxy (as `h1::encode::Forwarding`).
fn forwarding(out: &mut Vec<u8>, headers: &HeaderMap, conn: &ConnInfo) {
    let trusted = conn.trusted;
    let client_ip = conn.client_ip();
    list_line(
        out,
        b"X-Forwarded-For: ",
        headers,
        "x-forwarded-for",
        trusted,
        client_ip.as_bytes(),
    );
    if headers.contains_key(http::header::FORWARDED) {
        list_line(
            out,
            b"Forwarded: ",
            headers,
            "forwarded",
            trusted,
            conn.forwarded().as_bytes(),
        );
    }
    if headers.contains_key("x-real-ip") {
        let kept = headers
            .get_all("x-real-ip")
            .iter()
            .find(|v| trusted && !v.is_empty());
        out.extend_from_slice(b"X-Real-IP: ");
        out.extend_from_slice(kept.map_or(client_ip.as_bytes(), |v| v.as_bytes()));
        out.extend_from_slice(b"\r\n");
    }
}

/// `name` with the client's non-empty values when `trusted`, then `last`.
fn list_line(
    out: &mut Vec<u8>,
    line: &[u8],
    headers: &HeaderMap,
    name: &str,
    trusted: bool,
    last: &[u8],
) {
    out.extend_from_slice(line);
    if trusted {
        for value in headers.get_all(name).iter().filter(|v| !v.is_empty()) {
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(last);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn conn(trusted: bool) -> ConnInfo {
        let client = "10.1.2.3:5555".parse().expect("address");
        ConnInfo::new(Arc::from("web"), client, true, trusted)
    }

    fn encode(headers: &[(&str, &str)], trusted: bool, has_body: bool) -> (String, BodyFraming) {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                http::HeaderValue::from_str(value).expect("value"),
            );
        }
        let head = Head {
            method: &Method::POST,
            target: "/up?x=1",
            host: "shop.example",
            headers: &map,
        };
        let mut out = Vec::new();
        let framing = request_head(&mut out, &head, &conn(trusted), has_body);
        (String::from_utf8(out).expect("ascii"), framing)
    }

    #[test]
    fn hop_by_hop_and_forwarding_headers_are_rewritten() {
        let headers = [
            ("host", "shop.example"),
            ("te", "trailers"),
            ("accept", "*/*"),
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-proto", "http"),
            ("x-forwarded-host", "evil.example"),
            ("via", "1.0 edge"),
            ("content-length", "3"),
        ];
        let (edge, framing) = encode(&headers, false, true);
        assert_eq!(framing, BodyFraming::Length);
        assert_eq!(
            edge,
            "POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\naccept: */*\r\ncontent-length: 3\r\n\
             X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: shop.example\r\nVia: 1.0 edge, 2 fulcrum\r\n\r\n"
        );
        let (trusted, _) = encode(&headers, true, true);
        assert!(
            trusted.contains("\r\nX-Forwarded-For: 203.0.113.7, 10.1.2.3\r\n"),
            "{trusted}"
        );
    }

    #[test]
    fn forwarded_and_real_ip_replace_the_clients_unless_trusted() {
        let headers = [
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-for", "7.7.7.7"),
        ];
        let (edge, _) = encode(&headers, false, false);
        assert!(
            !edge.contains("6.6.6.6") && !edge.contains("7.7.7.7"),
            "{edge}"
        );
        assert!(
            edge.contains("\r\nForwarded: for=10.1.2.3;proto=https\r\n"),
            "{edge}"
        );
        assert!(edge.contains("\r\nX-Real-IP: 10.1.2.3\r\n"), "{edge}");
        let (trusted, _) = encode(&headers, true, false);
        assert!(
            trusted.contains("\r\nForwarded: for=6.6.6.6, for=10.1.2.3;proto=https\r\n"),
            "{trusted}"
        );
        assert!(trusted.contains("\r\nX-Real-IP: 6.6.6.6\r\n"), "{trusted}");
        let (plain, _) = encode(&[], false, false);
        assert!(
            !plain.contains("Forwarded:") && !plain.contains("X-Real-IP"),
            "{plain}"
        );
    }

    #[test]
    fn split_cookies_are_joined_and_bodies_without_length_are_chunked() {
        let headers = [("cookie", "a=1"), ("cookie", "b=2"), ("accept", "x")];
        let (out, framing) = encode(&headers, false, true);
        assert_eq!(framing, BodyFraming::Chunked);
        assert!(
            out.contains("\r\ncookie: a=1; b=2\r\naccept: x\r\n"),
            "{out}"
        );
        assert!(out.ends_with("Transfer-Encoding: chunked\r\n\r\n"), "{out}");
        let (no_body, framing) = encode(&[("content-length", "0")], false, false);
        assert_eq!(framing, BodyFraming::None);
        assert!(!no_body.contains("content-length"), "{no_body}");
    }
}
