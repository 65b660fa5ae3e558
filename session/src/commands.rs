//! The Redis side of affinity: key layout and the handful of commands the store sends.
//!
//! A pin is a plain string key `fulcrum:aff:POOL:KEY` holding the backend id, with a TTL.
//! On a Redis Cluster the key carries a hash tag of its own, `fulcrum:aff:{TAG}:POOL:KEY`
//! where TAG is 16 hex digits of a hash of (POOL, KEY): every command touches one key, so
//! nothing needs two pins in one slot, and the tag spreads the pins evenly over the slots
//! whatever the pool names or the (client-chosen) keys contain; a key with its own `{...}`
//! cannot steer its pin to a slot of the client's choosing. Everything about one session
//! would share its tag, should the data model ever need a second key per session.
//! Writes that must not race (first pin, re-pin) are Lua scripts, so they are atomic on every
//! Redis version without `SET ... NX GET` (7.0+) or `IFEQ` (8.4+). Reads use `GETEX` (6.2+),
//! which reads and pushes the TTL forward in one round trip.

use std::sync::LazyLock;

use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{RedisResult, Script, Value};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

use crate::conn::Conn;

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

/// How pin keys are spelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLayout {
    /// One Redis (direct or Sentinel): `fulcrum:aff:POOL:KEY`.
    Plain,
    /// Redis Cluster: `fulcrum:aff:{TAG}:POOL:KEY`.
    Tagged,
}

/// The Redis key of a pin. Pool names come from the config; keys are client-supplied but
/// Redis keys are binary-safe, so no escaping is needed.
pub fn redis_key(layout: KeyLayout, pool: &str, key: &str) -> String {
    let hashed;
    let key = if key.len() > MAX_RAW_KEY {
        hashed = format!("#{:032x}", xxh3_128(key.as_bytes()));
        hashed.as_str()
    } else {
        key
    };
    let mut k = String::with_capacity(12 + 19 + pool.len() + 1 + key.len());
    k.push_str("fulcrum:aff:");
    if layout == KeyLayout::Tagged {
        k.push('{');
        k.push_str(&format!("{:016x}", session_tag(pool, key)));
        k.push_str("}:");
    }
    k.push_str(pool);
    k.push(':');
    k.push_str(key);
    k
}

/// The cluster hash tag of a session: depends on the pool and key only.
fn session_tag(pool: &str, key: &str) -> u64 {
    let mut bytes = Vec::with_capacity(pool.len() + 1 + key.len());
    bytes.extend_from_slice(pool.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(key.as_bytes());
    xxh3_64(&bytes)
}

/// Reads a pin; with `refresh_ttl` the read also resets its TTL (GETEX).
pub async fn read(
    mut cm: Conn,
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
pub async fn expire(mut cm: Conn, key: &str, ttl: u64) -> RedisResult<bool> {
    redis::cmd("EXPIRE")
        .arg(key)
        .arg(ttl)
        .query_async(&mut cm)
        .await
}

pub async fn pin(mut cm: Conn, key: &str, backend: &str, ttl: u64) -> RedisResult<String> {
    let mut inv = PIN.key(key);
    inv.arg(backend).arg(ttl);
    let winner = inv.invoke_async(&mut cm).await?;
    Ok(winner)
}

pub async fn repin(
    mut cm: Conn,
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

/// PING one server. On a cluster it goes to one node at random: the client would otherwise
/// send it to every master and fail it while any one of them is down.
pub async fn ping(cm: Conn) -> RedisResult<()> {
    match cm {
        Conn::Cluster(mut c) => c
            .route_command(redis::cmd("PING"), random_node())
            .await
            .map(drop),
        mut single => redis::cmd("PING").query_async(&mut single).await,
    }
}

/// `CLUSTER SLOTS` from the node at `at` (`None`: one at random); `None` for a single server.
pub async fn cluster_slots(cm: Conn, at: Option<(String, u16)>) -> RedisResult<Option<Value>> {
    match cm {
        Conn::Cluster(mut c) => {
            let mut cmd = redis::cmd("CLUSTER");
            cmd.arg("SLOTS");
            let route = match at {
                Some((host, port)) => {
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress { host, port })
                }
                None => random_node(),
            };
            c.route_command(cmd, route).await.map(Some)
        }
        Conn::Single(_) => Ok(None),
    }
}

fn random_node() -> RoutingInfo {
    RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::owners::slot;
    use KeyLayout::{Plain, Tagged};

    #[test]
    fn key_layout() {
        assert_eq!(redis_key(Plain, "web", "abc"), "fulcrum:aff:web:abc");
        let long = "x".repeat(5000);
        let k = redis_key(Plain, "web", &long);
        assert!(k.len() < 60, "{k}");
        assert_eq!(k, redis_key(Plain, "web", &long));
        assert_ne!(k, redis_key(Plain, "web", &"y".repeat(5000)));
    }

    #[test]
    fn tagged_keys_carry_their_own_tag() {
        let k = redis_key(Tagged, "web", "abc");
        assert!(k.starts_with("fulcrum:aff:{"), "{k}");
        assert!(k.ends_with("}:web:abc"), "{k}");
        assert_eq!(k, redis_key(Tagged, "web", "abc"));
        assert_ne!(k, redis_key(Tagged, "api", "abc"));
        // Known vector of the slot function (from the Redis Cluster specification).
        assert_eq!(slot("123456789"), 12739);
        // A client-chosen tag inside the key does not choose the slot.
        let a = redis_key(Tagged, "web", "{same}1");
        let b = redis_key(Tagged, "web", "{same}2");
        assert_ne!(slot(&a), slot(&b), "{a} {b}");
    }

    #[test]
    fn tagged_keys_spread_over_the_slots() {
        // Three masters own thirds of the slot space; 3000 sessions land about evenly.
        let mut thirds = [0u32; 3];
        for i in 0..3000 {
            let s = slot(&redis_key(Tagged, "web", &format!("session-{i}")));
            thirds[usize::from(s) * 3 / 16384] += 1;
        }
        for t in thirds {
            assert!((900..=1100).contains(&t), "uneven: {thirds:?}");
        }
    }
}
