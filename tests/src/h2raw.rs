//! A raw HTTP/2 client for abuse tests: it writes frames a well-behaved client never
//! would (rapid resets, endless CONTINUATION, floods of SETTINGS and PING, a window
//! that overflows) and records what the server answered, frame by frame.
//!
//! Frames are built by hand (RFC 9113 §4.1: a 9-byte header, then the payload); header
//! blocks use HPACK literals without indexing and without Huffman coding (RFC 7541
//! §6.2.2), which every decoder must accept. A reader task parses the server's frames
//! and keeps a log: GOAWAY (with its error code), RST_STREAM, response HEADERS, and
//! when the connection closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error code CANCEL (RFC 9113 §7).
pub const CANCEL: u32 = 0x8;

/// One frame: its 9-byte header and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix whose high bits are `first` (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u8, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing, names and values as given.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0x00, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0x00, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The header block of a plain GET of `path` on authority `localhost`.
pub fn get_block(path: &str) -> Vec<u8> {
    header_block(&[
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", path),
    ])
}

/// What the server sent, as the reader saw it.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// Error code of the first GOAWAY, and when it arrived.
    pub goaway: Option<(u32, Instant)>,
    /// RST_STREAM frames received: (stream, error code).
    pub resets: Vec<(u32, u32)>,
    /// Streams that got response HEADERS.
    pub responses: Vec<u32>,
    /// PING acknowledgements received.
    pub ping_acks: usize,
    /// SETTINGS acknowledgements received.
    pub settings_acks: usize,
    /// When the server closed the connection (EOF or reset).
    pub closed: Option<Instant>,
}

/// A raw HTTP/2 connection: write frames with `send`, read the log with `seen`.
pub struct H2Raw {
    writer: WriteHalf<Box<dyn Stream>>,
    seen: Arc<Mutex<Seen>>,
    reader: JoinHandle<()>,
}

/// The byte stream under a raw connection: TCP (h2c) or TLS with ALPN h2.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl H2Raw {
    /// Connects to `addr` (h2c, prior knowledge) and sends the preface and an empty
    /// SETTINGS frame.
    pub async fn connect(addr: &str) -> std::io::Result<H2Raw> {
        let stream = TcpStream::connect(addr).await?;
        H2Raw::over(Box::new(stream)).await
    }

    /// Like `connect`, over an established stream (a TLS stream that chose h2).
    pub async fn over(stream: Box<dyn Stream>) -> std::io::Result<H2Raw> {
        let (mut read, mut writer) = tokio::io::split(stream);
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        writer.write_all(&hello).await?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let log = seen.clone();
        let reader = tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let mut at = 0;
                while buf.len() - at >= 9 {
                    let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
                    if buf.len() - at < 9 + len {
                        break;
                    }
                    let (kind, flags) = (buf[at + 3], buf[at + 4]);
                    let stream =
                        u32::from_be_bytes([buf[at + 5], buf[at + 6], buf[at + 7], buf[at + 8]])
                            & 0x7fff_ffff;
                    let payload = &buf[at + 9..at + 9 + len];
                    record(&log, kind, flags, stream, payload);
                    at += 9 + len;
                }
                buf.drain(..at);
            }
            lock(&log).closed = Some(Instant::now());
        });
        Ok(H2Raw {
            writer,
            seen,
            reader,
        })
    }

    /// Writes `bytes` (one or more frames). An error means the server is gone.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// A copy of the log so far.
    pub fn seen(&self) -> Seen {
        lock(&self.seen).clone()
    }

    /// Waits (up to `within`) until the server sent GOAWAY or closed; returns the log.
    pub async fn wait_refused(&self, within: Duration) -> Seen {
        let deadline = Instant::now() + within;
        loop {
            let seen = self.seen();
            if seen.goaway.is_some() || seen.closed.is_some() || Instant::now() >= deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for H2Raw {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(|p| p.into_inner())
}

fn record(log: &Mutex<Seen>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let code = |at: usize| {
        payload
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut seen = lock(log);
    match kind {
        GOAWAY if seen.goaway.is_none() => seen.goaway = Some((code(4), Instant::now())),
        RST_STREAM => seen.resets.push((stream, code(0))),
        HEADERS => seen.responses.push(stream),
        PING if flags & ACK != 0 => seen.ping_acks += 1,
        SETTINGS if flags & ACK != 0 => seen.settings_acks += 1,
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_header_is_length_type_flags_stream() {
        let f = frame(PING, ACK, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&f[..9], &[0, 0, 8, 6, 1, 0, 0, 0, 0]);
        assert_eq!(f.len(), 17);
    }

    #[test]
    fn hpack_integers_follow_rfc7541_c1() {
        // C.1.1 / C.1.2: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        hpack_int(&mut out, 0, 5, 10);
        assert_eq!(out, [10]);
        out.clear();
        hpack_int(&mut out, 0, 5, 1337);
        assert_eq!(out, [31, 154, 10]);
    }
}
