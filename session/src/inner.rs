//! The shared state behind every [`AffinityStore`](crate::AffinityStore) clone, and
//! [`Inner::call`]: one Redis command through the circuit breaker that guards its key (one
//! for a single server, one per master of a cluster: [`Breakers`]), with the metrics, the
//! "last command succeeded" state and the first-write-to-a-new-master bookkeeping.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::RedisError;
use tokio::sync::{watch, Notify};
use tracing::debug;

use crate::breaker::{Admit, Breaker};
use crate::cache::Cache;
use crate::commands::KeyLayout;
use crate::conn::Conn;
use crate::link::Link;
use crate::master::MasterRecord;
use crate::metrics::Counters;
use crate::owners::Owners;
use crate::pending::PendingPins;

/// The circuit breakers in front of Redis.
pub(crate) enum Breakers {
    /// A single server (direct or Sentinel): one breaker.
    One(Arc<Breaker>),
    /// A cluster: one breaker per master, found by the key's slot.
    PerOwner(Owners),
}

impl Breakers {
    /// The breaker guarding a command on `key` (`None`: a key-less command).
    pub(crate) fn for_key(&self, key: Option<&str>) -> Arc<Breaker> {
        match self {
            Self::One(b) => Arc::clone(b),
            Self::PerOwner(o) => o.breaker(key),
        }
    }

    pub(crate) fn all_closed(&self) -> bool {
        match self {
            Self::One(b) => b.is_closed(),
            Self::PerOwner(o) => o.all().iter().all(|b| b.is_closed()),
        }
    }

    /// Closes every breaker (a new master was named: the failures were the old one's).
    pub(crate) fn reset(&self) {
        match self {
            Self::One(b) => b.reset(),
            Self::PerOwner(o) => o.all().iter().for_each(|b| b.reset()),
        }
    }

    pub(crate) fn owners(&self) -> Option<&Owners> {
        match self {
            Self::One(_) => None,
            Self::PerOwner(o) => Some(o),
        }
    }
}

/// What kind of command a call is, for the metrics and the master record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accounting {
    /// A read on behalf of a request (or a TTL refresh).
    Read,
    /// A pin, re-pin or held pin written.
    Write,
    /// The monitor's PING: not counted in the user-facing metrics.
    Health,
}

pub(crate) struct Inner {
    pub(crate) link: Option<Link>,
    pub(crate) breakers: Breakers,
    pub(crate) cache: Cache,
    pub(crate) pending: PendingPins,
    pub(crate) counters: Counters,
    pub(crate) master: MasterRecord,
    pub(crate) layout: KeyLayout,
    pub(crate) ttl_secs: u64,
    pub(crate) last_ok: AtomicBool,
    /// Milliseconds since `epoch` when the last Redis command finished; lets the monitor
    /// ping only when the store has been idle.
    last_activity_ms: AtomicU64,
    epoch: Instant,
    /// Wakes the monitor at once (a sentinel announced a new master). In an `Arc` of its own
    /// so the sleeping monitor does not keep the store alive.
    pub(crate) wake: Arc<Notify>,
    /// Dropped with the store: background tasks watching it end.
    pub(crate) _closed: watch::Sender<()>,
}

impl Inner {
    pub(crate) fn new(
        link: Option<Link>,
        breakers: Breakers,
        cache: Cache,
        pending: PendingPins,
        layout: KeyLayout,
        ttl_secs: u64,
        closed: watch::Sender<()>,
    ) -> Self {
        Self {
            link,
            breakers,
            cache,
            pending,
            counters: Counters::default(),
            master: MasterRecord::default(),
            layout,
            ttl_secs,
            last_ok: AtomicBool::new(false),
            last_activity_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            wake: Arc::new(Notify::new()),
            _closed: closed,
        }
    }

    /// One Redis command on `key` (`None`: key-less) through the breaker that guards it, with
    /// metrics and state bookkeeping. `None` means "no answer" for whatever reason; details go
    /// to the debug log.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        acct: Accounting,
        key: Option<&str>,
        op: F,
    ) -> Option<T>
    where
        F: Fn(Conn) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let link = self.link.as_ref()?;
        let user = acct != Accounting::Health;
        let start = Instant::now();
        let breaker = self.breakers.for_key(key);
        if breaker.admit(start) == Admit::Refuse {
            if user {
                Counters::bump(&self.counters.redis_errors);
            }
            return None;
        }
        let address = (acct == Accounting::Write)
            .then(|| link.address())
            .flatten();
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
                breaker.on_success();
                if let Some(address) = address {
                    self.master.wrote(&address);
                }
                Some(v)
            }
            Err(e) => {
                debug!(error = %e, key, "redis command failed");
                self.last_ok.store(false, Relaxed);
                if user {
                    Counters::bump(&self.counters.redis_errors);
                }
                if breaker.on_failure(end) {
                    Counters::bump(&self.counters.breaker_opens);
                }
                None
            }
        }
    }

    /// True when the breaker guarding `key` would turn a call away now: a caller with work
    /// that can wait (held pins) skips it instead of counting a refused call.
    pub(crate) fn refusing(&self, key: &str, now: Instant) -> bool {
        self.breakers.for_key(Some(key)).refusing(now)
    }

    /// A sentinel announced a switch (or its announcements may have been missed): ask the
    /// sentinels again at once.
    pub(crate) fn master_may_have_moved(&self) {
        if let Some(link) = &self.link {
            link.request_resolve();
        }
        self.wake.notify_one();
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
