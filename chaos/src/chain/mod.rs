//! The failover chain: where the milliseconds of one failover went, link by link.
//!
//! After a scenario's fault script, `fetch` reads `GET /debug/failover` from every node
//! that answers (the nodes record their steps with CLOCK_MONOTONIC instants, shared by
//! every process of this host); `extract` turns those events into one [`Chain`] per
//! failover event of the timeline, each link in ms after the fault; `stats` gives the
//! median and worst of every link over `--repeat`; `print` shows both.
//!
//! Links, in causal order: last ping accepted from the old leader, first suspicion (and
//! why: crash or silence), lease stream closed (with the probe's verdict), crash
//! confirmed, take-over asked (planned stop), pre-vote won, election started, leader,
//! claim (fence open, address follows), first gratuitous ARP of the new holder, first
//! answered request (the load client's own figure: the first success after the outage).

pub mod extract;
pub mod fetch;
pub mod print;
pub mod stats;

use serde::{Deserialize, Serialize};

/// The links of a chain, in causal order.
pub const LINKS: &[&str] = &[
    "last_ping",
    "suspect",
    "stream_closed",
    "crash_confirmed",
    "takeover",
    "prevote_won",
    "elect",
    "bridge",
    "leader",
    "hand_over_asked",
    "hand_over",
    "handed_over",
    "claim",
    "garp",
    "answer",
];

/// One recorded step as `/debug/failover` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct NodeEvent {
    /// CLOCK_MONOTONIC, microseconds.
    pub t_us: u64,
    pub what: String,
    #[serde(default)]
    pub term: u64,
    #[serde(default)]
    pub detail: String,
}

/// What one node's `/debug/failover` said.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeDoc {
    /// The node's name in the test bed (set by the fetcher, not in the JSON).
    #[serde(skip)]
    pub name: String,
    pub events: Vec<NodeEvent>,
}

/// One link of a chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub link: &'static str,
    /// Milliseconds after the fault (negative: before it).
    pub ms: f64,
    /// The node that recorded it (`client` for the answered request).
    pub node: String,
    pub detail: String,
}

/// The chain of one failover event.
#[derive(Debug, Clone, Serialize)]
pub struct Chain {
    /// The fault, as the timeline names it.
    pub fault: String,
    /// The fault's time on the scenario clock (ms since the scenario epoch).
    pub fault_t_ms: f64,
    /// The links found, in `LINKS` order.
    pub links: Vec<Link>,
    /// Nodes whose `/debug/failover` answered.
    pub nodes_read: Vec<String>,
}

impl Chain {
    /// The link `name`, if it was recorded.
    pub fn link(&self, name: &str) -> Option<&Link> {
        self.links.iter().find(|l| l.link == name)
    }
}
