//! Per-backend runtime state that outlives config versions.
//!
//! Health (active checks), local passive ejection, drain flags and load figures belong
//! to a backend *address in a pool*, not to one config snapshot: when a new config is
//! applied, a backend that is still present keeps its health and its counters. The
//! `BackendRegistry` hands out one `Arc<BackendState>` per `(pool, addr)`.

use crate::balance::BackendLoad;
use crate::request::budget::RetryGate;
use crate::request::outlier_state::OutlierCounters;
use fulcrum_config::RetryBudget;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// First passive ejection lasts this long; each consecutive failure doubles it.
const EJECT_BASE: Duration = Duration::from_secs(1);
/// Upper bound of a passive ejection.
const EJECT_MAX: Duration = Duration::from_secs(30);

/// Everything the data plane knows about one backend of one pool.
#[derive(Debug)]
pub struct BackendState {
    /// Verdict of this node's active health checks.
    active_healthy: AtomicBool,
    /// Verdict of the cluster (effective health through Raft); true when alone.
    cluster_healthy: AtomicBool,
    /// In a cluster the Raft verdict decides health, so one node with a bad cable cannot
    /// eject a backend; alone, this node's own checks decide.
    clustered: Arc<AtomicBool>,
    /// Operator drain: no new sessions, in-flight work finishes.
    drained: AtomicBool,
    /// Drained because its discovery record vanished (`control::discovery`); kept apart from the
    /// operator's flag so neither undoes the other.
    discovery_draining: AtomicBool,
    /// Passive ejection deadline, in milliseconds since `epoch` (0 = not ejected).
    ejected_until_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    /// When the backend last joined or came back healthy (ms since `epoch`), for slow
    /// start; the end of a local ejection counts too (`returned_ms`).
    warm_since_ms: AtomicU64,
    pub load: Arc<BackendLoad>,
    /// Connects in progress to this backend (`max_pending`, `upstream::pending`): kept
    /// here so a config change does not start the count again while connects run.
    pub pending_connects: Arc<AtomicU64>,
    /// Outlier detection's streaks and ejection history (`request::outlier`).
    pub outlier: OutlierCounters,
    epoch: Instant,
}

impl BackendState {
    /// A backend's state; `healthy_at_start` is false for a discovered backend, which
    /// must pass a check (this node's alone, the cluster's verdict clustered) first.
    fn new(epoch: Instant, clustered: Arc<AtomicBool>, healthy_at_start: bool) -> Self {
        BackendState {
            clustered,
            active_healthy: AtomicBool::new(healthy_at_start),
            cluster_healthy: AtomicBool::new(healthy_at_start),
            drained: AtomicBool::new(false),
            discovery_draining: AtomicBool::new(false),
            ejected_until_ms: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            warm_since_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            load: Arc::new(BackendLoad::default()),
            pending_connects: Arc::default(),
            outlier: OutlierCounters::default(),
            epoch,
        }
    }

    /// Healthy by the verdict that counts: the cluster's when clustered, else our own.
    pub fn healthy(&self) -> bool {
        if self.clustered.load(Ordering::Relaxed) {
            self.cluster_healthy.load(Ordering::Relaxed)
        } else {
            self.active_healthy.load(Ordering::Relaxed)
        }
    }

    /// Sets the effective health computed from every node's observations.
    pub fn set_cluster_healthy(&self, healthy: bool) {
        if !self.cluster_healthy.swap(healthy, Ordering::Relaxed) && healthy {
            self.warm_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
    }

    pub fn active_healthy(&self) -> bool {
        self.active_healthy.load(Ordering::Relaxed)
    }

    /// Returns true when the value changed.
    pub fn set_active_healthy(&self, healthy: bool) -> bool {
        let changed = self.active_healthy.swap(healthy, Ordering::Relaxed) != healthy;
        if changed && healthy {
            self.warm_since_ms.store(self.now_ms(), Ordering::Relaxed);
        }
        changed
    }

    /// Milliseconds since the backend last came back: joined, turned healthy, or its
    /// local ejection ended (slow start).
    pub fn returned_ms(&self) -> u64 {
        let now = self.now_ms();
        let mut since = self.warm_since_ms.load(Ordering::Relaxed);
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until != 0 && until <= now {
            since = since.max(until);
        }
        now.saturating_sub(since)
    }

    /// Drained by the operator or because its discovery record vanished.
    pub fn drained(&self) -> bool {
        self.drained.load(Ordering::Relaxed) || self.discovery_draining.load(Ordering::Relaxed)
    }

    pub fn set_discovery_draining(&self, draining: bool) {
        self.discovery_draining.store(draining, Ordering::Relaxed);
    }

    pub fn set_drained(&self, drained: bool) {
        self.drained.store(drained, Ordering::Relaxed);
    }

    /// Locally ejected after connect failures or resets.
    pub fn ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        until != 0 && self.now_ms() < until
    }

    /// May receive a new request / session.
    pub fn eligible(&self) -> bool {
        self.healthy() && !self.drained() && !self.ejected()
    }

    /// Records a connect failure or reset: eject for a backoff that grows.
    pub fn note_failure(&self) -> Duration {
        let n = self
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            .min(10);
        let backoff = EJECT_BASE.saturating_mul(1 << n).min(EJECT_MAX);
        let until = self.now_ms() + backoff.as_millis() as u64;
        self.ejected_until_ms.store(until.max(1), Ordering::Relaxed);
        backoff
    }

