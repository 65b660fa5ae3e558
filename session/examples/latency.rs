//! Added latency of `AffinityStore::lookup`: cold cache (one Redis GETEX round trip) against
//! warm cache (local map only). Starts its own redis-server on a free loopback port.
//!
//! `cargo run --release -p fulcrum-session --example latency [N] [cluster]` (N lookups, default
//! 10000; `cluster`: against a real three-master Redis Cluster on loopback instead of one
//! redis-server). Prints Redis round trips per lookup from the store's own counters.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use fulcrum_session::{AffinityStore, Lookup, StoreOptions, StoreState};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!(
        "{name:<28} n={:<6} p50={:>8.1?} p99={:>8.1?} max={:>8.1?} mean={:>8.1?}",
        samples.len(),
        percentile(&samples, 0.50),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        mean
    );
}

async fn time_lookups(store: &AffinityStore, keys: &[String]) -> Vec<Duration> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        let t = Instant::now();
        let r = store.lookup("web", k).await;
        out.push(t.elapsed());
        assert!(matches!(r, Lookup::Pinned(_)), "{k}: {r:?}");
    }
    out
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000)
        .min(200_000);
    let on_cluster = std::env::args().any(|a| a == "cluster");
    let (redis, cluster) = match on_cluster {
        true => (None, Some(common::cluster::Cluster::start(3).await)),
        false => (Some(common::RedisProc::start()), None),
    };
    let url = match (&redis, &cluster) {
        (Some(r), _) => r.url(),
        (_, Some(c)) => c.url(),
        _ => unreachable!("one of the two was started"),
    };
    let opts = StoreOptions {
        redis_url: Some(url.clone()),
        timeout: Duration::from_millis(100),
        cache_ttl: Duration::from_secs(600),
        cache_capacity: n * 2,
        ..StoreOptions::default()
    };
    let keys: Vec<String> = (0..n).map(|i| format!("user-{i}")).collect();

    // Node 1 pins every session; node 2 has never seen them (cold cache).
    let node1 = AffinityStore::new(opts.clone()).expect("store");
    let mut pins = Vec::with_capacity(n);
    for (i, k) in keys.iter().enumerate() {
        let t = Instant::now();
        node1
            .pin("web", k, &format!("10.0.0.{}:8080", i % 8))
            .await
            .expect("pin");
        pins.push(t.elapsed());
    }
    let node2 = AffinityStore::new(opts).expect("store");
    let deadline = Instant::now() + Duration::from_secs(5);
    while node2.state() != StoreState::Connected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let m0 = node2.metrics();
    let cold = time_lookups(&node2, &keys).await;
    let m1 = node2.metrics();
    let warm = time_lookups(&node2, &keys).await;
    let m2 = node2.metrics();
    println!("{url}, {n} sessions");
    let per = |a: fulcrum_session::StoreMetrics, b: fulcrum_session::StoreMetrics| {
        (b.redis_calls - a.redis_calls) as f64 / n as f64
    };
    println!(
        "redis round trips per lookup: cold {:.3}, warm (pin cached) {:.3}",
        per(m0, m1),
        per(m1, m2)
    );
    report("pin (Lua, first sight)", pins);
    report("lookup cold (GETEX)", cold);
    report("lookup warm (local cache)", warm);
    println!("node2 metrics: {:?}", node2.metrics());

    concurrent_cold(&url, &keys).await;
    if let Some(redis) = &redis {
        frozen(redis, &node2).await;
    }
}

/// Cold lookups from 32 tasks at once over the one multiplexed connection.
async fn concurrent_cold(url: &str, keys: &[String]) {
    let store = AffinityStore::new(StoreOptions {
        redis_url: Some(url.to_string()),
        timeout: Duration::from_millis(100),
        ..StoreOptions::default()
    })
    .expect("store");
    let tasks = 32;
    let start = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (store, keys) = (store.clone(), keys.to_vec());
        handles.push(tokio::spawn(async move {
            let mine: Vec<String> = keys.into_iter().skip(t).step_by(tasks).collect();
            time_lookups(&store, &mine).await
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.expect("task"));
    }
    let rate = all.len() as f64 / start.elapsed().as_secs_f64();
    report("lookup cold, 32 concurrent", all);
    println!("{:<28} {rate:.0} lookups/s", "  throughput");
}

/// Redis frozen with SIGSTOP: the first calls wait out the timeout, then the breaker answers.
async fn frozen(redis: &common::RedisProc, store: &AffinityStore) {
    redis.freeze();
    let mut waited = Vec::new();
    let mut refused = Vec::new();
    for i in 0..2000 {
        let t = Instant::now();
        let r = store.lookup("web", &format!("never-seen-{i}")).await;
        let took = t.elapsed();
        assert_eq!(r, Lookup::Unavailable);
        if store.metrics().breaker_opens == 0 || waited.len() < 3 {
            waited.push(took);
        } else {
            refused.push(took);
        }
    }
    redis.thaw();
    println!("frozen redis (timeout 100 ms): calls before the breaker opened: {waited:.1?}");
    report("lookup, breaker open", refused);
}
