//! Finding the end of a chunked body while relaying it unchanged.
//!
//! The fast path forwards a chunked response byte for byte; it only needs to know
//! where the body ends, so the backend connection can carry the next request and the
//! client sees a complete message. `ChunkScanner` walks the framing (RFC 9112 §7.1):
//! `size [;ext] CRLF data CRLF` ... `0 CRLF [trailer lines] CRLF`, skipping data in
//! bulk. Every line must end in CRLF: a bare LF or a bare CR is an error (§2.2 lets a
//! recipient accept a bare LF, but a proxy that relays the bytes unchanged would hand
//! the next hop framing it may read differently), and so is anything else malformed.
//! The relay then stops (`relay`): nothing past the error reaches the client.

/// Why a chunked body could not be followed.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ChunkError {
    #[error("bad chunk size")]
    Size,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("chunk line too long")]
    LineTooLong,
    #[error("bare CR or LF in chunk framing")]
    BareLineEnd,
    #[error("control character in a chunk extension or trailer")]
    Control,
}

/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u32,
    },
    /// After the size: extensions up to the CR.
    Extension,
    /// After the CR of a size line.
    SizeLf,
    /// Skipping chunk data.
    Data(u64),
    /// Expecting the CR, then the LF, after data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line, and after its CR.
    Trailer,
    TrailerLf,
    /// Saw CR at the start of a trailer line: the final LF must follow.
    EndLf,
    Done,
}

/// Tracks where a chunked body ends, fed the bytes as they are relayed.
#[derive(Debug)]
pub(crate) struct ChunkScanner {
    state: State,
    size: u64,
    line: u32,
}

impl Default for ChunkScanner {
    fn default() -> Self {
        ChunkScanner {
            state: State::Size { digits: 0 },
            size: 0,
            line: 0,
        }
    }
}

impl ChunkScanner {
    /// Feeds `bytes`; returns how many of them belong to the body (all of them unless
    /// the body ended inside `bytes`).
    pub(super) fn feed(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        self.feed_data(bytes, |_| {})
    }

    /// Like `feed`, and tells `data` where each run of chunk data lies in `bytes`
    /// (the body without its framing, for a client that gets it de-chunked: HTTP/2).
    pub(crate) fn feed_data(
        &mut self,
        bytes: &[u8],
        data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        self.feed_parts(bytes, data, |_| {})
    }

    /// Like `feed_data`, and hands `trailer` each byte of the trailer lines (with
    /// their CRLFs, without the final blank line), for a client that gets the
    /// trailer fields in a frame of their own (HTTP/2).
    pub(crate) fn feed_parts(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
        mut trailer: impl FnMut(u8),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while let (Some(&b), false) = (bytes.get(i), self.state == State::Done) {
            if let State::Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                data(i..i + take as usize);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            let before = self.state;
            self.step(b)?;
            if matches!(
                before,
                State::TrailerStart | State::Trailer | State::TrailerLf
            ) && self.state != State::EndLf
            {
                trailer(b);
            }
            i += 1;
        }
        Ok(i)
    }

