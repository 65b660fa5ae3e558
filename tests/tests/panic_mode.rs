//! Panic mode shows in `/status` (issue 19): when every healthy backend of a pool is
//! locally ejected, fulcrum picks among them anyway rather than refusing (an ejection is
//! only a guess), and `/status` says so per pool: `panic.now` while it lasts, and
//! `panic.picks`, the picks made that way. A real fulcrum process, backends on ports
//! where nothing listens at first, then a real backend on one of them.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get};
use fulcrum_tests::config::{single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use serde_json::Value;
use std::net::SocketAddr;

/// The `panic` object of pool `app` in `/status`.
async fn panic_of(admin: &str) -> Value {
    let reply = get(&fresh_client(), &format!("http://{admin}/status"), &[])
        .await
        .expect("status");
    let status: Value = serde_json::from_str(&reply.body).expect("status is JSON");
    let pools = status["pools"].as_array().cloned().unwrap_or_default();
    let app = pools.iter().find(|p| p["name"] == "app").expect("pool app");
    app["panic"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_whose_backends_are_all_ejected_reports_panic_mode() {
    let ports = Ports::new();
    let (p1, p2) = (fulcrum_tests::free_port(), fulcrum_tests::free_port());
    let backends = format!("[{{ addr = \"127.0.0.1:{p1}\" }}, {{ addr = \"127.0.0.1:{p2}\" }}]");
    let config = single_node(&ports, &backends, "algorithm = \"round-robin\"", "");
    let node = Fulcrum::start(&config, &ports.admin).await;
    let client = fresh_client();
    let panic = panic_of(&node.admin).await;
    assert_eq!(panic["now"], false, "{panic}");
    assert_eq!(panic["picks"], 0, "{panic}");

    // Nothing listens: the request fails on both backends, which are ejected.
    let reply = get(&client, &ports.url("/"), &[]).await.expect("answer");
    assert_eq!(reply.status.as_u16(), 502, "{reply:?}");
    let panic = panic_of(&node.admin).await;
    assert_eq!(panic["now"], true, "both ejected, both healthy: {panic}");

    // A backend comes up on the first port: served through a panic-mode pick.
    let addr: SocketAddr = format!("127.0.0.1:{p1}").parse().expect("addr");
    let backend = TestBackend::start_on(addr, "b1").await;
    let reply = get(&client, &ports.url("/"), &[]).await.expect("answer");
    assert_eq!(reply.status.as_u16(), 200, "{reply:?}");
    let panic = panic_of(&node.admin).await;
    assert!(panic["picks"].as_u64().unwrap_or(0) >= 1, "{panic}");
    // Its success ended its ejection: one backend is eligible again, no more panic.
    assert_eq!(panic["now"], false, "{panic}");
    assert_eq!(backend.requests(), 1);
    drop(node);
}
