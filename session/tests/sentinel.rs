//! Sentinel: the store finds the master through a real `redis-server --sentinel`, and follows
//! it to the promoted replica after the master is killed.

mod common;

use std::time::{Duration, Instant};

use common::{opts, raw, raw_get, stored, wait_until, RedisProc};
use fulcrum_session::{AffinityStore, Lookup, StoreOptions, StoreState};

const MASTER: &str = "fulcrum-test";

fn sentinel_opts(sentinel: &RedisProc) -> StoreOptions {
    opts(&format!(
        "redis+sentinel://127.0.0.1:{}/{MASTER}",
        sentinel.port
    ))
}

async fn info_contains(port: u16, section: &str, needle: &str) -> bool {
    let mut c = raw(port).await;
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    info.contains(needle)
}

#[tokio::test]
async fn store_uses_the_master_named_by_sentinel() {
    let master = RedisProc::start();
    let sentinel = RedisProc::start_sentinel(master.port, MASTER);
    let store = AffinityStore::new(sentinel_opts(&sentinel)).unwrap();
    wait_until(Duration::from_secs(5), || async {
        store.state() == StoreState::Connected
    })
    .await
    .expect("never connected through sentinel");
    assert_eq!(
        stored(store.pin("web", "s", "b1").await).as_deref(),
        Some("b1")
    );
    assert_eq!(
        raw_get(master.port, "fulcrum:aff:web:s").await.as_deref(),
        Some("b1")
    );

    // The sentinels + master_name form works the same way.
    let other = AffinityStore::new(StoreOptions {
        redis_url: None,
        sentinels: vec![format!("127.0.0.1:{}", sentinel.port)],
        master_name: Some(MASTER.into()),
        ..opts("unused")
    })
    .unwrap();
    let seen = wait_until(Duration::from_secs(5), || async {
        other.lookup("web", "s").await == Lookup::Pinned("b1".into())
    })
    .await;
    assert!(seen.is_some(), "second store never saw the pin");
}

#[tokio::test]
async fn store_follows_a_sentinel_failover() {
    let mut master = RedisProc::start();
    let replica = RedisProc::start_on(
        common::free_port(),
        &["--replicaof", "127.0.0.1", &master.port.to_string()],
    );
    let port = replica.port;
    wait_until(Duration::from_secs(10), || {
        info_contains(port, "replication", "master_link_status:up")
    })
    .await
    .expect("replica never synced");
    let sentinel = RedisProc::start_sentinel(master.port, MASTER);
    // Sentinel learns about replicas from the master's INFO.
    let sport = sentinel.port;
    wait_until(Duration::from_secs(15), || {
        info_contains(sport, "sentinel", "slaves=1")
    })
    .await
    .expect("sentinel never saw the replica");

    let store = AffinityStore::new(sentinel_opts(&sentinel)).unwrap();
    wait_until(Duration::from_secs(5), || async {
        store.state() == StoreState::Connected
    })
    .await
    .expect("never connected through sentinel");
    assert_eq!(
        stored(store.pin("web", "before", "b1").await).as_deref(),
        Some("b1")
    );
    // Let the pin reach the replica before the master dies.
    wait_until(Duration::from_secs(5), || async {
        raw_get(port, "fulcrum:aff:web:before").await.is_some()
    })
    .await
    .expect("pin never replicated");

    master.kill();
    let killed = Instant::now();
    let took = wait_until(Duration::from_secs(30), || async {
        stored(store.pin("web", "after", "b2").await).as_deref() == Some("b2")
    })
    .await
    .expect("store never wrote to the promoted replica");
    eprintln!(
        "writes work again {took:?} after killing the master ({:?})",
        killed.elapsed()
    );
    assert_eq!(
        raw_get(port, "fulcrum:aff:web:after").await.as_deref(),
        Some("b2")
    );
    assert_eq!(
        store.lookup("web", "before").await,
        Lookup::Pinned("b1".into())
    );
    assert_eq!(store.state(), StoreState::Connected);
}
