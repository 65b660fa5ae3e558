//! The admin API as an attacker meets it (issue 17 item 5), through a real fulcrum
//! process with a token: mutating calls without the token (or with a wrong one) are
//! refused and change nothing, an oversized config body is refused with 413 and the
//! running config stays, the token never appears in any answer, and a client that
//! connects and sends nothing (or trickles a head) is dropped within a timeout.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, get_status};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "s3cret-admin-token-7f1c";

async fn node_with_token() -> (Ports, Fulcrum, String, tempfile::TempDir, TestBackend) {
    let backend = TestBackend::start("b0").await;
    let ports = Ports::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).expect("token");
    let cfg = single_node(&ports, &backend_list(&[&backend], &[]), "", "").replace(
        "access_log = \"off\"",
        &format!(
            "access_log = \"off\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
    );
    let node = Fulcrum::start(&cfg, &ports.admin).await;
    (ports, node, cfg, dir, backend)
}

async fn config_version(admin: &str) -> u64 {
    get_status(admin)
        .await
        .and_then(|s| s["config_version"].as_u64())
        .expect("config_version in /status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_calls_need_the_token_and_big_bodies_are_refused() {
    let (ports, _node, cfg, _dir, _b) = node_with_token().await;
    let before = config_version(&ports.admin).await;
    let changed = cfg.replace("[[pool]]", "[[pool]]\nalgorithm = \"random\"");
    for token in [None, Some("wrong"), Some(&TOKEN[..TOKEN.len() - 1])] {
        let put = admin_call(&ports.admin, "PUT", "/config", &changed, token)
            .await
            .expect("answer");
        assert_eq!(put.status, 401, "PUT /config with {token:?}");
    }
    // 5 MiB of config: refused whole, with the token too.
    let huge = format!("{changed}\n# {}\n", "x".repeat(5 * 1024 * 1024));
    let put = admin_call(&ports.admin, "PUT", "/config", &huge, Some(TOKEN))
        .await
        .expect("answer");
    assert_eq!(put.status, 413, "oversized config body");
    assert_eq!(config_version(&ports.admin).await, before, "config changed");
    // The token is accepted, and never echoed by any answer.
    let put = admin_call(&ports.admin, "PUT", "/config", &changed, Some(TOKEN))
        .await
        .expect("answer");
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(config_version(&ports.admin).await > before);
    for path in ["/status", "/config", "/metrics", "/cluster"] {
        let got = admin_call(&ports.admin, "GET", path, "", Some(TOKEN))
            .await
            .expect("answer");
        assert!(!got.body.contains(TOKEN), "{path} echoes the token");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_trickling_admin_clients_are_dropped() {
    let (ports, _node, _cfg, _dir, _b) = node_with_token().await;
    for trickle in [false, true] {
        let mut s = TcpStream::connect(&ports.admin).await.expect("connect");
        let started = Instant::now();
        let mut buf = [0u8; 256];
        let closed = loop {
            if trickle {
                let _ = s.write_all(b"X").await;
            }
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
                Ok(Ok(_)) => {}
                Err(_) => {}
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "admin client (trickle: {trickle}) still connected after 15 s"
            );
        };
        assert!(
            closed >= Duration::from_secs(4),
            "dropped too early: {closed:?}"
        );
        // The API still answers.
        assert!(get_status(&ports.admin).await.is_some());
    }
}
