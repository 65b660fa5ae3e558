//! Finding the end of a chunked body while relaying it unchanged.
//!
//! The fast path forwards a chunked response byte for byte; it only needs to know
//! where the body ends, so the backend connection can carry the next request and the
//! client sees a complete message. `ChunkScanner` walks the framing (RFC 9112 §7.1):
//! `size [;ext] CRLF data CRLF` ... `0 CRLF [trailer lines] CRLF`, skipping data in
//! bulk. Bare LF is accepted as a line end, as most parsers do; anything else
//! malformed is an error and the connection is closed.

/// Why a chunked body could not be followed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum ChunkError {
    #[error("bad chunk size")]
    Size,
    #[error("chunk data not followed by CRLF")]
    DataEnd,
    #[error("chunk line too long")]
    LineTooLong,
}

/// The longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: u32,
    },
    /// After the size: extensions up to the line end.
    SizeLine,
    /// Skipping chunk data.
    Data(u64),
    /// Expecting CR or LF after data.
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final blank line).
    TrailerStart,
    /// Inside a trailer line.
    Trailer,
    /// Saw CR at the start of a trailer line: the final LF must follow.
    EndLf,
    Done,
}

/// Tracks where a chunked body ends, fed the bytes as they are relayed.
#[derive(Debug)]
pub(super) struct ChunkScanner {
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
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = left.min((bytes.len() - i) as u64);
                i += take as usize;
                self.state = if take == left {
                    State::DataCr
                } else {
                    State::Data(left - take)
                };
                continue;
            }
            self.step(bytes[i])?;
            i += 1;
        }
        Ok(i)
    }

    /// The body's last byte has been seen.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        self.state = match self.state {
            State::Size { digits } => match (b as char).to_digit(16) {
                Some(d) if digits < 16 => {
                    self.size = self.size << 4 | u64::from(d);
                    State::Size { digits: digits + 1 }
                }
                Some(_) => return Err(ChunkError::Size),
                None if digits == 0 => return Err(ChunkError::Size),
                None => {
                    self.line = 0;
                    self.end_of_size(b)?
                }
            },
            State::SizeLine => {
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                self.end_of_size(b)?
            }
            State::DataCr => match b {
                b'\r' => State::DataLf,
                b'\n' => self.next_chunk(),
                _ => return Err(ChunkError::DataEnd),
            },
            State::DataLf if b == b'\n' => self.next_chunk(),
            State::DataLf => return Err(ChunkError::DataEnd),
            State::TrailerStart => match b {
                b'\r' => State::EndLf,
                b'\n' => State::Done,
                _ => {
                    self.line = 1;
                    State::Trailer
                }
            },
            State::Trailer => {
                self.line += 1;
                if self.line > MAX_LINE {
                    return Err(ChunkError::LineTooLong);
                }
                if b == b'\n' {
                    State::TrailerStart
                } else {
                    State::Trailer
                }
            }
            State::EndLf if b == b'\n' => State::Done,
            State::EndLf => return Err(ChunkError::DataEnd),
            State::Data(_) | State::Done => self.state,
        };
        Ok(())
    }

    /// A byte after the size digits: extensions and CR continue the line, LF ends it.
    fn end_of_size(&mut self, b: u8) -> Result<State, ChunkError> {
        match b {
            b'\n' if self.size == 0 => Ok(State::TrailerStart),
            b'\n' => Ok(State::Data(self.size)),
            b'\r' | b';' | b' ' | b'\t' => Ok(State::SizeLine),
            _ if matches!(self.state, State::SizeLine) => Ok(State::SizeLine),
            _ => Err(ChunkError::Size),
        }
    }

    fn next_chunk(&mut self) -> State {
        self.size = 0;
        State::Size { digits: 0 }
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
    fn an_unfinished_body_is_not_done() {
        assert_eq!(end_of(b"5\r\nhel", 2), Ok(None));
        assert_eq!(end_of(b"0\r\nX-Trailer: 1\r\n", 1), Ok(None));
        assert_eq!(end_of(b"0\r\n\r\n", 1), Ok(Some(5)));
        assert_eq!(end_of(b"0\n\n", 1), Ok(Some(3)));
    }

    #[test]
    fn malformed_framing_is_an_error() {
        assert_eq!(end_of(b"zz\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"11111111111111111\r\n", 1), Err(ChunkError::Size));
        assert_eq!(end_of(b"3\r\nabcX\r\n", 1), Err(ChunkError::DataEnd));
        assert_eq!(end_of(b"3x\r\n", 1), Err(ChunkError::Size));
        let long = [b"1;".as_slice(), &[b'e'; 5000]].concat();
        assert_eq!(end_of(&long, 100), Err(ChunkError::LineTooLong));
    }
}
