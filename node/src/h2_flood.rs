//! A flood guard for HTTP/2 clients: it reads the frame headers of what a client sends
//! and closes the connection when the client sends control frames faster than any
//! well-behaved client does.
//!
//! hyper's HTTP/2 server (the `h2` crate) already refuses several abuses by itself: a
//! CONTINUATION flood and a header list over the limit (GOAWAY), a window that
//! overflows (FLOW_CONTROL_ERROR), streams over `max_concurrent_streams`
//! (REFUSED_STREAM), and many resets of its own. What it does not refuse is a client
//! that keeps it busy with frames that each cost a little and never end: SETTINGS and
//! PING (each must be acknowledged), RST_STREAM on streams it opened (rapid reset,
//! CVE-2023-44487: each stream starts a request first), PRIORITY, and empty DATA or
//! zero-increment WINDOW_UPDATE frames. Interleaved with real requests, such a flood
//! also keeps the connection looking busy to the idle watchdog.
//!
//! The guard wraps the connection's byte stream below hyper. It recognises the HTTP/2
//! connection preface (so HTTP/1.1 connections pay one comparison of their first
//! bytes), then follows the frame headers — 9 bytes each, skipping payloads — and
//! charges every control frame to a token bucket: a burst of `BURST` frames, refilled
//! at `REFILL_PER_SEC`, like Envoy's and HAProxy's per-connection flood limits. When
//! the bucket is empty the next read fails with `InvalidData`, hyper drops the
//! connection, and the client's other streams end with it: one abusive connection is
//! closed, every other client keeps being served.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Control frames a client may send at once.
pub(crate) const BURST: u32 = 1000;
/// Control frames per second a client may keep sending.
pub(crate) const REFILL_PER_SEC: u32 = 200;

const DATA: u8 = 0x0;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const WINDOW_UPDATE: u8 = 0x8;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;

/// Where the scan of the client's bytes is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    /// Matched this many bytes of the preface so far.
    Preface(u8),
    /// Reading a frame header: this many of its 9 bytes are in `header`.
    Header(u8),
    /// Reading a WINDOW_UPDATE payload, to see whether its increment is zero.
    Increment { left: u8, value: u32 },
    /// Skipping this many payload bytes.
    Payload(u32),
    /// Not HTTP/2 (or already refused): nothing to watch.
    Off,
}

/// The frame scanner and the token bucket it charges.
#[derive(Debug)]
pub(crate) struct FrameBudget {
    scan: Scan,
    header: [u8; 9],
    tokens: u32,
    refilled: Instant,
    /// Control frames charged so far (for the log line).
    charged: u64,
}

impl Default for FrameBudget {
    fn default() -> Self {
        FrameBudget {
            scan: Scan::Preface(0),
            header: [0; 9],
            tokens: BURST,
            refilled: Instant::now(),
            charged: 0,
        }
    }
}

impl FrameBudget {
    /// Follows `bytes`, the next bytes the client sent. `Err` once the client has
    /// spent its budget.
    pub(crate) fn scan(&mut self, mut bytes: &[u8]) -> Result<(), Flood> {
        while !bytes.is_empty() {
            match self.scan {
                Scan::Off => return Ok(()),
                Scan::Preface(matched) => {
                    let at = usize::from(matched);
                    let n = (PREFACE.len() - at).min(bytes.len());
                    if bytes[..n] != PREFACE[at..at + n] {
                        self.scan = Scan::Off;
                        return Ok(());
                    }
                    let matched = at + n;
                    self.scan = if matched == PREFACE.len() {
                        Scan::Header(0)
                    } else {
                        Scan::Preface(matched as u8)
                    };
                    bytes = &bytes[n..];
                }
                Scan::Header(have) => {
                    let at = usize::from(have);
                    let n = (9 - at).min(bytes.len());
                    self.header[at..at + n].copy_from_slice(&bytes[..n]);
                    bytes = &bytes[n..];
                    if at + n < 9 {
                        self.scan = Scan::Header((at + n) as u8);
                    } else {
                        self.frame_header()?;
                    }
                }
                Scan::Increment { left, value } => {
                    let n = usize::from(left).min(bytes.len());
                    let value = bytes[..n]
                        .iter()
                        .fold(value, |v, b| (v << 8) | u32::from(*b));
                    bytes = &bytes[n..];
                    let left = left - n as u8;
                    if left > 0 {
                        self.scan = Scan::Increment { left, value };
                    } else {
                        self.scan = Scan::Header(0);
                        if value & 0x7fff_ffff == 0 {
                            self.charge()?;
                        }
                    }
                }
                Scan::Payload(left) => {
                    let n = (left as usize).min(bytes.len());
                    bytes = &bytes[n..];
                    let left = left - n as u32;
                    self.scan = if left == 0 {
                        Scan::Header(0)
                    } else {
                        Scan::Payload(left)
                    };
                }
            }
        }
        Ok(())
    }

