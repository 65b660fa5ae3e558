//! Active health checks, drain and the admin API's guard rails.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, get, get_status, keepalive_client, wait_health};
use fulcrum_tests::config::{backend_list, single_node, Ports};
use fulcrum_tests::process::Fulcrum;

/// How long a health change may take to show in `/status` (a liveness bound).
const HEALTH_WITHIN: Duration = Duration::from_secs(5);
use std::collections::HashSet;
use std::time::Duration;

const CHECK: &str =
    r#"health = { path = "/healthz", interval = "200ms", timeout = "150ms", rise = 2, fall = 2 }"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_checks_eject_and_passing_ones_readmit() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&a, &b], &[]), CHECK, ""),
        &ports.admin,
    )
    .await;
    let a_addr = a.addr.to_string();
    a.set_healthy(false);
    wait_health(&ports.admin, &a_addr, false, HEALTH_WITHIN).await;
    let client = keepalive_client();
    for _ in 0..20 {
        assert_eq!(
            get(&client, &ports.url("/"), &[])
                .await
                .unwrap()
                .backend
                .as_deref(),
            Some("b"),
            "ejected backend got traffic"
        );
    }
    a.set_healthy(true);
    wait_health(&ports.admin, &a_addr, true, HEALTH_WITHIN).await;
    let mut seen = HashSet::new();
    for _ in 0..10 {
        seen.insert(
            get(&client, &ports.url("/"), &[])
                .await
                .unwrap()
                .backend
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 2, "readmitted backend gets traffic again");
    let metrics = admin_call(&ports.admin, "GET", "/metrics", "", None)
        .await
        .unwrap()
        .body;
    assert!(metrics.contains("fulcrum_health_checks_total"), "{metrics}");
    assert!(metrics.contains("result=\"fail\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_gets_no_new_requests_and_admin_needs_the_token() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let ports = Ports::new();
    let token_dir = tempfile::tempdir().unwrap();
    let token_file = token_dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let cfg = single_node(&ports, &backend_list(&[&a, &b], &[]), "", "").replace(
        "access_log = \"off\"",
        &format!(
            "access_log = \"off\"\nadmin_token_file = \"{}\"",
            token_file.display()
        ),
    );
    let _node = Fulcrum::start(&cfg, &ports.admin).await;
    let path = format!("/drain?pool=app&addr={}", a.addr);
    let refused = admin_call(&ports.admin, "POST", &path, "", None)
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
    let wrong = admin_call(&ports.admin, "POST", &path, "", Some("nope"))
        .await
        .unwrap();
    assert_eq!(wrong.status, 401);
    let put = admin_call(&ports.admin, "PUT", "/config", &cfg, None)
        .await
        .unwrap();
    assert_eq!(put.status, 401, "PUT /config without token must be refused");
    let ok = admin_call(&ports.admin, "POST", &path, "", Some("s3cret-token"))
        .await
        .unwrap();
    assert_eq!(ok.status, 200, "{}", ok.body);
    let client = keepalive_client();
    for _ in 0..10 {
        assert_eq!(
            get(&client, &ports.url("/"), &[])
                .await
                .unwrap()
                .backend
                .as_deref(),
            Some("b")
        );
    }
    let status = get_status(&ports.admin).await.unwrap();
    assert_eq!(status["pools"][0]["backends"][0]["drained"], true);
    let undrain = admin_call(
        &ports.admin,
        "POST",
        &format!("/undrain?pool=app&addr={}", a.addr),
        "",
        Some("s3cret-token"),
    )
    .await
    .unwrap();
    assert_eq!(undrain.status, 200);
    let mut seen = HashSet::new();
    for _ in 0..10 {
        seen.insert(
            get(&client, &ports.url("/"), &[])
                .await
                .unwrap()
                .backend
                .unwrap(),
        );
    }
    assert_eq!(seen.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_describe_the_node() {
    let a = TestBackend::start("a").await;
    let ports = Ports::new();
    let _node = Fulcrum::start(
        &single_node(&ports, &backend_list(&[&a], &[]), "", ""),
        &ports.admin,
    )
    .await;
    let client = keepalive_client();
    for _ in 0..5 {
        get(&client, &ports.url("/"), &[]).await.unwrap();
    }
    let s = get_status(&ports.admin).await.unwrap();
    for field in [
        "node_id",
        "role",
        "leader_id",
        "term",
        "config_version",
        "vip_held",
        "pools",
    ] {
        assert!(s.get(field).is_some(), "status lacks {field}: {s}");
    }
    assert_eq!(s["pools"][0]["backends"][0]["addr"], a.addr.to_string());
    let m = admin_call(&ports.admin, "GET", "/metrics", "", None)
        .await
        .unwrap()
        .body;
    assert!(
        m.contains(&format!(
            "fulcrum_requests_total{{pool=\"app\",backend=\"{}\",class=\"2xx\"}} 5",
            a.addr
        )),
        "{m}"
    );
    assert!(m.contains("fulcrum_request_duration_seconds_bucket"));
    assert!(m.contains("fulcrum_client_connections"));
    assert!(m.contains("fulcrum_backend_healthy"));
    let cfg = admin_call(&ports.admin, "GET", "/config", "", None)
        .await
        .unwrap()
        .body;
    assert!(cfg.contains("[[pool]]"));
}
