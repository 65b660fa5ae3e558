//! Finding a gRPC-Web call's status in its response body, as the body streams past.
//!
//! gRPC-Web (the gRPC repository's `doc/PROTOCOL-WEB.md`) has no HTTP trailers: the
//! server ends the body with a frame of its own, flagged `0x80`, whose payload is the
//! trailer fields written as HTTP/1 header lines (`grpc-status:0\r\n`). Messages are
//! frames too: a flag byte, a 4-byte big-endian length, the payload. `WebBody` follows
//! the frames, skipping message payloads without looking at them, and hands back the
//! trailer frame's payload. An `application/grpc-web-text` body is base64 of the same
//! frames, each piece padded on its own: it is decoded four characters at a time.
//! Anything that does not follow the format ends the watch quietly (the bytes are
//! relayed regardless; only the count is lost).

use base64::Engine as _;

/// The flag bit of the frame that carries the trailer fields.
const TRAILERS_FLAG: u8 = 0x80;
/// The largest trailer frame read; a larger one is not looked into.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the scan is in the frame sequence.
#[derive(Debug)]
enum Frame {
    /// Reading a frame's 5-byte prefix (`got` of them so far).
    Prefix { bytes: [u8; 5], got: u8 },
    /// Skipping this many more bytes of a message.
    Message(u64),
    /// Collecting the trailer frame's payload: this many more bytes.
    Trailers { left: usize, payload: Vec<u8> },
    /// The trailers were found, or the body does not follow the format.
    Done,
}

/// A gRPC-Web response body being watched for its trailer frame.
#[derive(Debug)]
pub(crate) struct WebBody {
    frame: Frame,
    /// For `grpc-web-text`: the base64 characters of an incomplete group.
    text: Option<([u8; 4], usize)>,
}

impl WebBody {
    /// A body of binary frames (`application/grpc-web`, `+proto`, ...).
    pub(crate) fn binary() -> Self {
        WebBody {
            frame: Frame::Prefix {
                bytes: [0; 5],
                got: 0,
            },
            text: None,
        }
    }

    /// A body of base64 text (`application/grpc-web-text`).
    pub(crate) fn text() -> Self {
        WebBody {
            text: Some(([0; 4], 0)),
            ..WebBody::binary()
        }
    }

    /// Feeds the next bytes of the body; the trailer frame's payload once it is
    /// complete (once per body).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let Some((mut group, mut got)) = self.text else {
            return self.feed_frames(bytes);
        };
        let mut found = None;
        for &c in bytes.iter().filter(|c| !c.is_ascii_whitespace()) {
            group[got] = c;
            got += 1;
            if got < 4 {
                continue;
            }
            got = 0;
            let mut decoded = [0u8; 3];
            match base64::engine::general_purpose::STANDARD.decode_slice(group, &mut decoded) {
                Ok(n) => found = found.or(self.feed_frames(&decoded[..n])),
                Err(_) => self.frame = Frame::Done,
            }
            if matches!(self.frame, Frame::Done) {
                break;
            }
        }
        self.text = Some((group, got));
        found
    }

    /// Feeds decoded frame bytes.
    fn feed_frames(&mut self, mut bytes: &[u8]) -> Option<Vec<u8>> {
        while !bytes.is_empty() {
            match &mut self.frame {
                Frame::Done => return None,
                Frame::Prefix { bytes: prefix, got } => {
                    prefix[*got as usize] = bytes[0];
                    *got += 1;
                    bytes = &bytes[1..];
                    if *got == 5 {
                        self.frame = next_frame(*prefix);
                    }
                }
                Frame::Message(left) => {
                    let take = (*left).min(bytes.len() as u64);
                    *left -= take;
                    bytes = &bytes[take as usize..];
                    if *left == 0 {
                        self.frame = Frame::Prefix {
                            bytes: [0; 5],
                            got: 0,
                        };
                    }
                }
                Frame::Trailers { left, payload } => {
                    let take = (*left).min(bytes.len());
                    payload.extend_from_slice(&bytes[..take]);
                    *left -= take;
                    bytes = &bytes[take..];
                    if *left == 0 {
                        let payload = std::mem::take(payload);
                        self.frame = Frame::Done;
                        return Some(payload);
                    }
                }
            }
        }
        None
    }
}

