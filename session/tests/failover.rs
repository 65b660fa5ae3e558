//! A Sentinel failover as an operator runs it: one master, two replicas, three sentinels
//! (quorum 2, down-after 1 s), two stores (two balancer nodes) pinning new sessions under
//! load while the master is killed with SIGKILL. Checks that no session is forgotten (a
//! session begun while no master could take its pin is held and written afterwards, and both
//! nodes then agree on it) and that both nodes write to the promoted master within 1 s of
//! the sentinels announcing it.

mod common;

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use common::{opts, raw, stored, wait_until, RedisProc};
use fulcrum_session::{AffinityStore, Lookup, Pinned, StoreOptions};
use futures_util::StreamExt;

const MASTER: &str = "fulcrum-failover";
const MAX_DURING: usize = 3_000;

fn backend(i: usize) -> String {
    format!("10.0.0.{}:8080", i % 3 + 1)
}

fn sentinel_opts(sentinels: &[RedisProc]) -> StoreOptions {
    let list: Vec<String> = sentinels
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    StoreOptions {
        timeout: Duration::from_millis(100),
        ..opts(&format!("redis+sentinel://{}/{MASTER}", list.join(",")))
    }
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

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Per node: sessions it began (name, backend, whether Redis took the pin at once) and how
/// many went elsewhere on their second request through the same node.
async fn load(
    store: AffinityStore,
    node: &'static str,
    stop: Arc<AtomicBool>,
) -> (Vec<(String, String, bool)>, usize) {
    let mut begun = Vec::new();
    let mut moved = 0;
    for i in 0..MAX_DURING {
        if stop.load(Relaxed) {
            break;
        }
        let name = format!("{node}-{i}");
        let want = backend(i);
        let pinned = store.pin("web", &name, &want).await;
        assert!(pinned.is_some(), "{name}: neither stored nor held");
        if store.lookup("web", &name).await != Lookup::Pinned(want.clone()) {
            moved += 1;
        }
        begun.push((name, want, matches!(pinned, Some(Pinned::Stored(_)))));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (begun, moved)
}

/// The wall-clock time (ms) of the first `+switch-master` a sentinel publishes.
async fn first_switch(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).expect("client");
    let mut pubsub = client.get_async_pubsub().await.expect("pubsub");
    pubsub.subscribe("+switch-master").await.expect("subscribe");
    let mut messages = pubsub.on_message();
    messages.next().await.expect("subscription ended");
    unix_ms()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_every_session_and_find_the_new_master_at_once() {
    let mut master = RedisProc::start();
    let mport = master.port.to_string();
    let replicas: Vec<RedisProc> = (0..2)
        .map(|_| RedisProc::start_on(common::free_port(), &["--replicaof", "127.0.0.1", &mport]))
        .collect();
    for r in &replicas {
        let port = r.port;
        wait_until(Duration::from_secs(10), || {
            info_contains(port, "replication", "master_link_status:up")
        })
        .await
        .expect("replica never synced");
    }
    let sentinels: Vec<RedisProc> = (0..3)
        .map(|_| RedisProc::start_sentinel_with(master.port, MASTER, 2, 1000))
        .collect();
    for s in &sentinels {
        let port = s.port;
        wait_until(Duration::from_secs(20), || {
            info_contains(port, "sentinel", "slaves=2,sentinels=3")
        })
        .await
        .expect("sentinels never saw each other and both replicas");
    }

    let a = AffinityStore::new(sentinel_opts(&sentinels)).unwrap();
    let b = AffinityStore::new(sentinel_opts(&sentinels)).unwrap();
    for store in [&a, &b] {
        wait_until(Duration::from_secs(10), || async {
            stored(store.pin("web", "warm", "b").await).is_some()
        })
        .await
        .expect("never wrote through sentinel");
    }
    // The first announcement of any sentinel: the moment the switch was made known.
    let watches: Vec<_> = sentinels
        .iter()
        .map(|s| Box::pin(first_switch(s.port)))
        .collect();
    let switch = tokio::spawn(async move { futures_util::future::select_all(watches).await.0 });
    // Let the subscription settle before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load_a = tokio::spawn(load(a.clone(), "a", stop.clone()));
    let load_b = tokio::spawn(load(b.clone(), "b", stop.clone()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed_ms = unix_ms();
    master.kill();
    let switched_ms = tokio::time::timeout(Duration::from_secs(30), switch)
        .await
        .expect("sentinels never switched")
        .expect("switch task");
    // Keep the load going past the switch so both nodes must find the new master.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Relaxed);
    let (begun_a, moved_a) = load_a.await.expect("load a");
    let (begun_b, moved_b) = load_b.await.expect("load b");

    for store in [&a, &b] {
        wait_until(Duration::from_secs(10), || async {
            store.metrics().held_now == 0
        })
        .await
        .expect("held pins never written");
    }
    // Both nodes and a third that never saw them agree on every session.
    let c = AffinityStore::new(sentinel_opts(&sentinels)).unwrap();
    wait_until(Duration::from_secs(10), || async {
        c.lookup("web", "warm").await == Lookup::Pinned("b".into())
    })
    .await
    .expect("third node never connected");
    let mut lost = Vec::new();
    let all: Vec<&(String, String, bool)> = begun_a.iter().chain(&begun_b).collect();
    for (name, want, _) in &all {
        for store in [&a, &b, &c] {
            if store.lookup("web", name).await != Lookup::Pinned(want.clone()) {
                lost.push(name.clone());
            }
        }
    }
    let held = all.iter().filter(|(_, _, stored)| !stored).count();
    let report = |name: &str, store: &AffinityStore| {
        let info = store.master().expect("master info");
        let first = info
            .first_write_unix_ms
            .expect("no write to the new master");
        // Negative: the node found the new master before this test heard the announcement.
        let lag = first as i64 - switched_ms as i64;
        eprintln!(
            "node {name}: switched to {} ({} switches); first write {lag} ms after the \
             sentinels' switch, {} ms after the kill; {:?}",
            info.address,
            info.switches,
            first.saturating_sub(killed_ms),
            store.metrics()
        );
        (info.switches, lag)
    };
    let (switches_a, lag_a) = report("a", &a);
    let (switches_b, lag_b) = report("b", &b);
    eprintln!(
        "sentinels switched {} ms after the kill; {} sessions begun under load, {held} held; \
         moved on the second request: {moved_a} (a), {moved_b} (b); lost: {}",
        switched_ms.saturating_sub(killed_ms),
        all.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "sessions forgotten: {lost:?}");
    assert_eq!(
        (moved_a, moved_b),
        (0, 0),
        "a session moved on its second request"
    );
    assert!(
        held > 0,
        "no session began while no master could take its pin"
    );
    assert_eq!(
        (switches_a, switches_b),
        (1, 1),
        "both nodes follow the failover once"
    );
    assert!(
        lag_a <= 1000,
        "node a first wrote {lag_a} ms after the switch"
    );
    assert!(
        lag_b <= 1000,
        "node b first wrote {lag_b} ms after the switch"
    );
}