    /// The body's last byte has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match (self.state, b) {
            (State::Size { digits }, _) => self.size_byte(digits, b)?,
            (State::Extension | State::Trailer, b'\r') => self.line_end(),
            (State::Extension | State::Trailer, _) => self.line_byte(b)?,
            (State::SizeLf, b'\n') if self.size == 0 => State::TrailerStart,
            (State::SizeLf, b'\n') => State::Data(self.size),
            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => {
                self.size = 0;
                State::Size { digits: 0 }
            }
            (State::DataCr | State::DataLf, _) => return Err(ChunkError::DataEnd),
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart, b'\n') => return Err(ChunkError::BareLineEnd),
            (State::TrailerStart, _) => {
                self.line = 0;
                self.state = State::Trailer;
                self.line_byte(b)?
            }
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::EndLf, b'\n') => State::Done,
            (State::SizeLf | State::TrailerLf | State::EndLf, _) => {
                return Err(ChunkError::BareLineEnd)
            }
            (State::Data(_) | State::Done, _) => self.state,
        };
        Ok(())
    }

    /// A byte of the size line while digits may still come.
    fn size_byte(&mut self, digits: u32, b: u8) -> Result<State, ChunkError> {
        match ((b as char).to_digit(16), b) {
            (Some(d), _) if digits < 16 => {
                self.size = self.size << 4 | u64::from(d);
                Ok(State::Size { digits: digits + 1 })
            }
            (Some(_), _) => Err(ChunkError::Size),
            (None, _) if digits == 0 => Err(ChunkError::Size),
            (None, b'\r') => Ok(self.line_end()),
            (None, b';' | b' ' | b'\t') => {
                self.line = 1;
                Ok(State::Extension)
            }
            (None, b'\n') => Err(ChunkError::BareLineEnd),
            (None, _) => Err(ChunkError::Size),
        }
    }

    /// A byte inside an extension or a trailer line (not CR).
    fn line_byte(&mut self, b: u8) -> Result<State, ChunkError> {
        self.line += 1;
        if self.line > MAX_LINE {
            return Err(ChunkError::LineTooLong);
        }
        match b {
            b'\n' => Err(ChunkError::BareLineEnd),
            b'\t' | b' '..=b'~' | 0x80..=0xff => Ok(self.state),
            _ => Err(ChunkError::Control),
        }
    }

    /// The CR that ends a size or trailer line.
    fn line_end(&self) -> State {
        match self.state {
            State::Trailer => State::TrailerLf,
            _ => State::SizeLf,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `body` in pieces of `step` bytes; returns where the body ended.
    fn end_of(body: &[u8], step: usize) -> Result<Option<usize>, ChunkError> {
        let mut scanner = ChunkScanner::default();
        let mut offset = 0;
        for piece in body.chunks(step) {
            let used = scanner.feed(piece)?;
            offset += used;
            if scanner.is_done() {
                return Ok(Some(offset));
            }
            assert_eq!(used, piece.len());
        }
        Ok(None)
    }

    #[test]
    fn finds_the_end_however_the_bytes_are_split() {
        let body = b"5\r\nhello\r\n1a;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 9\r\n\r\nGET /next";
        let end = body.len() - b"GET /next".len();
        for step in [1, 2, 3, 7, 64, body.len()] {
            assert_eq!(end_of(body, step), Ok(Some(end)), "step {step}");
        }
    }

    #[test]
    fn data_runs_are_reported_without_framing() {
        let body = b"5\r\nhello\r\n6;x=1\r\n world\r\n0\r\nT: 1\r\n\r\nextra";
        for split in 1..body.len() {
            let mut scanner = ChunkScanner::default();
            let mut out = Vec::new();
            let mut used = 0;
            for part in [&body[..split], &body[split..]] {
                let n = scanner
                    .feed_data(part, |r| out.extend_from_slice(&part[r]))
                    .unwrap();
                used += n;
            }
            assert_eq!(out, b"hello world", "split at {split}");
            assert!(scanner.is_done());
            assert_eq!(used, body.len() - b"extra".len());
        }
    }

    #[test]
    fn trailer_lines_are_reported_apart_from_the_data() {
        let body = b"3\r\nabc\r\n0\r\nX-Sum: 9\r\nY: a b\r\n\r\nnext";
        for split in 1..body.len() {
            let mut scanner = ChunkScanner::default();
            let (mut data, mut trailer) = (Vec::new(), Vec::new());
            for part in [&body[..split], &body[split..]] {
                scanner
                    .feed_parts(
                        part,
                        |r| data.extend_from_slice(&part[r]),
                        |b| trailer.push(b),
                    )
                    .unwrap();
            }
            assert_eq!(data, b"abc", "split at {split}");
            assert_eq!(trailer, b"X-Sum: 9\r\nY: a b\r\n", "split at {split}");
        }
        let mut trailer = Vec::new();
        let mut scanner = ChunkScanner::default();
        scanner
            .feed_parts(b"0\r\n\r\n", |_| {}, |b| trailer.push(b))
            .unwrap();
        assert!(scanner.is_done() && trailer.is_empty());
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        assert_eq!(end_of(b"5\r\nhel", 2), Ok(None));
        assert_eq!(end_of(b"0\r\nX-Trailer: 1\r\n", 1), Ok(None));
        assert_eq!(end_of(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(end_of(b"0 ; a=\"b c\"\r\n\r\n", 3), Ok(Some(15)));
    }

    #[test]
    fn bare_line_ends_are_errors_wherever_they_are() {
        for (body, err) in [
            (&b"0\n\n"[..], ChunkError::BareLineEnd),
            (b"5\nhello\r\n0\r\n\r\n", ChunkError::BareLineEnd),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::DataEnd),
            (b"5\r\nhello\r0\r\n\r\n", ChunkError::DataEnd),
            (b"5\rhello\r\n", ChunkError::BareLineEnd),
            (b"5;ext\nhello\r\n", ChunkError::BareLineEnd),
            (b"5;a\rb\r\nhello\r\n", ChunkError::BareLineEnd),
            (b"0\r\nX: 1\n\r\n", ChunkError::BareLineEnd),
            (b"0\r\nX: 1\rY\r\n\r\n", ChunkError::BareLineEnd),
            (b"0\r\n\n", ChunkError::BareLineEnd),
            (b"0\r\n\rX", ChunkError::BareLineEnd),
            (b"1;\x00\r\nx\r\n", ChunkError::Control),
        ] {
            for step in [1, 4, body.len()] {
                assert_eq!(end_of(body, step), Err(err), "{body:?} step {step}");
            }
        }
    }

    #[test]
    fn malformed_framing_is_an_error() {
        assert_eq!(end_of(b"zz\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"5 x\r\n", 1), Ok(None));
        assert_eq!(end_of(b"11111111111111111\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"3\r\nabcX\r\n", 1), Err(ChunkError::DataEnd));
        assert_eq!(end_of(b"3x\r\n", 1), Err(ChunkError::Size));
        let long = [b"1;".as_slice(), &[b'e'; 5000]].concat();
        assert_eq!(end_of(&long, 100), Err(ChunkError::LineTooLong));
    }
}
