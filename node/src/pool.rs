//! A pool as the data plane runs it: backends, selector, affinity and upstream client.
//!
//! Built once per config version from the `[[pool]]` table. Everything a request needs
//! is here and immutable; live figures are atomics inside `BackendState`.

use crate::affinity::cookie::CookieSigner;
use crate::backend_state::{BackendRegistry, BackendState};
use crate::balance::{self, BackendLoad, Candidate, PickContext, Selector};
use crate::metrics::{BackendMetrics, Metrics};
use crate::proxy::body::ProxyBody;
use crate::tls::UpstreamConnector;
use fulcrum_config::{AffinityMode, HashKey, Pool};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The pooled keep-alive client towards a pool's backends. Its connector speaks plain
/// TCP for `http://` backend URIs and TLS for `https://` ones (pools with `tls`).
pub type UpstreamClient = Client<UpstreamConnector, ProxyBody>;

/// One backend of a compiled pool.
#[derive(Debug)]
pub struct PoolBackend {
    /// The address as written in the config; the identity used in pins and cookies.
    pub id: String,
    pub addr: SocketAddr,
    /// `http://ADDR`, or `https://ADDR` for a pool with `tls` — prefix of the absolute
    /// URI sent to the client library (the scheme selects TLS in the connector).
    pub base_uri: String,
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
    pub client: UpstreamClient,
    pub response_timeout: Duration,
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
    ) -> Self {
        let backends: Vec<PoolBackend> = pool
            .backends
            .iter()
            .filter_map(|b| {
                let addr = b.socket_addr()?;
                let scheme = if pool.tls.is_some() { "https" } else { "http" };
                Some(PoolBackend {
                    id: b.addr.clone(),
                    addr,
                    base_uri: format!("{scheme}://{addr}"),
                    weight: b.weight,
                    state: registry.get(&pool.name, &b.addr),
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
            client: build_client(pool),
            response_timeout: pool.response_timeout,
        }
    }

    /// Picks a backend for a new request. Prefers fully eligible backends; if every
    /// healthy backend is locally ejected, ignores ejection rather than failing
    /// (Envoy's "panic mode"), since a local ejection is only a guess.
    pub fn pick(&self, ctx: &PickContext<'_>, exclude: Option<usize>) -> Option<usize> {
        let strict = |i: usize| Some(i) != exclude && self.backends[i].state.eligible();
        if let Some(i) = self.selector.pick(ctx, &strict) {
            return Some(i);
        }
        let relaxed = |i: usize| {
            let s = &self.backends[i].state;
            Some(i) != exclude && s.healthy() && !s.drained()
        };
        self.selector.pick(ctx, &relaxed)
    }

    /// The index of a backend by id, if it may take this (returning) session.
    /// A drained backend keeps the sessions it has; an unhealthy one does not.
    pub fn sticky_target(&self, id: &str) -> Option<usize> {
        self.backends
            .iter()
            .position(|b| b.id == id && b.state.healthy() && !b.state.ejected())
    }
}

/// One keep-alive client per pool, so each pool's connect timeout and TLS apply.
fn build_client(pool: &Pool) -> UpstreamClient {
    let connector = crate::tls::build_upstream_connector(pool).unwrap_or_else(|e| {
        // Config apply checks backend TLS first (`tls::check_config`), so this only
        // happens if a CA/key file broke in between: TLS to this pool then fails
        // verification (502s) instead of the whole config being lost.
        tracing::error!(pool = %pool.name, error = %e, "backend TLS unusable; TLS connects will fail");
        crate::tls::build_upstream_connector(&Pool {
            tls: None,
            ..pool.clone()
        })
        .expect("a connector without TLS files cannot fail")
    });
    Client::builder(TokioExecutor::new())
        // Without a pool timer hyper-util ignores the idle timeout (TECH_NOTES §5.2).
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(pool.upstream_idle_timeout)
        .pool_max_idle_per_host(1024)
        .build(connector)
}
