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
//!   `learn` waits for the backend's `Set-Cookie` (see `learned_sessions`); a valid
//!   fallback cookie (`fallback.rs`) names the backend the session began on, and wins;
//! - Redis away: the fallback cookie's backend, else a consistent hash of the key over
//!   the eligible backends (the same on every node), counted as a fallback; this node
//!   holds the pin and writes it when Redis is back. Redis trouble never fails a request.
//!
//! A pin Redis holds always wins over the cookie; the response re-issues the cookie
//! whenever it names another backend than the one chosen.

use crate::affinity::cookie::find_cookie;
use crate::pool::PoolRuntime;
use crate::request::lookup::HeaderLookup;
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

/// Chooses the backend for a request carrying session `key`. `hint` is the backend a
/// valid fallback cookie names; `pick` is the pool's algorithm (excluding nothing).
/// Returns the backend and whether the response should (re)issue the fallback cookie
/// (it names another backend than the one chosen, or there is none yet); `None` only
/// when no backend may take the request.
pub async fn choose(
    store: &AffinityStore,
    pool: &PoolRuntime,
    key: &str,
    hint: Option<&str>,
    pick: impl Fn() -> Option<usize>,
) -> Option<(usize, bool)> {
    let hint = hint
        .and_then(|id| pool.sticky_target(id))
        .filter(|&i| !pool.backends[i].state.drained());
    let index = match store.lookup(&pool.name, key).await {
        // Redis (or this node's cache or held pin) knows the session: that pin wins.
        Lookup::Pinned(id) => match pool
            .sticky_target(&id)
            .filter(|&i| !pool.backends[i].state.drained())
        {
            Some(i) => i,
            None => repin(store, pool, key, &id, pick).await?,
        },
        // No pin in Redis yet, but the client says where its session began (a node that
        // pinned it while Redis could not take the pin): keep it there, and pin it there.
        Lookup::Absent if hint.is_some() => {
            let wanted = hint?;
            match store.pin(&pool.name, key, &pool.backends[wanted].id).await {
                Some(winner) => pool.sticky_target(winner.backend()).unwrap_or(wanted),
                None => wanted,
            }
        }
        // `learn` pins when the backend sets its cookie (and issues the fallback cookie then).
        Lookup::Absent if pool.affinity_mode == AffinityMode::Learn => {
            return Some((pick()?, false))
        }
        Lookup::Absent => {
            let chosen = pick()?;
            match store.pin(&pool.name, key, &pool.backends[chosen].id).await {
                Some(winner) => pool.sticky_target(winner.backend()).unwrap_or(chosen),
                None => fallback(store, pool, key)?,
            }
        }
        // Redis away: the cookie's backend, else the same hash on every node. Held, so
        // this node answers from it and writes it when Redis is back (an earlier pin wins).
        Lookup::Unavailable => {
            let chosen = match hint {
                Some(i) => i,
                None => fallback(store, pool, key)?,
            };
            let _ = store.hold(&pool.name, key, &pool.backends[chosen].id);
            chosen
        }
    };
    Some((index, hint != Some(index)))
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
        None => {
            // Redis away: this node moves the session and holds the new pin.
            let chosen = fallback(store, pool, key)?;
            let _ = store.hold(&pool.name, key, &pool.backends[chosen].id);
            Some(chosen)
        }
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

/// `learn` mode: pins the sessions a backend just set to it (first writer wins; held by
/// this node if Redis cannot take the pin). Awaited before the response goes out so the
/// client's next request, on any node, already finds the pin. True when a session was
/// learned: the response then carries the fallback cookie too.
pub async fn pin_learned(
    store: &AffinityStore,
    pool: &PoolRuntime,
    backend: usize,
    sessions: Vec<String>,
) -> bool {
    let learned = !sessions.is_empty();
    for key in sessions {
        let _ = store
            .pin(&pool.name, &key, &pool.backends[backend].id)
            .await;
    }
    learned
}
