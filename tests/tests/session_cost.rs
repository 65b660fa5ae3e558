//! What session affinity costs in Redis round trips, counted by Redis itself (`INFO
//! commandstats`) through real fulcrum nodes: none for a pin the node has cached, one read
//! for a pin another node made, a read and a pin script for a new session. A cached pin that
//! went to Redis, or a lookup that did more than one round trip, fails it.

use std::collections::BTreeMap;

use fulcrum_testbed::redis::{round_trips as delta, TestRedis};
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{get, get_status, keepalive_client, HttpClient};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::time::Duration;

const HEADER: &str = r#"affinity = { mode = "header", header = "x-user" }"#;
const SESSIONS: usize = 20;
/// Requests per session after the first, each within the node's 1 s cache window.
const REPEATS: usize = 5;

fn total(d: &BTreeMap<String, u64>) -> u64 {
    d.values().sum()
}

async fn node(redis: &TestRedis, backends: &[&TestBackend]) -> (Ports, Fulcrum) {
    let ports = Ports::new();
    let session = format!(
        "[session]\nredis = \"{}\"\nttl = \"30m\"\ntimeout = \"200ms\"",
        redis.url()
    );
    let list = backend_list(backends, &[]);
    let node = Fulcrum::start(&single_node(&ports, &list, HEADER, &session), &ports.admin).await;
    // Connected to Redis before the counting starts (the connection's setup is not a request's).
    let mut connected = false;
    for _ in 0..100 {
        let status = get_status(&ports.admin).await;
        if status.is_some_and(|s| s["session_store"] == "connected") {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(connected, "session store never connected");
    (ports, node)
}

async fn backend_for(client: &HttpClient, ports: &Ports, user: &str) -> String {
    get(client, &ports.url("/"), &[("x-user", user)])
        .await
        .expect("request")
        .backend
        .expect("x-backend")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_round_trips_per_request() {
    let redis = TestRedis::start().await;
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let (p1, _n1) = node(&redis, &[&a, &b]).await;
    let (p2, _n2) = node(&redis, &[&a, &b]).await;
    let client = keepalive_client();
    redis
        .command(&["CONFIG", "RESETSTAT"])
        .await
        .expect("reset");

    let mut new_session = BTreeMap::<String, u64>::new();
    let mut pinned = Vec::new();
    let mut backends = std::collections::BTreeSet::new();
    for s in 0..SESSIONS {
        let user = format!("user-{s}");
        // A new session through node 1: its lookup finds nothing and it is pinned.
        let before = redis.command_calls().await;
        let first = backend_for(&client, &p1, &user).await;
        let d = delta(&before, &redis.command_calls().await);
        for (name, n) in &d {
            *new_session.entry(name.clone()).or_default() += n;
        }
        // The same session again through node 1, at once: answered from its cache.
        let before = redis.command_calls().await;
        for _ in 0..REPEATS {
            assert_eq!(
                backend_for(&client, &p1, &user).await,
                first,
                "{user} moved"
            );
        }
        let d = delta(&before, &redis.command_calls().await);
        assert_eq!(total(&d), 0, "{user}: a cached pin went to Redis: {d:?}");
        backends.insert(first.clone());
        pinned.push((user, first));
    }
    assert_eq!(
        backends.len(),
        2,
        "sessions on one backend only: {backends:?}"
    );

    // Node 2 has never seen these sessions: one read each, then its cache answers.
    let mut known_elsewhere = BTreeMap::<String, u64>::new();
    for (user, first) in &pinned {
        let before = redis.command_calls().await;
        assert_eq!(
            &backend_for(&client, &p2, user).await,
            first,
            "{user} on node 2"
        );
        let d = delta(&before, &redis.command_calls().await);
        assert_eq!(total(&d), 1, "{user}: a pin made elsewhere cost {d:?}");
        for (name, n) in &d {
            *known_elsewhere.entry(name.clone()).or_default() += n;
        }
        let before = redis.command_calls().await;
        for _ in 0..REPEATS {
            assert_eq!(&backend_for(&client, &p2, user).await, first);
        }
        let d = delta(&before, &redis.command_calls().await);
        assert_eq!(
            total(&d),
            0,
            "{user}: a cached pin went to Redis on node 2: {d:?}"
        );
    }
    let per_new = total(&new_session) as f64 / SESSIONS as f64;
    eprintln!(
        "redis commands per request: new session {per_new:.2} {new_session:?}; pin made by \
         another node {:.2} {known_elsewhere:?}; cached pin 0 ({} requests on two nodes)",
        total(&known_elsewhere) as f64 / SESSIONS as f64,
        2 * SESSIONS * REPEATS
    );
    // A lookup and a pin: two round trips (the pin script's first use costs a NOSCRIPT
    // answer and a SCRIPT LOAD once).
    let sent = total(&new_session);
    let sessions = SESSIONS as u64;
    assert!(
        (2 * sessions..=2 * sessions + 2).contains(&sent),
        "{SESSIONS} new sessions cost {sent} round trips: {new_session:?}"
    );
}
