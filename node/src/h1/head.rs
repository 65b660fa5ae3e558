//! Request heads on the hand-written HTTP/1.1 path: parse, validate, classify.
//!
//! `httparse` splits the head into method, target and header slices without copying;
//! here those become byte ranges into the connection's read buffer plus the few facts
//! the proxy acts on (body length, `Connection` options, where `Host` is). Anything
//! the fast path does not handle itself — HTTP/1.0, `Transfer-Encoding`, `Expect`,
//! upgrades, `CONNECT`, absolute-form targets — is reported as `Parsed::Handoff`
//! before a byte is consumed, so hyper can serve the connection from that request on.
//! Smuggling-prone input (conflicting `Content-Length`, no `Host`, two `Host` headers
//! or one that is not `uri-host[:port]`, malformed syntax) is refused with 400
//! (RFC 9112 §3.2, §6.3).

use crate::request::authority;
use crate::request::lookup::HeaderLookup;
use http::Method;
use std::mem::MaybeUninit;
use std::ops::Range;

/// The most header lines a request may carry; more is answered with 431.
pub(super) const MAX_HEADERS: usize = 100;

/// The HTTP/2 connection preface, sent first by h2c prior-knowledge clients.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How a header is treated on its way to the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Copied as it is.
    Plain,
    /// Describes this connection only: never forwarded (RFC 9110 §7.6.1).
    HopByHop,
    Connection,
    ContentLength,
    /// Decides the framing: hands a request to hyper, is kept in a response.
    TransferEncoding,
    Host,
    /// Replaced, or appended to for a trusted proxy (`encode::Forwarding`).
    XForwardedFor,
    Forwarded,
    XRealIp,
    /// Replaced by fulcrum's own value.
    XForwardedProto,
    XForwardedHost,
    Via,
}

/// Which kind a header name is; `name` is compared case-insensitively.
pub(crate) fn classify(name: &[u8]) -> Kind {
    let is = |s: &str| name.eq_ignore_ascii_case(s.as_bytes());
    match name.len() {
        2 if is("te") => Kind::HopByHop,
        3 if is("via") => Kind::Via,
        4 if is("host") => Kind::Host,
        7 if is("trailer") || is("upgrade") => Kind::HopByHop,
        9 if is("forwarded") => Kind::Forwarded,
        9 if is("x-real-ip") => Kind::XRealIp,
        10 if is("connection") => Kind::Connection,
        10 if is("keep-alive") => Kind::HopByHop,
        14 if is("content-length") => Kind::ContentLength,
        // Connection-specific (RFC 9113 §3.2.1), whatever `Connection` says.
        14 if is("http2-settings") => Kind::HopByHop,
        15 if is("x-forwarded-for") => Kind::XForwardedFor,
        16 if is("proxy-connection") => Kind::HopByHop,
        16 if is("x-forwarded-host") => Kind::XForwardedHost,
        17 if is("x-forwarded-proto") => Kind::XForwardedProto,
        17 if is("transfer-encoding") => Kind::TransferEncoding,
        18 if is("proxy-authenticate") => Kind::HopByHop,
        19 if is("proxy-authorization") => Kind::HopByHop,
        _ => Kind::Plain,
    }
}

/// One header line: where its name and value are in the buffer, and its kind.
#[derive(Debug, Clone)]
pub(crate) struct HeaderSpan {
    pub name: Range<usize>,
    pub value: Range<usize>,
    pub kind: Kind,
}

/// A parsed request head. Ranges point into the buffer it was parsed from.
#[derive(Debug, Default)]
pub(super) struct RequestHead {
    /// Bytes of the head, through the blank line.
    pub len: usize,
    pub method: Method,
    pub target: Range<usize>,
    pub headers: Vec<HeaderSpan>,
    /// Declared body length (0 when there is none).
    pub content_length: u64,
    /// The client sent `Connection: close`.
    pub close: bool,
    /// Header names listed in `Connection` (ranges), dropped like hop-by-hop ones.
    pub listed: Vec<Range<usize>>,
    /// Index of the `Host` header in `headers`.
    pub host: usize,
}

