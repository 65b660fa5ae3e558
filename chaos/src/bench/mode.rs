//! What is measured against each target: plain HTTP keep-alive, HTTPS keep-alive, or a
//! new TLS connection (a full handshake) per request.

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
}

impl Mode {
    pub const ALL: [Mode; 3] = [Self::Http, Self::Https, Self::Handshake];

    /// The lower-case name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Handshake => "handshake",
        }
    }

    /// How the target listens for this mode.
    pub fn scheme(self) -> Scheme {
        match self {
            Self::Http => Scheme::Http,
            Self::Https | Self::Handshake => Scheme::Https,
        }
    }

    /// What one "request" of this mode is, for the table.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Http | Self::Https => "req",
            Self::Handshake => "handshake",
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
            .ok_or_else(|| format!("unknown mode {s:?} (http, https, handshake)"))
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
        assert!("h2".parse::<Mode>().is_err());
    }

    #[test]
    fn only_http_is_plain() {
        assert_eq!(Mode::Http.scheme(), Scheme::Http);
        assert_eq!(Mode::Https.scheme(), Scheme::Https);
        assert_eq!(Mode::Handshake.scheme(), Scheme::Https);
    }
}
