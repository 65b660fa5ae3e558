//! Which status a relayed gRPC call ended with, counted once in
//! `fulcrum_grpc_responses_total` (`grpc_metrics`), on every path that relays answers:
//! hyper's (`proxy`), the hand-written HTTP/1.1 one (`h1`) and the HTTP/2 one (`http2`).
//!
//! The answer's head says where the status is. `grpc-status` in the head is a
//! trailers-only answer: counted at once. Otherwise, by `Content-Type`:
//! `application/grpc...` carries it in the trailers (HTTP/2 trailers, or the trailer
//! section of a chunked HTTP/1.1 body); `application/grpc-web...` at the end of the
//! body, in a frame of its own (`grpc_web`). Answers that are not gRPC are not looked
//! at past their head: the check is two header lookups.

use crate::grpc_metrics::GrpcCodes;
use crate::grpc_web::{status_in_lines, WebBody};
use crate::request::lookup::HeaderLookup;

/// The media type of every gRPC answer, before its `+proto`, `-web`, ...
const GRPC: &[u8] = b"application/grpc";

/// The most bytes of an HTTP/1.1 trailer section kept to look for the status.
const MAX_TRAILER_LINES: usize = 16 * 1024;

/// Where the status of the call being relayed will come from.
#[derive(Debug)]
enum Source {
    Trailers,
    Web(WebBody),
}

/// A gRPC answer whose status is still to come.
#[derive(Debug)]
pub(crate) struct GrpcWatch {
    codes: GrpcCodes,
    source: Source,
    /// The trailer section of a chunked HTTP/1.1 body, as it streams past.
    lines: Vec<u8>,
    counted: bool,
}

impl GrpcWatch {
    /// Reads an answer's head: counts a trailers-only answer's status; for any other
    /// gRPC answer, a watch for the status to come.
    pub(crate) fn start(headers: &impl HeaderLookup, codes: &GrpcCodes) -> Option<GrpcWatch> {
        if let Some(status) = headers.first("grpc-status") {
            codes.count(status);
            return None;
        }
        let kind = headers.first("content-type")?;
        if !starts_with_ignore_case(kind, GRPC) {
            return None;
        }
        let rest = &kind[GRPC.len()..];
        let source = if starts_with_ignore_case(rest, b"-web-text") {
            Source::Web(WebBody::text())
        } else if starts_with_ignore_case(rest, b"-web") {
            Source::Web(WebBody::binary())
        } else {
            Source::Trailers
        };
        Some(GrpcWatch {
            codes: codes.clone(),
            source,
            lines: Vec::new(),
            counted: false,
        })
    }

    /// The next bytes of the body (without HTTP/1.1 chunk framing).
    pub(crate) fn data(&mut self, bytes: &[u8]) {
        if let Source::Web(web) = &mut self.source {
            if let Some(trailers) = web.feed(bytes) {
                self.count(status_in_lines(&trailers));
            }
        }
    }

    /// The answer's trailer fields arrived with this `grpc-status` (if any).
    pub(crate) fn trailers(&mut self, status: Option<&[u8]>) {
        self.count(status);
    }

    /// One more byte of a chunked HTTP/1.1 body's trailer section.
    pub(crate) fn trailer_byte(&mut self, byte: u8) {
        if self.lines.len() < MAX_TRAILER_LINES {
            self.lines.push(byte);
        }
    }

    /// The chunked body's trailer section is complete.
    pub(crate) fn trailer_lines_done(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        self.count(status_in_lines(&lines));
    }

    fn count(&mut self, status: Option<&[u8]>) {
        if let (Some(status), false) = (status, self.counted) {
            self.codes.count(status);
            self.counted = true;
        }
    }
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes
        .get(..prefix.len())
        .is_some_and(|b| b.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grpc_metrics::GrpcLabels;
    use http::{HeaderMap, HeaderValue};
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    fn codes() -> GrpcCodes {
        GrpcCodes::new(Family::<GrpcLabels, Counter>::default(), "p", "b")
    }

    fn head(fields: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn a_trailers_only_answer_is_counted_from_its_head() {
        let codes = codes();
        let h = head(&[("content-type", "application/grpc"), ("grpc-status", "3")]);
        assert!(GrpcWatch::start(&h, &codes).is_none());
        assert_eq!(codes.get("INVALID_ARGUMENT"), 1);
    }

    #[test]
    fn answers_that_are_not_grpc_are_not_watched() {
        let codes = codes();
        for h in [
            head(&[]),
            head(&[("content-type", "text/plain")]),
            head(&[("content-type", "application/gr")]),
        ] {
            assert!(GrpcWatch::start(&h, &codes).is_none(), "{h:?}");
        }
    }

    #[test]
    fn trailers_are_counted_once() {
        let codes = codes();
        let h = head(&[("content-type", "Application/gRPC+proto")]);
        let mut watch = GrpcWatch::start(&h, &codes).expect("a gRPC answer");
        watch.data(b"\0\0\0\0\x01x");
        for b in b"grpc-status: 14\r\n" {
            watch.trailer_byte(*b);
        }
        watch.trailer_lines_done();
        watch.trailers(Some(b"0"));
        assert_eq!(codes.get("UNAVAILABLE"), 1);
        assert_eq!(codes.get("OK"), 0);
    }

    #[test]
    fn grpc_web_answers_are_counted_from_their_trailer_frame() {
        let codes = codes();
        let h = head(&[("content-type", "application/grpc-web+proto")]);
        let mut watch = GrpcWatch::start(&h, &codes).expect("a gRPC-Web answer");
        watch.data(b"\0\0\0\0\x02hi\x80\0\0\0\x0fgrpc-status:0\r\n");
        assert_eq!(codes.get("OK"), 1);
        let h = head(&[("content-type", "application/grpc-web-text")]);
        let mut watch = GrpcWatch::start(&h, &codes).expect("a gRPC-Web text answer");
        // base64 of a trailer frame saying `grpc-status:5`.
        watch.data(b"gAAAAA1ncnBjLXN0YXR1czo1");
        assert_eq!(codes.get("NOT_FOUND"), 1);
    }
}