/// The outcome of looking for a request head in the buffer.
#[derive(Debug)]
pub(super) enum Parsed {
    /// A complete head this path serves.
    Head,
    /// More bytes are needed.
    Partial,
    /// A request hyper must serve (the reason is for the debug log).
    Handoff(&'static str),
    /// Refuse with this status and close the connection.
    Reject(u16),
}

impl RequestHead {
    /// Parses `buf` into `self`, reusing its allocations.
    pub(super) fn parse(&mut self, buf: &[u8]) -> Parsed {
        if buf.len() < H2_PREFACE.len() {
            if H2_PREFACE.starts_with(buf) {
                return Parsed::Partial;
            }
        } else if buf.starts_with(H2_PREFACE) {
            return Parsed::Handoff("h2c preface");
        }
        // Left uninitialised: filling 100 empty headers per request costs more than
        // parsing a small head.
        let mut raw = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, buf, &mut raw)
        {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Parsed::Partial,
            Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(431),
            Err(httparse::Error::Version) => return Parsed::Handoff("not HTTP/1.x"),
            Err(_) => return Parsed::Reject(400),
        };
        if req.version != Some(1) {
            return Parsed::Handoff("HTTP/1.0");
        }
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Parsed::Reject(400);
        };
        let Ok(method) = Method::from_bytes(method.as_bytes()) else {
            return Parsed::Reject(400);
        };
        if method == Method::CONNECT {
            return Parsed::Handoff("CONNECT");
        }
        if !target.starts_with('/') {
            return Parsed::Handoff("target not in origin form");
        }
        // A URI is ASCII (RFC 3986 §2); hyper refuses the rest the same way.
        if !target.is_ascii() {
            return Parsed::Reject(400);
        }
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        self.len = len;
        self.method = method;
        self.target = span(target.as_bytes());
        self.headers.clear();
        self.listed.clear();
        self.content_length = 0;
        self.close = false;
        let mut hosts = 0;
        let mut length: Option<u64> = None;
        for h in req.headers.iter() {
            let kind = classify(h.name.as_bytes());
            match kind {
                Kind::ContentLength => match (parse_length(h.value), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(prior)) if n == prior => {}
                    _ => return Parsed::Reject(400),
                },
                Kind::Host if !authority::is_valid(h.value) => return Parsed::Reject(400),
                Kind::Host => {
                    hosts += 1;
                    self.host = self.headers.len();
                }
                Kind::Connection => {
                    let options = connection_options(h.value, base, &mut self.listed);
                    if options.upgrade {
                        return Parsed::Handoff("connection: upgrade");
                    }
                    self.close |= options.close;
                }
                Kind::TransferEncoding => return Parsed::Handoff("transfer-encoding"),
                Kind::HopByHop if h.name.eq_ignore_ascii_case("upgrade") => {
                    return Parsed::Handoff("upgrade");
                }
                Kind::Plain if h.name.eq_ignore_ascii_case("expect") => {
                    return Parsed::Handoff("expect");
                }
                _ => {}
            }
            self.headers.push(HeaderSpan {
                name: span(h.name.as_bytes()),
                value: span(h.value),
                kind,
            });
        }
        // HTTP/1.1 needs exactly one (HTTP/1.0 went to hyper above).
        if hosts != 1 {
            return Parsed::Reject(400);
        }
        self.content_length = length.unwrap_or(0);
        Parsed::Head
    }

    /// Whether header `h` is named in the request's `Connection` header.
    pub(super) fn is_listed(&self, buf: &[u8], h: &HeaderSpan) -> bool {
        named_in(&self.listed, buf, h)
    }

    /// The request path as sent, without the query (ASCII, checked by `parse`).
    pub(super) fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.split_target(buf).0
    }

    /// The query with its `?`, or nothing.
    pub(super) fn query<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.split_target(buf).1
    }

    fn split_target<'b>(&self, buf: &'b [u8]) -> (&'b [u8], &'b [u8]) {
        let target = buf.get(self.target.clone()).unwrap_or_default();
        match target.iter().position(|&b| b == b'?') {
            Some(q) => target.split_at(q),
            None => (target, &[]),
        }
    }

    /// The Host header's value (validated by `parse`).
    pub(super) fn host<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        self.headers
            .get(self.host)
            .and_then(|h| buf.get(h.value.clone()))
            .unwrap_or_default()
    }

    /// Header access for routing and affinity, against the buffer the head came from.
    pub(super) fn view<'h>(&'h self, buf: &'h [u8]) -> HeadView<'h> {
        HeadView::new(&self.headers, buf)
    }
}

/// What one `Connection` header says besides the header names it lists.
pub(super) struct ConnectionOptions {
    pub close: bool,
    pub upgrade: bool,
}

/// Reads one `Connection` header (`value` lies in a buffer starting at address
/// `base`); the header names it lists are added to `listed` as ranges.
pub(super) fn connection_options(
    value: &[u8],
    base: usize,
    listed: &mut Vec<Range<usize>>,
) -> ConnectionOptions {
    let mut options = ConnectionOptions {
        close: false,
        upgrade: false,
    };
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        if token.eq_ignore_ascii_case(b"close") {
            options.close = true;
        } else if token.eq_ignore_ascii_case(b"upgrade") {
            options.upgrade = true;
        } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
            let start = token.as_ptr() as usize - base;
            listed.push(start..start + token.len());
        }
    }
    options
}

/// Whether header `h` is one of the `listed` names (from `Connection`).
pub(super) fn named_in(listed: &[Range<usize>], buf: &[u8], h: &HeaderSpan) -> bool {
    let name = &buf[h.name.clone()];
    listed
        .iter()
        .any(|l| buf[l.clone()].eq_ignore_ascii_case(name))
}

