//! Local cache of pins, in front of Redis.
//!
//! Sharded `HashMap`s behind std `Mutex`es: a lookup hashes its key to one shard and holds that
//! shard's lock only for a map operation (never across an await), so concurrent requests rarely
//! contend. Each entry remembers
//! * `fetched`: when its value was last confirmed by Redis (or written by us). Within
//!   `fresh_for` (the store's `cache_ttl`) it is trusted; after that the store asks Redis again,
//!   so a re-pin made by another node is seen within `cache_ttl`.
//! * `refreshed`: when this node last pushed the Redis TTL forward, so it does so at most once
//!   per `refresh_every` (ttl/4) per key. This is why a stale entry is kept rather than
//!   dropped: it carries the refresh bookkeeping over to the next fetch.
//!
//! Stale entries older than `max_stale` (the pin TTL: Redis has forgotten the pin by then) are
//! treated as missing. When a shard is full, the oldest-fetched entry of a small sample is
//! evicted (approximate LRU, like Redis's own eviction), which keeps inserts O(1).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

const SHARDS: usize = 16;
/// Entries inspected to choose a victim when a shard is full.
const EVICTION_SAMPLE: usize = 8;

#[derive(Debug, Clone)]
struct Entry {
    backend: String,
    fetched: Instant,
    refreshed: Instant,
}

/// What the cache knows about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cached {
    /// Trusted value. `refresh_due`: the caller should push the Redis TTL forward (the cache
    /// has already recorded the refresh, so only one caller is told).
    Fresh {
        backend: String,
        refresh_due: bool,
    },
    /// Value older than `cache_ttl`: ask Redis; serve it only if Redis is away.
    /// `refresh_due`: the Redis read should also refresh the TTL (GETEX).
    Stale {
        backend: String,
        refresh_due: bool,
    },
    Missing,
}

#[derive(Debug)]
pub struct Cache {
    shards: Box<[Mutex<HashMap<String, Entry>>]>,
    per_shard: usize,
    fresh_for: Duration,
    refresh_every: Duration,
    max_stale: Duration,
}

impl Cache {
    /// `capacity` 0 disables caching.
    pub fn new(capacity: usize, fresh_for: Duration, pin_ttl: Duration) -> Self {
        let shard_count = if capacity == 0 { 0 } else { SHARDS };
        Self {
            shards: (0..shard_count)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            fresh_for,
            refresh_every: pin_ttl / 4,
            max_stale: pin_ttl,
        }
    }

