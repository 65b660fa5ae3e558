//! The facts a DNS answer is made from, read from this node's replicated view at the
//! instant of the question:
//!
//! - `[[vip]]`: an address is up while the committed assignment gives it to a member the
//!   leader's committed record counts live (`ClusterState::live_nodes`);
//! - `[vip]`: up while this node knows a leader (the leader holds it under its lease);
//! - nodes: the members of that record less the drained ones (`drained_nodes`).
//!
//! Without `[cluster]` the one node is up, and so is every VIP it holds alone.

use super::answer::{Facts, VipFact};
use super::Source;
use crate::app::Node;
use crate::control::cluster::Cluster;
use crate::dataplane::DataPlane;
use fulcrum_config::{Config, DnsSection};
use fulcrum_raft::{ClusterState, Role};
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

/// Reads the running config and the committed state of one node.
pub struct NodeFacts {
    me: u64,
    dp: Arc<DataPlane>,
    cluster: Arc<OnceLock<Arc<Cluster>>>,
}

impl NodeFacts {
    pub fn new(node: &Node) -> NodeFacts {
        NodeFacts {
            me: node.local.id,
            dp: node.dp.clone(),
            cluster: node.cluster.clone(),
        }
    }
}

impl Source for NodeFacts {
    fn now(&self) -> Option<(DnsSection, Facts)> {
        let snapshot = self.dp.snapshot();
        let dns = snapshot.config.dns.clone()?;
        let facts = match self.cluster.get() {
            Some(cluster) => clustered(&snapshot.config, cluster),
            None => alone(&snapshot.config, self.me),
        };
        Some((
            dns,
            Facts {
                serial: u32::try_from(snapshot.version).unwrap_or(u32::MAX),
                ..facts
            },
        ))
    }
}

fn clustered(config: &Config, cluster: &Cluster) -> Facts {
    let state: Arc<ClusterState> = cluster.raft.cluster_state().borrow().clone();
    let status = cluster.status();
    let leader_known = status.leader_id.is_some() && status.role != Role::Shutdown;
    let vips = vip_facts(config, |ip_text| match config.leader_vip() {
        Some(_) => leader_known,
        None => state
            .vip_assignment
            .get(ip_text)
            .is_some_and(|owner| state.live_nodes.contains(owner)),
    });
    let serving_nodes: BTreeSet<u64> = state
        .live_nodes
        .difference(&state.drained_nodes)
        .copied()
        .collect();
    Facts {
        vips,
        serving_nodes,
        serial: 0,
    }
}

fn alone(config: &Config, me: u64) -> Facts {
    Facts {
        vips: vip_facts(config, |_| true),
        serving_nodes: [me].into(),
        serial: 0,
    }
}

/// Every VIP of the config (`[vip]` or `[[vip]]`), `up` as `held` says for its address.
fn vip_facts(config: &Config, held: impl Fn(&str) -> bool) -> Vec<VipFact> {
    let mut out = Vec::new();
    if let Some(one) = config.leader_vip() {
        if let Ok((ip, _)) = fulcrum_vip::parse_cidr(&one.address) {
            out.push(VipFact {
                name: None,
                ip,
                up: held(&ip.to_string()),
            });
        }
    }
    for v in config.spread_vips() {
        if let Some((ip, _)) = v.addr_prefix() {
            out.push(VipFact {
                name: v.name.clone(),
                ip,
                up: held(&v.ip_text()),
            });
        }
    }
    out
}
