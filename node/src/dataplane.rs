//! The data plane's shared state: the current config snapshot and what outlives it.
//!
//! `DataPlane` is shared by every listener and request. Swapping in a new config is one
//! atomic pointer store (`ArcSwap`); requests already running keep the snapshot they
//! loaded. Backend health/load (`BackendRegistry`), metrics and the set of upgraded
//! tunnels live here because they span config versions.

use crate::backend_state::BackendRegistry;
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use fulcrum_config::Config;
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
        })
    }

    /// The snapshot a new request should use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new config version; in-flight requests finish on the old one.
    pub fn apply(&self, config: Arc<Config>, source: Arc<str>, version: u64) {
        let snapshot = Snapshot::build(version, config, source, &self.registry, &self.metrics);
        self.current.store(Arc::new(snapshot));
        self.metrics.config_version.set(version as i64);
        tracing::info!(version, "config applied to the data plane");
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }
}
