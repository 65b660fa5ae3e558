//! Raft cluster of real fulcrum processes on loopback: one leader, one config
//! everywhere, recovery from kill -9, membership changes, authentication, no quorum.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, fresh_client, get, get_status};
use fulcrum_tests::cluster::{node_config, peers_line, LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::process::Fulcrum;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

async fn put_config(admin: &str, text: &str) -> (u16, String) {
    let r = admin_call(admin, "PUT", "/config", text, None)
        .await
        .expect("admin call");
    (r.status.as_u16(), r.body)
}

fn version_of(body: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_one_leader_and_share_one_config() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let cluster =
        LocalCluster::start(3, fulcrum_tests::free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("a leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await,
        "seed config replicated"
    );
    // Apply on a follower: forwarded to the leader, visible on all three within 1 s.
    let follower = (leader + 1) % 3;
    let started = Instant::now();
    let (code, body) = put_config(
        &cluster.members[follower].admin,
        &cluster.balancer(&backend_list(&[&b], &[])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let version = version_of(&body);
    assert_eq!(version, 2);
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 2, Duration::from_secs(1))
            .await,
        "not on all nodes within 1 s"
    );
    eprintln!("apply-to-visible-on-all: {:?}", started.elapsed());
    for m in &cluster.members {
        let r = get(&fresh_client(), &m.url("/"), &[]).await.expect("proxy");
        assert_eq!(
            r.backend.as_deref(),
            Some("b"),
            "node {} still on the old config",
            m.id
        );
        let cfg = admin_call(&m.admin, "GET", "/config", "", None)
            .await
            .unwrap()
            .body;
        assert!(
            cfg.contains(&b.addr.to_string()),
            "GET /config on node {}",
            m.id
        );
    }
    // An invalid config is refused with its position and changes nothing.
    let (code, body) = put_config(
        &cluster.members[leader].admin,
        "[[pool]]\nname = \"x\"\nbackends = []\nbogus = 1\n",
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(body.contains("PUT /config:4:"), "{body}");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 2, Duration::from_millis(300))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leader_is_replaced_and_catches_up_from_its_own_disk() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let cluster =
        LocalCluster::start(3, fulcrum_tests::free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await
    );
    cluster.kill9(leader);
    let killed_at = Instant::now();
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = cluster
        .wait_leader(&alive, Duration::from_secs(2))
        .await
        .expect("new leader within 2 s");
    eprintln!(
        "time to elect after leader kill -9: {:?}",
        killed_at.elapsed()
    );
    assert_ne!(new_leader, leader);
    let (code, body) = put_config(
        &cluster.members[alive[0]].admin,
        &cluster.balancer(&backend_list(&[&b], &[])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(
        cluster
            .wait_version(&alive, 2, Duration::from_secs(2))
            .await
    );
    // The killed node comes back with its data dir and catches up without re-initialising.
    let before_restart = cluster.log(leader).len();
    cluster.restart(leader).await;
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 2, Duration::from_secs(5))
            .await,
        "restarted node did not catch up"
    );
    let log = cluster.log(leader);
    let since_restart = &log[before_restart.min(log.len())..];
    assert!(
        since_restart.contains("fulcrum node running"),
        "restart not in the log"
    );
    assert!(
        !since_restart.contains("initialized cluster"),
        "re-initialised on restart:\n{since_restart}"
    );
    let r = get(&fresh_client(), &cluster.members[leader].url("/"), &[])
        .await
        .unwrap();
    assert_eq!(r.backend.as_deref(), Some("b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_as_learner_becomes_voter_and_leaves() {
    let a = TestBackend::start("a").await;
    let cluster =
        LocalCluster::start(3, fulcrum_tests::free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await
    );
    let fourth = MemberPorts::new(4, cluster.web_port);
    let mut all = cluster.members.clone();
    all.push(fourth.clone());
    let data = tempfile::tempdir().unwrap();
    let cfg = node_config(
        &fourth,
        &peers_line(&all),
        &cluster.secret_path(),
        &data.path().display().to_string(),
        &cluster.balancer(&backend_list(&[&a], &[])),
    );
    let _node4 = Fulcrum::start(&cfg, &fourth.admin).await;
    let admin = &cluster.members[leader].admin;
    let add = admin_call(
        admin,
        "POST",
        &format!(
            "/members/add?id=4&raft={}&admin={}",
            fourth.raft, fourth.admin
        ),
        "",
        None,
    )
    .await
    .unwrap();
    assert_eq!(add.status, 200, "{}", add.body);
    let promote = admin_call(admin, "POST", "/members/promote?id=4", "", None)
        .await
        .unwrap();
    assert_eq!(promote.status, 200, "{}", promote.body);
    let members = admin_call(admin, "GET", "/members", "", None)
        .await
        .unwrap()
        .body;
    let list: serde_json::Value = serde_json::from_str(&members).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == 4 && m["voter"] == true),
        "{members}"
    );
    // The new voter runs the cluster's config once it has applied the log (asynchronously
    // after the promotion): wait for it, within a liveness bound.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut version = serde_json::Value::Null;
    while Instant::now() < deadline {
        version = get_status(&fourth.admin).await.unwrap()["config_version"].clone();
        if version == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(version, 1, "node 4 never ran the cluster's config");
    let remove = admin_call(admin, "POST", "/members/remove?id=4", "", None)
        .await
        .unwrap();
    assert_eq!(remove.status, 200, "{}", remove.body);
    let (code, body) = put_config(admin, &cluster.balancer(&backend_list(&[&a], &[2]))).await;
    assert_eq!(code, 200, "cluster keeps working after removal: {body}");
    let members = admin_call(admin, "GET", "/members", "", None)
        .await
        .unwrap()
        .body;
    assert!(!members.contains("\"id\": 4"), "{members}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_the_wrong_secret_never_joins() {
    let a = TestBackend::start("a").await;
    let cluster =
        LocalCluster::start(3, fulcrum_tests::free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("leader");
    let intruder = MemberPorts::new(4, cluster.web_port);
    let dir = tempfile::tempdir().unwrap();
    let bad_secret = dir.path().join("bad.secret");
    std::fs::write(&bad_secret, "not-the-secret").unwrap();
    let mut all = cluster.members.clone();
    all.push(intruder.clone());
    let cfg = node_config(
        &intruder,
        &peers_line(&all),
        &bad_secret.display().to_string(),
        &dir.path().join("data").display().to_string(),
        &cluster.balancer(&backend_list(&[&a], &[])),
    );
    let node4 = Fulcrum::start(&cfg, &intruder.admin).await;
    let admin = &cluster.members[leader].admin;
    let add = admin_call(
        admin,
        "POST",
        &format!(
            "/members/add?id=4&raft={}&admin={}",
            intruder.raft, intruder.admin
        ),
        "",
        None,
    )
    .await
    .unwrap();
    // Refused by the catch-up check (503 with the reason), not by anything else (a 400 for
    // a malformed request would say nothing about the secret).
    assert_eq!(
        add.status, 503,
        "a learner without the secret must be refused after its catch-up check: {}",
        add.body
    );
    assert!(add.body.starts_with("add learner 4 failed"), "{}", add.body);
    let members = admin_call(admin, "GET", "/members", "", None)
        .await
        .unwrap()
        .body;
    let list: serde_json::Value = serde_json::from_str(&members).unwrap();
    // Rolled back: not even a learner is left behind.
    assert!(
        list.as_array()
            .expect("a member list")
            .iter()
            .all(|m| m["id"] != 4),
        "the refused learner must be rolled back out of the membership: {members}"
    );
    let s4 = get_status(&intruder.admin).await.unwrap();
    assert_ne!(
        s4["config_version"], 1,
        "the intruder must not receive the cluster's config"
    );
    assert!(
        node4.log().to_lowercase().contains("auth")
            || (0..cluster.members.len()).any(|i| cluster.log(i).to_lowercase().contains("auth")),
        "refusal is logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_quorum_the_last_node_still_proxies_and_apply_fails_cleanly() {
    let a = TestBackend::start("a").await;
    let cluster =
        LocalCluster::start(3, fulcrum_tests::free_port(), &backend_list(&[&a], &[])).await;
    let _leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await
    );
    cluster.signal(1, Signal::SIGSTOP);
    cluster.signal(2, Signal::SIGSTOP);
    for _ in 0..20 {
        let r = get(&fresh_client(), &cluster.members[0].url("/"), &[])
            .await
            .expect("data plane keeps serving");
        assert_eq!(r.status, 200);
    }
    let started = Instant::now();
    let (code, body) = put_config(
        &cluster.members[0].admin,
        &cluster.balancer(&backend_list(&[&a], &[3])),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("no quorum"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "apply took {:?}",
        started.elapsed()
    );
    cluster.signal(1, Signal::SIGCONT);
    cluster.signal(2, Signal::SIGCONT);
    assert!(
        cluster
            .wait_leader(&[0, 1, 2], Duration::from_secs(10))
            .await
            .is_some(),
        "cluster heals"
    );
    let (code, body) = put_config(
        &cluster.members[0].admin,
        &cluster.balancer(&backend_list(&[&a], &[3])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}
