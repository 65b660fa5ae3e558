//! Writing the heads fulcrum sends: the request to the backend and the response to
//! the client.
//!
//! Both are copies of what arrived, header by header, minus the hop-by-hop ones
//! (the fixed list plus those named in `Connection`), with the forwarding headers
//! rewritten (`Forwarding`), `X-Forwarded-Proto`/`-Host` fulcrum's own, and `Via`
//! with fulcrum's hop. `Host`, `Content-Length` and `Transfer-Encoding` are never
//! dropped for being named in `Connection`: routing used the one and framing the
//! others, so what goes on must say the same. The bytes go into a reused buffer, so a
//! head costs no allocation once warm.

use super::head::{HeaderSpan, Kind, RequestHead};
use super::response::ResponseHead;

const VIA_HOP: &[u8] = b"1.1 fulcrum";

/// What the request head to the backend needs besides the client's head.
///
/// `X-Forwarded-For`, `Forwarded` and `X-Real-IP` from a client that is not one of
/// the listener's `trusted_proxies` are replaced with what fulcrum saw (the client's
/// own claims are dropped); a trusted proxy's are kept and fulcrum's hop appended
/// (`X-Real-IP`, a single address, is kept as the trusted proxy set it).
/// `X-Forwarded-For` is always sent; the other two only replace or extend what came.
pub(super) struct Forwarding<'a> {
    /// The client address as an `X-Forwarded-For` entry.
    pub client_ip: &'a [u8],
    /// This hop as a `Forwarded` element.
    pub forwarded: &'a [u8],
    pub proto: &'a str,
    pub trusted: bool,
}

/// Appends the request head for the backend to `out`. `path`, when given, replaces
/// the path the client sent (the query stays).
pub(super) fn request_head(
    out: &mut Vec<u8>,
    head: &RequestHead,
    buf: &[u8],
    path: Option<&[u8]>,
    fwd: &Forwarding,
) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.unwrap_or(head.path(buf)));
    out.extend_from_slice(head.query(buf));
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut wrote_length = false;
    for h in &head.headers {
        match h.kind {
            Kind::Host => header_line(out, buf, h),
            Kind::Plain if !head.is_listed(buf, h) => header_line(out, buf, h),
            Kind::ContentLength if !wrote_length => {
                wrote_length = true;
                header_line(out, buf, h);
            }
            _ => {}
        }
    }
    forwarding(out, buf, &head.headers, fwd);
    out.extend_from_slice(b"X-Forwarded-Proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(head.host(buf));
    out.extend_from_slice(b"\r\n");
    via(out, buf, &head.headers);
    out.extend_from_slice(b"\r\n");
}

/// `X-Forwarded-For`, and `Forwarded` / `X-Real-IP` when the client sent them, as
/// `Forwarding` describes.
fn forwarding(out: &mut Vec<u8>, buf: &[u8], headers: &[HeaderSpan], fwd: &Forwarding) {
    let prior = |kind: Kind| {
        headers
            .iter()
            .filter(move |h| h.kind == kind)
            .map(|h| buf.get(h.value.clone()).unwrap_or_default())
    };
    let kept = |kind: Kind| prior(kind).filter(|_| fwd.trusted);
    list_line(
        out,
        b"X-Forwarded-For: ",
        kept(Kind::XForwardedFor),
        fwd.client_ip,
    );
    if prior(Kind::Forwarded).next().is_some() {
        list_line(out, b"Forwarded: ", kept(Kind::Forwarded), fwd.forwarded);
    }
    if prior(Kind::XRealIp).next().is_some() {
        out.extend_from_slice(b"X-Real-IP: ");
        let trusted_value = kept(Kind::XRealIp).find(|v| !v.is_empty());
        out.extend_from_slice(trusted_value.unwrap_or(fwd.client_ip));
        out.extend_from_slice(b"\r\n");
    }
}

