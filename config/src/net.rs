//! Address syntaxes of the config file: `IP/PREFIX` networks and `ID@HOST:PORT` peers.
//!
//! Hosts are IP literals only (IPv6 in brackets): the data plane and Raft never resolve
//! names, so a config that needs DNS is refused at load time instead of failing later.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// An IP network, `10.0.0.0/8` or `2001:db8::/32`, as used by `proxy_from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    /// Parses `IP/PREFIX`; a bare IP means a single host (/32 or /128).
    pub fn parse(s: &str) -> Result<IpNet, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((ip, len)) => (parse_ip(ip)?, Some(len)),
            None => (parse_ip(s)?, None),
        };
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            Some(len) => len
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("prefix length `{len}` must be 0..={max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }

    /// True when `ip` is inside this network. IPv4-mapped IPv6 clients match IPv4 networks,
    /// because a dual-stack listener reports IPv4 peers that way.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("`{s}` is not an IP address"))
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// Compares the first `prefix` bits of two equally long addresses.
fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// Parses `IP/PREFIX` where the prefix is required (the VIP needs one for its subnet).
pub(crate) fn parse_addr_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    if !s.contains('/') {
        return Err(format!("`{s}` needs a prefix length, e.g. `{s}/24`"));
    }
    let net = IpNet::parse(s)?;
    Ok((net.addr, net.prefix))
}

/// Parses `IP:PORT` or `[IPv6]:PORT`.
pub(crate) fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .map_err(|_| format!("`{s}` is not an address of the form IP:PORT or [IPv6]:PORT"))
}

/// Parses a peer entry `ID@HOST:PORT`, e.g. `2@10.0.0.12:7946`.
pub fn parse_peer(s: &str) -> Option<(u64, SocketAddr)> {
    parse_peer_detailed(s).ok()
}

/// Like [`parse_peer`], with a reason on failure.
pub(crate) fn parse_peer_detailed(s: &str) -> Result<(u64, SocketAddr), String> {
    let (id, addr) = s
        .split_once('@')
        .ok_or_else(|| format!("peer `{s}` must be ID@HOST:PORT"))?;
    let id = id
        .parse::<u64>()
        .map_err(|_| format!("peer `{s}`: node id `{id}` is not an unsigned integer"))?;
    let addr = parse_socket_addr(addr).map_err(|e| format!("peer `{s}`: {e}"))?;
    Ok((id, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_contain() {
        let net = IpNet::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd = IpNet::parse("192.168.0.128/25").unwrap();
        assert!(odd.contains("192.168.0.200".parse().unwrap()));
        assert!(!odd.contains("192.168.0.100".parse().unwrap()));
        let v6 = IpNet::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert_eq!(IpNet::parse("127.0.0.1").unwrap().prefix, 32);
        assert!(IpNet::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn bad_networks_are_refused() {
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("::/129").is_err());
        assert!(IpNet::parse("10.0.0/8").is_err());
        assert!(IpNet::parse("10.0.0.0/x").is_err());
        assert!(parse_addr_prefix("10.0.0.1").is_err());
    }

    #[test]
    fn peers_parse() {
        assert_eq!(
            parse_peer("2@10.0.0.12:7946"),
            Some((2, "10.0.0.12:7946".parse().unwrap()))
        );
        assert_eq!(parse_peer("3@[::1]:7000").map(|p| p.0), Some(3));
        assert_eq!(parse_peer("x@10.0.0.12:7946"), None);
        assert_eq!(parse_peer("2@host:7946"), None);
        assert_eq!(parse_peer("10.0.0.12:7946"), None);
    }
}