    fn shard(&self, key: &str) -> Option<MutexGuard<'_, HashMap<String, Entry>>> {
        if self.shards.is_empty() {
            return None;
        }
        let idx = (xxh3_64(key.as_bytes()) % self.shards.len() as u64) as usize;
        // Map operations cannot panic half-way in a way that breaks the map's invariants, so a
        // poisoned shard is still usable.
        Some(self.shards[idx].lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn get(&self, key: &str, now: Instant) -> Cached {
        let Some(mut shard) = self.shard(key) else {
            return Cached::Missing;
        };
        let Some(entry) = shard.get_mut(key) else {
            return Cached::Missing;
        };
        let age = now.saturating_duration_since(entry.fetched);
        if age >= self.max_stale {
            shard.remove(key);
            return Cached::Missing;
        }
        let refresh_due = now.saturating_duration_since(entry.refreshed) >= self.refresh_every;
        if age < self.fresh_for {
            if refresh_due {
                entry.refreshed = now;
            }
            Cached::Fresh {
                backend: entry.backend.clone(),
                refresh_due,
            }
        } else {
            Cached::Stale {
                backend: entry.backend.clone(),
                refresh_due,
            }
        }
    }

    /// Records `backend` as confirmed at `now`. `ttl_refreshed`: the Redis TTL was just set or
    /// pushed forward by the same command.
    pub fn put(&self, key: &str, backend: &str, now: Instant, ttl_refreshed: bool) {
        let Some(mut shard) = self.shard(key) else {
            return;
        };
        if let Some(entry) = shard.get_mut(key) {
            if entry.backend != backend {
                entry.backend = backend.to_string();
            }
            entry.fetched = now;
            if ttl_refreshed {
                entry.refreshed = now;
            }
            return;
        }
        if shard.len() >= self.per_shard {
            evict_one(&mut shard);
        }
        let entry = Entry {
            backend: backend.to_string(),
            fetched: now,
            refreshed: now,
        };
        shard.insert(key.to_string(), entry);
    }

    pub fn remove(&self, key: &str) {
        if let Some(mut shard) = self.shard(key) {
            shard.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }
}

fn evict_one(shard: &mut HashMap<String, Entry>) {
    let victim = shard
        .iter()
        .take(EVICTION_SAMPLE)
        .min_by_key(|(_, e)| e.fetched)
        .map(|(k, _)| k.clone());
    if let Some(k) = victim {
        shard.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn fresh_then_stale_then_gone() {
        let c = Cache::new(100, S, 40 * S);
        let t0 = Instant::now();
        c.put("k", "b1", t0, true);
        assert_eq!(
            c.get("k", t0),
            Cached::Fresh {
                backend: "b1".into(),
                refresh_due: false
            }
        );
        assert_eq!(
            c.get("k", t0 + 2 * S),
            Cached::Stale {
                backend: "b1".into(),
                refresh_due: false
            }
        );
        assert_eq!(c.get("k", t0 + 41 * S), Cached::Missing);
        assert_eq!(
            c.get("k", t0),
            Cached::Missing,
            "expired entry must be dropped"
        );
    }

    #[test]
    fn refresh_is_due_once_per_quarter_ttl() {
        let c = Cache::new(100, 20 * S, 40 * S);
        let t0 = Instant::now();
        c.put("k", "b", t0, true);
        assert!(matches!(
            c.get("k", t0 + 9 * S),
            Cached::Fresh {
                refresh_due: false,
                ..
            }
        ));
        assert!(matches!(
            c.get("k", t0 + 10 * S),
            Cached::Fresh {
                refresh_due: true,
                ..
            }
        ));
        // The first caller claimed it; the next ones are not asked again.
        assert!(matches!(
            c.get("k", t0 + 11 * S),
            Cached::Fresh {
                refresh_due: false,
                ..
            }
        ));
        assert!(matches!(
            c.get("k", t0 + 19 * S),
            Cached::Fresh {
                refresh_due: false,
                ..
            }
        ));
        // A stale entry carries the bookkeeping: refresh due again 10 s after the last one.
        assert!(matches!(
            c.get("k", t0 + 21 * S),
            Cached::Stale {
                refresh_due: true,
                ..
            }
        ));
        c.put("k", "b", t0 + 21 * S, true);
        assert!(matches!(
            c.get("k", t0 + 22 * S),
            Cached::Fresh {
                refresh_due: false,
                ..
            }
        ));
    }

    #[test]
    fn put_overwrites_value() {
        let c = Cache::new(100, S, 40 * S);
        let t0 = Instant::now();
        c.put("k", "a", t0, true);
        c.put("k", "b", t0, false);
        assert_eq!(
            c.get("k", t0),
            Cached::Fresh {
                backend: "b".into(),
                refresh_due: false
            }
        );
        c.remove("k");
        assert_eq!(c.get("k", t0), Cached::Missing);
    }

    #[test]
    fn stays_bounded() {
        let c = Cache::new(160, S, 40 * S);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            c.put(
                &format!("key{i}"),
                "b",
                t0 + Duration::from_micros(u64::from(i)),
                true,
            );
        }
        assert!(c.len() <= 160, "len {}", c.len());
        // The newest key survives eviction.
        assert!(matches!(c.get("key9999", t0), Cached::Fresh { .. }));
    }

    #[test]
    fn zero_capacity_disables() {
        let c = Cache::new(0, S, 40 * S);
        c.put("k", "b", Instant::now(), true);
        assert_eq!(c.get("k", Instant::now()), Cached::Missing);
    }
}
