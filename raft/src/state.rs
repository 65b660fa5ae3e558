//! `ClusterState`: the replicated data every node applies — balancer config + version,
//! node registry, per-observer backend health, drain flags, VIP holder — and the health
//! policy that folds observations into one effective verdict.
//!
//! Shapes are bincode-friendly: nested `BTreeMap<String, ..>` instead of tuple keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::{Command, NodeId, PeerNode};

/// How per-node health observations combine into one effective health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Policy {
    /// Down when a strict majority of the live voters see it down.
    #[default]
    Majority,
    /// Down as soon as any live voter sees it down.
    Any,
    /// Down only when every live voter sees it down.
    All,
}

impl From<fulcrum_config::HealthPolicy> for Policy {
    fn from(p: fulcrum_config::HealthPolicy) -> Self {
        use fulcrum_config::HealthPolicy as H;
        match p {
            H::Majority => Policy::Majority,
            H::Any => Policy::Any,
            H::All => Policy::All,
        }
    }
}

/// The replicated cluster state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster-wide balancer config (TOML text), as last set.
    pub config_toml: String,
    /// Bumped by one on every `SetConfig` (and the one `SeedConfig`); 0 = never set.
    pub config_version: u64,
    /// Node registry: id -> addresses.
    pub nodes: BTreeMap<NodeId, PeerNode>,
    /// pool -> backend -> observer -> healthy (as last reported by that observer).
    pub health: BTreeMap<String, BTreeMap<String, BTreeMap<NodeId, bool>>>,
    /// pool -> drained backends.
    pub drained: BTreeMap<String, BTreeSet<String>>,
    /// Which node should hold the VIP.
    pub vip_holder: Option<NodeId>,
}

impl ClusterState {
    /// Apply one command; deterministic, never fails.
    pub fn apply(&mut self, cmd: &Command) {
        match cmd {
            Command::SetConfig { toml } => self.set_config(toml),
            Command::SeedConfig { toml } => {
                if self.config_version == 0 {
                    self.set_config(toml);
                }
            }
            Command::RegisterNode {
                id,
                raft_addr,
                admin_addr,
            } => {
                let node = PeerNode {
                    raft_addr: raft_addr.clone(),
                    admin_addr: admin_addr.clone(),
                };
                self.nodes.insert(*id, node);
            }
            Command::ReportHealth {
                observer,
                pool,
                backend,
                healthy,
            } => {
                let per_backend = self.health.entry(pool.clone()).or_default();
                let observers = per_backend.entry(backend.clone()).or_default();
                observers.insert(*observer, *healthy);
            }
            Command::SetDrain {
                pool,
                backend,
                drained,
            } => self.set_drain(pool, backend, *drained),
            Command::SetVipHolder { node } => self.vip_holder = *node,
        }
    }

    fn set_config(&mut self, toml: &str) {
        self.config_toml = toml.to_string();
        self.config_version += 1;
    }

    fn set_drain(&mut self, pool: &str, backend: &str, drained: bool) {
        if drained {
            let set = self.drained.entry(pool.to_string()).or_default();
            set.insert(backend.to_string());
        } else if let Some(set) = self.drained.get_mut(pool) {
            set.remove(backend);
            if set.is_empty() {
                self.drained.remove(pool);
            }
        }
    }

    /// Is `backend` of `pool` drained by an operator?
    pub fn is_drained(&self, pool: &str, backend: &str) -> bool {
        self.drained.get(pool).is_some_and(|s| s.contains(backend))
    }

    /// Raw observations for one backend: observer -> healthy.
    pub fn observations(&self, pool: &str, backend: &str) -> Option<&BTreeMap<NodeId, bool>> {
        self.health.get(pool).and_then(|p| p.get(backend))
    }

