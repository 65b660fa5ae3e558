//! What session affinity adds to a request through fulcrum: the same requests through a node
//! whose pool has no affinity and through nodes whose pool pins `x-user` in Redis, side by
//! side, with the Redis round trips each request cost (counted by Redis, `INFO commandstats`,
//! less the commands the pin script runs inside Redis).
//!
//! ```sh
//! cargo build --release -p fulcrum
//! cargo run --release -p fulcrum-tests --example affinity_cost -- [REQUESTS] [CONCURRENCY] [ROUNDS] [cluster]
//! ```
//!
//! REQUESTS per phase and round (default 20000, at most 200000), CONCURRENCY keep-alive clients
//! (default 16, at most 64), ROUNDS of all phases in turn (default 3, at most 10); `cluster`: pins in a real three-master Redis Cluster on loopback instead of
//! one redis-server. A release build of the example runs `target/release/fulcrum` (set
//! `FULCRUM_BIN` to choose another). Phases, each REQUESTS requests:
//! * `no affinity`: pool without affinity (the baseline);
//! * `new session`: every request a new `x-user` through node A (lookup finds nothing, pin);
//! * `pinned by another node`: the same users through node B, which has never seen them
//!   (one read each);
//! * `cached pin`: 100 users over and over through node B (its 1 s cache answers; each user
//!   is read again once its cache entry is older than 1 s).

#[path = "../../session/tests/common/mod.rs"]
mod rcommon;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fulcrum_testbed::redis::{command_stats, round_trips, CommandStats};
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{get, get_status, keepalive_client};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;

const HEADER: &str = r#"affinity = { mode = "header", header = "x-user" }"#;
const CACHED_USERS: usize = 100;

struct Phase {
    name: &'static str,
    latencies: Vec<Duration>,
    elapsed: Duration,
    redis_round_trips: u64,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// `INFO commandstats` of every given Redis, summed by command name.
async fn commands(ports: &[u16]) -> CommandStats {
    let mut all = CommandStats::new();
    for &port in ports {
        for (name, (calls, failed)) in command_stats(port).await {
            let e = all.entry(name).or_default();
            e.0 += calls;
            e.1 += failed;
        }
    }
    all
}

/// `requests` requests from `concurrency` keep-alive clients; `user(i)` names request i's user.
async fn run(
    name: &'static str,
    web: &Ports,
    requests: usize,
    concurrency: usize,
    redis_ports: &[u16],
    user: Arc<dyn Fn(usize) -> String + Send + Sync>,
) -> Phase {
    let before = commands(redis_ports).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (url, user) = (web.url("/"), user.clone());
        tasks.push(tokio::spawn(async move {
            let client = keepalive_client();
            let mut lat = Vec::new();
            for i in (t..requests).step_by(concurrency) {
                let u = user(i);
                let t0 = Instant::now();
                let reply = get(&client, &url, &[("x-user", u.as_str())]).await;
                lat.push(t0.elapsed());
                assert!(
                    reply.is_ok_and(|r| r.status == 200),
                    "{name}: request {i} failed"
                );
            }
            lat
        }));
    }
    let mut latencies = Vec::with_capacity(requests);
    for t in tasks {
        latencies.extend(t.await.expect("client task"));
    }
    let elapsed = start.elapsed();
    latencies.sort();
    Phase {
        name,
        latencies,
        elapsed,
        redis_round_trips: round_trips(&before, &commands(redis_ports).await)
            .values()
            .sum(),
    }
}

