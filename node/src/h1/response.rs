//! Backend response heads on the hand-written HTTP/1.1 path.
//!
//! The head is parsed in the backend connection's buffer; what the proxy needs is the
//! status, where each header is (to copy the head to the client without the hop-by-hop
//! ones), and how the body is framed (RFC 9112 §6.3): none, a length, chunked, or
//! until the backend closes. Whether the backend connection may carry another request
//! follows from the version, `Connection: close` and the framing.

use super::head::{classify, connection_options, named_in, parse_length, HeaderSpan, Kind};
use crate::upstream::BackendConn;
use bytes::BytesMut;
use std::mem::MaybeUninit;
use std::ops::Range;
use tokio::io::AsyncRead;

/// How many header lines a backend response may have.
const MAX_RESPONSE_HEADERS: usize = 128;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the backend closes the connection.
    UntilClose,
}

/// A parsed response head; ranges point into the backend connection's buffer.
#[derive(Debug, Default)]
pub(crate) struct ResponseHead {
    pub len: usize,
    pub status: u16,
    pub reason: Range<usize>,
    pub headers: Vec<HeaderSpan>,
    /// Header names listed in `Connection`.
    pub listed: Vec<Range<usize>>,
    /// The backend connection may serve another request after this response.
    pub keep_alive: bool,
    /// A `Transfer-Encoding` header is present (kept: the body is relayed as it is).
    transfer_encoding: Option<Range<usize>>,
    content_length: Option<u64>,
}

/// Why a backend response head was refused (answered 502).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ResponseError {
    #[error("malformed response head: {0}")]
    Syntax(httparse::Error),
    #[error("conflicting or invalid Content-Length")]
    Length,
    #[error("unexpected 101 Switching Protocols")]
    Switching,
}

impl ResponseHead {
    /// Parses `buf`; `Ok(false)` means more bytes are needed.
    pub(crate) fn parse(&mut self, buf: &[u8]) -> Result<bool, ResponseError> {
        let mut raw = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut raw)
            .map_err(ResponseError::Syntax)?;
        let len = match parsed {
            httparse::Status::Complete(len) => len,
            httparse::Status::Partial => return Ok(false),
        };
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        self.len = len;
        self.status = resp.code.unwrap_or(0);
        if self.status == 101 {
            return Err(ResponseError::Switching);
        }
        self.reason = span(resp.reason.unwrap_or("").as_bytes());
        self.headers.clear();
        self.listed.clear();
        self.transfer_encoding = None;
        self.content_length = None;
        let mut close = resp.version != Some(1);
        for h in resp.headers.iter() {
            let kind = match classify(h.name.as_bytes()) {
                Kind::Connection => {
                    // An `upgrade` option means nothing without a 101, refused above.
                    close |= connection_options(h.value, base, &mut self.listed).close;
                    Kind::Connection
                }
                Kind::ContentLength => {
                    let n = parse_length(h.value).ok_or(ResponseError::Length)?;
                    if self.content_length.is_some_and(|prior| prior != n) {
                        return Err(ResponseError::Length);
                    }
                    self.content_length = Some(n);
                    Kind::ContentLength
                }
                Kind::TransferEncoding => {
                    // Relayed unchanged, together with the encoded body.
                    self.transfer_encoding = Some(span(h.value));
                    Kind::TransferEncoding
                }
                other => other,
            };
            self.headers.push(HeaderSpan {
                name: span(h.name.as_bytes()),
                value: span(h.value),
                kind,
            });
        }
        self.keep_alive = !close;
        Ok(true)
    }

    /// The body has a transfer coding, which then decides the framing: a
    /// `Content-Length` next to it must not reach the client (RFC 9112 §6.3).
    pub(crate) fn has_transfer_encoding(&self) -> bool {
        self.transfer_encoding.is_some()
    }

    /// A 1xx head that another head follows.
    pub(crate) fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// The body framing, given whether the request was `HEAD`.
    pub(crate) fn framing(&self, buf: &[u8], head_request: bool) -> Framing {
        if head_request || self.status == 204 || self.status == 304 || self.is_informational() {
            return Framing::Empty;
        }
        if let Some(te) = &self.transfer_encoding {
            let last = buf[te.clone()].rsplit(|&b| b == b',').next().unwrap_or(&[]);
            return if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                Framing::Chunked
            } else {
                Framing::UntilClose
            };
        }
        match self.content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    }

    /// Whether header `h` is named in the response's `Connection` header.
    pub(crate) fn is_listed(&self, buf: &[u8], h: &HeaderSpan) -> bool {
        named_in(&self.listed, buf, h)
    }
}