/// What follows a frame's prefix.
fn next_frame(prefix: [u8; 5]) -> Frame {
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]);
    if prefix[0] & TRAILERS_FLAG == 0 {
        return match len {
            0 => Frame::Prefix {
                bytes: [0; 5],
                got: 0,
            },
            n => Frame::Message(u64::from(n)),
        };
    }
    match len as usize {
        len if len > MAX_TRAILERS => Frame::Done,
        len => Frame::Trailers {
            left: len,
            payload: Vec::with_capacity(len),
        },
    }
}

/// The `grpc-status` value among trailer fields written as HTTP/1 header lines
/// (`name:value`, CRLF or LF after each).
pub(crate) fn status_in_lines(lines: &[u8]) -> Option<&[u8]> {
    lines.split(|&b| b == b'\n').find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        name.trim_ascii()
            .eq_ignore_ascii_case(b"grpc-status")
            .then(|| value.trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame as a gRPC-Web server writes it.
    fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn body() -> Vec<u8> {
        let mut body = frame(0, b"first message");
        body.extend(frame(0, b""));
        body.extend(frame(0, &[0x80; 300]));
        body.extend(frame(
            TRAILERS_FLAG,
            b"grpc-status:15\r\ngrpc-message:gone\r\n",
        ));
        body
    }

    #[test]
    fn the_trailer_frame_is_found_however_the_body_is_cut() {
        let body = body();
        for piece in [1, 2, 5, 7, 64, body.len()] {
            let mut web = WebBody::binary();
            let found: Vec<Vec<u8>> = body.chunks(piece).filter_map(|c| web.feed(c)).collect();
            assert_eq!(found.len(), 1, "pieces of {piece}");
            assert_eq!(status_in_lines(&found[0]), Some(&b"15"[..]));
        }
    }

    #[test]
    fn text_bodies_are_decoded_piece_by_piece_with_padding_inside() {
        let body = body();
        // A server encodes each piece it writes on its own, padding included.
        let text: String = body
            .chunks(7)
            .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
            .collect();
        assert!(text.contains('='), "padding inside the body: {text}");
        for piece in [1, 3, 4, 10, text.len()] {
            let mut web = WebBody::text();
            let found: Vec<Vec<u8>> = text
                .as_bytes()
                .chunks(piece)
                .filter_map(|c| web.feed(c))
                .collect();
            assert_eq!(found.len(), 1, "pieces of {piece}");
            assert_eq!(status_in_lines(&found[0]), Some(&b"15"[..]));
        }
    }

    #[test]
    fn oversized_or_broken_bodies_end_the_watch() {
        let mut web = WebBody::binary();
        let big = frame(TRAILERS_FLAG, &vec![b'a'; MAX_TRAILERS + 1]);
        assert_eq!(web.feed(&big), None);
        assert_eq!(web.feed(&frame(TRAILERS_FLAG, b"grpc-status:0\r\n")), None);
        let mut web = WebBody::text();
        assert_eq!(web.feed(b"!!!!AAAA"), None);
    }

    #[test]
    fn the_status_line_is_found_in_either_case_and_spacing() {
        assert_eq!(status_in_lines(b"Grpc-Status: 3\r\n"), Some(&b"3"[..]));
        assert_eq!(
            status_in_lines(b"grpc-message:a:b\ngrpc-status:0"),
            Some(&b"0"[..])
        );
        assert_eq!(status_in_lines(b"grpc-message: x\r\n"), None);
        assert_eq!(status_in_lines(b""), None);
    }
}
