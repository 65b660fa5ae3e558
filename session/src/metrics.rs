//! Counters of the store, kept as relaxed atomics so the hot path never locks for them,
//! and the plain snapshot ([`StoreMetrics`]) handed to the node's metrics endpoint.
//! Round trips per request come from these: `redis_calls` against the lookups
//! (`cache_hits + cache_misses`).

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
    /// Pins Redis could not take, held by this node to be written later.
    pub held_pins: u64,
    /// Pins that could not even be held (the queue was full).
    pub held_dropped: u64,
    /// Held pins written to Redis as they were.
    pub held_written: u64,
    /// Held pins that found another node's pin in Redis (that pin won).
    pub held_superseded: u64,
    /// Lookups answered from a held pin because Redis was still away.
    pub held_hits: u64,
    /// Redis Cluster connections replaced because the old one stopped answering.
    pub connection_rebuilds: u64,
    /// Pins held right now (a gauge, unlike the counters above).
    pub held_now: u64,
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
    pub held_pins: AtomicU64,
    pub held_dropped: AtomicU64,
    pub held_written: AtomicU64,
    pub held_superseded: AtomicU64,
    pub held_hits: AtomicU64,
    pub connection_rebuilds: AtomicU64,
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

    /// The counters, with `held_now` (not a counter) filled in by the caller.
    pub fn snapshot(&self, held_now: usize) -> StoreMetrics {
        StoreMetrics {
            cache_hits: self.cache_hits.load(Relaxed),
            cache_misses: self.cache_misses.load(Relaxed),
            redis_errors: self.redis_errors.load(Relaxed),
            fallbacks: self.fallbacks.load(Relaxed),
            redis_latency_sum_micros: self.redis_latency_sum_micros.load(Relaxed),
            redis_calls: self.redis_calls.load(Relaxed),
            breaker_opens: self.breaker_opens.load(Relaxed),
            stale_hits: self.stale_hits.load(Relaxed),
            held_pins: self.held_pins.load(Relaxed),
            held_dropped: self.held_dropped.load(Relaxed),
            held_written: self.held_written.load(Relaxed),
            held_superseded: self.held_superseded.load(Relaxed),
            held_hits: self.held_hits.load(Relaxed),
            connection_rebuilds: self.connection_rebuilds.load(Relaxed),
            held_now: held_now as u64,
        }
    }
}
