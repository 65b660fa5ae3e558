//! Redis killed, restarted on the same port, and frozen with SIGSTOP: the store must answer
//! within its timeout, trip the breaker, answer at once while it is open, and recover alone.

mod common;

use std::time::{Duration, Instant};

use common::{opts, stored, wait_until, RedisProc};
use fulcrum_session::{AffinityStore, Lookup, Pinned, StoreState};

const TIMEOUT: Duration = Duration::from_millis(50);
/// Generous bound for one call that waits out the timeout (2 shared cores, debug build).
const BOUNDED: Duration = Duration::from_millis(200);
/// Generous bound for a call refused by the open breaker (no I/O).
const INSTANT: Duration = Duration::from_millis(20);

/// Times one lookup of a key nobody has seen (so the cache cannot answer).
async fn timed_lookup(store: &AffinityStore, i: usize) -> (Lookup, Duration) {
    let t = Instant::now();
    let r = store.lookup("web", &format!("fresh-{i}")).await;
    (r, t.elapsed())
}

/// Calls until the breaker refuses at once; every call must stay bounded and unavailable.
async fn drive_until_breaker_opens(store: &AffinityStore) {
    for i in 0..50 {
        let (r, took) = timed_lookup(store, i).await;
        assert_eq!(r, Lookup::Unavailable, "call {i}");
        assert!(took < BOUNDED, "call {i} took {took:?}");
        if store.metrics().breaker_opens > 0 {
            return;
        }
    }
    panic!("breaker never opened: {:?}", store.metrics());
}

async fn assert_calls_are_instant(store: &AffinityStore) {
    for i in 100..120 {
        let (r, took) = timed_lookup(store, i).await;
        assert_eq!(r, Lookup::Unavailable);
        assert!(took < INSTANT, "open breaker still waited {took:?}");
    }
    assert_eq!(store.state(), StoreState::Degraded);
}

#[tokio::test]
async fn killed_redis_degrades_then_restart_recovers() {
    let mut redis = RedisProc::start();
    let port = redis.port;
    let store = AffinityStore::new(opts(&redis.url())).unwrap();
    stored(store.pin("web", "known", "b1").await).unwrap();
    assert_eq!(
        store.lookup("web", "known").await,
        Lookup::Pinned("b1".into())
    );
    assert_eq!(store.state(), StoreState::Connected);

    redis.kill();
    drive_until_breaker_opens(&store).await;
    assert_calls_are_instant(&store).await;
    // The pin Redis cannot take is held by this node, and answered from there.
    assert_eq!(
        store.pin("web", "x", "b").await,
        Some(Pinned::Held("b".into()))
    );
    assert_eq!(store.lookup("web", "x").await, Lookup::Pinned("b".into()));
    assert_eq!(store.repin("web", "x", "a", "b").await, None);
    assert!(store.metrics().redis_errors >= 3);
    // A pin this node saw before the outage is still served (stale) while Redis is away.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        store.lookup("web", "known").await,
        Lookup::Pinned("b1".into())
    );
    assert!(store.metrics().stale_hits >= 1);

    let restarted_at = Instant::now();
    let _redis = RedisProc::start_on(port, &[]);
    let took = wait_until(Duration::from_secs(10), || async {
        store.lookup("web", "after-restart").await == Lookup::Absent
    })
    .await
    .expect("store never recovered after the restart");
    assert_eq!(store.state(), StoreState::Connected);
    eprintln!(
        "recovered {took:?} after restart ({:?} since start)",
        restarted_at.elapsed()
    );
    assert_eq!(
        stored(store.pin("web", "after-restart", "b2").await).as_deref(),
        Some("b2")
    );
}

#[tokio::test]
async fn frozen_redis_is_bounded_and_recovers_on_sigcont() {
    let redis = RedisProc::start();
    let store = AffinityStore::new(opts(&redis.url())).unwrap();
    stored(store.pin("web", "s", "b1").await).unwrap();
    assert_eq!(store.state(), StoreState::Connected);

    redis.freeze();
    let t = Instant::now();
    drive_until_breaker_opens(&store).await;
    // Three timeouts of 50 ms, give or take.
    assert!(
        t.elapsed() >= TIMEOUT * 2,
        "failed faster than the timeout: {:?}",
        t.elapsed()
    );
    assert_calls_are_instant(&store).await;

    redis.thaw();
    let took = wait_until(Duration::from_secs(10), || async {
        store.state() == StoreState::Connected
    })
    .await
    .expect("no recovery after SIGCONT");
    eprintln!("connected again {took:?} after SIGCONT");
    assert_eq!(store.lookup("web", "s2").await, Lookup::Absent);
    assert_eq!(
        stored(store.pin("web", "s2", "b3").await).as_deref(),
        Some("b3")
    );
}

#[tokio::test]
async fn store_started_while_redis_is_down_connects_when_it_comes_up() {
    let port = common::free_port();
    let store = AffinityStore::new(opts(&format!("redis://127.0.0.1:{port}/0"))).unwrap();
    let (r, took) = timed_lookup(&store, 0).await;
    assert_eq!(r, Lookup::Unavailable);
    assert!(took < BOUNDED, "{took:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(store.state(), StoreState::Degraded);
    let _redis = RedisProc::start_on(port, &[]);
    wait_until(Duration::from_secs(10), || async {
        store.state() == StoreState::Connected
    })
    .await
    .expect("never connected");
    assert_eq!(
        stored(store.pin("web", "late", "b1").await).as_deref(),
        Some("b1")
    );
}
