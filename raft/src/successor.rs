//! Successor choice for a leadership hand-off: the voter most caught up.

use std::time::Duration;

use crate::types::{NodeId, Raft};

/// When this node leads: the voter (not itself) with the highest matched log index
/// (ties: the lowest id).
pub(crate) fn best_successor(raft: &Raft, self_id: NodeId) -> Option<(NodeId, String)> {
    best_successor_except(raft, self_id, &[])
}

/// `best_successor`, skipping the voters in `except`.
pub(crate) fn best_successor_except(
    raft: &Raft,
    self_id: NodeId,
    except: &[NodeId],
) -> Option<(NodeId, String)> {
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(self_id) {
        return None;
    }
    let membership = m.membership_config.membership();
    let replication = m.replication.clone().unwrap_or_default();
    membership
        .voter_ids()
        .filter(|id| *id != self_id && !except.contains(id))
        .max_by_key(|id| {
            let matched = replication.get(id).cloned().flatten().map(|l| l.index);
            (matched, std::cmp::Reverse(*id))
        })
        .and_then(|id| membership.get_node(&id).map(|n| (id, n.raft_addr.clone())))
}

/// Waits (up to `within`) until voter `id` holds every entry this leader had when the
/// wait began; false if it did not, or if this node stopped leading meanwhile.
pub(crate) async fn wait_caught_up(raft: &Raft, id: NodeId, within: Duration) -> bool {
    let mut metrics = raft.metrics();
    let target = metrics.borrow().last_log_index;
    let level = metrics.wait_for(|m| {
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|l| l.index);
        m.replication.is_none() || matched >= target
    });
    let leading = match tokio::time::timeout(within, level).await {
        Ok(Ok(m)) => m.replication.is_some(),
        _ => false,
    };
    leading
}
