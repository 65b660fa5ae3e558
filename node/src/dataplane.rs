//! The data plane's shared state: the current config snapshot and what outlives it.
//!
//! `DataPlane` is shared by every listener and request. Swapping in a new config is one
//! atomic pointer store (`ArcSwap`); requests already running keep the snapshot they
//! loaded. Backend health/load (`BackendRegistry`), metrics and the set of upgraded
//! tunnels live here because they span config versions.

use crate::backend_state::BackendRegistry;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use arc_swap::{ArcSwap, ArcSwapOption};
use fulcrum_config::Config;
use fulcrum_session::{AffinityStore, StoreOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio_util::task::TaskTracker;

pub struct DataPlane {
    current: ArcSwap<Snapshot>,
    pub registry: BackendRegistry,
    pub metrics: Metrics,
    access_log: AtomicBool,
    /// Upgraded (WebSocket) tunnels: hyper's graceful shutdown does not see them.
    pub tunnels: TaskTracker,
    /// The shared affinity store (Redis), when `[session]` names one.
    sessions: ArcSwapOption<AffinityStore>,
    /// The `[session]` section the store was built from, to rebuild only on change.
    session_config: std::sync::Mutex<Option<fulcrum_config::SessionSection>>,
}

impl DataPlane {
    /// Compiles `config` as version `version` and makes it current.
    pub fn new(config: Arc<Config>, source: Arc<str>, version: u64, metrics: Metrics) -> Arc<Self> {
        let registry = BackendRegistry::default();
        let snapshot = Snapshot::build(version, config.clone(), source, &registry, &metrics);
        metrics.config_version.set(version as i64);
        let access_log = config
            .node
            .as_ref()
            .map(|n| n.access_log != "off")
            .unwrap_or(true);
        Arc::new(DataPlane {
            current: ArcSwap::from_pointee(snapshot),
            registry,
            metrics,
            access_log: AtomicBool::new(access_log),
            tunnels: TaskTracker::new(),
            sessions: ArcSwapOption::empty(),
            session_config: std::sync::Mutex::new(None),
        })
    }

    /// The shared affinity store, if Redis is configured.
    pub fn sessions(&self) -> Option<Arc<AffinityStore>> {
        self.sessions.load_full()
    }

    /// (Re)builds the affinity store when the `[session]` section changed. Never blocks
    /// on Redis: the store connects in the background.
    pub fn update_sessions(&self, config: &Config) {
        let wanted = config
            .session
            .clone()
            .filter(|s| s.redis.is_some() || !s.sentinels.is_empty());
        let mut current = self
            .session_config
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if *current == wanted {
            return;
        }
        let store =
            wanted
                .as_ref()
                .and_then(|s| match AffinityStore::new(StoreOptions::from_config(s)) {
                    Ok(store) => Some(Arc::new(store)),
                    Err(e) => {
                        tracing::error!(error = %e, "affinity store disabled: cannot build it");
                        None
                    }
                });
        tracing::info!(enabled = store.is_some(), "affinity store configured");
        self.sessions.store(store);
        *current = wanted;
    }

    /// The snapshot a new request should use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new config version; in-flight requests finish on the old one.
    pub fn apply(&self, config: Arc<Config>, source: Arc<str>, version: u64) {
        self.update_sessions(&config);
        let snapshot = Snapshot::build(version, config, source, &self.registry, &self.metrics);
        self.current.store(Arc::new(snapshot));
        self.metrics.config_version.set(version as i64);
        tracing::info!(version, "config applied to the data plane");
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }
}
