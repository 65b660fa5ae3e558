//! Slow start (issue 19 item 3) through a real fulcrum process and two real backends
//! in a round-robin pool with `slow_start = "4s"` and fast health checks: a backend that
//! comes back healthy gets a small share of the requests at first (10% of its share,
//! ramping up), and its full half once the window has passed. Weighted round-robin is
//! checked the same way with weights 3:1 for the returning backend.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::keepalive::exchange;
use fulcrum_tests::process::Fulcrum;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// One GET on the keep-alive connection `s`; the `x-backend` that answered.
async fn get(s: &mut TcpStream) -> String {
    let answer = exchange(s, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.header("x-backend").expect("x-backend").to_string()
}

/// How many of `n` requests `name` answered.
async fn share(s: &mut TcpStream, n: usize, name: &str) -> usize {
    let mut hits = 0;
    for _ in 0..n {
        if get(s).await == name {
            hits += 1;
        }
    }
    hits
}

async fn returning_backend_ramps_up(algorithm: &str, weights: &[u32], full: (usize, usize)) {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    b.set_healthy(false);
    let ports = Ports::new();
    let cfg = single_node(
        &ports,
        &backend_list(&[&a, &b], weights),
        &format!(
            "algorithm = \"{algorithm}\"\nslow_start = \"4s\"\n\
             health = {{ kind = \"http\", path = \"/healthz\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1 }}"
        ),
        "",
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let mut s = TcpStream::connect(&ports.web).await.expect("connect");
    // Both joined at start; wait out the window so that only b's return is measured.
    tokio::time::sleep(Duration::from_millis(4300)).await;
    assert_eq!(share(&mut s, 20, "b").await, 0, "b is down");

    b.set_healthy(true);
    let started = Instant::now();
    while get(&mut s).await != "b" {
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "b never came back"
        );
    }
    // Its first second back: 10% to 35% of its share.
    let warming = Instant::now();
    let early = share(&mut s, 100, "b").await;
    let took = warming.elapsed();
    assert!(took < Duration::from_millis(1500), "measured over {took:?}");
    assert!(
        early <= full.0 / 2,
        "{algorithm}: b took {early} of 100 while warming"
    );

    // After the window: its whole share.
    tokio::time::sleep(Duration::from_millis(4200).saturating_sub(warming.elapsed())).await;
    let warm = share(&mut s, 100, "b").await;
    assert!(
        (full.0..=full.1).contains(&warm),
        "{algorithm}: b took {warm} of 100 once warm (early {early})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_back_from_down_ramps_up_under_round_robin() {
    returning_backend_ramps_up("round-robin", &[], (40, 60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_back_from_down_ramps_up_under_weighted_round_robin() {
    returning_backend_ramps_up("weighted-round-robin", &[1, 3], (65, 85)).await;
}
