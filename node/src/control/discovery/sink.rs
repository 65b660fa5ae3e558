//! Where a pool's next discovered set goes: through Raft when the node is in a cluster
//! (only the leader resolves and proposes; every node runs the committed set, applied by
//! `control::follow`), or straight into this node's data plane when it runs alone.

use crate::control::apply::Applier;
use crate::control::cluster::Cluster;
use fulcrum_raft::{Command, DiscoveredSet, Role};
use std::sync::Arc;

/// The destination of discovered sets.
#[derive(Clone)]
pub enum Sink {
    Raft(Arc<Cluster>),
    Local(Arc<Applier>),
}

impl Sink {
    /// Whether this node should resolve now: the Raft leader, or a node alone.
    pub fn leading(&self) -> bool {
        match self {
            Sink::Raft(c) => c.raft.status().borrow().role == Role::Leader,
            Sink::Local(_) => true,
        }
    }

    /// Resolves once `leading()` turns to `want`.
    pub async fn until_leading(&self, want: bool) {
        match self {
            Sink::Raft(c) => {
                let mut status = c.raft.status();
                // An error means Raft stopped: never resolves, the node is stopping.
                let _ = status.wait_for(|s| (s.role == Role::Leader) == want).await;
            }
            Sink::Local(_) if want => {}
            Sink::Local(_) => std::future::pending().await,
        }
    }

    /// The set of `pool` as the cluster (or this node) runs it now.
    pub fn current(&self, pool: &str) -> DiscoveredSet {
        match self {
            Sink::Raft(c) => {
                let state = c.raft.cluster_state();
                let set = state.borrow().discovered.get(pool).cloned();
                set.unwrap_or_default()
            }
            Sink::Local(a) => a.discovered().remove(pool).unwrap_or_default(),
        }
    }

    /// Pools that have a set now.
    pub fn pools(&self) -> Vec<String> {
        match self {
            Sink::Raft(c) => (c.raft.cluster_state().borrow().discovered.keys().cloned()).collect(),
            Sink::Local(a) => a.discovered().into_keys().collect(),
        }
    }

    /// Makes `set` the pool's set (an empty one forgets the pool).
    pub async fn publish(&self, pool: &str, set: DiscoveredSet) -> Result<(), String> {
        match self {
            Sink::Raft(c) => {
                let cmd = Command::SetDiscovered {
                    pool: pool.to_string(),
                    set,
                };
                c.raft
                    .propose(cmd)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
            Sink::Local(a) => {
                let mut sets = a.discovered();
                if set.is_empty() {
                    sets.remove(pool);
                } else {
                    sets.insert(pool.to_string(), set);
                }
                a.set_discovered(sets);
                Ok(())
            }
        }
    }
}
