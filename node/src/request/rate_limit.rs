//! Per-route rate limits: one token bucket per client key (source IP, path, header or
//! cookie), local to this node, answered with 429 and `Retry-After` when empty.
//!
//! The bucket is kept as a single instant per key, the generic cell rate algorithm
//! (GCRA): `tat`, the "theoretical arrival time", is when the bucket would be full again.
//! A request at `now` fits when `tat - now` is at most `burst - 1` intervals; it then
//! moves `tat` one interval (`1 / requests_per_second`) later. A key that has been quiet
//! for a whole burst has `tat <= now` and needs no entry at all, which is how the table
//! is swept: memory stays bounded by the keys active in the last burst's worth of time.
//!
//! The state lives in the route table of one config snapshot: a config change starts
//! every bucket full again (as HAProxy's stick tables do on reload without peers).
//!
//! With `scope = "cluster"` the count is shared by all nodes through Redis
//! (`cluster_limit`); the bucket here is then only the fallback while Redis is away.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fulcrum_config::{HashKey, RateLimit};

use super::choice::hash_key_bytes;
use super::cluster_limit::{ClusterCount, ClusterLimits, Verdict};
use super::conn::ConnInfo;
use super::local::Local;
use super::lookup::HeaderLookup;

/// Independent locks, so that clients on different threads rarely wait for each other.
const SHARDS: usize = 16;
/// Keys per shard before a sweep of the full buckets; a shard that is still this big
/// after the sweep refuses to track more keys (their requests share one bucket).
const SHARD_KEYS: usize = 8_192;
/// A full shard is swept at most this often (a sweep walks every key).
const SWEEP_EVERY_NS: u64 = 100_000_000;

/// One lock's worth of buckets.
#[derive(Debug, Default)]
struct Shard {
    /// Key -> when its bucket is full again (ns since the limiter's epoch).
    tat: HashMap<Vec<u8>, u64>,
    last_sweep: u64,
}

/// One route's limiter.
#[derive(Debug)]
pub struct RateLimiter {
    pub key: HashKey,
    interval: Duration,
    /// How far `tat` may run ahead of now and still admit: `(burst - 1) * interval`.
    tolerance: Duration,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
    shards: Vec<Mutex<Shard>>,
    /// The cluster-wide count, for `scope = "cluster"`.
    cluster: Option<ClusterCount>,
}

/// A refused request: how long until the key may send again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// `Retry-After` in whole seconds, rounded up, at least 1.
    pub fn retry_after_secs(self) -> u32 {
        let ms = self.retry_after.as_millis().max(1);
        (ms.div_ceil(1000)).min(u32::MAX as u128) as u32
    }
}

impl RateLimiter {
    pub fn new(limit: &RateLimit) -> RateLimiter {
        let interval = Duration::from_secs_f64(1.0 / limit.requests_per_second.max(1e-6));
        RateLimiter {
            key: limit.key(),
            interval,
            tolerance: interval.saturating_mul(limit.burst().saturating_sub(1)),
            epoch: Instant::now(),
            hasher: Default::default(),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            cluster: None,
        }
    }

    /// The limit counted for all nodes together in `cluster`'s Redis; `scope` names the
    /// route there.
    pub fn counted_in_cluster(
        mut self,
        limit: &RateLimit,
        scope: String,
        cluster: ClusterLimits,
    ) -> Self {
        self.cluster = Some(ClusterCount::new(limit, scope, cluster));
        self
    }

    /// Counts one request of `key` (None: a request without the header or cookie) at
    /// `now`; `Err` when the key's bucket is empty.
    pub fn check(&self, key: Option<&[u8]>, now: Instant) -> Result<(), Limited> {
        let key = key.unwrap_or_default();
        let now_ns = nanos(now.saturating_duration_since(self.epoch));
        let interval = nanos(self.interval);
        let tolerance = nanos(self.tolerance);
        let mut guard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let Shard {
            tat: shard,
            last_sweep,
        } = &mut *guard;
        let due = now_ns.saturating_sub(*last_sweep) >= SWEEP_EVERY_NS;
        if shard.len() >= SHARD_KEYS && due && !shard.contains_key(key) {
            shard.retain(|_, tat| *tat > now_ns);
            *last_sweep = now_ns;
        }
        // Too many distinct keys at once (a spoofed-header flood): a new key shares the
        // keyless bucket rather than grow the table without bound.
        let bucket: &[u8] = if shard.len() < SHARD_KEYS || shard.contains_key(key) {
            key
        } else {
            &[]
        };
        let tat = shard.get(bucket).copied().unwrap_or(now_ns).max(now_ns);
        if tat - now_ns > tolerance {
            return Err(Limited {
                retry_after: Duration::from_nanos(tat - now_ns - tolerance),
            });
        }
        let next = tat.saturating_add(interval);
        match shard.get_mut(bucket) {
            Some(slot) => *slot = next,
            None => {
                shard.insert(bucket.to_vec(), next);
            }
        }
        Ok(())
    }

    fn shard(&self, key: &[u8]) -> &Mutex<Shard> {
        &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
    }
}

