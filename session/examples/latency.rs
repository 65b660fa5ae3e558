//! Added latency of `AffinityStore::lookup`: cold cache (one Redis GETEX round trip) against
//! warm cache (local map only). Starts its own redis-server on a free loopback port.
//!
//! `cargo run --release -p fulcrum-session --example latency [N]` (N lookups, default 10000).

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
    let redis = common::RedisProc::start();
    let opts = StoreOptions {
        redis_url: Some(redis.url()),
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

    let cold = time_lookups(&node2, &keys).await;
    let warm = time_lookups(&node2, &keys).await;
    println!("redis-server on 127.0.0.1:{}, {n} sessions", redis.port);
    report("pin (Lua, first sight)", pins);
    report("lookup cold (GETEX)", cold);
    report("lookup warm (local cache)", warm);
    println!("node2 metrics: {:?}", node2.metrics());
}
