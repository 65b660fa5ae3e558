//! Writing the heads fulcrum sends: the request to the backend and the response to
//! the client.
//!
//! Both are copies of what arrived, header by header, minus the hop-by-hop ones
//! (the fixed list plus those named in `Connection`), with the forwarding headers
//! rewritten: `X-Forwarded-For` gets the client appended to any earlier hops,
//! `X-Forwarded-Proto`/`-Host` are fulcrum's own, and `Via` gets fulcrum's hop. The
//! bytes go into a reused buffer, so a head costs no allocation once warm.

use super::head::{HeaderSpan, Kind, RequestHead};
use super::response::ResponseHead;

const VIA_HOP: &[u8] = b"1.1 fulcrum";

/// What the request head to the backend needs besides the client's head.
pub(super) struct Forwarding<'a> {
    /// The client address as an `X-Forwarded-For` entry.
    pub client_ip: &'a [u8],
    pub proto: &'a str,
}

/// Appends the request head for the backend to `out`.
pub(super) fn request_head(out: &mut Vec<u8>, head: &RequestHead, buf: &[u8], fwd: &Forwarding) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(&buf[head.target.clone()]);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut wrote_length = false;
    for h in &head.headers {
        match h.kind {
            Kind::Plain | Kind::Host if !head.is_listed(buf, h) => header_line(out, buf, h),
            Kind::ContentLength if !wrote_length => {
                wrote_length = true;
                header_line(out, buf, h);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    for h in head
        .headers
        .iter()
        .filter(|h| h.kind == Kind::XForwardedFor)
    {
        let value = &buf[h.value.clone()];
        if !value.is_empty() {
            out.extend_from_slice(value);
            out.extend_from_slice(b", ");
        }
    }
    out.extend_from_slice(fwd.client_ip);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(fwd.proto.as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(
        head.headers
            .get(head.host)
            .map_or(&[][..], |h| &buf[h.value.clone()]),
    );
    out.extend_from_slice(b"\r\n");
    via(out, buf, &head.headers);
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
            Kind::ContentLength if coded => {}
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

/// A short response fulcrum makes itself (errors, 404), always closing or not.
pub(super) fn local_response(
    out: &mut Vec<u8>,
    status: u16,
    reason: &str,
    body: &str,
    close: bool,
) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" },
    );
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

    #[test]
    fn request_head_drops_hop_by_hop_and_rewrites_forwarding() {
        let buf = b"POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 203.0.113.7\r\nX-Forwarded-Proto: https\r\nVia: 1.0 edge\r\nContent-Length: 3\r\nContent-Length: 3\r\nAccept: */*\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(buf), Parsed::Head));
        let mut out = Vec::new();
        let fwd = Forwarding {
            client_ip: b"10.1.2.3",
            proto: "http",
        };
        request_head(&mut out, &head, buf, &fwd);
        assert_eq!(
            text(&out),
            "POST /up?x=1 HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 3\r\nAccept: */*\r\n\
             X-Forwarded-For: 203.0.113.7, 10.1.2.3\r\nX-Forwarded-Proto: http\r\n\
             X-Forwarded-Host: shop.example\r\nVia: 1.0 edge, 1.1 fulcrum\r\n\r\n"
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
    fn local_responses_are_complete_messages() {
        let mut out = Vec::new();
        local_response(&mut out, 404, "Not Found", "no route\n", false);
        assert_eq!(
            text(&out),
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nno route\n"
        );
    }
}
