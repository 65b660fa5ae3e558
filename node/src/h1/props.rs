//! Property tests of the hand-written HTTP/1.1 parsers (issue 17 item 4): arbitrary
//! bytes never panic the request-head parser, the chunk scanner or the response-head
//! parser, and well-formed input generated at random is read exactly, however it is
//! split across reads. `PROPTEST_CASES` sets how many cases run (CI: the default 256
//! per property; the long run in the README: a million).

use super::chunked::ChunkScanner;
use super::head::{Parsed, RequestHead};
use super::response::ResponseHead;
use proptest::prelude::*;

/// A header name made of token characters.
fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,15}"
}

/// A header value: visible ASCII and spaces, no leading or trailing space.
fn value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,30}[!-~])?"
}

/// The bytes of a chunked body carrying `data` in chunks of the given sizes, and
/// the trailer fields.
fn chunked(data: &[u8], sizes: &[usize], trailers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        out.extend(format!("{n:x}\r\n").as_bytes());
        out.extend(&rest[..n]);
        out.extend(b"\r\n");
        rest = &rest[n..];
    }
    out.extend(b"0\r\n");
    for (name, value) in trailers {
        out.extend(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend(b"\r\n");
    out
}

proptest! {
    #[test]
    fn any_bytes_are_a_verdict_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let mut head = RequestHead::default();
        let _ = head.parse(&bytes);
        let mut response = ResponseHead::default();
        let _ = response.parse(&bytes);
        let mut scanner = ChunkScanner::default();
        let _ = scanner.feed(&bytes);
    }

    #[test]
    fn a_request_line_with_headers_mutated_at_one_byte_never_panics(
        path in "/[a-z0-9/._~%-]{0,40}",
        fields in proptest::collection::vec((token(), value()), 0..8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = format!("GET {path} HTTP/1.1\r\nHost: example\r\n").into_bytes();
        for (n, v) in &fields {
            bytes.extend(format!("{n}: {v}\r\n").as_bytes());
        }
        bytes.extend(b"\r\n");
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let mut head = RequestHead::default();
        let _ = head.parse(&bytes);
    }

    #[test]
    fn a_well_formed_get_is_read_whole_with_its_path(
        path in "/[a-z0-9/._~-]{0,40}",
        fields in proptest::collection::vec((token(), value()), 0..8),
    ) {
        let mut bytes = format!("GET {path} HTTP/1.1\r\nHost: example\r\n").into_bytes();
        for (n, v) in &fields {
            bytes.extend(format!("X-{n}: {v}\r\n").as_bytes());
        }
        bytes.extend(b"\r\n");
        let mut head = RequestHead::default();
        // Every strict prefix is partial; the whole is one head of exactly its length.
        for cut in [bytes.len() / 3, bytes.len() - 1] {
            prop_assert!(matches!(head.parse(&bytes[..cut]), Parsed::Partial));
        }
        prop_assert!(matches!(head.parse(&bytes), Parsed::Head));
        prop_assert_eq!(head.path(&bytes), path.as_bytes());
    }

    #[test]
    fn a_chunked_body_ends_exactly_where_it_ends_however_it_is_split(
        data in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..6),
        trailers in proptest::collection::vec((token(), value()), 0..3),
        cuts in proptest::collection::vec(1usize..200, 1..30),
        after in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let body = chunked(&data, &sizes, &trailers);
        let mut bytes = body.clone();
        bytes.extend(&after);
        let mut scanner = ChunkScanner::default();
        let mut consumed = 0;
        let mut at = 0;
        for cut in cuts.iter().cycle() {
            if at >= bytes.len() || scanner.is_done() {
                break;
            }
            let end = (at + cut).min(bytes.len());
            let took = scanner.feed(&bytes[at..end]);
            prop_assert!(took.is_ok(), "rejected a well-formed body: {:?}", took);
            consumed += took.unwrap_or(0);
            at = end;
        }
        prop_assert!(scanner.is_done());
        prop_assert_eq!(consumed, body.len(), "the body ends at its last CRLF");
    }

    #[test]
    fn a_chunk_size_that_overflows_is_refused(extra in 1usize..8, digit in "[1-9a-f]") {
        let mut scanner = ChunkScanner::default();
        let size = format!("{digit}{}\r\n", "0".repeat(15 + extra));
        prop_assert!(scanner.feed(size.as_bytes()).is_err());
    }
}
