//! Each balancing algorithm, observed from outside through a real fulcrum process.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get, keepalive_client};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::collections::HashMap;

async fn backends(n: usize) -> Vec<TestBackend> {
    let mut v = Vec::new();
    for i in 0..n {
        v.push(TestBackend::start(&format!("b{i}")).await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_exactly() {
    let bs = backends(2).await;
    let ports = Ports::new();
    let cfg = single_node(
        &ports,
        &backend_list(&[&bs[0], &bs[1]], &[]),
        r#"algorithm = "round-robin""#,
        "",
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let client = keepalive_client();
    let mut seen = Vec::new();
    for _ in 0..20 {
        let r = get(&client, &ports.url("/"), &[]).await.expect("request");
        seen.push(r.backend.expect("x-backend"));
    }
    for pair in seen.windows(2) {
        assert_ne!(pair[0], pair[1], "round-robin must alternate: {seen:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_round_robin_gives_three_to_one() {
    let bs = backends(2).await;
    let ports = Ports::new();
    let cfg = single_node(
        &ports,
        &backend_list(&[&bs[0], &bs[1]], &[3, 1]),
        r#"algorithm = "weighted-round-robin""#,
        "",
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let client = keepalive_client();
    let mut counts: HashMap<String, u32> = HashMap::new();
    for _ in 0..400 {
        let r = get(&client, &ports.url("/"), &[]).await.expect("request");
        *counts.entry(r.backend.expect("x-backend")).or_default() += 1;
    }
    assert_eq!(counts.get("b0"), Some(&300), "{counts:?}");
    assert_eq!(counts.get("b1"), Some(&100), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_sends_new_work_to_the_idle_backend() {
    let bs = backends(2).await;
    let ports = Ports::new();
    let cfg = single_node(
        &ports,
        &backend_list(&[&bs[0], &bs[1]], &[]),
        r#"algorithm = "least-connections""#,
        "",
    );
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    // One slow request occupies one backend for longer than the test needs (on a loaded
    // machine ten requests can take seconds; a 3 s request once ended before them).
    let url = ports.url("/slow?ms=20000");
    let slow = tokio::spawn(async move { get(&fresh_client(), &url, &[]).await });
    // Only once the slow request has reached a backend is one of them busy: wait for it
    // (bounded) instead of guessing with a sleep.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let busy = loop {
        match (bs[0].requests(), bs[1].requests()) {
            (1, 0) => break "b0",
            (0, 1) => break "b1",
            (0, 0) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            other => panic!("the slow request never reached exactly one backend: {other:?}"),
        }
    };
    let client = fresh_client();
    for _ in 0..10 {
        let r = get(&client, &ports.url("/"), &[]).await.expect("request");
        if r.backend.as_deref() == Some(busy) {
            // What the node saw, for the failure message.
            let metrics = fulcrum_tests::hostile::metric;
            let (in_flight, retries) = (
                metrics(&ports.admin, "fulcrum_backend_in_flight", "").await,
                metrics(&ports.admin, "fulcrum_retries_total", "").await,
            );
            panic!(
                "least-connections picked the busy backend {busy} (in flight in all: {in_flight}, retries: {retries}); node log:\n{}",
                node.log()
            );
        }
    }
    // The premise held throughout: the slow request was still occupying its backend.
    assert!(
        !slow.is_finished(),
        "the slow request ended before the check did; the test proved nothing"
    );
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_is_stable_across_restarts_and_moves_few_keys() {
    let bs = backends(4).await;
    let ports = Ports::new();
    let pool = r#"algorithm = "consistent-hash"
hash_key = "header:x-user""#;
    let all = backend_list(&[&bs[0], &bs[1], &bs[2], &bs[3]], &[]);
    let map_keys = |ports: Ports| async move {
        let client = keepalive_client();
        let mut m = HashMap::new();
        for k in 0..1000 {
            let user = format!("user-{k}");
            let r = get(&client, &ports.url("/"), &[("x-user", user.as_str())])
                .await
                .expect("request");
            m.insert(user, r.backend.expect("backend"));
        }
        m
    };
    let node = Fulcrum::start(&single_node(&ports, &all, pool, ""), &ports.admin).await;
    let first = map_keys(ports.clone()).await;
    drop(node);
    let node = Fulcrum::start(&single_node(&ports, &all, pool, ""), &ports.admin).await;
    let second = map_keys(ports.clone()).await;
    assert_eq!(
        first, second,
        "same key must map to the same backend after a restart"
    );
    drop(node);
    let three = backend_list(&[&bs[0], &bs[1], &bs[2]], &[]);
    let _node = Fulcrum::start(&single_node(&ports, &three, pool, ""), &ports.admin).await;
    let after = map_keys(ports.clone()).await;
    let moved = first
        .iter()
        .filter(|(k, b)| b.as_str() != "b3" && after.get(*k) != Some(b))
        .count();
    let total_moved = first
        .iter()
        .filter(|(k, b)| after.get(*k) != Some(b))
        .count();
    assert_eq!(moved, 0, "keys not on the removed backend must stay put");
    assert!(
        total_moved as f64 <= 1000.0 * (0.25 + 0.05),
        "moved {total_moved} of 1000 keys"
    );
    assert!(after.values().all(|b| b != "b3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_and_least_request_use_every_backend_and_peak_ewma_serves() {
    // Peak-EWMA deliberately concentrates sequential traffic on the fastest backend
    // (its preference is unit-tested in node/src/balance); here it must simply serve.
    for algorithm in ["random", "least-request", "peak-ewma"] {
        let bs = backends(3).await;
        let ports = Ports::new();
        let cfg = single_node(
            &ports,
            &backend_list(&[&bs[0], &bs[1], &bs[2]], &[]),
            &format!("algorithm = \"{algorithm}\""),
            "",
        );
        let _node = Fulcrum::start(&cfg, &ports.admin).await;
        let client = keepalive_client();
        for _ in 0..150 {
            let r = get(&client, &ports.url("/"), &[]).await.expect("request");
            assert_eq!(r.status, 200);
        }
        assert_eq!(bs.iter().map(|b| b.requests()).sum::<u64>(), 150);
        for b in bs.iter().filter(|_| algorithm != "peak-ewma") {
            assert!(
                b.requests() > 0,
                "{algorithm}: backend {} got nothing",
                b.name()
            );
        }
    }
}