/// A strict `Content-Length`: ASCII digits only, no sign, at most 18 of them.
pub(super) fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 18 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Parsed header lines together with their buffer, readable through `HeaderLookup`.
pub(crate) struct HeadView<'h> {
    headers: &'h [HeaderSpan],
    buf: &'h [u8],
}

impl<'h> HeadView<'h> {
    pub(crate) fn new(headers: &'h [HeaderSpan], buf: &'h [u8]) -> Self {
        HeadView { headers, buf }
    }
}

impl HeaderLookup for HeadView<'_> {
    type Values<'a, 'n>
        = Values<'a, 'n>
    where
        Self: 'a;

    fn values<'a, 'n>(&'a self, name: &'n str) -> Values<'a, 'n> {
        Values {
            headers: self.headers.iter(),
            buf: self.buf,
            name: name.as_bytes(),
        }
    }
}

/// The values of one header name, in order.
pub(crate) struct Values<'a, 'n> {
    headers: std::slice::Iter<'a, HeaderSpan>,
    buf: &'a [u8],
    name: &'n [u8],
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let buf = self.buf;
        self.headers
            .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(self.name))
            .map(|h| &buf[h.value.clone()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> (RequestHead, Parsed) {
        let mut head = RequestHead::default();
        let parsed = head.parse(text);
        (head, parsed)
    }

    #[test]
    fn a_plain_get_is_parsed_with_its_parts() {
        let text = b"GET /a/b?x=1 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Secret\r\nCookie: a=1\r\n\r\nrest";
        let (head, parsed) = parse(text);
        assert!(matches!(parsed, Parsed::Head), "{parsed:?}");
        assert_eq!(head.len, text.len() - 4);
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.path(text), b"/a/b");
        assert_eq!(head.query(text), b"?x=1");
        assert_eq!(head.host(text), b"shop.example");
        assert!(!head.close);
        assert_eq!(head.listed.len(), 1);
        assert_eq!(&text[head.listed[0].clone()], b"X-Secret");
        let kinds: Vec<Kind> = head.headers.iter().map(|h| h.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Host,
                Kind::XForwardedFor,
                Kind::Connection,
                Kind::Plain
            ]
        );
        let view = head.view(text);
        assert_eq!(view.first("cookie"), Some(&b"a=1"[..]));
        assert_eq!(view.values("COOKIE").count(), 1);
    }

    #[test]
    fn partial_heads_wait_for_more_bytes() {
        for cut in [0, 1, 5, 20, 33] {
            let text = b"GET / HTTP/1.1\r\nHost: a\r\nX-Y: z\r\n\r\n";
            assert!(matches!(parse(&text[..cut]).1, Parsed::Partial), "{cut}");
        }
        assert!(matches!(parse(b"PRI * HTTP/2").1, Parsed::Partial));
    }

    #[test]
    fn smuggling_shapes_are_refused() {
        let cases: [&[u8]; 11] = [
            b"GET / HTTP/1.1\r\nX: y\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: \xc3\xa9.example.com\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for case in cases {
            assert!(
                matches!(parse(case).1, Parsed::Reject(400)),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let text = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
        assert!(matches!(parse(text.as_bytes()).1, Parsed::Reject(431)));
    }

    #[test]
    fn what_hyper_serves_is_handed_off_untouched() {
        let cases: [&[u8]; 7] = [
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET / HTTP/1.0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
            b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        ];
        for case in cases {
            assert!(
                matches!(parse(case).1, Parsed::Handoff(_)),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn body_length_and_close_are_read() {
        let text =
            b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 12\r\nConnection: close\r\n\r\n";
        let (head, parsed) = parse(text);
        assert!(matches!(parsed, Parsed::Head));
        assert_eq!(head.content_length, 12);
        assert!(head.close);
        assert_eq!(parse_length(b"0012"), Some(12));
        assert_eq!(parse_length(b"99999999999999999999"), None);
        assert_eq!(parse_length(b"1 2"), None);
    }

    #[test]
    fn classify_knows_the_rewritten_and_hop_by_hop_headers() {
        assert_eq!(classify(b"Transfer-Encoding"), Kind::TransferEncoding);
        assert_eq!(classify(b"HTTP2-Settings"), Kind::HopByHop);
        assert_eq!(classify(b"Forwarded"), Kind::Forwarded);
        assert_eq!(classify(b"x-real-ip"), Kind::XRealIp);
        assert_eq!(classify(b"KEEP-ALIVE"), Kind::HopByHop);
        assert_eq!(classify(b"x-forwarded-proto"), Kind::XForwardedProto);
        assert_eq!(classify(b"Content-Length"), Kind::ContentLength);
        assert_eq!(classify(b"content-type"), Kind::Plain);
        assert_eq!(classify(b"x-forwarded-port"), Kind::Plain);
    }
}
