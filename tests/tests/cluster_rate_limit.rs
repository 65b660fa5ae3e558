//! A cluster-wide rate limit (`rate_limit.scope = "cluster"`, issue 19 item 2), end to
//! end: three real fulcrum processes sharing one real redis-server, requests of one key
//! spread over them in turn. Within one window the three together admit at most the
//! limit (each alone would admit it three times over), and at least the limit less
//! what each node may hold unused (its take, `burst / 10`). With Redis gone, every
//! node goes on serving and limits on its own, and says so in its metrics.

use fulcrum_testbed::redis::TestRedis;
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::hostile::metric;
use fulcrum_tests::process::Fulcrum;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 40 requests per 2 s window, for the whole cluster; nodes take 4 at a time.
const LIMIT: &str =
    "{ requests_per_second = 20, burst = 40, key = \"header:x-client\", scope = \"cluster\" }";
const BURST: usize = 40;
const TAKE: usize = 4;
const WINDOW_MS: u128 = 2000;

async fn node(redis: &TestRedis, backend: &TestBackend) -> (Ports, Fulcrum) {
    let ports = Ports::new();
    let session = format!(
        "[session]\nredis = \"{}\"\ntimeout = \"100ms\"",
        redis.url()
    );
    let cfg = single_node(&ports, &backend_list(&[backend], &[]), "", &session).replace(
        "pool = \"app\"\n\n[[pool]]",
        &format!("pool = \"app\"\nrate_limit = {LIMIT}\n\n[[pool]]"),
    );
    assert!(cfg.contains("scope = \"cluster\""), "{cfg}");
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    (ports, node)
}

/// Sleeps until 50 ms into the next window (windows are counted from the Unix epoch).
async fn next_window() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    let wait = WINDOW_MS - now % WINDOW_MS + 50;
    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
}

/// Statuses of `n` GETs of key `client`, sent in turn to `nodes`, for at most `budget`.
async fn spread(nodes: &[&Ports], client: &str, n: usize, budget: Duration) -> Vec<u16> {
    let http = fulcrum_tests::client::keepalive_client();
    let start = Instant::now();
    let mut statuses = Vec::new();
    for i in 0..n {
        if start.elapsed() >= budget {
            break;
        }
        let url = nodes[i % nodes.len()].url("/");
        let reply = fulcrum_tests::client::get(&http, &url, &[("x-client", client)])
            .await
            .expect("an answer");
        statuses.push(reply.status.as_u16());
    }
    statuses
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_admit_one_limit_together_and_fall_back_without_redis() {
    let mut redis = TestRedis::start().await;
    let backend = TestBackend::start("b0").await;
    let (p1, _n1) = node(&redis, &backend).await;
    let (p2, _n2) = node(&redis, &backend).await;
    let (p3, n3) = node(&redis, &backend).await;
    let nodes = [&p1, &p2, &p3];

    // One window: 150 requests over the three nodes, within 1.5 s of its 2 s.
    next_window().await;
    let statuses = spread(&nodes, "alice", 150, Duration::from_millis(1500)).await;
    let (ok, limited) = (count(&statuses, 200), count(&statuses, 429));
    eprintln!(
        "one window, three nodes: {ok} of {} admitted",
        statuses.len()
    );
    assert_eq!(
        ok + limited,
        statuses.len(),
        "only 200 or 429: {statuses:?}"
    );
    // Each node counting alone would admit up to 3 × 40: enough sent to tell.
    assert!(statuses.len() >= 60, "too few sent: {}", statuses.len());
    assert!(
        ok <= BURST,
        "{ok} admitted, more than {BURST}: {statuses:?}"
    );
    assert!(
        ok >= BURST - 3 * (TAKE - 1),
        "{ok} admitted, less than {BURST} less what three nodes may hold unused"
    );
    // Another key has its own count.
    let other = spread(&nodes, "bob", 6, Duration::from_secs(5)).await;
    assert_eq!(other, [200; 6]);

    // Redis gone: each node counts alone, and goes on serving.
    redis.kill();
    next_window().await;
    let started = Instant::now();
    let statuses = spread(&[&p3], "carol", 100, Duration::from_millis(1500)).await;
    let refilled = (20.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    let ok = count(&statuses, 200);
    eprintln!(
        "without Redis, one node: {ok} of {} admitted",
        statuses.len()
    );
    assert_eq!(ok + count(&statuses, 429), statuses.len(), "{statuses:?}");
    // The local bucket: its burst of 40, plus 20 per second refilled while sending.
    assert!(
        ok >= BURST && ok <= BURST + refilled,
        "{ok} of {} admitted by one node alone ({refilled} refilled)",
        statuses.len()
    );
    assert!(
        ok < statuses.len(),
        "the node limits on its own: {statuses:?}"
    );
    let fallbacks = metric(&n3.admin, "fulcrum_rate_limit_fallbacks_total", "").await;
    assert!(fallbacks >= 1.0, "fallbacks counted: {fallbacks}");
}