    /// A whole frame header is in `header`: charge it if it is a control frame, then
    /// skip (or read) its payload.
    fn frame_header(&mut self) -> Result<(), Flood> {
        let h = self.header;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]);
        let (kind, flags) = (h[3], h[4]);
        let costly = match kind {
            SETTINGS | PING => flags & FLAG_ACK == 0,
            RST_STREAM | PRIORITY => true,
            DATA => len == 0 && flags & FLAG_END_STREAM == 0,
            _ => false,
        };
        self.scan = match (kind, len) {
            (_, 0) => Scan::Header(0),
            (WINDOW_UPDATE, 4) => Scan::Increment { left: 4, value: 0 },
            (_, len) => Scan::Payload(len),
        };
        if costly {
            self.charge()?;
        }
        Ok(())
    }

    /// Takes one token, refilling first by the time since the last refill.
    fn charge(&mut self) -> Result<(), Flood> {
        self.charged += 1;
        if self.tokens == 0 {
            let now = Instant::now();
            let earned = now.duration_since(self.refilled).as_millis() as u64
                * u64::from(REFILL_PER_SEC)
                / 1000;
            if earned == 0 {
                self.scan = Scan::Off;
                return Err(Flood {
                    frames: self.charged,
                });
            }
            self.tokens = earned.min(u64::from(BURST)) as u32;
            self.refilled = now;
        }
        self.tokens -= 1;
        Ok(())
    }
}

/// The client sent control frames faster than the budget allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 control-frame flood ({frames} control frames)")]
pub(crate) struct Flood {
    pub frames: u64,
}

/// A byte stream whose reads are followed by a `FrameBudget`.
pub(crate) struct FloodGuard<T> {
    inner: T,
    budget: FrameBudget,
}

impl<T> FloodGuard<T> {
    pub(crate) fn new(inner: T) -> Self {
        FloodGuard {
            inner,
            budget: FrameBudget::default(),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FloodGuard<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let this = &mut *self;
            if let Err(flood) = this.budget.scan(&buf.filled()[before..]) {
                tracing::warn!(
                    frames = flood.frames,
                    "closing an HTTP/2 connection: {flood}"
                );
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, flood)));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FloodGuard<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = len.to_be_bytes()[1..].to_vec();
        out.extend([kind, flags, 0, 0, 0, 1]);
        out.extend_from_slice(payload);
        out
    }

    fn h2(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut out = PREFACE.to_vec();
        for f in frames {
            out.extend_from_slice(f);
        }
        out
    }

    #[test]
    fn http1_is_never_charged() {
        let mut b = FrameBudget::default();
        let ping = frame(PING, 0, &[0; 8]).repeat(5000);
        let mut bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec();
        bytes.extend(ping);
        assert_eq!(b.scan(&bytes), Ok(()));
        assert_eq!(b.scan, Scan::Off);
    }

    #[test]
    fn a_ping_flood_runs_out_of_budget_whatever_the_read_sizes() {
        let bytes = h2(&vec![frame(PING, 0, &[7; 8]); BURST as usize + 50]);
        for step in [1, 7, 9, 17, 4096] {
            let mut b = FrameBudget::default();
            let result = bytes.chunks(step).try_for_each(|c| b.scan(c));
            assert!(result.is_err(), "read size {step}");
        }
    }

    #[test]
    fn requests_data_and_acks_cost_nothing() {
        let mut frames = Vec::new();
        for _ in 0..3 * BURST {
            frames.push(frame(0x1, 0x4, &[0x82, 0x86, 0x84]));
            frames.push(frame(DATA, FLAG_END_STREAM, &[1; 100]));
            frames.push(frame(SETTINGS, FLAG_ACK, &[]));
            frames.push(frame(PING, FLAG_ACK, &[0; 8]));
            frames.push(frame(WINDOW_UPDATE, 0, &[0, 0, 1, 0]));
        }
        let mut b = FrameBudget::default();
        assert_eq!(b.scan(&h2(&frames)), Ok(()));
        assert_eq!(b.charged, 0);
    }

    #[test]
    fn zero_window_increments_and_empty_data_are_charged() {
        let mut b = FrameBudget::default();
        let bytes = h2(&[
            frame(WINDOW_UPDATE, 0, &[0, 0, 0, 0]),
            frame(DATA, 0, &[]),
            frame(WINDOW_UPDATE, 0, &[0, 0, 0, 9]),
        ]);
        for byte in bytes.chunks(1) {
            b.scan(byte).expect("within budget");
        }
        assert_eq!(b.charged, 2);
    }

    #[test]
    fn the_budget_refills_with_time() {
        let mut b = FrameBudget::default();
        b.scan(PREFACE).expect("preface");
        b.tokens = 0;
        b.refilled = Instant::now() - std::time::Duration::from_secs(1);
        let pings = frame(PING, 0, &[0; 8]).repeat(REFILL_PER_SEC as usize);
        assert_eq!(
            b.scan(&pings),
            Ok(()),
            "a second earns REFILL_PER_SEC frames"
        );
        assert!(b.scan(&frame(PING, 0, &[0; 8])).is_err());
    }
}
