//! One compiled config version: what every request of that version uses.
//!
//! The data plane holds the current `Snapshot` behind an `ArcSwap`. A request loads it
//! once at its start and keeps using it to the end, so a reload never changes the rules
//! under a running request; the next request sees the new version.

use crate::affinity::fallback::FallbackKeys;
use crate::backend_state::BackendRegistry;
use crate::metrics::Metrics;
use crate::pool::PoolRuntime;
use crate::request::cluster_limit::ClusterLimits;
use crate::router::RouteTable;
use fulcrum_config::Config;
use fulcrum_session::AffinityStore;
use std::collections::HashMap;
use std::sync::Arc;

/// An immutable, compiled config version.
#[derive(Debug)]
pub struct Snapshot {
    pub version: u64,
    pub config: Arc<Config>,
    /// The TOML text this version came from (served by `GET /config`).
    pub source: Arc<str>,
    /// Listener name -> its routes.
    pub routes: HashMap<String, RouteTable>,
    pub pools: HashMap<String, Arc<PoolRuntime>>,
    /// The shared affinity store (Redis) of this version, if `[session]` names one: it
    /// swaps in with the snapshot, so no request sees one version's pools with another's.
    pub sessions: Option<Arc<AffinityStore>>,
}

impl Snapshot {
    pub fn build(
        version: u64,
        config: Arc<Config>,
        source: Arc<str>,
        sessions: Option<Arc<AffinityStore>>,
        registry: &BackendRegistry,
        metrics: &Metrics,
    ) -> Self {
        let cookie_secret = config
            .session
            .as_ref()
            .and_then(|s| s.cookie_secret.as_deref());
        let fallback = FallbackKeys::load(&config).unwrap_or_else(|e| {
            tracing::error!(error = %e, "no fallback cookie: cannot read its key");
            FallbackKeys::default()
        });
        let pools: HashMap<String, Arc<PoolRuntime>> = config
            .pool
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Arc::new(PoolRuntime::build(
                        p,
                        registry,
                        metrics,
                        cookie_secret,
                        &fallback,
                        sessions.clone(),
                    )),
                )
            })
            .collect();
        // The `[session]` Redis counts cluster-wide limits (`check_config` insists on one).
        let cluster = sessions.as_ref().map(|store| ClusterLimits {
            store: store.clone(),
            fallbacks: metrics.rate_limit_fallbacks.clone(),
        });
        let routes = config
            .listener
            .iter()
            .map(|l| {
                let mine: Vec<&fulcrum_config::Route> = config
                    .route
                    .iter()
                    .filter(|r| r.listener == l.name)
                    .collect();
                let paths = crate::request::path::PathPolicy::from_listener(l);
                (
                    l.name.clone(),
                    RouteTable::build(&mine, paths, cluster.as_ref()),
                )
            })
            .collect();
        registry.retain(|pool, addr| {
            config
                .pool
                .iter()
                .any(|p| p.name == pool && p.backends.iter().any(|b| b.addr == addr))
        });
        registry.retain_gates(|pool| {
            (config.pool.iter()).any(|p| p.name == pool && p.retry_budget.is_some())
        });
        Snapshot {
            version,
            config,
            source,
            routes,
            pools,
            sessions,
        }
    }
}
