//! `ClusterState`: the replicated data every node applies — balancer config + version,
//! node registry, per-observer backend health, drain flags, VIP holder, live and drained
//! members — and the health policy that folds observations into one effective verdict.
//!
//! Health reports carry the observer's sequence number; an older report that commits
//! after a newer one (a retry that was stuck behind a partition) changes nothing.
//!
//! Shapes are bincode-friendly: nested `BTreeMap<String, ..>` instead of tuple keys.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::discovered::{DiscoveredMember, DiscoveredSet};
use crate::types::{ApplyReport, Command, NodeId, PeerNode};

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

/// One observer's latest report about one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub healthy: bool,
    /// The observer's sequence number of this report.
    pub seq: u64,
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
    /// pool -> backend -> observer -> its newest report (highest `seq`).
    pub health: BTreeMap<String, BTreeMap<String, BTreeMap<NodeId, Observation>>>,
    /// pool -> drained backends.
    pub drained: BTreeMap<String, BTreeSet<String>>,
    /// Which node should hold the VIP.
    pub vip_holder: Option<NodeId>,
    /// node -> its newest report on applying the config (highest `seq`). Last field:
    /// a state stored before it existed decodes with it empty (`state_machine`).
    pub applied: BTreeMap<NodeId, ApplyReport>,
    /// `[[vip]]` address -> the node that should hold it (issue 18; `vip_grant` decides
    /// who may). Last field, for the same reason as `applied`.
    pub vip_assignment: BTreeMap<String, NodeId>,
    /// The members the leader last judged live (`liveness`; empty until it first did).
    /// Last fields, for the same reason as `applied`.
    pub live_nodes: BTreeSet<NodeId>,
    /// Members the operator drained (`ctl drain-node`): left out of DNS answers.
    pub drained_nodes: BTreeSet<NodeId>,
    /// Split route name -> its replicated weights and shift (issue 25 item 3). Last
    /// field, for the same reason as `applied` (after `drained_nodes`).
    pub splits: BTreeMap<String, crate::split::SplitState>,
    /// pool -> the backends its discovery source found (issue 25). Last field, for the
    /// same reason as `applied`.
    pub discovered: BTreeMap<String, DiscoveredSet>,
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
                seq,
            } => {
                let report = Observation {
                    healthy: *healthy,
                    seq: *seq,
                };
                self.record_observation(pool, backend, *observer, report);
            }
            Command::SetDrain {
                pool,
                backend,
                drained,
            } => self.set_drain(pool, backend, *drained),
            Command::SetVipHolder { node } => self.vip_holder = *node,
            Command::AssignVips { assignment } => self.vip_assignment = assignment.clone(),
            Command::SetLiveNodes { live } => self.live_nodes = live.clone(),
            Command::SetNodeDrain { node, drained } => {
                if *drained {
                    self.drained_nodes.insert(*node);
                } else {
                    self.drained_nodes.remove(node);
                }
            }
            Command::SetSplit {
                route,
                expect,
                state,
            } => self
                .splits
                .entry(route.clone())
                .or_default()
                .write(*expect, state),
            Command::ReportApply { node, report } => match self.applied.get(node) {
                Some(newer) if newer.seq >= report.seq => {}
                _ => {
                    self.applied.insert(*node, report.clone());
                }
            },
            Command::SetDiscovered { pool, set } => self.set_discovered(pool, set),
        }
    }

    /// Replaces a pool's discovered set. Observations of members that left are forgotten,
    /// so an address that comes back later must pass its checks again.
    fn set_discovered(&mut self, pool: &str, set: &DiscoveredSet) {
        let before = self.discovered.remove(pool).unwrap_or_default();
        if let Some(per_backend) = self.health.get_mut(pool) {
            for gone in before.removed_in(set) {
                per_backend.remove(gone);
            }
        }
        if !set.is_empty() {
            self.discovered.insert(pool.to_string(), set.clone());
        }
    }

    /// The discovered member `backend` of `pool`, if discovery put it there.
    pub fn discovered_member(&self, pool: &str, backend: &str) -> Option<&DiscoveredMember> {
        self.discovered.get(pool)?.members.get(backend)
    }

    /// What `observer` is taken to think of a backend: its report, else healthy for a
    /// backend from the config and down for a discovered one (it has to pass a check first).
    pub fn observed_or_assumed(&self, pool: &str, backend: &str, observer: NodeId) -> bool {
        self.observed(pool, backend, observer)
            .unwrap_or_else(|| self.discovered_member(pool, backend).is_none())
    }

    fn set_config(&mut self, toml: &str) {
        self.config_toml = toml.to_string();
        self.config_version += 1;
    }

    /// Keeps `report` unless this observer already reported on this backend with the
    /// same or a higher sequence number.
    fn record_observation(
        &mut self,
        pool: &str,
        backend: &str,
        observer: NodeId,
        report: Observation,
    ) {
        let per_backend = self.health.entry(pool.to_string()).or_default();
        let observers = per_backend.entry(backend.to_string()).or_default();
        match observers.get(&observer) {
            Some(newer) if newer.seq >= report.seq => {}
            _ => {
                observers.insert(observer, report);
            }
        }
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

    /// Raw observations for one backend: observer -> its newest report.
    pub fn observations(
        &self,
        pool: &str,
        backend: &str,
    ) -> Option<&BTreeMap<NodeId, Observation>> {
        self.health.get(pool).and_then(|p| p.get(backend))
    }

    /// What `observer` last reported about one backend (`None`: never reported).
    pub fn observed(&self, pool: &str, backend: &str, observer: NodeId) -> Option<bool> {
        self.observations(pool, backend)
            .and_then(|obs| obs.get(&observer))
            .map(|o| o.healthy)
    }

    /// The highest sequence number of any report of `observer` (0: none).
    pub fn last_report_seq(&self, observer: NodeId) -> u64 {
        self.health
            .values()
            .flat_map(|backends| backends.values())
            .filter_map(|observers| observers.get(&observer))
            .map(|o| o.seq)
            .max()
            .unwrap_or(0)
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
    ///
    /// A *discovered* backend (`discovered`) is the exception: a live voter that never
    /// reported on it counts as seeing it **down**, so it joins the rotation only once
    /// enough voters' checks passed (one under `all`, a majority under `majority`, every
    /// live voter under `any`).
    pub fn backend_healthy(
        &self,
        pool: &str,
        backend: &str,
        live_voters: &BTreeSet<NodeId>,
        policy: Policy,
    ) -> bool {
        let discovered = self.discovered_member(pool, backend).is_some();
        let empty = BTreeMap::new();
        let obs = match self.observations(pool, backend) {
            Some(obs) => obs,
            None if discovered => &empty,
            None => return true,
        };
        let n = live_voters.len();
        if discovered && n == 0 {
            return false;
        }
        let down = live_voters
            .iter()
            .filter(|id| obs.get(id).map_or(discovered, |o| !o.healthy))
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

    /// A report with a fresh, increasing sequence number (per test process: fine, the
    /// rule only compares reports of one observer).
    fn report(st: &mut ClusterState, observer: u64, healthy: bool) {
        let seq = st.last_report_seq(observer) + 1;
        report_seq(st, observer, healthy, seq);
    }

    fn report_seq(st: &mut ClusterState, observer: u64, healthy: bool, seq: u64) {
        st.apply(&Command::ReportHealth {
            observer,
            pool: "api".into(),
            backend: "10.0.0.1:80".into(),
            healthy,
            seq,
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

    /// Observer 1 reported "down" (seq 7), the partition delayed it, and its newer "up"
    /// (seq 8) committed first: the late "down" is ignored, under every policy.
    #[test]
    fn a_stale_report_that_commits_after_a_newer_one_is_ignored() {
        let mut st = ClusterState::default();
        report_seq(&mut st, 1, true, 8);
        report_seq(&mut st, 1, false, 7);
        assert_eq!(st.observed("api", "10.0.0.1:80", 1), Some(true));
        for p in [Policy::Majority, Policy::Any, Policy::All] {
            assert!(healthy(&st, &[1], p), "{p:?}");
        }
        // A duplicate of the newest report (a retried proposal) changes nothing either.
        report_seq(&mut st, 1, false, 8);
        assert_eq!(st.observed("api", "10.0.0.1:80", 1), Some(true));
        // A newer report wins.
        report_seq(&mut st, 1, false, 9);
        assert_eq!(st.observed("api", "10.0.0.1:80", 1), Some(false));
        assert_eq!(st.last_report_seq(1), 9);
    }

    /// Sequence numbers are per observer: another node's higher numbers do not make
    /// this observer's reports stale.
    #[test]
    fn sequence_numbers_are_compared_per_observer_and_backend() {
        let mut st = ClusterState::default();
        report_seq(&mut st, 2, false, 1000);
        report_seq(&mut st, 1, false, 5);
        assert_eq!(st.observed("api", "10.0.0.1:80", 1), Some(false));
        st.apply(&Command::ReportHealth {
            observer: 1,
            pool: "api".into(),
            backend: "10.0.0.2:80".into(),
            healthy: false,
            seq: 3,
        });
        assert_eq!(st.observed("api", "10.0.0.2:80", 1), Some(false));
        assert_eq!(st.last_report_seq(1), 5);
        assert_eq!(st.last_report_seq(3), 0);
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

    fn discover(st: &mut ClusterState, addrs: &[&str]) {
        let found = addrs.iter().map(|a| a.to_string()).collect();
        let set = st.discovered.get("api").cloned().unwrap_or_default();
        st.apply(&Command::SetDiscovered {
            pool: "api".into(),
            set: set.after_found(&found, 1, 1),
        });
    }

    /// A discovered backend is down until voters' checks pass; one that leaves the set
    /// loses its reports, so coming back means passing again.
    #[test]
    fn a_discovered_backend_needs_passing_checks_to_be_healthy() {
        let mut st = ClusterState::default();
        discover(&mut st, &["10.0.0.1:80"]);
        assert!(!healthy(&st, &[1, 2, 3], Policy::Majority));
        assert!(!healthy(&st, &[1, 2, 3], Policy::All));
        assert!(!st.observed_or_assumed("api", "10.0.0.1:80", 1));
        assert!(
            st.observed_or_assumed("api", "10.0.0.9:80", 1),
            "a config backend"
        );
        report(&mut st, 1, true);
        assert!(
            healthy(&st, &[1, 2, 3], Policy::All),
            "one pass is enough for `all`"
        );
        assert!(!healthy(&st, &[1, 2, 3], Policy::Majority));
        report(&mut st, 2, true);
        assert!(healthy(&st, &[1, 2, 3], Policy::Majority));
        assert!(!healthy(&st, &[1, 2, 3], Policy::Any));
        assert!(!healthy(&st, &[], Policy::All), "nobody checked it");
        // Gone from DNS: drained, reports kept while it drains; expired: forgotten.
        st.apply(&Command::SetDiscovered {
            pool: "api".into(),
            set: Default::default(),
        });
        assert!(st.discovered.is_empty() && st.observations("api", "10.0.0.1:80").is_none());
        discover(&mut st, &["10.0.0.1:80"]);
        assert!(
            !healthy(&st, &[1, 2, 3], Policy::Majority),
            "back: checked again"
        );
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
    fn live_and_drained_members_are_replaced_and_toggled() {
        let mut st = ClusterState::default();
        st.apply(&Command::SetLiveNodes {
            live: [1, 2, 3].into(),
        });
        st.apply(&Command::SetLiveNodes {
            live: [1, 3].into(),
        });
        assert_eq!(st.live_nodes, [1, 3].into());
        st.apply(&Command::SetNodeDrain {
            node: 2,
            drained: true,
        });
        st.apply(&Command::SetNodeDrain {
            node: 2,
            drained: true,
        });
        assert_eq!(st.drained_nodes, [2].into());
        st.apply(&Command::SetNodeDrain {
            node: 2,
            drained: false,
        });
        assert!(st.drained_nodes.is_empty());
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
        st.apply(&Command::SetLiveNodes { live: [2].into() });
        st.apply(&Command::SetNodeDrain {
            node: 3,
            drained: true,
        });
        let bytes = crate::codec::encode(&st).unwrap();
        let back: ClusterState = crate::codec::decode(&bytes).unwrap();
        assert_eq!(back, st);
    }
}
