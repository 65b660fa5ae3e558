//! Backend choice for one request, the same on both HTTP paths: a valid affinity cookie or a
//! Redis pin first (with the fallback cookie as a hint), then the pool's algorithm with the
//! consistent-hash key the pool asks for.

use crate::affinity::cookie::find_cookie;
use crate::affinity::shared;
use crate::balance::PickContext;
use crate::pool::PoolRuntime;
use crate::request::conn::ConnInfo;
use crate::request::lookup::HeaderLookup;
use fulcrum_config::HashKey;
use fulcrum_session::{AffinityStore, Lookup};
use std::sync::Arc;

/// The backend chosen for a request and whether to (re)issue the affinity cookie (or,
/// in the shared modes, the fallback cookie).
pub(crate) struct Choice {
    pub index: usize,
    pub set_cookie: bool,
    /// The shared-affinity key, when the pick came from a Redis pin.
    pub(crate) session: Option<String>,
}

/// What backend choice reads from a request, taken before anything is awaited (so
/// the choice itself does not borrow the request).
pub(crate) struct ChoiceKeys {
    /// The backend a valid affinity cookie names, if it may take the request.
    cookie_pin: Option<usize>,
    hash_key: Option<Vec<u8>>,
    /// The shared-affinity (Redis) store and this request's key in it, when a store
    /// is configured and the pool's mode finds a key.
    session: Option<(Arc<AffinityStore>, String)>,
    /// The backend a valid fallback cookie names (shared-affinity pools).
    fallback_pin: Option<String>,
}

impl ChoiceKeys {
    pub(crate) fn read(
        pool: &PoolRuntime,
        conn: &ConnInfo,
        headers: &impl HeaderLookup,
        path: &[u8],
    ) -> Self {
        let cookie_pin = pool.cookie.as_ref().and_then(|cookie| {
            find_cookie(headers, &cookie.name)
                .and_then(|v| cookie.signer.verify(v))
                .and_then(|id| pool.sticky_target(&id))
        });
        if cookie_pin.is_some() {
            return ChoiceKeys {
                cookie_pin,
                hash_key: None,
                session: None,
                fallback_pin: None,
            };
        }
        let session = pool.sessions.clone().and_then(|store| {
            shared::session_key(pool, headers, conn.client.ip()).map(|key| (store, key))
        });
        let fallback_pin = match (&session, &pool.fallback) {
            (Some(_), Some(fallback)) => {
                find_cookie(headers, &fallback.name).and_then(|v| fallback.verify(v))
            }
            _ => None,
        };
        ChoiceKeys {
            cookie_pin,
            hash_key: hash_key_bytes(pool.hash_key.as_ref(), conn, headers, path),
            session,
            fallback_pin,
        }
    }
}

impl ChoiceKeys {
    /// Whether the request's session is pinned in `pool` to a backend that may still take
    /// it: a valid affinity cookie (a drained backend keeps its sessions, as in `cookie`
    /// mode), a valid fallback cookie or a pin in the store (not to a drained backend, as
    /// `shared::choose` decides). Only the shared modes ask the store (its cache first).
    pub(crate) async fn pinned(&self, pool: &PoolRuntime) -> bool {
        if self.cookie_pin.is_some() {
            return true;
        }
        let stays = |id: &str| {
            pool.sticky_target(id)
                .is_some_and(|i| !pool.backends[i].state.drained())
        };
        if self.fallback_pin.as_deref().is_some_and(stays) {
            return true;
        }
        match &self.session {
            Some((store, key)) => {
                matches!(store.lookup(&pool.name, key).await, Lookup::Pinned(id) if stays(&id))
            }
            None => false,
        }
    }
}

/// Chooses the backend for a request: a valid affinity cookie or Redis pin first,
/// then the pool's algorithm.
pub(crate) async fn choose_backend(
    pool: &PoolRuntime,
    conn: &ConnInfo,
    keys: ChoiceKeys,
) -> Option<Choice> {
    if let Some(index) = keys.cookie_pin {
        return Some(Choice {
            index,
            set_cookie: false,
            session: None,
        });
    }
    let ctx = PickContext {
        hash_key: keys.hash_key.as_deref(),
        client_ip: Some(conn.client.ip()),
    };
    let pick = || pool.pick(&ctx, None);
    if let Some((store, session)) = keys.session {
        let hint = keys.fallback_pin.as_deref();
        let (index, issue) = shared::choose(&store, pool, &session, hint, pick).await?;
        return Some(Choice {
            index,
            set_cookie: issue && pool.fallback.is_some(),
            session: Some(session),
        });
    }
    let index = pick()?;
    Some(Choice {
        index,
        set_cookie: pool.cookie.is_some(),
        session: None,
    })
}

/// Extracts a request's key per a `HashKey` (a pool's `hash_key`, a route's rate-limit
/// key).
pub(crate) fn hash_key_bytes(
    key: Option<&HashKey>,
    conn: &ConnInfo,
    headers: &impl HeaderLookup,
    path: &[u8],
) -> Option<Vec<u8>> {
    match key? {
        HashKey::SourceIp => Some(conn.client.ip().to_canonical().to_string().into_bytes()),
        HashKey::Path => Some(path.to_vec()),
        // Lower-cased when the config was parsed.
        HashKey::Header(name) => headers.first(name).map(<[u8]>::to_vec),
        HashKey::Cookie(name) => find_cookie(headers, name).map(|v| v.as_bytes().to_vec()),
    }
}
