//! Session affinity in Redis across real fulcrum nodes sharing one real redis-server.

use fulcrum_testbed::redis::TestRedis;
use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get, get_status};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn session_table(redis: &TestRedis, ttl: &str) -> String {
    format!(
        "[session]\nredis = \"{}\"\nttl = \"{ttl}\"\ntimeout = \"100ms\"",
        redis.url()
    )
}

/// Two independent nodes sharing Redis, with the given affinity line.
async fn two_nodes(
    redis: &TestRedis,
    backends: &[&TestBackend],
    affinity: &str,
    ttl: &str,
) -> (Ports, Fulcrum, Ports, Fulcrum) {
    let list = backend_list(backends, &[]);
    let (p1, p2) = (Ports::new(), Ports::new());
    let n1 = Fulcrum::start(
        &single_node(&p1, &list, affinity, &session_table(redis, ttl)),
        &p1.admin,
    )
    .await;
    let n2 = Fulcrum::start(
        &single_node(&p2, &list, affinity, &session_table(redis, ttl)),
        &p2.admin,
    )
    .await;
    (p1, n1, p2, n2)
}

const LEARN: &str = r#"affinity = { mode = "learn", cookie = "JSESSIONID" }"#;
const HEADER: &str = r#"affinity = { mode = "header", header = "x-user" }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_session_sticks_across_nodes_and_survives_node_death() {
    let redis = TestRedis::start().await;
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let (p1, mut n1, p2, _n2) = two_nodes(&redis, &[&a, &b], LEARN, "30m").await;
    let client = fresh_client();
    // Ten sessions learned and served through node 1 only: node 2 never sees them before
    // node 1 dies, so it can only know their pins from Redis.
    let mut pins = Vec::new();
    for s in 0..10 {
        // The backend that answers /setcookie issues JSESSIONID=sN; fulcrum learns it.
        let first = get(&client, &p1.url(&format!("/setcookie?c=s{s}")), &[])
            .await
            .expect("learning request");
        assert!(first.headers.get("set-cookie").is_some());
        let pinned = first
            .backend
            .clone()
            .expect("x-backend on the learning answer");
        pins.push((format!("JSESSIONID=s{s}"), pinned));
    }
    for (cookie, pinned) in &pins {
        for _ in 0..5 {
            let r = get(&client, &p1.url("/"), &[("cookie", cookie.as_str())])
                .await
                .expect("request through node 1");
            assert_eq!(
                r.backend.as_deref(),
                Some(pinned.as_str()),
                "{cookie} left its backend"
            );
        }
    }
    let backends: std::collections::BTreeSet<&str> = pins.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(
        backends.len(),
        2,
        "the sessions must be pinned to both backends, or a node that always picks one would pass"
    );
    // kill -9 node 1: every session's first request through node 2 lands on its pin.
    n1.kill9();
    for (cookie, pinned) in &pins {
        let r = get(&client, &p2.url("/"), &[("cookie", cookie.as_str())])
            .await
            .expect("request through node 2");
        assert_eq!(
            r.backend.as_deref(),
            Some(pinned.as_str()),
            "{cookie} through node 2 after node 1 died"
        );
    }
    assert_eq!(
        get_status(&p2.admin).await.expect("node 2 status")["session_store"],
        "connected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_backend_is_replaced_once_and_every_node_follows() {
    let redis = TestRedis::start().await;
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let (p1, _n1, p2, _n2) = two_nodes(&redis, &[&a, &b, &c], HEADER, "30m").await;
    let client = fresh_client();
    let pinned = get(&client, &p1.url("/"), &[("x-user", "alice")])
        .await
        .unwrap()
        .backend
        .unwrap();
    let mut backends = vec![a, b, c];
    let victim = backends.iter().position(|x| x.name() == pinned).unwrap();
    backends.remove(victim).kill();
    let moved = get(&client, &p1.url("/"), &[("x-user", "alice")])
        .await
        .unwrap();
    assert_eq!(moved.status, 200, "{}", _n1.log());
    let new_pin = moved.backend.unwrap();
    assert_ne!(new_pin, pinned);
    tokio::time::sleep(Duration::from_millis(1500)).await; // past the local cache TTL
    for ports in [&p1, &p2] {
        for _ in 0..10 {
            let r = get(&client, &ports.url("/"), &[("x-user", "alice")])
                .await
                .unwrap();
            assert_eq!(
                r.backend.as_deref(),
                Some(new_pin.as_str()),
                "nodes disagree on the new pin"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_sight_on_two_nodes_ends_with_one_pin() {
    let redis = TestRedis::start().await;
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let (p1, _n1, p2, _n2) = two_nodes(&redis, &[&a, &b, &c], HEADER, "30m").await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let url = if i % 2 == 0 { p1.url("/") } else { p2.url("/") };
        tasks.push(tokio::spawn(async move {
            get(&fresh_client(), &url, &[("x-user", "bob")]).await
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        seen.insert(t.await.unwrap().unwrap().backend.unwrap());
    }
    assert_eq!(
        seen.len(),
        1,
        "20 parallel first requests landed on {seen:?}"
    );
    let stored = redis
        .command(&["GET", "fulcrum:aff:app:bob"])
        .await
        .unwrap();
    assert!(stored.contains("127.0.0.1:"), "pin is in Redis: {stored}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_death_costs_users_nothing_and_pins_return_with_it() {
    let mut redis = TestRedis::start().await;
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let (p1, _n1, p2, _n2) = two_nodes(&redis, &[&a, &b], HEADER, "30m").await;
    let (stop, failed, ok) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let mut load = Vec::new();
    for (i, url) in [p1.url("/"), p2.url("/")].into_iter().enumerate() {
        let (stop, failed, ok) = (stop.clone(), failed.clone(), ok.clone());
        load.push(tokio::spawn(async move {
            let client = fresh_client();
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let user = format!("u{}", (n * 2 + i as u64) % 30);
                match get(&client, &url, &[("x-user", user.as_str())]).await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                    _ => failed.fetch_add(1, Ordering::SeqCst),
                };
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = get_status(&p1.admin).await.unwrap();
    assert_eq!(s["session_store"], "degraded");
    // Both nodes hash new keys the same way while Redis is away: every answer a 200 from
    // a named backend, the same per key on both nodes, and both backends used (two
    // failures, or an always-the-same answer, would "agree" too).
    let mut chosen = std::collections::BTreeSet::new();
    for k in 0..20 {
        let key = format!("fresh-key-{k}");
        let mut answers = Vec::new();
        for p in [&p1, &p2] {
            let r = get(&fresh_client(), &p.url("/"), &[("x-user", key.as_str())])
                .await
                .expect("an answer while Redis is away");
            assert_eq!(r.status, 200, "{key} on {}", p.url("/"));
            answers.push(r.backend.expect("x-backend on the answer"));
        }
        assert_eq!(
            answers[0], answers[1],
            "fallback hashing must agree across nodes for {key}"
        );
        chosen.insert(answers[0].clone());
    }
    assert_eq!(
        chosen.len(),
        2,
        "fallback hashing spreads 20 keys over both backends: {chosen:?}"
    );
    redis.restart().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "user-visible errors ({} ok)",
        ok.load(Ordering::SeqCst)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while get_status(&p1.admin).await.unwrap()["session_store"] != "connected"
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        get_status(&p1.admin).await.unwrap()["session_store"],
        "connected"
    );
    let pinned = get(&fresh_client(), &p1.url("/"), &[("x-user", "after")])
        .await
        .unwrap()
        .backend
        .unwrap();
    let stored = redis
        .command(&["GET", "fulcrum:aff:app:after"])
        .await
        .unwrap();
    assert!(
        stored.contains(
            &[&a, &b]
                .iter()
                .find(|x| x.name() == pinned)
                .unwrap()
                .addr
                .to_string()
        ),
        "new pins go to Redis again: {stored}"
    );
    let metrics = fulcrum_tests::client::admin_call(&p1.admin, "GET", "/metrics", "", None)
        .await
        .unwrap()
        .body;
    assert!(
        metrics.contains("fulcrum_affinity_fallback_total"),
        "{metrics}"
    );
    let fallbacks: f64 = metrics
        .lines()
        .find(|l| l.starts_with("fulcrum_affinity_fallback_total"))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(fallbacks > 0.0, "fallbacks counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pin_expires_after_its_ttl() {
    let redis = TestRedis::start().await;
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let (p1, _n1, _p2, _n2) = two_nodes(&redis, &[&a, &b], HEADER, "1s").await;
    get(&fresh_client(), &p1.url("/"), &[("x-user", "carol")])
        .await
        .unwrap();
    assert!(redis
        .command(&["EXISTS", "fulcrum:aff:app:carol"])
        .await
        .unwrap()
        .contains(":1"));
    tokio::time::sleep(Duration::from_millis(2200)).await;
    assert!(
        redis
            .command(&["EXISTS", "fulcrum:aff:app:carol"])
            .await
            .unwrap()
            .contains(":0"),
        "idle pin must expire"
    );
}