    /// Records a successful exchange: the failure streak ends.
    pub fn note_success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            let until = self.ejected_until_ms.swap(0, Ordering::Relaxed);
            // The ejection's end stays the time it came back (slow start).
            let back = until.min(self.now_ms());
            self.warm_since_ms.fetch_max(back, Ordering::Relaxed);
        }
    }

    /// Ejects for `duration` from now (outlier detection); returns when it ends (ms on
    /// `now_ms`'s clock).
    pub fn eject_for(&self, duration: Duration) -> u64 {
        let until = (self.now_ms() + duration.as_millis() as u64).max(1);
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        until
    }

    /// Milliseconds since the registry's epoch.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// Hands out the shared state of each `(pool, addr)`; survives config reloads.
#[derive(Debug)]
pub struct BackendRegistry {
    states: Mutex<HashMap<(String, String), Arc<BackendState>>>,
    /// Each pool's retry budget, kept across config versions while it is unchanged.
    gates: Mutex<HashMap<String, (RetryBudget, Arc<RetryGate>)>>,
    epoch: Instant,
    clustered: Arc<AtomicBool>,
}

impl Default for BackendRegistry {
    fn default() -> Self {
        BackendRegistry {
            states: Mutex::new(HashMap::new()),
            gates: Mutex::new(HashMap::new()),
            epoch: Instant::now(),
            clustered: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl BackendRegistry {
    /// The state for `(pool, addr)`, created on first use. Called when a config is
    /// compiled, never per request.
    pub fn get(&self, pool: &str, addr: &str) -> Arc<BackendState> {
        self.get_or_new(pool, addr, true)
    }

    /// Like `get`, but a backend new to the registry starts unhealthy: one found by
    /// discovery gets traffic only after it passes a health check.
    pub fn get_discovered(&self, pool: &str, addr: &str) -> Arc<BackendState> {
        self.get_or_new(pool, addr, false)
    }

    fn get_or_new(&self, pool: &str, addr: &str, healthy_at_start: bool) -> Arc<BackendState> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let new = || BackendState::new(self.epoch, self.clustered.clone(), healthy_at_start);
        states
            .entry((pool.to_string(), addr.to_string()))
            .or_insert_with(|| Arc::new(new()))
            .clone()
    }

    /// Switches every backend to the cluster's health verdict.
    pub fn set_clustered(&self, clustered: bool) {
        self.clustered.store(clustered, Ordering::Relaxed);
    }

    /// Every `(pool, addr, state)` currently known.
    pub fn all(&self) -> Vec<(String, String, Arc<BackendState>)> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states
            .iter()
            .map(|((p, a), s)| (p.clone(), a.clone(), s.clone()))
            .collect()
    }

    /// Looks up an existing state without creating one.
    pub fn find(&self, pool: &str, addr: &str) -> Option<Arc<BackendState>> {
        let states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.get(&(pool.to_string(), addr.to_string())).cloned()
    }

    /// Forgets backends that the current config no longer has.
    pub fn retain(&self, keep: impl Fn(&str, &str) -> bool) {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.retain(|(pool, addr), _| keep(pool, addr));
    }

    /// Pool `pool`'s retry gate for `budget`: the one of the previous config version
    /// when the budget is the same (its counts go on), else a new one.
    pub fn retry_gate(&self, pool: &str, budget: &RetryBudget) -> Arc<RetryGate> {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        match gates.get(pool) {
            Some((same, gate)) if same == budget => gate.clone(),
            _ => {
                let gate = Arc::new(RetryGate::new(budget));
                gates.insert(pool.to_string(), (budget.clone(), gate.clone()));
                gate
            }
        }
    }

    /// Forgets the retry gates of pools without a budget in the current config.
    pub fn retain_gates(&self, keep: impl Fn(&str) -> bool) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.retain(|pool, _| keep(pool));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_eject_with_growing_backoff_and_success_readmits() {
        let registry = BackendRegistry::default();
        let b = registry.get("p", "127.0.0.1:1");
        assert!(b.eligible());
        assert_eq!(b.note_failure(), Duration::from_secs(1));
        assert!(b.ejected() && !b.eligible());
        assert_eq!(b.note_failure(), Duration::from_secs(2));
        assert_eq!(b.note_failure(), Duration::from_secs(4));
        b.note_success();
        assert!(b.eligible());
    }

    #[test]
    fn state_survives_a_second_lookup() {
        let registry = BackendRegistry::default();
        registry.get("p", "a").set_drained(true);
        assert!(registry.get("p", "a").drained());
        assert!(!registry.get("q", "a").drained());
    }

    #[test]
    fn a_retry_gate_is_kept_while_its_budget_is_unchanged() {
        let registry = BackendRegistry::default();
        let budget = RetryBudget {
            percent: 20.0,
            min_per_second: 3,
            window: Duration::from_secs(10),
        };
        let first = registry.retry_gate("p", &budget);
        assert!(Arc::ptr_eq(&first, &registry.retry_gate("p", &budget)));
        assert!(!Arc::ptr_eq(&first, &registry.retry_gate("q", &budget)));
        let other = RetryBudget {
            percent: 10.0,
            ..budget.clone()
        };
        let changed = registry.retry_gate("p", &other);
        assert!(!Arc::ptr_eq(&first, &changed), "a new budget counts anew");
        registry.retain_gates(|pool| pool == "q");
        assert!(!Arc::ptr_eq(&changed, &registry.retry_gate("p", &other)));
    }
}
