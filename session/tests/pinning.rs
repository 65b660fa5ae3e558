//! Pins shared between nodes through a real redis-server: first writer wins, compare-and-set
//! re-pin, cache behaviour, TTL expiry and sliding refresh.

mod common;

use std::time::Duration;

use common::{opts, raw, raw_get, stored, wait_until, RedisProc};
use fulcrum_session::{AffinityStore, Lookup, StoreOptions, StoreState};

#[tokio::test]
async fn pin_is_seen_by_a_second_node() {
    let redis = RedisProc::start();
    let node1 = AffinityStore::new(opts(&redis.url())).unwrap();
    let node2 = AffinityStore::new(opts(&redis.url())).unwrap();

    assert_eq!(node2.lookup("web", "sess-1").await, Lookup::Absent);
    assert_eq!(
        stored(node1.pin("web", "sess-1", "b1").await).as_deref(),
        Some("b1")
    );
    assert_eq!(
        node2.lookup("web", "sess-1").await,
        Lookup::Pinned("b1".into())
    );
    assert_eq!(
        raw_get(redis.port, "fulcrum:aff:web:sess-1")
            .await
            .as_deref(),
        Some("b1")
    );
    // Another pool is another namespace.
    assert_eq!(node2.lookup("api", "sess-1").await, Lookup::Absent);
    assert_eq!(node1.state(), StoreState::Connected);
}

#[tokio::test]
async fn concurrent_first_sight_has_one_winner() {
    let redis = RedisProc::start();
    let a = AffinityStore::new(opts(&redis.url())).unwrap();
    let b = AffinityStore::new(opts(&redis.url())).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            stored(store.pin("web", "new-user", &format!("backend-{i}")).await)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        winners.push(t.await.unwrap().expect("redis is up"));
    }
    let first = winners[0].clone();
    assert!(
        winners.iter().all(|w| *w == first),
        "several winners: {winners:?}"
    );
    assert_eq!(
        a.lookup("web", "new-user").await,
        Lookup::Pinned(first.clone())
    );
    assert_eq!(b.lookup("web", "new-user").await, Lookup::Pinned(first));
}

#[tokio::test]
async fn repin_is_compare_and_set() {
    let redis = RedisProc::start();
    let node1 = AffinityStore::new(opts(&redis.url())).unwrap();
    let node2 = AffinityStore::new(opts(&redis.url())).unwrap();
    stored(node1.pin("web", "s", "A").await).unwrap();

    assert_eq!(
        node1.repin("web", "s", "A", "B").await.as_deref(),
        Some("B")
    );
    // A second node that also saw A die must follow B, not flip the pin to C.
    assert_eq!(
        node2.repin("web", "s", "A", "C").await.as_deref(),
        Some("B")
    );
    assert_eq!(
        raw_get(redis.port, "fulcrum:aff:web:s").await.as_deref(),
        Some("B")
    );
    assert_eq!(node2.lookup("web", "s").await, Lookup::Pinned("B".into()));
    // An expired pin may be re-pinned too.
    assert_eq!(
        node1.repin("web", "gone", "A", "D").await.as_deref(),
        Some("D")
    );
}

#[tokio::test]
async fn repin_by_another_node_is_seen_within_cache_ttl() {
    let redis = RedisProc::start();
    let node1 = AffinityStore::new(opts(&redis.url())).unwrap();
    let node2 = AffinityStore::new(opts(&redis.url())).unwrap();
    stored(node1.pin("web", "s", "A").await).unwrap();
    assert_eq!(node1.lookup("web", "s").await, Lookup::Pinned("A".into()));
    node2.repin("web", "s", "A", "B").await.unwrap();
    let took = wait_until(Duration::from_secs(3), || async {
        node1.lookup("web", "s").await == Lookup::Pinned("B".into())
    })
    .await
    .expect("node1 never saw the re-pin");
    // cache_ttl is 300 ms in these tests.
    assert!(
        took <= Duration::from_millis(700),
        "re-pin seen after {took:?}"
    );
}