/// A response head larger than this is refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;

/// Why a backend's response head could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeadReadError {
    /// The connection closed (or failed) before a byte of the head: a stale pooled
    /// connection, or a backend that went away; the request may be retried.
    ClosedEmpty,
    /// Malformed, too large, or cut off after some of it arrived.
    Malformed,
}

impl ResponseHead {
    /// Reads from the backend connection until `self` holds a complete head
    /// (informational ones included); the bytes stay in `up.buf`. Both HTTP paths
    /// read backend responses with it.
    pub(crate) async fn read_from(&mut self, up: &mut BackendConn) -> Result<(), HeadReadError> {
        self.read_over(&mut up.stream, &mut up.buf).await
    }

    /// `read_from` for any connection to a backend (`crate::http2`'s TLS ones).
    pub(crate) async fn read_over<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
    ) -> Result<(), HeadReadError> {
        loop {
            if !buf.is_empty() {
                match self.parse(buf) {
                    Ok(true) => return Ok(()),
                    Ok(false) if buf.len() < MAX_RESPONSE_HEAD => {}
                    Ok(false) | Err(_) => return Err(HeadReadError::Malformed),
                }
            }
            // A buffer only once the backend answers: waiting for it holds none.
            match crate::bufpool::read_lent(stream, buf).await {
                Ok(0) | Err(_) if buf.is_empty() => return Err(HeadReadError::ClosedEmpty),
                Ok(0) | Err(_) => return Err(HeadReadError::Malformed),
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<ResponseHead, ResponseError> {
        let mut head = ResponseHead::default();
        assert!(head.parse(text)?, "incomplete");
        Ok(head)
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let length = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(
            parse(length).unwrap().framing(length, false),
            Framing::Length(12)
        );
        assert_eq!(parse(length).unwrap().framing(length, true), Framing::Empty);
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n";
        assert_eq!(
            parse(chunked).unwrap().framing(chunked, false),
            Framing::Chunked
        );
        let gzip = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n";
        assert_eq!(
            parse(gzip).unwrap().framing(gzip, false),
            Framing::UntilClose
        );
        let bare = b"HTTP/1.1 200 OK\r\nX: y\r\n\r\n";
        assert_eq!(
            parse(bare).unwrap().framing(bare, false),
            Framing::UntilClose
        );
        let none = b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n";
        assert_eq!(parse(none).unwrap().framing(none, false), Framing::Empty);
    }

    #[test]
    fn keep_alive_needs_http_1_1_without_close() {
        assert!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\n\r\n";
        let head = parse(closing).unwrap();
        assert!(!head.keep_alive);
        assert!(head.is_listed(closing, &head.headers[1]));
        assert!(!head.is_listed(closing, &head.headers[0]));
    }

    #[test]
    fn bad_heads_are_errors() {
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").err(),
            Some(ResponseError::Length)
        );
        assert_eq!(
            parse(b"HTTP/1.1 101 Switching\r\n\r\n").err(),
            Some(ResponseError::Switching)
        );
        assert!(matches!(
            parse(b"HTTX/1.1 200 OK\r\n\r\n"),
            Err(ResponseError::Syntax(_))
        ));
        let mut head = ResponseHead::default();
        assert_eq!(head.parse(b"HTTP/1.1 200 OK\r\nContent-"), Ok(false));
    }
}