/// What a route's limit says before anything is awaited: admitted (or no limit), or
/// the cluster-wide count must be asked (`settle`).
#[must_use]
pub(crate) enum Admit {
    Yes,
    Ask(Arc<RateLimiter>, Vec<u8>),
}

impl Admit {
    /// The cluster's answer, for a route counted in the cluster: the 429 to answer when
    /// refused; the node's own bucket when Redis cannot answer.
    pub async fn settle(self) -> Result<(), Local> {
        let Admit::Ask(limiter, key) = self else {
            return Ok(());
        };
        let Some(cluster) = &limiter.cluster else {
            return Ok(());
        };
        match cluster.admit(&key).await {
            Verdict::Admit => Ok(()),
            Verdict::Refuse(wait) => Err(Local::RateLimited(
                Limited { retry_after: wait }.retry_after_secs(),
            )),
            Verdict::Unavailable => limiter
                .check(Some(key.as_slice()), Instant::now())
                .map_err(|l| Local::RateLimited(l.retry_after_secs())),
        }
    }
}

/// Applies a route's rate limit (if it has one) to a request: the 429 to answer when
/// refused, or, for a cluster-wide limit, the question to `settle`.
pub(crate) fn admit(
    limiter: Option<&Arc<RateLimiter>>,
    conn: &ConnInfo,
    headers: &impl HeaderLookup,
    path: &[u8],
) -> Result<Admit, Local> {
    let Some(limiter) = limiter else {
        return Ok(Admit::Yes);
    };
    let key = hash_key_bytes(Some(&limiter.key), conn, headers, path);
    if limiter.cluster.is_some() {
        return Ok(Admit::Ask(limiter.clone(), key.unwrap_or_default()));
    }
    limiter
        .check(key.as_deref(), Instant::now())
        .map(|()| Admit::Yes)
        .map_err(|l| Local::RateLimited(l.retry_after_secs()))
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(&RateLimit {
            requests_per_second: rate,
            burst: Some(burst),
            key: "source-ip".into(),
            scope: Default::default(),
        })
    }

    #[test]
    fn a_full_bucket_admits_its_burst_then_one_per_interval() {
        let l = limiter(10.0, 3);
        let t0 = l.epoch + Duration::from_secs(1);
        for i in 0..3 {
            assert_eq!(l.check(Some(b"a"), t0), Ok(()), "request {i} of the burst");
        }
        let refused = l.check(Some(b"a"), t0).expect_err("the fourth at once");
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.retry_after_secs(), 1);
        // One interval later, exactly one more.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(l.check(Some(b"a"), t1), Ok(()));
        assert!(l.check(Some(b"a"), t1).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets_and_a_missing_key_shares_one() {
        let l = limiter(1.0, 1);
        let t = l.epoch + Duration::from_secs(5);
        assert_eq!(l.check(Some(b"a"), t), Ok(()));
        assert!(l.check(Some(b"a"), t).is_err());
        assert_eq!(l.check(Some(b"b"), t), Ok(()));
        assert_eq!(l.check(None, t), Ok(()));
        assert!(
            l.check(None, t).is_err(),
            "requests without a key share a bucket"
        );
    }

    #[test]
    fn a_slow_rate_asks_for_seconds() {
        let l = limiter(0.5, 1);
        let t = l.epoch + Duration::from_secs(1);
        assert_eq!(l.check(Some(b"a"), t), Ok(()));
        let refused = l.check(Some(b"a"), t).expect_err("second request");
        assert_eq!(refused.retry_after_secs(), 2);
    }

    #[test]
    fn many_keys_stay_bounded_and_quiet_ones_are_swept() {
        let l = limiter(1000.0, 1);
        let t = l.epoch + Duration::from_secs(1);
        for i in 0..(SHARDS * SHARD_KEYS * 2) as u32 {
            let _ = l.check(Some(&i.to_be_bytes()), t);
        }
        let tracked: usize = l.shards.iter().map(|s| s.lock().unwrap().tat.len()).sum();
        // Each shard's own keys plus its shared overflow bucket.
        assert!(
            tracked <= SHARDS * (SHARD_KEYS + 1),
            "{tracked} keys tracked"
        );
        // A second later every bucket is full again: a new key sweeps its full shard.
        // One new key for each shard:
        let later = t + Duration::from_secs(1);
        let mut hit = [false; SHARDS];
        let mut candidate = u32::MAX;
        while hit.iter().any(|h| !h) {
            let key = candidate.to_be_bytes();
            candidate -= 1;
            let index = l
                .shards
                .iter()
                .position(|s| std::ptr::eq(s, l.shard(&key)))
                .expect("a shard");
            if !hit[index] {
                hit[index] = true;
                assert_eq!(l.check(Some(&key), later), Ok(()));
            }
        }
        let tracked: usize = l.shards.iter().map(|s| s.lock().unwrap().tat.len()).sum();
        assert_eq!(
            tracked, SHARDS,
            "only the new keys are left after the sweeps"
        );
    }
}
