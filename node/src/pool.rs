//! A pool as the data plane runs it: backends, selector, affinity and upstream connections.
//!
//! Built once per config version from the `[[pool]]` table. Everything a request needs
//! is here and immutable; live figures are atomics inside `BackendState`.

use crate::affinity::cookie::CookieSigner;
use crate::affinity::fallback::{FallbackCookie, FallbackKeys};
use crate::backend_state::{BackendRegistry, BackendState};
use crate::balance::slow_start::SlowStart;
use crate::balance::{self, BackendLoad, Candidate, PickContext, Selector};
use crate::metrics::{BackendMetrics, Metrics};
use crate::request::budget::RetryGate;
use crate::request::outlier_state::OutlierPolicy;
use crate::upstream::Upstream;
use fulcrum_config::{AffinityMode, HashKey, Pool};
use fulcrum_session::AffinityStore;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// One backend of a compiled pool.
#[derive(Debug)]
pub struct PoolBackend {
    /// The address as written in the config; the identity used in pins and cookies.
    pub id: String,
    pub addr: SocketAddr,
    pub weight: u32,
    pub state: Arc<BackendState>,
    pub metrics: BackendMetrics,
}

/// Cookie affinity settings of a pool.
#[derive(Debug)]
pub struct CookieAffinity {
    pub name: String,
    pub signer: CookieSigner,
}

/// A compiled `[[pool]]`.
pub struct PoolRuntime {
    pub name: String,
    pub backends: Vec<PoolBackend>,
    selector: Arc<dyn Selector>,
    pub hash_key: Option<HashKey>,
    pub affinity_mode: AffinityMode,
    /// Application cookie learned in `learn` mode.
    pub affinity_cookie: Option<String>,
    /// Header carrying the key in `header` mode.
    pub affinity_header: Option<String>,
    pub cookie: Option<CookieAffinity>,
    /// Signed cookie naming a shared-affinity session's backend, for when Redis cannot say.
    pub fallback: Option<FallbackCookie>,
    /// Keep-alive connections to the backends, index-aligned with `backends`.
    pub upstream: Upstream,
    pub response_timeout: Duration,
    /// The algorithm reads response latencies (`peak-ewma`); others skip recording them.
    pub latency_aware: bool,
    /// The shared affinity store (Redis) of this pool's config version, if any.
    pub sessions: Option<Arc<AffinityStore>>,
    /// `retry_budget`, counting requests and retries since the budget was configured
    /// (the same gate across config versions that keep it: `BackendRegistry::retry_gate`).
    pub retry_budget: Option<Arc<RetryGate>>,
    /// Circuit breaking: requests in flight per backend at most (`request::breaker`).
    pub max_requests: Option<u64>,
    /// Outlier detection (`request::outlier`), if the pool has it.
    pub outlier: Option<OutlierPolicy>,
    /// `slow_start`, unless the pool hashes (`balance::slow_start`).
    slow_start: Option<SlowStart>,
    /// Requests in flight at saturation 1.0 (`pool_load`): `capacity`, or the sum of
    /// the backends' `max_requests`; none: no saturation.
    pub capacity: Option<u64>,
    /// Picks made in panic mode (every healthy backend locally ejected or held back by
    /// slow start, so ejection was ignored: `pick`), for `/status`.
    pub panic_picks: AtomicU64,
}

impl std::fmt::Debug for PoolRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolRuntime")
            .field("name", &self.name)
            .field("backends", &self.backends)
            .finish()
    }
}

