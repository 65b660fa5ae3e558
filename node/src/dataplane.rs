//! The data plane's shared state: the current config snapshot and what outlives it.
//!
//! `DataPlane` is shared by every listener and request. Swapping in a new config is one
//! atomic pointer store (`ArcSwap`); requests already running keep the snapshot they
//! loaded. Backend health/load (`BackendRegistry`), metrics and the set of upgraded
//! tunnels live here because they span config versions.

use crate::backend_state::BackendRegistry;
use crate::discovered::{self as members, DiscoveredSets};
use crate::metrics::Metrics;
use crate::snapshot::Snapshot;
use arc_swap::ArcSwap;
use fulcrum_config::{Config, SessionSection};
use fulcrum_session::{AffinityStore, StoreOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio_util::task::TaskTracker;

pub struct DataPlane {
    current: ArcSwap<Snapshot>,
    pub registry: BackendRegistry,
    pub metrics: Metrics,
    access_log: AtomicBool,
    /// Upgraded (WebSocket) tunnels: hyper's graceful shutdown does not see them.
    pub tunnels: TaskTracker,
    /// The replicated weights of split routes (`ctl shift`), beside every version.
    pub splits: crate::split::SplitWeights,
    /// The discovered backends of `discover` pools (`discovery`), merged into every
    /// snapshot; the lock also keeps two rebuilds from interleaving.
    discovered: Mutex<DiscoveredSets>,
}

impl DataPlane {
    /// Compiles `config` as version `version` and makes it current.
    pub fn new(config: Arc<Config>, source: Arc<str>, version: u64, metrics: Metrics) -> Arc<Self> {
        let registry = BackendRegistry::default();
        let sessions = build_store(wanted_store(&config));
        let snapshot = Snapshot::build(
            version,
            config.clone(),
            source,
            sessions,
            &registry,
            &metrics,
        );
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
            splits: Default::default(),
            discovered: Mutex::new(DiscoveredSets::new()),
        })
    }

    /// The snapshot a new request should use.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Swaps in a new config version; in-flight requests finish on the old one. The
    /// affinity store is kept when `[session]` did not change, else rebuilt, and swaps
    /// in with the snapshot.
    pub fn apply(&self, config: Arc<Config>, source: Arc<str>, version: u64) {
        let sets = self.discovered.lock().unwrap_or_else(|p| p.into_inner());
        self.rebuild(config, source, version, &sets);
        tracing::info!(version, "config applied to the data plane");
    }

    /// The discovered sets this node runs.
    pub fn discovered(&self) -> DiscoveredSets {
        (self.discovered.lock().unwrap_or_else(|p| p.into_inner())).clone()
    }

    /// Runs `sets` as the discovered backends (same config version); returns whether any
    /// pool's addresses changed (new health checkers are then needed), `None` when
    /// nothing changed at all.
    pub fn set_discovered(&self, sets: DiscoveredSets) -> Option<bool> {
        let mut running = self.discovered.lock().unwrap_or_else(|p| p.into_inner());
        if *running == sets {
            return None;
        }
        let moved = members::addresses(&running) != members::addresses(&sets);
        *running = sets;
        let current = self.snapshot();
        let (config, source, version) = (
            current.config.clone(),
            current.source.clone(),
            current.version,
        );
        drop(current);
        self.rebuild(config, source, version, &running);
        tracing::info!(
            version,
            addresses_changed = moved,
            "discovered backends applied to the data plane"
        );
        Some(moved)
    }

    /// Compiles `config` with `sets` merged in and swaps it in.
    fn rebuild(&self, config: Arc<Config>, source: Arc<str>, version: u64, sets: &DiscoveredSets) {
        let config = Arc::new(members::with_discovered(&config, sets));
        let current = self.snapshot();
        let wanted = wanted_store(&config);
        let sessions = if wanted == wanted_store(&current.config) {
            current.sessions.clone()
        } else {
            build_store(wanted)
        };
        drop(current);
        let snapshot = Snapshot::build(
            version,
            config.clone(),
            source,
            sessions,
            &self.registry,
            &self.metrics,
        );
        members::mark_draining(&config, sets, &self.registry);
        self.current.store(Arc::new(snapshot));
        self.metrics.config_version.set(version as i64);
    }

    pub fn access_log_enabled(&self) -> bool {
        self.access_log.load(Ordering::Relaxed)
    }
}

/// The `[session]` section when it names a store.
fn wanted_store(config: &Config) -> Option<&SessionSection> {
    config
        .session
        .as_ref()
        .filter(|s| s.redis.is_some() || !s.sentinels.is_empty())
}

/// Builds the affinity store. Never blocks on Redis: the store connects in the background.
fn build_store(section: Option<&SessionSection>) -> Option<Arc<AffinityStore>> {
    let store = section.and_then(|s| match AffinityStore::new(StoreOptions::from_config(s)) {
        Ok(store) => Some(Arc::new(store)),
        Err(e) => {
            tracing::error!(error = %e, "affinity store disabled: cannot build it");
            None
        }
    });
    tracing::info!(enabled = store.is_some(), "affinity store configured");
    store
}

#[cfg(test)]
mod tests {
    //! The affinity store travels with the snapshot it was built for.
    use super::*;

    fn config(session: &str, backend: &str) -> Arc<Config> {
        let text = format!(
            "{session}\n[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\n\
             [[route]]\nlistener = \"web\"\npool = \"app\"\n\n\
             [[pool]]\nname = \"app\"\nbackends = [{{ addr = \"{backend}\" }}]\n"
        );
        Arc::new(fulcrum_config::parse(&text, "t").expect("valid"))
    }

    fn same(a: &Option<Arc<AffinityStore>>, b: &Option<Arc<AffinityStore>>) -> bool {
        match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// Every pool of a snapshot uses that snapshot's store.
    fn consistent(s: &Snapshot) -> bool {
        s.pools.values().all(|p| same(&p.sessions, &s.sessions))
    }

    #[tokio::test]
    async fn the_store_swaps_in_with_its_snapshot() {
        let redis_a = "[session]\nredis = \"redis://127.0.0.1:1/0\"";
        let redis_b = "[session]\nredis = \"redis://127.0.0.1:2/0\"";
        let dp = DataPlane::new(config("", "127.0.0.1:9101"), "".into(), 1, Metrics::new());
        let v1 = dp.snapshot();
        assert!(v1.sessions.is_none() && consistent(&v1));

        dp.apply(config(redis_a, "127.0.0.1:9101"), "".into(), 2);
        let v2 = dp.snapshot();
        assert!(v2.sessions.is_some() && consistent(&v2));
        assert!(
            v1.sessions.is_none(),
            "an older snapshot keeps its own store"
        );

        // Same [session]: the store (its connection, its cache) is kept.
        dp.apply(config(redis_a, "127.0.0.1:9102"), "".into(), 3);
        let v3 = dp.snapshot();
        assert!(same(&v3.sessions, &v2.sessions) && consistent(&v3));

        // Another [session]: a new store, only in the new snapshot.
        dp.apply(config(redis_b, "127.0.0.1:9102"), "".into(), 4);
        let v4 = dp.snapshot();
        assert!(v4.sessions.is_some() && !same(&v4.sessions, &v3.sessions));
        assert!(consistent(&v4) && consistent(&v3));
    }
}
