//! The PROXY protocol (HAProxy's, versions 1 and 2): carrying the real client address
//! across a layer-4 hop.
//!
//! A balancer that only copies bytes hides the client: the backend sees the balancer's
//! address as the peer. The PROXY protocol fixes that by sending one small header
//! before the client's first byte, naming the original source and destination.
//!
//! - `encode` writes a header (we send one to backends with `send_proxy = "v1" | "v2"`).
//! - `parse`  decodes a header from bytes (pure, no I/O, never panics on garbage).
//! - `accept` is the listener policy: who may send a header (`proxy_from`), and the
//!   client address that results.
//! - `read`   reads exactly one header off a socket, bounded in size and time, without
//!   consuming a single byte of the payload behind it (used by `accept_proxy = true`).
//!
//! Specification: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

mod accept;
mod encode;
mod parse;
#[cfg(test)]
mod props;
mod read;

pub use accept::origin_of;
pub use encode::encode;

use std::net::SocketAddr;

/// The 12-byte signature that starts every version 2 header.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The longest legal version 1 header, CRLF included (spec §2.1).
pub const V1_MAX_LEN: usize = 107;

/// The longest version 2 header we accept: the fixed 16 bytes plus addresses and TLVs.
/// The spec allows 64 KiB of TLVs; real balancers send well under 1 KiB, and a bound
/// keeps an untrusted peer from making us buffer much.
pub const V2_MAX_LEN: usize = 16 + 4096;

/// What a PROXY header says about the connection it precedes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The original client and the address it connected to; `None` for
    /// `PROXY UNKNOWN` (v1) or the `LOCAL` command / unspecified family (v2), which mean
    /// "use the real peer address" (e.g. a health check from the balancer itself).
    pub addrs: Option<(SocketAddr, SocketAddr)>,
}

impl ProxyHeader {
    /// The client address to use: the carried source, or `peer` when none was carried.
    pub fn client_or(&self, peer: SocketAddr) -> SocketAddr {
        self.addrs.map(|(src, _)| src).unwrap_or(peer)
    }
}

/// Why bytes are not a valid PROXY header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a PROXY protocol header")]
    NotProxy,
    #[error("PROXY v1 header longer than {V1_MAX_LEN} bytes or without CRLF")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("unsupported PROXY v2 version/command byte {0:#04x}")]
    V2Command(u8),
    #[error("PROXY v2 header of {0} bytes exceeds the limit")]
    V2TooLong(usize),
    #[error("PROXY v2 address block too short for its family")]
    V2Short,
}
