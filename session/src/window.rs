//! Cluster-wide request counts for rate limits: one counter per (scope, key, window)
//! in the same Redis as the affinity pins, so every node counts against one total.
//!
//! A node takes several requests' worth at once (`take`): one `INCRBY` plus, for a
//! new counter, a `PEXPIRE` of two windows, in one Lua script (atomic on every Redis
//! version). The total it returns tells the node how many of those it may use. The
//! key is `fulcrum:rl:SCOPE:WINDOW:HASH` (HASH: 32 hex digits of the client key, so
//! client bytes never reach Redis); on a Redis Cluster the hash is also the tag.

use std::sync::LazyLock;
use std::time::Duration;

use redis::{RedisResult, Script};
use xxhash_rust::xxh3::xxh3_128;

use crate::commands::KeyLayout;
use crate::conn::Conn;
use crate::inner::Accounting;
use crate::store::AffinityStore;

/// `INCRBY` by ARGV[1]; a counter this call created expires after ARGV[2] ms.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n",
    )
});

/// The Redis key of one window's counter.
fn window_key(layout: KeyLayout, scope: &str, key: &[u8], window: u64) -> String {
    let hash = format!("{:032x}", xxh3_128(key));
    match layout {
        KeyLayout::Plain => format!("fulcrum:rl:{scope}:{window}:{hash}"),
        KeyLayout::Tagged => format!("fulcrum:rl:{scope}:{window}:{{{hash}}}"),
    }
}

async fn take(mut cm: Conn, key: &str, n: u64, ttl_ms: u64) -> RedisResult<u64> {
    let mut inv = TAKE.key(key);
    inv.arg(n).arg(ttl_ms);
    inv.invoke_async(&mut cm).await
}

impl AffinityStore {
    /// Adds `n` to the count of `key` in window number `window` of `scope` and returns
    /// the count afterwards (the counter lives two `length`s). `None` when Redis cannot
    /// answer now (not configured, failing, or its breaker open): the caller counts
    /// alone.
    pub async fn take_from_window(
        &self,
        scope: &str,
        key: &[u8],
        window: u64,
        length: Duration,
        n: u64,
    ) -> Option<u64> {
        let inner = self.inner();
        let rkey = window_key(inner.layout, scope, key, window);
        let ttl_ms = (length.as_millis().saturating_mul(2)).clamp(1, u64::MAX as u128) as u64;
        let k = rkey.as_str();
        inner
            .call(Accounting::Write, Some(k), |c| take(c, k, n, ttl_ms))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keys_hide_the_client_key_and_differ_per_window() {
        let a = window_key(KeyLayout::Plain, "web", b"10.0.0.1", 7);
        assert!(a.starts_with("fulcrum:rl:web:7:"), "{a}");
        assert!(!a.contains("10.0.0.1"), "{a}");
        assert_ne!(a, window_key(KeyLayout::Plain, "web", b"10.0.0.1", 8));
        assert_ne!(a, window_key(KeyLayout::Plain, "web", b"10.0.0.2", 7));
        let t = window_key(KeyLayout::Tagged, "web", b"10.0.0.1", 7);
        assert!(t.ends_with('}'), "{t}");
    }
}