impl PoolRuntime {
    /// Compiles a pool; backend state is shared with earlier versions via `registry`.
    pub fn build(
        pool: &Pool,
        registry: &BackendRegistry,
        metrics: &Metrics,
        cookie_secret: Option<&str>,
        fallback: &FallbackKeys,
        sessions: Option<Arc<AffinityStore>>,
    ) -> Self {
        let backends: Vec<PoolBackend> = pool
            .backends
            .iter()
            .filter_map(|b| {
                let addr = b.socket_addr()?;
                Some(PoolBackend {
                    id: b.addr.clone(),
                    addr,
                    weight: b.weight,
                    state: match pool.discover {
                        Some(_) => registry.get_discovered(&pool.name, &b.addr),
                        None => registry.get(&pool.name, &b.addr),
                    },
                    metrics: metrics.backend(&pool.name, &b.addr),
                })
            })
            .collect();
        let candidates: Vec<Candidate> = backends
            .iter()
            .map(|b| Candidate {
                id: b.id.clone(),
                weight: b.weight,
            })
            .collect();
        let loads: Arc<[Arc<BackendLoad>]> =
            backends.iter().map(|b| b.state.load.clone()).collect();
        let cookie = match (pool.affinity.mode, cookie_secret) {
            (AffinityMode::Cookie, Some(secret)) => {
                CookieSigner::new(secret.as_bytes(), &pool.name).map(|signer| CookieAffinity {
                    name: pool.affinity.cookie_name().to_string(),
                    signer,
                })
            }
            _ => None,
        };
        let addrs = backends.iter().map(|b| b.addr).collect();
        let pending = (backends.iter())
            .map(|b| b.state.pending_connects.clone())
            .collect();
        let backends_len = backends.len();
        PoolRuntime {
            name: pool.name.clone(),
            selector: balance::build(pool.algorithm, &candidates, loads),
            backends,
            hash_key: pool.hash_key(),
            affinity_mode: pool.affinity.mode,
            affinity_cookie: pool.affinity.cookie.clone(),
            affinity_header: pool
                .affinity
                .header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
            cookie,
            fallback: fallback.for_pool(&pool.name, pool.affinity.mode),
            upstream: Upstream::new(
                addrs,
                pool.connect_timeout,
                pool.upstream_idle_timeout,
                crate::tls::backend::upstream_settings(pool),
                metrics.backend_unsolicited.clone(),
            )
            .with_max_pending(crate::pool_load::pending_cap(pool), pending)
            .with_protocol(pool.protocol),
            response_timeout: pool.response_timeout,
            latency_aware: pool.algorithm == fulcrum_config::Algorithm::PeakEwma,
            sessions,
            retry_budget: (pool.retry_budget.as_ref()).map(|b| registry.retry_gate(&pool.name, b)),
            max_requests: pool.max_requests.map(u64::from),
            slow_start: pool
                .slow_start
                .filter(|_| pool.algorithm != fulcrum_config::Algorithm::ConsistentHash)
                .map(SlowStart::new),
            outlier: (pool.outlier.as_ref())
                .map(|o| OutlierPolicy::new(o, metrics.backend_ejections.clone())),
            capacity: crate::pool_load::capacity(pool, backends_len),
            panic_picks: AtomicU64::new(0),
        }
    }

    /// Counts a request towards the retry budget, if the pool has one (nothing else).
    #[inline]
    pub fn note_request(&self) {
        if let Some(gate) = &self.retry_budget {
            gate.note_request();
        }
    }

    /// Picks a backend for a new request. Prefers fully eligible backends; if every
    /// healthy backend is locally ejected, ignores ejection rather than failing
    /// (Envoy's "panic mode"), since a local ejection is only a guess.
    pub fn pick(&self, ctx: &PickContext<'_>, exclude: Option<usize>) -> Option<usize> {
        let strict = |i: usize| {
            let state = &self.backends[i].state;
            Some(i) != exclude
                && state.eligible()
                && self
                    .slow_start
                    .is_none_or(|warm| warm.admits(state.returned_ms()))
        };
        if let Some(i) = self.selector.pick(ctx, &strict) {
            return Some(i);
        }
        let relaxed = |i: usize| {
            let s = &self.backends[i].state;
            Some(i) != exclude && s.healthy() && !s.drained()
        };
        let picked = self.selector.pick(ctx, &relaxed);
        if picked.is_some() {
            self.panic_picks.fetch_add(1, Ordering::Relaxed);
        }
        picked
    }

    /// Whether the pool is in panic mode now: a backend may take requests (healthy, not
    /// drained) but none is eligible (each is locally ejected), so picks ignore ejection.
    pub fn in_panic(&self) -> bool {
        let states = self.backends.iter().map(|b| &b.state);
        let open = states.clone().any(|s| s.healthy() && !s.drained());
        open && !states.into_iter().any(|s| s.eligible())
    }

    /// The index of a backend by id, if it may take this (returning) session.
    /// A drained backend keeps the sessions it has; an unhealthy one does not.
    /// The `Set-Cookie` value that ties the client to `index`: the affinity cookie in
    /// `cookie` mode, the fallback cookie in the shared modes.
    pub fn affinity_set_cookie(&self, index: usize) -> Option<String> {
        let backend = &self.backends.get(index)?.id;
        if let Some(cookie) = &self.cookie {
            return Some(format!(
                "{}={}; Path=/; HttpOnly",
                cookie.name,
                cookie.signer.sign(backend)
            ));
        }
        self.fallback.as_ref().map(|f| f.set_cookie(backend))
    }

    pub fn sticky_target(&self, id: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|b| b.id == id && b.state.healthy() && !b.state.ejected())
    }
}
