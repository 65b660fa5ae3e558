//! [`AffinityStore`]: the facade the data plane calls on its hot path.
//!
//! Order of business for a lookup: local cache (no I/O), then one Redis read bounded by the
//! call timeout and gated by the circuit breaker. Nothing here returns an error: when Redis
//! cannot answer, the caller gets `Unavailable` / `None` and falls back (see
//! [`fallback_pick`](crate::fallback_pick)), so a Redis outage never fails a user request.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::RedisError;
use tracing::debug;

use crate::breaker::{Admit, Breaker};
use crate::cache::{Cache, Cached};
use crate::commands::{self, redis_key};
use crate::error::SessionError;
use crate::link::Link;
use crate::metrics::{Counters, StoreMetrics};
use crate::monitor;
use crate::options::StoreOptions;

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

/// Session-affinity store: local cache + Redis + circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct AffinityStore {
    inner: Arc<Inner>,
}

/// Whether a command is counted in the user-facing metrics (health pings are not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accounting {
    User,
    Health,
}

pub(crate) struct Inner {
    pub(crate) link: Option<Link>,
    pub(crate) breaker: Breaker,
    cache: Cache,
    counters: Counters,
    ttl_secs: u64,
    last_ok: AtomicBool,
    /// Milliseconds since `epoch` when the last Redis command finished; lets the monitor
    /// ping only when the store has been idle.
    last_activity_ms: AtomicU64,
    epoch: Instant,
}

impl AffinityStore {
    /// Builds the store. Does no network I/O: the connection is made lazily and a background
    /// monitor (spawned here, so a tokio runtime is needed when Redis is configured) warms it
    /// up, probes a tripped breaker and follows Sentinel failovers.
    pub fn new(opts: StoreOptions) -> Result<Self, SessionError> {
        let target = opts.target()?;
        let link = match &target {
            None => None,
            Some(t) => {
                tokio::runtime::Handle::try_current().map_err(|_| SessionError::NoRuntime)?;
                Some(Link::new(t, opts.timeout)?)
            }
        };
        let inner = Arc::new(Inner {
            link,
            breaker: Breaker::new(opts.timeout),
            cache: Cache::new(opts.cache_capacity, opts.cache_ttl, opts.ttl),
            counters: Counters::default(),
            ttl_secs: opts.ttl.as_secs().max(1),
            last_ok: AtomicBool::new(false),
            last_activity_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        if inner.link.is_some() {
            tokio::spawn(monitor::run(Arc::downgrade(&inner)));
        }
        Ok(Self { inner })
    }

    /// The backend currently pinned for (pool, key): local cache first, then Redis (one
    /// GET/GETEX round trip with timeout). If Redis cannot answer but this node saw a pin
    /// within the pin TTL, that pin is returned (Redis being away, nobody can have re-pinned).
    pub async fn lookup(&self, pool: &str, key: &str) -> Lookup {
        let inner = &self.inner;
        if inner.link.is_none() {
            return Lookup::Unavailable;
        }
        let rkey = redis_key(pool, key);
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
        let ttl = refresh_on_read.then_some(inner.ttl_secs);
        let k = rkey.as_str();
        let answer = inner
            .call(Accounting::User, |cm| commands::read(cm, k, ttl))
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

    /// First writer wins (SET NX EX ttl, as a script). Returns the backend that is pinned
    /// afterwards (ours or the earlier writer's), or None when Redis is unavailable.
    pub async fn pin(&self, pool: &str, key: &str, backend: &str) -> Option<String> {
        let inner = &self.inner;
        let rkey = redis_key(pool, key);
        let (k, ttl) = (rkey.as_str(), inner.ttl_secs);
        let now = Instant::now();
        let winner = inner
            .call(Accounting::User, |cm| commands::pin(cm, k, backend, ttl))
            .await?;
        inner.cache.put(&rkey, &winner, now, winner == backend);
        Some(winner)
    }

    /// Compare-and-set re-pin: replace only if the pin still names `dead` (or has expired);
    /// returns the winner afterwards (None when unavailable). Two nodes re-pinning the same
    /// session at once therefore agree on one new backend.
    pub async fn repin(&self, pool: &str, key: &str, dead: &str, new: &str) -> Option<String> {
        let inner = &self.inner;
        let rkey = redis_key(pool, key);
        let (k, ttl) = (rkey.as_str(), inner.ttl_secs);
        let now = Instant::now();
        let winner = inner
            .call(Accounting::User, |cm| {
                commands::repin(cm, k, dead, new, ttl)
            })
            .await?;
        inner.cache.put(&rkey, &winner, now, winner == new);
        Some(winner)
    }

    pub fn state(&self) -> StoreState {
        let inner = &self.inner;
        if inner.link.is_none() {
            StoreState::Disabled
        } else if inner.last_ok.load(Relaxed) && inner.breaker.is_closed() {
            StoreState::Connected
        } else {
            StoreState::Degraded
        }
    }

    pub fn metrics(&self) -> StoreMetrics {
        self.inner.counters.snapshot()
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
                .call(Accounting::User, |cm| commands::expire(cm, k, ttl))
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

impl Inner {
    /// One Redis command through the breaker, with metrics and state bookkeeping.
    /// `None` means "no answer" for whatever reason; details go to the debug log.
    pub(crate) async fn call<T, F, Fut>(&self, acct: Accounting, op: F) -> Option<T>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let link = self.link.as_ref()?;
        let user = acct == Accounting::User;
        let start = Instant::now();
        if self.breaker.admit(start) == Admit::Refuse {
            if user {
                Counters::bump(&self.counters.redis_errors);
            }
            return None;
        }
        let result = link.exec(op).await;
        let end = Instant::now();
        if user {
            self.counters.record_call(end - start);
        }
        // +1 so that a call finishing within the first millisecond still reads as "used".
        self.last_activity_ms
            .store(self.millis_at(end) + 1, Relaxed);
        match result {
            Ok(v) => {
                self.last_ok.store(true, Relaxed);
                self.breaker.on_success();
                Some(v)
            }
            Err(e) => {
                debug!(error = %e, "redis command failed");
                self.last_ok.store(false, Relaxed);
                if user {
                    Counters::bump(&self.counters.redis_errors);
                }
                if self.breaker.on_failure(end) {
                    Counters::bump(&self.counters.breaker_opens);
                }
                None
            }
        }
    }

    fn millis_at(&self, t: Instant) -> u64 {
        u64::try_from(t.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Time since the last Redis command finished (since creation if none).
    pub(crate) fn idle_for(&self, now: Instant) -> Duration {
        let last = self.last_activity_ms.load(Relaxed).saturating_sub(1);
        Duration::from_millis(self.millis_at(now).saturating_sub(last))
    }

    pub(crate) fn never_used(&self) -> bool {
        self.last_activity_ms.load(Relaxed) == 0
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
        assert!(format!("{store:?}").contains("Disabled"));
    }
}
