//! Shared stickiness through Redis: modes `learn`, `header` and `source-ip`.
//!
//! The session key comes from the request (the application's cookie, a header, or the
//! client address). Its pin lives in Redis via `fulcrum_session::AffinityStore`, so
//! every node — including the one that takes the VIP after a failover — routes the
//! session to the same backend. The decision for one request:
//!
//! - pinned to a backend that may take it: that backend;
//! - pinned to a dead or drained backend: pick a new one and re-pin with
//!   compare-and-set, so every node converges on the same replacement;
//! - not pinned: `header`/`source-ip` pin on first sight (first writer wins);
//!   `learn` waits for the backend's `Set-Cookie` (see `learn_from_response`);
//! - Redis away: a consistent hash of the key over the eligible backends, the same on
//!   every node, counted as a fallback. Redis trouble never fails a request.

use crate::affinity::cookie::find_cookie;
use crate::pool::PoolRuntime;
use crate::proxy::lookup::HeaderLookup;
use fulcrum_config::AffinityMode;
use fulcrum_session::{fallback_pick, AffinityStore, Lookup};
use std::net::IpAddr;

/// The affinity key of a request for this pool, if it has one.
pub fn session_key(
    pool: &PoolRuntime,
    headers: &impl HeaderLookup,
    client: IpAddr,
) -> Option<String> {
    match pool.affinity_mode {
        AffinityMode::Learn => {
            let name = pool.affinity_cookie.as_deref()?;
            find_cookie(headers, name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        }
        AffinityMode::Header => {
            let name = pool.affinity_header.as_deref()?;
            headers
                .first_str(name)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        }
        AffinityMode::SourceIp => Some(client.to_canonical().to_string()),
        AffinityMode::None | AffinityMode::Cookie => None,
    }
}

/// Chooses the backend for a request carrying session `key`. `pick` is the pool's
/// algorithm (excluding nothing). Returns `None` only when no backend may take it.
pub async fn choose(
    store: &AffinityStore,
    pool: &PoolRuntime,
    key: &str,
    pick: impl Fn() -> Option<usize>,
) -> Option<usize> {
    match store.lookup(&pool.name, key).await {
        Lookup::Pinned(id) => match pool
            .sticky_target(&id)
            .filter(|&i| !pool.backends[i].state.drained())
        {
            Some(i) => Some(i),
            None => repin(store, pool, key, &id, pick).await,
        },
        Lookup::Absent if pool.affinity_mode == AffinityMode::Learn => pick(),
        Lookup::Absent => {
            let chosen = pick()?;
            match store.pin(&pool.name, key, &pool.backends[chosen].id).await {
                Some(winner) => pool.sticky_target(&winner).or(Some(chosen)),
                None => fallback(store, pool, key),
            }
        }
        Lookup::Unavailable => fallback(store, pool, key),
    }
}

/// The pinned backend is gone (dead, drained, or it just failed on connect): move the
/// session once with compare-and-set; every node follows the winner.
pub async fn repin(
    store: &AffinityStore,
    pool: &PoolRuntime,
    key: &str,
    dead: &str,
    pick: impl Fn() -> Option<usize>,
) -> Option<usize> {
    let chosen = pick()?;
    match store
        .repin(&pool.name, key, dead, &pool.backends[chosen].id)
        .await
    {
        Some(winner) => {
            tracing::info!(pool = %pool.name, from = dead, to = %winner, "session re-pinned");
            pool.sticky_target(&winner).or(Some(chosen))
        }
        None => fallback(store, pool, key),
    }
}

/// Redis is away: hash the key over the eligible backends (same answer on every node).
fn fallback(store: &AffinityStore, pool: &PoolRuntime, key: &str) -> Option<usize> {
    store.note_fallback();
    let eligible: Vec<usize> = (0..pool.backends.len())
        .filter(|&i| pool.backends[i].state.eligible())
        .collect();
    let ids: Vec<&str> = eligible
        .iter()
        .map(|&i| pool.backends[i].id.as_str())
        .collect();
    fallback_pick(key, &ids).map(|j| eligible[j])
}

/// `learn` mode: the session keys a backend response sets (the application's
/// cookie in `Set-Cookie`). Read before anything is awaited, so the pinning does not
/// borrow the response.
pub fn learned_sessions(pool: &PoolRuntime, headers: &impl HeaderLookup) -> Vec<String> {
    let Some(name) = pool.affinity_cookie.as_deref() else {
        return Vec::new();
    };
    headers
        .values("set-cookie")
        .filter_map(|v| std::str::from_utf8(v).ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .filter(|(k, v)| k.trim() == name && !v.trim().is_empty())
        .map(|(_, v)| v.trim().to_string())
        .collect()
}

/// `learn` mode: pins the sessions a backend just set to it (first writer wins).
/// Awaited before the response goes out so the client's next request, on any node,
/// already finds the pin.
pub async fn pin_learned(
    store: &AffinityStore,
    pool: &PoolRuntime,
    backend: usize,
    sessions: Vec<String>,
) {
    for key in sessions {
        let _ = store
            .pin(&pool.name, &key, &pool.backends[backend].id)
            .await;
    }
}
