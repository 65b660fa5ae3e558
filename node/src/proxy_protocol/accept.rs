//! The listener side of `accept_proxy = true`: who may send a PROXY header, and reading it.
//!
//! Only peers inside `proxy_from` may speak for someone else. A connection from any
//! other address is refused outright (closed before a byte is read): if it were served
//! with its own address instead, a client that can reach the listener directly could
//! skip the balancer in front. A trusted peer must send a header (possibly `UNKNOWN` /
//! `LOCAL`, which means "use my own address").

use super::read::{read_header, ReadError};
use fulcrum_config::{IpNet, Listener};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::AsyncRead;

/// Settings of a listener that expects PROXY headers.
#[derive(Debug, Clone)]
pub struct AcceptPolicy {
    networks: Vec<IpNet>,
    timeout: Duration,
}

/// Why a connection was refused before being served.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("{0} is not in proxy_from")]
    Untrusted(SocketAddr),
    #[error("from {peer}: {source}")]
    Header { peer: SocketAddr, source: ReadError },
}

/// Where a connection really comes from, after an optional PROXY header.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    /// The client: the carried source, or the peer itself.
    pub client: SocketAddr,
    /// The address the client connected to, if the header carried it.
    pub destination: Option<SocketAddr>,
}

impl AcceptPolicy {
    /// The policy of `listener`, or `None` when it does not accept PROXY headers.
    /// `timeout` bounds the wait for the header (the listener's header_read_timeout).
    pub fn from_listener(listener: &Listener) -> Option<AcceptPolicy> {
        listener.accept_proxy.then(|| AcceptPolicy {
            networks: listener.proxy_networks(),
            timeout: listener.header_read_timeout,
        })
    }

    pub fn trusts(&self, peer: SocketAddr) -> bool {
        self.networks.iter().any(|n| n.contains(peer.ip()))
    }

    /// Checks the peer and reads its header.
    pub async fn accept<S: AsyncRead + Unpin>(
        &self,
        stream: &mut S,
        peer: SocketAddr,
    ) -> Result<Origin, Refused> {
        if !self.trusts(peer) {
            return Err(Refused::Untrusted(peer));
        }
        let header = read_header(stream, self.timeout)
            .await
            .map_err(|source| Refused::Header { peer, source })?;
        Ok(Origin {
            client: header.client_or(peer),
            destination: header.addrs.map(|(_, dst)| dst),
        })
    }
}

/// The origin of a connection on `listener`: reads the PROXY header when the listener
/// expects one, else the peer address as is.
pub async fn origin_of<S: AsyncRead + Unpin>(
    listener: Option<&Listener>,
    stream: &mut S,
    peer: SocketAddr,
) -> Result<Origin, Refused> {
    match listener.and_then(AcceptPolicy::from_listener) {
        Some(policy) => policy.accept(stream, peer).await,
        None => Ok(Origin {
            client: peer,
            destination: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn listener(from: &[&str]) -> Listener {
        let toml = format!(
            "name = \"l\"\nbind = \"127.0.0.1:1\"\naccept_proxy = true\nproxy_from = {:?}\n",
            from
        );
        toml::from_str(&toml).expect("listener")
    }

    #[tokio::test]
    async fn untrusted_peer_is_refused_and_trusted_peer_is_read() {
        let l = listener(&["10.0.0.0/8"]);
        let (mut a, mut b) = tokio::io::duplex(256);
        a.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 10 20\r\n")
            .await
            .expect("write");
        let outsider: SocketAddr = "192.168.1.1:5".parse().expect("addr");
        let r = origin_of(Some(&l), &mut b, outsider).await;
        assert!(matches!(r, Err(Refused::Untrusted(_))));
        let insider: SocketAddr = "10.1.1.1:5".parse().expect("addr");
        let o = origin_of(Some(&l), &mut b, insider).await.expect("trusted");
        assert_eq!(o.client, "1.2.3.4:10".parse::<SocketAddr>().expect("addr"));
        assert_eq!(o.destination, Some("5.6.7.8:20".parse().expect("addr")));
    }

    #[tokio::test]
    async fn no_policy_means_the_peer_itself() {
        let (_a, mut b) = tokio::io::duplex(16);
        let peer: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        let o = origin_of(None, &mut b, peer).await.expect("plain");
        assert_eq!(o.client, peer);
    }
}