/// `name` with the non-empty `earlier` values, then `last`, comma-separated.
fn list_line<'v>(
    out: &mut Vec<u8>,
    name: &[u8],
    earlier: impl Iterator<Item = &'v [u8]>,
    last: &[u8],
) {
    out.extend_from_slice(name);
    for value in earlier.filter(|v| !v.is_empty()) {
        out.extend_from_slice(value);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(last);
    out.extend_from_slice(b"\r\n");
}

/// Extra lines of a response head to the client.
pub(super) struct ResponseExtras<'a> {
    /// A `Set-Cookie` value (affinity cookie) to add.
    pub set_cookie: Option<&'a str>,
    /// Tell the client the connection closes after this response.
    pub close: bool,
}

/// Appends the response head for the client to `out`.
pub(super) fn response_head(
    out: &mut Vec<u8>,
    head: &ResponseHead,
    buf: &[u8],
    extras: &ResponseExtras,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    let status = head.status;
    out.extend_from_slice(&[
        b'0' + (status / 100 % 10) as u8,
        b'0' + (status / 10 % 10) as u8,
        b'0' + (status % 10) as u8,
        b' ',
    ]);
    out.extend_from_slice(&buf[head.reason.clone()]);
    out.extend_from_slice(b"\r\n");
    let coded = head.has_transfer_encoding();
    for h in &head.headers {
        match h.kind {
            Kind::HopByHop | Kind::Connection | Kind::Via => {}
            // RFC 9112 §6.3: a transfer coding overrides a length.
            Kind::ContentLength if coded => {}
            // Framing: relayed whatever `Connection` lists, as the body follows it.
            Kind::ContentLength | Kind::TransferEncoding => header_line(out, buf, h),
            _ if head.is_listed(buf, h) => {}
            _ => header_line(out, buf, h),
        }
    }
    via(out, buf, &head.headers);
    if let Some(cookie) = extras.set_cookie {
        out.extend_from_slice(b"Set-Cookie: ");
        out.extend_from_slice(cookie.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if extras.close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A short response fulcrum makes itself (errors, 404, 429 with its `Retry-After`),
/// closing or not.
pub(super) fn local_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    body: &str,
    retry_after: Option<u32>,
    close: bool,
) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n",
        body.len(),
    );
    if let Some(secs) = retry_after {
        let _ = write!(out, "Retry-After: {secs}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    let _ = write!(out, "\r\n{body}");
}

fn header_line(out: &mut Vec<u8>, buf: &[u8], h: &HeaderSpan) {
    out.extend_from_slice(&buf[h.name.clone()]);
    out.extend_from_slice(b": ");
    out.extend_from_slice(&buf[h.value.clone()]);
    out.extend_from_slice(b"\r\n");
}

/// `Via` with earlier hops first, then fulcrum's.
fn via(out: &mut Vec<u8>, buf: &[u8], headers: &[HeaderSpan]) {
    out.extend_from_slice(b"Via: ");
    for h in headers.iter().filter(|h| h.kind == Kind::Via) {
        let value = &buf[h.value.clone()];
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(VIA_HOP);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::super::head::Parsed;
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn forwarding(trusted: bool) -> Forwarding<'static> {
        Forwarding {
            client_ip: b"10.1.2.3",
            forwarded: b"for=10.1.2.3;proto=http",
            proto: "http",
            trusted,
        }
    }

    fn encode_request(buf: &[u8], path: Option<&[u8]>, trusted: bool) -> String {
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(buf), Parsed::Head));
        let mut out = Vec::new();
        request_head(&mut out, &head, buf, path, &forwarding(trusted));
        text(&out)
    }

    #[test]
    fn request_head_drops_hop_by_hop_and_rewrites_forwarding() {
        let buf = b"POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\nContent-Length: 3\r\nContent-Length: 3\r\nAccept: */*\r\nHTTP2-Settings: AAMAAABkAAQ\r\n\r\n";
        assert_eq!(
            encode_request(buf, None, false),
            "POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\nAccept: */*\r\n\
             X-Forwarded-For: 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: shop.example\r\nVia: 1.0 edge, 1.1 fulcrum\r\n\r\n"
        );
        assert_eq!(
            encode_request(buf, Some(b"/normal"), true),
            "POST /normal?x=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\nAccept: */*\r\n\
             X-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: shop.example\r\nVia: 1.0 edge, 1.1 fulcrum\r\n\r\n"
        );
    }

    #[test]
    fn forwarding_headers_are_replaced_from_the_edge_and_extended_for_trusted_proxies() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\nForwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
        let edge = encode_request(buf, None, false);
        assert!(
            !edge.contains("6.6.6.6") && !edge.contains("7.7.7.7"),
            "{edge}"
        );
        assert!(edge.contains("\r\nX-Forwarded-For: 10.1.2.3\r\n"), "{edge}");
        assert!(
            edge.contains("\r\nForwarded: for=10.1.2.3;proto=http\r\n"),
            "{edge}"
        );
        assert!(edge.contains("\r\nX-Real-IP: 10.1.2.3\r\n"), "{edge}");
        let trusted = encode_request(buf, None, true);
        assert!(
            trusted.contains("\r\nX-Forwarded-For: 6.6.6.6, 7.7.7.7, 10.1.2.3\r\n"),
            "{trusted}"
        );
        assert!(
            trusted.contains("\r\nForwarded: for=6.6.6.6, for=10.1.2.3;proto=http\r\n"),
            "{trusted}"
        );
        assert!(trusted.contains("\r\nX-Real-IP: 6.6.6.6\r\n"), "{trusted}");
        let plain = encode_request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", None, false);
        assert!(
            !plain.contains("Forwarded:") && !plain.contains("X-Real-IP"),
            "{plain}"
        );
    }

    #[test]
    fn host_and_length_survive_being_named_in_connection() {
        let buf = b"POST / HTTP/1.1\r\nHost: a\r\nConnection: host, content-length\r\nContent-Length: 2\r\n\r\n";
        let out = encode_request(buf, None, false);
        assert!(
            out.starts_with("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"),
            "{out}"
        );
    }

    #[test]
    fn response_head_drops_hop_by_hop_and_adds_cookie_and_close() {
        let buf = b"HTTP/1.1 200 OK\r\nConnection: X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nContent-Length: 10\r\nSet-Cookie: app=1\r\n\r\n";
        let mut head = ResponseHead::default();
        assert_eq!(head.parse(buf), Ok(true));
        let mut out = Vec::new();
        let extras = ResponseExtras {
            set_cookie: Some("fulcrum_affinity=abc; Path=/; HttpOnly"),
            close: true,
        };
        response_head(&mut out, &head, buf, &extras);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nSet-Cookie: app=1\r\nVia: 1.1 fulcrum\r\n\
             Set-Cookie: fulcrum_affinity=abc; Path=/; HttpOnly\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn framing_headers_are_never_hop_by_hop() {
        let buf = b"HTTP/1.1 200 OK\r\nConnection: content-length, transfer-encoding, x-a\r\nX-A: 1\r\nContent-Length: 5\r\n\r\n";
        let mut head = ResponseHead::default();
        assert_eq!(head.parse(buf), Ok(true));
        let mut out = Vec::new();
        let extras = ResponseExtras {
            set_cookie: None,
            close: false,
        };
        response_head(&mut out, &head, buf, &extras);
        assert_eq!(
            text(&out),
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nVia: 1.1 fulcrum\r\n\r\n"
        );
        let chunked = b"HTTP/1.1 200 OK\r\nConnection: transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(head.parse(chunked), Ok(true));
        out.clear();
        response_head(&mut out, &head, chunked, &extras);
        assert!(text(&out).contains("\r\nTransfer-Encoding: chunked\r\n"));
    }

    #[test]
    fn local_responses_are_complete_messages() {
        let mut out = Vec::new();
        local_response(&mut out, 404, "Not Found", "no route\n", None, false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nno route\n"
        );
        out.clear();
        local_response(&mut out, 429, "Too Many Requests", "x\n", Some(2), true);
        assert_eq!(
            text(&out),
            "HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nRetry-After: 2\r\nConnection: close\r\n\r\nx\n"
        );
    }
}
