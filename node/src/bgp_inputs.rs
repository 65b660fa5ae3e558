//! What the BGP announcer (`control::bgp`) is told about this node, and its start.
//!
//! Quorum: a leader needs a fresh lease; a follower needs a ping from its leader younger
//! than `[bgp] quorum_grace` (a follower cut off from the leader stops getting pings).
//! Data plane: the committed config runs here. Backends: at least one healthy, undrained.
//! Drained: this node's drain is committed (`ctl drain-node`; kept across restarts).

use crate::app::Node;
use crate::control::bgp::{Bgp, BgpError, Inputs};
use fulcrum_raft::lease::time::now_us;
use fulcrum_raft::Role;
use std::sync::Arc;
use std::time::Duration;

/// Starts BGP mode for `node` when its config has `[bgp]`: the service link and BIRD's
/// fragment first, then the announcer loop (stopped with the node).
pub async fn start(
    section: Option<&fulcrum_config::BgpSection>,
) -> Result<Option<Arc<Bgp>>, BgpError> {
    match section {
        Some(s) => Ok(Some(Bgp::start(s).await?)),
        None => Ok(None),
    }
}

/// Hands `bgp` to `node` and runs its announcer until the node stops.
pub fn spawn(node: &Arc<Node>, bgp: Arc<Bgp>) {
    if node.bgp.set(bgp.clone()).is_err() {
        return;
    }
    let watched = node.clone();
    let grace = bgp.quorum_grace;
    let stop = node.stop.clone();
    tokio::spawn(bgp.run(move || inputs(&watched, grace), stop));
}

/// This node's state for the announcer.
pub fn inputs(node: &Node, grace: Duration) -> Inputs {
    let snapshot = node.dp.snapshot();
    let backend_up = snapshot
        .pools
        .values()
        .flat_map(|p| p.backends.iter())
        .any(|b| b.state.healthy() && !b.state.drained());
    Inputs {
        quorum: quorum(node, grace),
        data_plane_up: node.applier.failure().is_none(),
        backend_up,
        drained: node.cluster().is_some_and(|c| c.raft.drained()),
    }
}

fn quorum(node: &Node, grace: Duration) -> bool {
    let Some(cluster) = node.cluster() else {
        return true;
    };
    let status = cluster.status();
    match status.role {
        Role::Leader => status.lease_fresh,
        Role::Shutdown => false,
        _ => {
            let grace_us = u64::try_from(grace.as_micros()).unwrap_or(u64::MAX);
            let now = now_us();
            cluster
                .raft
                .lease()
                .read(|s| s.following())
                .is_some_and(|f| now.saturating_sub(f.last_ping_at) < grace_us)
        }
    }
}
