//! The health-aware DNS listener (issue 25 item 2): `[dns] bind` answers, authoritatively
//! for `[dns] zone`, the names of `[[dns.name]]` with the VIPs a live node holds now or
//! the addresses of the nodes live and not drained now, with `[dns] ttl`.
//!
//! Every answer is made from the replicated view (`facts.rs`: the committed VIP
//! assignment, the leader's committed record of live members and the operators' node
//! drains), so every node answers alike. `answer.rs` is the rule, `reply.rs` the DNS
//! message (hickory-proto), `server.rs` the UDP and TCP sockets. The record of live
//! members is kept by the leader (`control::live_nodes`).

mod answer;
mod facts;
mod reply;
mod server;

pub use answer::Facts;

use crate::app::Node;
use fulcrum_config::DnsSection;
use std::net::SocketAddr;
use std::sync::Arc;

/// Where a reply's facts come from (the node; a fixed set in tests).
pub trait Source: Send + Sync {
    /// The `[dns]` section and the facts now; `None` when `[dns]` is gone from the config.
    fn now(&self) -> Option<(DnsSection, Facts)>;
}

/// The DNS listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind [dns] bind {addr} (udp and tcp): {source}")]
pub struct DnsBindError {
    pub addr: SocketAddr,
    pub source: std::io::Error,
}

/// Binds `[dns] bind` (when this node's config has it) and serves until the node stops.
pub async fn start(node: &Arc<Node>) -> Result<(), DnsBindError> {
    let config = node.dp.snapshot().config.clone();
    let Some(addr) = config.dns.as_ref().and_then(|d| d.bind) else {
        return Ok(());
    };
    let sockets = server::bind(addr)
        .await
        .map_err(|source| DnsBindError { addr, source })?;
    let source: Arc<dyn Source> = Arc::new(facts::NodeFacts::new(node));
    tracing::info!(%addr, "dns: answering on udp and tcp");
    tokio::spawn(server::serve(sockets, source, node.stop.clone()));
    Ok(())
}