    /// Effective health of one backend.
    ///
    /// Definition: the population is `live_voters` (the caller's view of which voters are
    /// up). Nodes report only when their own view *flips*, and every backend starts
    /// healthy, so a live voter that never reported counts as seeing it **healthy**.
    /// Reports from nodes outside `live_voters` (dead or removed) are ignored. Let
    /// `down` = live voters whose latest report is "down", `n` = `live_voters.len()`:
    /// - `Majority`: unhealthy iff `2 * down > n` (one bad cable among three cannot eject).
    /// - `Any`: unhealthy iff `down >= 1`.
    /// - `All`: unhealthy iff `down == n` and `n > 0`.
    ///
    /// A backend nobody reported on is healthy. With an empty `live_voters` nothing
    /// counts, so every backend is healthy (never eject on no information).
    pub fn backend_healthy(
        &self,
        pool: &str,
        backend: &str,
        live_voters: &BTreeSet<NodeId>,
        policy: Policy,
    ) -> bool {
        let Some(obs) = self.observations(pool, backend) else {
            return true;
        };
        let n = live_voters.len();
        let down = live_voters
            .iter()
            .filter(|id| obs.get(id) == Some(&false))
            .count();
        let unhealthy = match policy {
            Policy::Majority => 2 * down > n,
            Policy::Any => down >= 1,
            Policy::All => n > 0 && down == n,
        };
        !unhealthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(st: &mut ClusterState, observer: u64, healthy: bool) {
        st.apply(&Command::ReportHealth {
            observer,
            pool: "api".into(),
            backend: "10.0.0.1:80".into(),
            healthy,
        });
    }

    fn live(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn healthy(st: &ClusterState, ids: &[u64], p: Policy) -> bool {
        st.backend_healthy("api", "10.0.0.1:80", &live(ids), p)
    }

    #[test]
    fn unreported_backend_is_healthy_under_every_policy() {
        let st = ClusterState::default();
        for p in [Policy::Majority, Policy::Any, Policy::All] {
            assert!(healthy(&st, &[1, 2, 3], p));
        }
    }

    #[test]
    fn majority_needs_more_than_half_of_live_voters() {
        let mut st = ClusterState::default();
        report(&mut st, 1, false);
        assert!(healthy(&st, &[1, 2, 3], Policy::Majority), "1 of 3 down");
        report(&mut st, 2, false);
        assert!(!healthy(&st, &[1, 2, 3], Policy::Majority), "2 of 3 down");
        report(&mut st, 2, true);
        assert!(healthy(&st, &[1, 2, 3], Policy::Majority), "flipped back");
        // With node 3 dead, 1 of 2 live is not a strict majority.
        assert!(healthy(&st, &[1, 2], Policy::Majority));
        // Only node 1 alive and it sees down: 1 of 1.
        assert!(!healthy(&st, &[1], Policy::Majority));
    }

    #[test]
    fn reports_from_dead_nodes_are_ignored() {
        let mut st = ClusterState::default();
        report(&mut st, 1, false);
        report(&mut st, 2, false);
        assert!(!healthy(&st, &[1, 2, 3], Policy::Majority));
        assert!(healthy(&st, &[2, 3, 4], Policy::Majority), "node 1 gone");
        assert!(
            healthy(&st, &[], Policy::Any),
            "no live voters: no ejection"
        );
    }

    #[test]
    fn any_and_all_policies() {
        let mut st = ClusterState::default();
        report(&mut st, 3, false);
        assert!(!healthy(&st, &[1, 2, 3], Policy::Any));
        assert!(healthy(&st, &[1, 2, 3], Policy::All));
        report(&mut st, 1, false);
        report(&mut st, 2, false);
        assert!(!healthy(&st, &[1, 2, 3], Policy::All));
    }

    #[test]
    fn config_version_is_monotonic_and_seed_applies_once() {
        let mut st = ClusterState::default();
        st.apply(&Command::SeedConfig { toml: "a".into() });
        st.apply(&Command::SeedConfig { toml: "b".into() });
        assert_eq!((st.config_version, st.config_toml.as_str()), (1, "a"));
        st.apply(&Command::SetConfig { toml: "c".into() });
        assert_eq!((st.config_version, st.config_toml.as_str()), (2, "c"));
    }

    #[test]
    fn drain_and_undrain() {
        let mut st = ClusterState::default();
        let cmd = |drained| Command::SetDrain {
            pool: "p".into(),
            backend: "b".into(),
            drained,
        };
        st.apply(&cmd(true));
        assert!(st.is_drained("p", "b"));
        st.apply(&cmd(false));
        assert!(!st.is_drained("p", "b"));
        assert!(st.drained.is_empty());
    }

    #[test]
    fn bincode_round_trip() {
        let mut st = ClusterState::default();
        st.apply(&Command::SetConfig { toml: "x".into() });
        report(&mut st, 2, false);
        st.apply(&Command::RegisterNode {
            id: 2,
            raft_addr: "127.0.0.1:1".into(),
            admin_addr: "127.0.0.1:2".into(),
        });
        st.apply(&Command::SetVipHolder { node: Some(2) });
        let bytes = crate::codec::encode(&st).unwrap();
        let back: ClusterState = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, st);
    }
}
