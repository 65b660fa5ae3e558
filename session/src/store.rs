//! [`AffinityStore`]: the facade the data plane calls on its hot path.
//!
//! Order of business for a lookup: local cache (no I/O), then a pin this node holds because
//! Redis could not take it (written now if Redis answers, else answered locally), then one
//! Redis read bounded by the call timeout and gated by the circuit breaker. Nothing here
//! returns an error: when Redis cannot answer, the caller gets `Unavailable` / `None` and
//! falls back (see [`fallback_pick`](crate::fallback_pick)), so a Redis outage never fails a
//! user request.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::breaker::Breaker;
use crate::cache::{Cache, Cached};
use crate::cluster_watch;
use crate::commands::{self, redis_key, KeyLayout};
use crate::error::SessionError;
use crate::flush;
use crate::inner::{Accounting, Breakers, Inner};
use crate::link::Link;
use crate::master::MasterInfo;
use crate::metrics::{Counters, StoreMetrics};
use crate::monitor;
use crate::options::{StoreOptions, Target};
use crate::owners::Owners;
use crate::pending::{HoldResult, PendingPins};
use crate::sentinel_watch;

/// Answer of [`AffinityStore::lookup`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The session is pinned to this backend id.
    Pinned(String),
    /// Redis answered: no pin (new session or expired).
    Absent,
    /// Redis could not answer in time (or is not configured): fall back.
    Unavailable,
}

/// Where a pin ended up ([`AffinityStore::pin`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// Redis holds the pin and it names this backend: ours, or an earlier writer's.
    Stored(String),
    /// Redis could not take it: this node holds it, answers from it, and writes it when Redis
    /// answers again.
    Held(String),
}

impl Pinned {
    /// The backend the session is pinned to.
    pub fn backend(&self) -> &str {
        match self {
            Pinned::Stored(b) | Pinned::Held(b) => b,
        }
    }
}

/// Health of the store, for status pages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState {
    /// The last Redis command succeeded.
    Connected,
    /// Redis is failing or not reached yet; lookups may return `Unavailable`.
    Degraded,
    /// No Redis configured: every lookup is `Unavailable`.
    Disabled,
}

/// Session-affinity store: local cache + held pins + Redis + circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct AffinityStore {
    inner: Arc<Inner>,
}

