//! `POST /drain-node` / `POST /undrain-node` (`fulcrum ctl drain-node` / `undrain-node`):
//! one drain of the whole node for its three ways in, BGP announcements, `[[vip]]`
//! addresses and DNS answers. The node keeps serving whatever still reaches it.
//!
//! In a cluster the drain is committed through Raft (`Command::SetNodeDrain`, kept in
//! `ClusterState::drained_nodes`, persisted), so a drained node that restarts stays
//! drained until `undrain-node` commits: the leader places no `[[vip]]` address on it, its
//! BGP announcer keeps the prefixes withdrawn, and no member's DNS answers name it. Without
//! `[cluster]` the drain is this process's own (BGP only) and ends with it.

use super::{json, text, AdminResponse};
use crate::app::Node;
use http::StatusCode;
use std::time::Duration;
use tracing::Instrument;

/// How long the call waits for this node to apply its own committed drain (it usually
/// takes one Raft heartbeat), so that the response comes after the withdrawal started.
const APPLIED_WITHIN: Duration = Duration::from_secs(2);

pub(super) async fn drain_node(node: &Node, drained: bool) -> AdminResponse {
    let (bgp, spread) = (node.bgp.get(), node.spread.get());
    let dns = node.dp.snapshot().config.dns.is_some();
    let Some(cluster) = node.cluster() else {
        let Some(bgp) = bgp else {
            return text(
                StatusCode::CONFLICT,
                "this node has no [bgp] and no [cluster]: drain-node moves BGP announcements, and with [cluster] spread VIPs and DNS answers\n",
            );
        };
        bgp.set_drained(drained);
        tracing::info!(
            drained,
            "node drain changed by the operator (no cluster: this process only)"
        );
        return json(
            StatusCode::OK,
            &serde_json::json!({ "node_id": node.local.id, "drained": drained }),
        );
    };
    if bgp.is_none() && spread.is_none() && !dns {
        return text(
            StatusCode::CONFLICT,
            "this node has neither [bgp], [[vip]] nor [dns]: drain-node moves BGP announcements, spread VIPs and DNS answers only\n",
        );
    }
    let span = tracing::info_span!("drain_node", node = node.local.id, drained);
    if let Err(e) = commit(cluster, node.local.id, drained)
        .instrument(span)
        .await
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the node's drain was not committed (nothing changed): {e}\n"),
        );
    }
    if let Some(bgp) = bgp {
        bgp.wake();
    }
    json(
        StatusCode::OK,
        &serde_json::json!({ "node_id": node.local.id, "drained": drained }),
    )
}

/// Commits the drain of `me` and waits (up to `APPLIED_WITHIN`) until this node applied it.
async fn commit(
    cluster: &crate::control::cluster::Cluster,
    me: u64,
    drained: bool,
) -> Result<(), fulcrum_raft::ProposeError> {
    let cmd = fulcrum_raft::Command::SetNodeDrain { node: me, drained };
    cluster.raft.propose(cmd).await?;
    let mut state = cluster.raft.cluster_state();
    let applied = state.wait_for(|s| s.drained_nodes.contains(&me) == drained);
    match tokio::time::timeout(APPLIED_WITHIN, applied).await {
        Ok(Ok(_)) => tracing::info!("node drain committed by the operator"),
        _ => tracing::warn!("drain committed but not applied here yet; it takes effect when it is"),
    }
    Ok(())
}
