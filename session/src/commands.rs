//! The Redis side of affinity: key layout and the handful of commands the store sends.
//!
//! A pin is a plain string key `fulcrum:aff:{pool}:{key}` holding the backend id, with a TTL.
//! Writes that must not race (first pin, re-pin) are Lua scripts, so they are atomic on every
//! Redis version without `SET ... NX GET` (7.0+) or `IFEQ` (8.4+). Reads use `GETEX` (6.2+),
//! which reads and pushes the TTL forward in one round trip.

use std::sync::LazyLock;

use redis::aio::ConnectionManager;
use redis::{RedisResult, Script};
use xxhash_rust::xxh3::xxh3_128;

/// First writer wins: returns the value stored afterwards (ours or the earlier writer's).
static PIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return ARGV[1]",
    )
});

/// Compare-and-set: replace only if the pin still names the dead backend (or is gone).
/// Returns the value stored afterwards, so the loser of a race learns the winner.
static REPIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return v end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return ARGV[2]",
    )
});

/// Session keys longer than this are stored by their 128-bit hash: keys come from clients
/// (cookies, headers) and must not make Redis keys or cache entries arbitrarily large.
pub const MAX_RAW_KEY: usize = 128;

/// The Redis key of a pin. Pool names come from the config; keys are client-supplied but
/// Redis keys are binary-safe, so no escaping is needed.
pub fn redis_key(pool: &str, key: &str) -> String {
    let hashed;
    let key = if key.len() > MAX_RAW_KEY {
        hashed = format!("#{:032x}", xxh3_128(key.as_bytes()));
        hashed.as_str()
    } else {
        key
    };
    let mut k = String::with_capacity(12 + pool.len() + 1 + key.len());
    k.push_str("fulcrum:aff:");
    k.push_str(pool);
    k.push(':');
    k.push_str(key);
    k
}

/// Reads a pin; with `refresh_ttl` the read also resets its TTL (GETEX).
pub async fn read(
    mut cm: ConnectionManager,
    key: &str,
    refresh_ttl: Option<u64>,
) -> RedisResult<Option<String>> {
    let mut cmd = match refresh_ttl {
        Some(_) => redis::cmd("GETEX"),
        None => redis::cmd("GET"),
    };
    cmd.arg(key);
    if let Some(ttl) = refresh_ttl {
        cmd.arg("EX").arg(ttl);
    }
    cmd.query_async(&mut cm).await
}

/// Pushes a pin's TTL forward; false when the key no longer exists.
pub async fn expire(mut cm: ConnectionManager, key: &str, ttl: u64) -> RedisResult<bool> {
    redis::cmd("EXPIRE")
        .arg(key)
        .arg(ttl)
        .query_async(&mut cm)
        .await
}

pub async fn pin(
    mut cm: ConnectionManager,
    key: &str,
    backend: &str,
    ttl: u64,
) -> RedisResult<String> {
    let mut inv = PIN.key(key);
    inv.arg(backend).arg(ttl);
    let winner = inv.invoke_async(&mut cm).await?;
    Ok(winner)
}

pub async fn repin(
    mut cm: ConnectionManager,
    key: &str,
    dead: &str,
    new: &str,
    ttl: u64,
) -> RedisResult<String> {
    let mut inv = REPIN.key(key);
    inv.arg(dead).arg(new).arg(ttl);
    let winner = inv.invoke_async(&mut cm).await?;
    Ok(winner)
}

pub async fn ping(mut cm: ConnectionManager) -> RedisResult<()> {
    redis::cmd("PING").query_async(&mut cm).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_layout() {
        assert_eq!(redis_key("web", "abc"), "fulcrum:aff:web:abc");
        let long = "x".repeat(5000);
        let k = redis_key("web", &long);
        assert!(k.len() < 60, "{k}");
        assert_eq!(k, redis_key("web", &long));
        assert_ne!(k, redis_key("web", &"y".repeat(5000)));
    }
}
