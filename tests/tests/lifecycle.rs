//! Process lifecycle: graceful shutdown, reloads (SIGHUP and PUT /config) under load,
//! and invalid configs refused with file:line:column while the running config stays.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, fresh_client, get, get_status, keepalive_client};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::{fulcrum_bin, Fulcrum};
use nix::sys::signal::Signal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_a_two_second_request_then_exits_zero() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let mut node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&b], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let url = ports.url("/slow?ms=2000");
    let slow = tokio::spawn(async move { get(&fresh_client(), &url, &[]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    node.signal(Signal::SIGTERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // New connections are refused once shutdown began.
    assert!(
        tokio::net::TcpStream::connect(&ports.web).await.is_err(),
        "listener still accepting after SIGTERM"
    );
    let reply = slow
        .await
        .expect("join")
        .expect("in-flight request must complete");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.backend.as_deref(), Some("b"));
    assert_eq!(
        node.wait_exit(Duration::from_secs(10)).await,
        Some(0),
        "log:\n{}",
        node.log()
    );
}

/// Sends requests on keep-alive connections until told to stop; counts failures.
fn load(
    url: String,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let client = keepalive_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            match get(&client, &url, &[]).await {
                Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::SeqCst),
                other => {
                    eprintln!("reload load failure: {other:?}");
                    failed.fetch_add(1, Ordering::SeqCst)
                }
            };
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_drop_no_request() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let cfg_a = single_node(&ports, &backend_list(&[&a], &[]), "", "");
    let cfg_b = single_node(&ports, &backend_list(&[&b], &[]), "", "");
    let node = Fulcrum::start(&cfg_a, &ports.admin).await;
    let (stop, ok, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let workers: Vec<_> = (0..4)
        .map(|_| load(ports.url("/"), stop.clone(), ok.clone(), failed.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..6 {
        let next = if round % 2 == 0 { &cfg_b } else { &cfg_a };
        if round % 3 == 0 {
            node.rewrite_config(next);
            node.signal(Signal::SIGHUP);
        } else {
            let r = admin_call(&ports.admin, "PUT", "/config", next, None)
                .await
                .expect("PUT /config");
            assert_eq!(r.status, 200, "{}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("join");
    }
    let status = get_status(&ports.admin).await.expect("status");
    assert_eq!(status["config_version"], 7, "six reloads after version 1");
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during reloads ({} ok); log:\n{}",
        ok.load(Ordering::SeqCst),
        node.log()
    );
    assert!(ok.load(Ordering::SeqCst) > 100);
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "both configs served traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_refused_with_position_and_the_running_one_stays() {
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let good = single_node(&ports, &backend_list(&[&b], &[]), "", "");
    let node = Fulcrum::start(&good, &ports.admin).await;
    // Route naming a pool that does not exist, on a known line.
    let bad = good.replace("pool = \"app\"\n\n[[pool]]", "pool = \"nope\"\n\n[[pool]]");
    let bad_line = bad
        .lines()
        .position(|l| l.contains("\"nope\""))
        .expect("line")
        + 1;
    let r = admin_call(&ports.admin, "PUT", "/config", &bad, None)
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body.contains(&format!("PUT /config:{bad_line}:")),
        "error must name line {bad_line}: {}",
        r.body
    );
    // SIGHUP with a broken file: refused, logged, nothing changes.
    node.rewrite_config("[[pool]\nname = ");
    node.signal(Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = get_status(&ports.admin).await.expect("status");
    assert_eq!(status["config_version"], 1);
    assert_eq!(
        get(&keepalive_client(), &ports.url("/"), &[])
            .await
            .unwrap()
            .backend
            .as_deref(),
        Some("b")
    );
    assert!(
        node.log().contains("fulcrum.toml:1:"),
        "SIGHUP error names file:line: {}",
        node.log()
    );
}

#[test]
fn check_prints_every_error_with_file_line_column_and_exits_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[node]\nid = 1\nadmin = \"127.0.0.1:9\"\n\n[[listener]]\nname = \"web\"\nbind = \"nowhere\"\n\n[[route]]\nlistener = \"web\"\npool = \"missing\"\n\n[[pool]]\nname = \"p\"\nbackends = [{ addr = \"127.0.0.1:1\", weight = 5000 }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(fulcrum_bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.display().to_string();
    assert!(
        err.contains(&format!("{file}:7:")),
        "bad bind on line 7: {err}"
    );
    assert!(
        err.contains(&format!("{file}:11:")),
        "missing pool on line 11: {err}"
    );
    assert!(
        err.contains(&format!("{file}:15:")),
        "weight on line 15: {err}"
    );
    // A good file prints the summary and exits 0.
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/examples/single-node.toml");
    let out = std::process::Command::new(fulcrum_bin())
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
