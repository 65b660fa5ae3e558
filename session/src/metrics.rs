//! Counters of the store, kept as relaxed atomics so the hot path never locks for them,
//! and the plain snapshot ([`StoreMetrics`]) handed to the node's metrics endpoint.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// A point-in-time copy of the store's counters (all monotonic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreMetrics {
    /// Lookups answered from the local cache without Redis.
    pub cache_hits: u64,
    /// Lookups that had to ask Redis (or would have, had it been available).
    pub cache_misses: u64,
    /// Redis commands that failed, timed out, or were skipped by the open breaker.
    pub redis_errors: u64,
    /// Times the caller fell back to `fallback_pick` (counted by `note_fallback`).
    pub fallbacks: u64,
    /// Sum of the wall time of Redis commands, in microseconds.
    pub redis_latency_sum_micros: u64,
    /// Redis commands sent on behalf of lookups, pins, re-pins and TTL refreshes
    /// (the background health PING is not counted).
    pub redis_calls: u64,
    /// Times the circuit breaker opened.
    pub breaker_opens: u64,
    /// Lookups answered with a cached pin older than `cache_ttl` because Redis was away.
    pub stale_hits: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub redis_errors: AtomicU64,
    pub fallbacks: AtomicU64,
    pub redis_latency_sum_micros: AtomicU64,
    pub redis_calls: AtomicU64,
    pub breaker_opens: AtomicU64,
    pub stale_hits: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn record_call(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.redis_latency_sum_micros.fetch_add(micros, Relaxed);
        self.redis_calls.fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self) -> StoreMetrics {
        StoreMetrics {
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            redis_errors: self.redis_errors.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            redis_latency_sum_micros: self.redis_latency_sum_micros.load(Relaxed),
            redis_calls: self.redis_calls.load(Relaxed),
            breaker_opens: self.breaker_opens.load(Relaxed),
            stale_hits: self.stale_hits.load(Relaxed),
        }
    }
}