async fn node(backends: &str, affinity: &str, session: &str) -> (Ports, Fulcrum) {
    let ports = Ports::new();
    let node = Fulcrum::start(
        &single_node(&ports, backends, affinity, session),
        &ports.admin,
    )
    .await;
    if !session.is_empty() {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let s = get_status(&ports.admin).await;
            if s.is_some_and(|s| s["session_store"] == "connected") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    (ports, node)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let requests = numbers
        .first()
        .copied()
        .unwrap_or(20_000)
        .clamp(100, 200_000);
    let concurrency = numbers.get(1).copied().unwrap_or(16).clamp(1, 64);
    let rounds = numbers.get(2).copied().unwrap_or(3).clamp(1, 10);
    let on_cluster = args.iter().any(|a| a == "cluster");
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    if std::env::var_os("FULCRUM_BIN").is_none() && build == "release" {
        let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/fulcrum");
        assert!(
            bin.exists(),
            "build it first: cargo build --release -p fulcrum"
        );
        std::env::set_var("FULCRUM_BIN", bin);
    }
    let bin = fulcrum_tests::process::fulcrum_bin();

    let (single, cluster) = match on_cluster {
        true => (None, Some(rcommon::cluster::Cluster::start(3).await)),
        false => (Some(rcommon::RedisProc::start()), None),
    };
    let (url, redis_ports): (String, Vec<u16>) = match (&single, &cluster) {
        (Some(r), _) => (r.url(), vec![r.port]),
        (_, Some(c)) => (c.url(), c.masters().await),
        _ => unreachable!("one of the two was started"),
    };
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let list = backend_list(&[&a, &b], &[]);
    let session = format!("[session]\nredis = \"{url}\"\nttl = \"30m\"\ntimeout = \"200ms\"");
    let (plain, _n0) = node(&list, "", "").await;
    let (node_a, _n1) = node(&list, HEADER, &session).await;
    let (node_b, _n2) = node(&list, HEADER, &session).await;

    println!(
        "fulcrum {} ({build} build of this driver), {} on loopback; {rounds} rounds of \
         {requests} requests per phase from {concurrency} keep-alive clients; backends and \
         clients share this machine",
        bin.display(),
        if on_cluster {
            "Redis Cluster, 3 masters"
        } else {
            "one redis-server"
        },
    );
    // Warm-up: connections and code paths.
    let warm: Arc<dyn Fn(usize) -> String + Send + Sync> = Arc::new(|i| format!("warm-{}", i % 50));
    run(
        "warm-up",
        &plain,
        2000,
        concurrency,
        &redis_ports,
        warm.clone(),
    )
    .await;
    run("warm-up", &node_b, 2000, concurrency, &redis_ports, warm).await;

    // Rounds interleave the phases so that a drift in the machine's load touches them alike;
    // each round has users of its own.
    let mut phases: Vec<Phase> = Vec::new();
    for round in 0..rounds {
        let new_user: Arc<dyn Fn(usize) -> String + Send + Sync> =
            Arc::new(move |i| format!("user-{round}-{i}"));
        let cached: Arc<dyn Fn(usize) -> String + Send + Sync> =
            Arc::new(move |i| format!("user-{round}-{}", i % CACHED_USERS));
        let this_round = [
            run(
                "no affinity",
                &plain,
                requests,
                concurrency,
                &redis_ports,
                new_user.clone(),
            )
            .await,
            run(
                "new session",
                &node_a,
                requests,
                concurrency,
                &redis_ports,
                new_user.clone(),
            )
            .await,
            run(
                "pinned by another node",
                &node_b,
                requests,
                concurrency,
                &redis_ports,
                new_user,
            )
            .await,
            run(
                "cached pin",
                &node_b,
                requests,
                concurrency,
                &redis_ports,
                cached,
            )
            .await,
        ];
        for (i, p) in this_round.into_iter().enumerate() {
            match phases.get_mut(i) {
                Some(all) => {
                    all.latencies.extend(p.latencies);
                    all.elapsed += p.elapsed;
                    all.redis_round_trips += p.redis_round_trips;
                }
                None => phases.push(p),
            }
        }
    }
    for p in &mut phases {
        p.latencies.sort();
    }
    let base = pct(&phases[0].latencies, 0.5);
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>9} {:>12} {:>14}",
        "phase", "req/s", "p50", "p99", "mean", "p50 added", "redis RTT/req"
    );
    for p in &phases {
        let n = p.latencies.len();
        let mean = p.latencies.iter().sum::<Duration>() / n as u32;
        let p50 = pct(&p.latencies, 0.5);
        println!(
            "{:<24} {:>9.0} {:>9.1?} {:>9.1?} {:>9.1?} {:>12} {:>14.3}",
            p.name,
            n as f64 / p.elapsed.as_secs_f64(),
            p50,
            pct(&p.latencies, 0.99),
            mean,
            format!("{:+.1} µs", (p50.as_secs_f64() - base.as_secs_f64()) * 1e6),
            p.redis_round_trips as f64 / n as f64,
        );
    }
}
