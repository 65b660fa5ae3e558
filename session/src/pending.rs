//! Pins this node made while Redis could not take them (the pending-pin queue).
//!
//! A session that begins during an outage or a failover is held here: lookups on this node
//! answer from it (so the session keeps its backend here at once), and the monitor writes
//! the held pins to Redis as soon as Redis answers again, with the same first-writer-wins
//! script as any pin. If another node's pin got there first, Redis's pin is the one every
//! node follows: the held pin is dropped and counted as superseded.
//!
//! Bounded: when `capacity` pins are held, new ones are refused (and counted); a held pin is
//! forgotten after the pin TTL, when Redis would have forgotten it too. Sharded like the
//! cache; a lock is held only for one map operation, never across an await, and an atomic
//! count lets the hot path skip the lock entirely while nothing is held (the usual case).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use xxhash_rust::xxh3::xxh3_64;

const SHARDS: usize = 8;

#[derive(Debug, Clone)]
struct Held {
    backend: String,
    since: Instant,
}

#[derive(Debug)]
pub struct PendingPins {
    shards: Box<[Mutex<HashMap<String, Held>>]>,
    len: AtomicUsize,
    per_shard: usize,
    max_age: Duration,
}

/// What `hold` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldResult {
    /// The pin is held (newly, or it replaced an older held pin for the key).
    Held,
    /// The queue is full: the pin is not remembered.
    Full,
}

impl PendingPins {
    pub fn new(capacity: usize, max_age: Duration) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            len: AtomicUsize::new(0),
            per_shard: capacity.div_ceil(SHARDS),
            max_age,
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Held>> {
        let idx = (xxh3_64(key.as_bytes()) % SHARDS as u64) as usize;
        // A map operation cannot leave the map broken, so a poisoned shard is still usable.
        self.shards[idx].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of held pins.
    pub fn len(&self) -> usize {
        self.len.load(Relaxed)
    }

    pub fn hold(&self, key: &str, backend: &str, now: Instant) -> HoldResult {
        let mut shard = self.shard(key);
        if let Some(held) = shard.get_mut(key) {
            held.backend.clear();
            held.backend.push_str(backend);
            held.since = now;
            return HoldResult::Held;
        }
        if shard.len() >= self.per_shard {
            self.expire(&mut shard, now);
            if shard.len() >= self.per_shard {
                return HoldResult::Full;
            }
        }
        shard.insert(
            key.to_string(),
            Held {
                backend: backend.to_string(),
                since: now,
            },
        );
        self.len.fetch_add(1, Relaxed);
        HoldResult::Held
    }

    /// The held pin of `key`, unless it is older than the pin TTL.
    pub fn get(&self, key: &str, now: Instant) -> Option<String> {
        if self.len() == 0 {
            return None;
        }
        let mut shard = self.shard(key);
        let held = shard.get(key)?;
        if now.saturating_duration_since(held.since) < self.max_age {
            return Some(held.backend.clone());
        }
        shard.remove(key);
        self.len.fetch_sub(1, Relaxed);
        None
    }

    /// Forgets the held pin of `key` if it still names `backend` (a newer hold for the same
    /// key, made while the old one was being written, stays).
    pub fn settle(&self, key: &str, backend: &str) {
        if self.len() == 0 {
            return;
        }
        let mut shard = self.shard(key);
        if shard.get(key).is_some_and(|h| h.backend == backend) {
            shard.remove(key);
            self.len.fetch_sub(1, Relaxed);
        }
    }

    /// Up to `max` held pins (key, backend), oldest shards first; expired ones are dropped.
    pub fn batch(&self, max: usize, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.len() == 0 {
            return out;
        }
        for idx in 0..SHARDS {
            let mut shard = self.shards[idx].lock().unwrap_or_else(|p| p.into_inner());
            self.expire(&mut shard, now);
            let room = max.saturating_sub(out.len());
            out.extend(
                shard
                    .iter()
                    .take(room)
                    .map(|(k, h)| (k.clone(), h.backend.clone())),
            );
            if out.len() >= max {
                break;
            }
        }
        out
    }

    fn expire(&self, shard: &mut HashMap<String, Held>, now: Instant) {
        let before = shard.len();
        shard.retain(|_, h| now.saturating_duration_since(h.since) < self.max_age);
        self.len.fetch_sub(before - shard.len(), Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn held_pins_are_answered_and_settled() {
        let p = PendingPins::new(100, 60 * S);
        let t0 = Instant::now();
        assert_eq!(p.get("k", t0), None);
        assert_eq!(p.hold("k", "b1", t0), HoldResult::Held);
        assert_eq!(p.get("k", t0).as_deref(), Some("b1"));
        assert_eq!(p.len(), 1);
        // A settle for a value that is no longer held leaves the newer hold alone.
        p.hold("k", "b2", t0);
        p.settle("k", "b1");
        assert_eq!(p.get("k", t0).as_deref(), Some("b2"));
        p.settle("k", "b2");
        assert_eq!(p.get("k", t0), None);
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn old_pins_are_forgotten() {
        let p = PendingPins::new(100, 10 * S);
        let t0 = Instant::now();
        p.hold("a", "b1", t0);
        p.hold("b", "b1", t0 + 5 * S);
        assert_eq!(p.get("a", t0 + 10 * S), None);
        assert_eq!(p.len(), 1);
        let batch = p.batch(10, t0 + 16 * S);
        assert!(batch.is_empty(), "{batch:?}");
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn stays_bounded_and_batches_are_capped() {
        let p = PendingPins::new(80, 60 * S);
        let t0 = Instant::now();
        let held = (0..1000)
            .filter(|i| p.hold(&format!("k{i}"), "b", t0) == HoldResult::Held)
            .count();
        assert_eq!(held, p.len());
        assert_eq!(held, 80, "every shard fills up to its share");
        assert_eq!(p.batch(25, t0).len(), 25);
        assert_eq!(p.batch(1000, t0).len(), held);
    }
}