#[tokio::test]
async fn warm_cache_does_not_touch_redis() {
    let redis = RedisProc::start();
    let node1 = AffinityStore::new(opts(&redis.url())).unwrap();
    let node2 = AffinityStore::new(StoreOptions {
        cache_ttl: Duration::from_secs(10),
        ..opts(&redis.url())
    })
    .unwrap();
    stored(node1.pin("web", "s", "b7").await).unwrap();
    assert_eq!(node2.lookup("web", "s").await, Lookup::Pinned("b7".into()));
    let before = node2.metrics();
    assert_eq!((before.cache_misses, before.redis_calls), (1, 1));
    for _ in 0..100 {
        assert_eq!(node2.lookup("web", "s").await, Lookup::Pinned("b7".into()));
    }
    let after = node2.metrics();
    assert_eq!(after.cache_hits - before.cache_hits, 100);
    assert_eq!(
        after.redis_calls, before.redis_calls,
        "a warm lookup went to Redis"
    );
    assert_eq!(after.cache_misses, before.cache_misses);
    assert!(after.redis_latency_sum_micros > 0);
}

#[tokio::test]
async fn unused_pin_expires() {
    let redis = RedisProc::start();
    let store = AffinityStore::new(StoreOptions {
        ttl: Duration::from_secs(1),
        ..opts(&redis.url())
    })
    .unwrap();
    stored(store.pin("web", "idle", "b1").await).unwrap();
    assert!(raw_get(redis.port, "fulcrum:aff:web:idle").await.is_some());
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(raw_get(redis.port, "fulcrum:aff:web:idle").await, None);
    assert_eq!(store.lookup("web", "idle").await, Lookup::Absent);
}

#[tokio::test]
async fn used_pin_is_kept_alive_without_a_refresh_per_request() {
    let redis = RedisProc::start();
    let store = AffinityStore::new(StoreOptions {
        ttl: Duration::from_secs(2),
        cache_ttl: Duration::from_millis(200),
        ..opts(&redis.url())
    })
    .unwrap();
    stored(store.pin("web", "busy", "b1").await).unwrap();
    // 4 s of use at 100 lookups/s: twice the TTL.
    for _ in 0..400 {
        assert_eq!(
            store.lookup("web", "busy").await,
            Lookup::Pinned("b1".into())
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        raw_get(redis.port, "fulcrum:aff:web:busy").await.as_deref(),
        Some("b1")
    );
    let m = store.metrics();
    // Refreshes at most every ttl/4 = 500 ms plus re-reads every cache_ttl = 200 ms:
    // about 8 + 20 round trips for 400 lookups.
    assert!(
        m.redis_calls <= 40,
        "{} Redis calls for 400 lookups",
        m.redis_calls
    );
    let mut c = raw(redis.port).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg("fulcrum:aff:web:busy")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 1000, "TTL not refreshed: {ttl} ms left");
}

#[tokio::test]
async fn without_redis_everything_is_unavailable() {
    let store = AffinityStore::new(StoreOptions::default()).unwrap();
    assert_eq!(store.state(), StoreState::Disabled);
    assert_eq!(store.lookup("web", "s").await, Lookup::Unavailable);
    assert_eq!(store.pin("web", "s", "b").await, None);
    assert_eq!(store.repin("web", "s", "a", "b").await, None);
    store.note_fallback();
    assert_eq!(store.metrics().fallbacks, 1);
}

#[test]
fn new_does_not_need_redis_up_but_needs_a_runtime() {
    let err = AffinityStore::new(opts("redis://127.0.0.1:1/0"));
    assert!(matches!(err, Err(fulcrum_session::SessionError::NoRuntime)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let started = std::time::Instant::now();
        let store = AffinityStore::new(opts("redis://127.0.0.1:1/0")).unwrap();
        assert!(started.elapsed() < Duration::from_millis(10));
        assert_eq!(store.state(), StoreState::Degraded);
        assert_eq!(store.lookup("web", "s").await, Lookup::Unavailable);
    });
}
