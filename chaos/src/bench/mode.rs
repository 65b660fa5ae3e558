//! What is measured against each target: plain HTTP keep-alive, HTTPS keep-alive, a
//! new TLS connection (a full handshake) per request, or HTTP/2 over TLS (ALPN h2) with
//! ten streams or one stream in flight per connection.

use super::targets::Scheme;
use std::fmt;
use std::str::FromStr;

/// One kind of measurement; every target is measured once per mode and round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// HTTP/1.1 keep-alive, `wrk -c64`.
    Http,
    /// HTTPS keep-alive, `wrk -c64` (64 handshakes, then requests on open connections).
    Https,
    /// HTTPS with `Connection: close` and no session resumption: every request pays a
    /// full TLS 1.3 handshake. Driven by the bench's own rustls client, because wrk
    /// resumes the previous session on every reconnect.
    Handshake,
    /// HTTP/2 over TLS, `h2load -c{h2-connections} -m10`: ten streams in flight on
    /// each connection, as a browser loading a page or a gRPC client.
    H2,
    /// HTTP/2 over TLS, `h2load -m1`: one stream at a time per connection.
    H2Single,
}

impl Mode {
    pub const ALL: [Mode; 5] = [
        Self::Http,
        Self::Https,
        Self::Handshake,
        Self::H2,
        Self::H2Single,
    ];

    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Handshake => "handshake",
            Self::H2 => "h2",
            Self::H2Single => "h2-m1",
        }
    }

    /// How the target listens for this mode.
    pub fn scheme(self) -> Scheme {
        match self {
            Self::Http => Scheme::Http,
            Self::Https | Self::Handshake => Scheme::Https,
            Self::H2 | Self::H2Single => Scheme::H2,
        }
    }

    /// What one "request" of this mode is, for the table.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Http | Self::Https | Self::H2 | Self::H2Single => "req",
            Self::Handshake => "handshake",
        }
    }

    /// Streams in flight per connection of an HTTP/2 mode (h2load's `-m`).
    pub fn h2_streams(self) -> Option<u32> {
        match self {
            Self::H2 => Some(10),
            Self::H2Single => Some(1),
            Self::Http | Self::Https | Self::Handshake => None,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown mode {s:?} (http, https, handshake, h2, h2-m1)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_names_round_trip() {
        for mode in Mode::ALL {
            assert_eq!(mode.name().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(" HTTPS".parse::<Mode>(), Ok(Mode::Https));
        assert_eq!("H2".parse::<Mode>(), Ok(Mode::H2));
        assert!("h3".parse::<Mode>().is_err());
    }

    #[test]
    fn only_http_is_plain() {
        assert_eq!(Mode::Http.scheme(), Scheme::Http);
        assert_eq!(Mode::Https.scheme(), Scheme::Https);
        assert_eq!(Mode::Handshake.scheme(), Scheme::Https);
        assert_eq!(Mode::H2.scheme(), Scheme::H2);
        assert_eq!(Mode::H2Single.scheme(), Scheme::H2);
    }

    #[test]
    fn only_h2_modes_have_streams() {
        assert_eq!(Mode::H2.h2_streams(), Some(10));
        assert_eq!(Mode::H2Single.h2_streams(), Some(1));
        assert_eq!(Mode::Https.h2_streams(), None);
    }
}
