//! Where a pool's backends come from: the one interface every discovery source meets.
//!
//! A source is asked for its next word (`Source::next`) and answers when it has one:
//! the full set of `IP:PORT` addresses it finds now (`Found`), or why it could not find
//! them (`Failed`). What a word does to the pool (joins wait for health checks, the
//! missing drain, a failure keeps the last good set) is the driver's (`driver.rs`), the
//! same for every source. A polling source (DNS) sleeps until its records' TTL is up and
//! asks again; a watching source (a Kubernetes endpoints watch, one more arm of `Source`
//! beside `Dns`) would wait for the API server's next event and answer with the
//! endpoints' ready addresses.

use super::dns::DnsSource;
use fulcrum_config::Discover;
use std::collections::BTreeSet;

/// What a source says about a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Word {
    /// Every backend address it finds now (`IP:PORT`); may be empty.
    Found(BTreeSet<String>),
    /// It could not tell (timeout, server failure, refused): the reason.
    Failed(String),
}

/// One pool's discovery source.
pub enum Source {
    Dns(DnsSource),
}

impl Source {
    /// The source a pool's `discover` table names.
    pub fn from_config(discover: &Discover) -> Source {
        Source::Dns(DnsSource::new(discover))
    }

    /// Waits until the source has something to say, then says it. Cancel-safe: a call
    /// dropped midway leaves the source ready to ask again.
    pub async fn next(&mut self) -> Word {
        match self {
            Source::Dns(dns) => dns.next().await,
        }
    }

    /// How operators see it in `/status` and logs, e.g. `dns srv _http._tcp.app`.
    pub fn describe(discover: &Discover) -> String {
        let kind = match discover.kind {
            fulcrum_config::RecordKind::Srv => "srv",
            fulcrum_config::RecordKind::A => "a",
            fulcrum_config::RecordKind::Aaaa => "aaaa",
        };
        format!("dns {kind} {}", discover.dns)
    }
}