impl AffinityStore {
    /// Builds the store. Does no network I/O: the connection is made lazily and background
    /// tasks (spawned here, so a tokio runtime is needed when Redis is configured) warm it
    /// up, probe a tripped breaker, write held pins and follow Sentinel failovers.
    pub fn new(opts: StoreOptions) -> Result<Self, SessionError> {
        let target = opts.target()?;
        let link = match &target {
            None => None,
            Some(t) => {
                tokio::runtime::Handle::try_current().map_err(|_| SessionError::NoRuntime)?;
                Some(Link::new(t, opts.timeout)?)
            }
        };
        let (layout, breakers) = match target.as_ref().is_some_and(Target::is_cluster) {
            true => (
                KeyLayout::Tagged,
                Breakers::PerOwner(Owners::new(opts.timeout)),
            ),
            false => (
                KeyLayout::Plain,
                Breakers::One(Arc::new(Breaker::new(opts.timeout))),
            ),
        };
        let (closed_tx, closed_rx) = watch::channel(());
        let inner = Arc::new(Inner::new(
            link,
            breakers,
            Cache::new(opts.cache_capacity, opts.cache_ttl, opts.ttl),
            PendingPins::new(opts.held_capacity, opts.ttl),
            layout,
            opts.ttl.as_secs().max(1),
            closed_tx,
        ));
        if let Some(address) = inner.link.as_ref().and_then(Link::address) {
            inner.master.using(&address);
        }
        if inner.link.is_some() {
            tokio::spawn(monitor::run(Arc::downgrade(&inner), inner.wake.clone()));
        }
        match &target {
            Some(Target::Sentinel(s)) => {
                sentinel_watch::spawn(&inner, &s.sentinels, &s.master, &closed_rx);
            }
            Some(Target::Cluster(_)) => cluster_watch::spawn(&inner, &closed_rx),
            _ => {}
        }
        Ok(Self { inner })
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    fn key(&self, pool: &str, key: &str) -> String {
        redis_key(self.inner.layout, pool, key)
    }

    /// The backend currently pinned for (pool, key): local cache first, then a pin this node
    /// holds, then Redis (one GET/GETEX round trip with timeout). If Redis cannot answer but
    /// this node saw a pin within the pin TTL, that pin is returned (Redis being away, nobody
    /// can have re-pinned).
    pub async fn lookup(&self, pool: &str, key: &str) -> Lookup {
        let inner = &self.inner;
        if inner.link.is_none() {
            return Lookup::Unavailable;
        }
        let rkey = self.key(pool, key);
        let now = Instant::now();
        let cached = inner.cache.get(&rkey, now);
        let refresh_on_read = match &cached {
            Cached::Fresh {
                backend,
                refresh_due,
            } => {
                Counters::bump(&inner.counters.cache_hits);
                if *refresh_due {
                    self.spawn_refresh(rkey);
                }
                return Lookup::Pinned(backend.clone());
            }
            Cached::Stale { refresh_due, .. } => *refresh_due,
            Cached::Missing => true,
        };
        Counters::bump(&inner.counters.cache_misses);
        if let Some(held) = inner.pending.get(&rkey, now) {
            return self.write_held(&rkey, held).await;
        }
        let ttl = refresh_on_read.then_some(inner.ttl_secs);
        let k = rkey.as_str();
        let answer = inner
            .call(Accounting::Read, Some(k), |c| commands::read(c, k, ttl))
            .await;
        match (answer, cached) {
            (Some(Some(backend)), _) => {
                inner.cache.put(&rkey, &backend, now, refresh_on_read);
                Lookup::Pinned(backend)
            }
            (Some(None), _) => {
                inner.cache.remove(&rkey);
                Lookup::Absent
            }
            (None, Cached::Stale { backend, .. }) => {
                Counters::bump(&inner.counters.stale_hits);
                Lookup::Pinned(backend)
            }
            (None, _) => Lookup::Unavailable,
        }
    }

    /// A lookup found a pin this node holds: one round trip both writes it (first writer
    /// wins) and says what Redis holds. Redis still away: the held pin answers.
    async fn write_held(&self, rkey: &str, held: String) -> Lookup {
        let inner = &self.inner;
        let ttl = inner.ttl_secs;
        let h = held.as_str();
        match inner
            .call(Accounting::Write, Some(rkey), |c| {
                commands::pin(c, rkey, h, ttl)
            })
            .await
        {
            Some(winner) => {
                flush::settled(inner, rkey, &held, &winner);
                Lookup::Pinned(winner)
            }
            None => {
                Counters::bump(&inner.counters.held_hits);
                Lookup::Pinned(held)
            }
        }
    }

    /// First writer wins (SET NX EX ttl, as a script). Returns where the pin ended up: in
    /// Redis (ours or the earlier writer's backend), or held by this node when Redis could not
    /// take it. `None` only when there is no Redis or the held-pin queue is full.
    pub async fn pin(&self, pool: &str, key: &str, backend: &str) -> Option<Pinned> {
        let inner = &self.inner;
        inner.link.as_ref()?;
        let rkey = self.key(pool, key);
        let (k, ttl) = (rkey.as_str(), inner.ttl_secs);
        let now = Instant::now();
        match inner
            .call(Accounting::Write, Some(k), |c| {
                commands::pin(c, k, backend, ttl)
            })
            .await
        {
            Some(winner) => {
                inner.pending.settle(&rkey, backend);
                inner.cache.put(&rkey, &winner, now, winner == backend);
                Some(Pinned::Stored(winner))
            }
            None => self.hold_key(&rkey, backend, now),
        }
    }

    /// Holds a pin without trying Redis (the caller has just been told Redis is away): this
    /// node answers from it and writes it when Redis answers again. `None` when there is no
    /// Redis or the held-pin queue is full.
    pub fn hold(&self, pool: &str, key: &str, backend: &str) -> Option<Pinned> {
        self.inner.link.as_ref()?;
        self.hold_key(&self.key(pool, key), backend, Instant::now())
    }

    fn hold_key(&self, rkey: &str, backend: &str, now: Instant) -> Option<Pinned> {
        let inner = &self.inner;
        match inner.pending.hold(rkey, backend, now) {
            HoldResult::Held => {
                Counters::bump(&inner.counters.held_pins);
                Some(Pinned::Held(backend.to_string()))
            }
            HoldResult::Full => {
                Counters::bump(&inner.counters.held_dropped);
                None
            }
        }
    }

    /// Compare-and-set re-pin: replace only if the pin still names `dead` (or has expired);
    /// returns the winner afterwards (None when unavailable). Two nodes re-pinning the same
    /// session at once therefore agree on one new backend.
    pub async fn repin(&self, pool: &str, key: &str, dead: &str, new: &str) -> Option<String> {
        let inner = &self.inner;
        let rkey = self.key(pool, key);
        let (k, ttl) = (rkey.as_str(), inner.ttl_secs);
        let now = Instant::now();
        let winner = inner
            .call(Accounting::Write, Some(k), |c| {
                commands::repin(c, k, dead, new, ttl)
            })
            .await?;
        inner.pending.settle(&rkey, dead);
        inner.cache.put(&rkey, &winner, now, winner == new);
        Some(winner)
    }

    pub fn state(&self) -> StoreState {
        let inner = &self.inner;
        if inner.link.is_none() {
            StoreState::Disabled
        } else if inner.last_ok.load(std::sync::atomic::Ordering::Relaxed)
            && inner.breakers.all_closed()
        {
            StoreState::Connected
        } else {
            StoreState::Degraded
        }
    }

    pub fn metrics(&self) -> StoreMetrics {
        self.inner.counters.snapshot(self.inner.pending.len())
    }

    /// The server pins are written to, since when, and when the first write to it landed.
    pub fn master(&self) -> Option<MasterInfo> {
        self.inner.master.info()
    }

    /// Counts one use of the fallback choice (the caller decides when it falls back).
    pub fn note_fallback(&self) {
        Counters::bump(&self.inner.counters.fallbacks);
    }

    /// Pushes the pin's TTL forward off the request's path.
    fn spawn_refresh(&self, rkey: String) {
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let (k, ttl) = (rkey.as_str(), inner.ttl_secs);
            let exists = inner
                .call(Accounting::Read, Some(k), |c| commands::expire(c, k, ttl))
                .await;
            if exists == Some(false) {
                // The pin expired or was deleted in Redis: stop serving it from the cache.
                inner.cache.remove(&rkey);
            }
        });
    }
}

impl std::fmt::Debug for AffinityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AffinityStore")
            .field("state", &self.state())
            .field("metrics", &self.metrics())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>(_: &T) {}

    /// The data plane runs lookups inside spawned (multi-threaded) tasks.
    #[tokio::test]
    async fn futures_are_send_and_store_is_shareable() {
        let store = AffinityStore::new(StoreOptions::default()).unwrap();
        let s = store.clone();
        let handle = tokio::spawn(async move {
            let _ = s.lookup("p", "k").await;
            let _ = s.pin("p", "k", "b").await;
            s.repin("p", "k", "a", "b").await
        });
        assert_send(&handle);
        assert_eq!(handle.await.unwrap(), None);
        assert_eq!(store.hold("p", "k", "b"), None);
        assert!(format!("{store:?}").contains("Disabled"));
    }
}
