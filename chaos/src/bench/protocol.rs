//! The protocols `bench --conns` measures idle connections of: what a client speaks
//! to the proxy, and how the proxy is set up for it.

use super::targets::Scheme;
use std::fmt;
use std::str::FromStr;

/// One kind of client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnProtocol {
    /// HTTP/1.1 keep-alive.
    Http,
    /// HTTP/1.1 keep-alive over TLS (the run's certificate, ALPN http/1.1).
    Https,
    /// HTTP/2 over TLS (ALPN h2).
    H2,
    /// A TCP (L4) listener; the client speaks HTTP/1.1 to a backend through it.
    Tcp,
}

impl ConnProtocol {
    pub const ALL: [ConnProtocol; 4] = [Self::Http, Self::Https, Self::H2, Self::Tcp];

    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::H2 => "h2",
            Self::Tcp => "tcp",
        }
    }

    /// How the proxy listens for it.
    pub fn scheme(self) -> Scheme {
        match self {
            Self::Http => Scheme::Http,
            Self::Https => Scheme::Https,
            Self::H2 => Scheme::H2,
            Self::Tcp => Scheme::Tcp,
        }
    }
}

impl fmt::Display for ConnProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ConnProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown protocol {s:?} (http, https, h2, tcp)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_names_round_trip_and_pick_their_listener() {
        for p in ConnProtocol::ALL {
            assert_eq!(p.name().parse::<ConnProtocol>(), Ok(p));
        }
        assert!("udp".parse::<ConnProtocol>().is_err());
        assert_eq!(ConnProtocol::Tcp.scheme(), Scheme::Tcp);
        assert_eq!(ConnProtocol::H2.scheme(), Scheme::H2);
    }
}
