//! A log sink that stops reading never stops a node. Every node of a three-node cluster
//! writes its diagnostics (Raft's at `debug`, so there are many) and its access log to pipes that
//! nobody reads: after 64 KiB each, a blocking write would park the writing thread for
//! good, the Raft leader's lease pings with it. The node must go on leading, replicating
//! and proxying, dropping (and counting) the lines it cannot write.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{fresh_client, get, get_status, keepalive_client};
use fulcrum_tests::cluster::{LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use std::time::{Duration, Instant};

/// Requests through the data plane: far more access-log lines than a pipe holds.
const REQUESTS: usize = 600;
/// How long the leadership is watched after the load.
const WATCH: Duration = Duration::from_secs(3);

/// `(leader id, term)` as a node's `/status` reports it.
async fn leadership(admin: &str) -> Option<(u64, u64)> {
    let s = get_status(admin).await?;
    Some((s["leader_id"].as_u64()?, s["term"].as_u64()?))
}

/// The `fulcrum_log_lines_dropped_total` figure of a node's `/metrics`.
async fn dropped_lines(admin: &str) -> Option<f64> {
    let reply = get(&fresh_client(), &format!("http://{admin}/metrics"), &[])
        .await
        .ok()?;
    reply
        .body
        .lines()
        .find_map(|l| l.strip_prefix("fulcrum_log_lines_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sink_that_stops_reading_stops_neither_raft_nor_the_data_plane() {
    // Inherited by the nodes started below (this binary has no other test): Raft's debug
    // lines fill a pipe in seconds, and a short queue behind it overflows soon after.
    std::env::set_var("RUST_LOG", "info,openraft=debug");
    std::env::set_var("FULCRUM_LOG_QUEUE_LINES", "256");
    let backend = TestBackend::start("a").await;
    let cluster = LocalCluster::start_unread(
        3,
        fulcrum_tests::free_port(),
        &backend_list(&[&backend], &[]),
    )
    .await;
    let members = &cluster.members;

    // A leader every node agrees on.
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = loop {
        let views: Vec<_> = all_views(members).await;
        if let Some(first) = views[0] {
            if views.iter().all(|v| *v == Some(first)) {
                break first;
            }
        }
        assert!(Instant::now() < deadline, "no agreed leader: {views:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    eprintln!("cluster up, leader agreed: {before:?}");
    // The data plane answers every request while its access log cannot be written.
    let load_started = Instant::now();
    let client = keepalive_client();
    let mut failed = Vec::new();
    for i in 0..REQUESTS {
        let m = &members[i % members.len()];
        match get(&client, &m.url("/"), &[]).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failed.push(format!("{}: {}", m.web, r.status)),
            Err(e) => failed.push(format!("{}: {e}", m.web)),
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {REQUESTS} requests failed, first: {:?}",
        failed.len(),
        failed.first()
    );

    eprintln!("{REQUESTS} requests in {:?}", load_started.elapsed());
    // Leadership stays where it was: the leader's lease pings never waited for a write.
    let watch_end = Instant::now() + WATCH;
    while Instant::now() < watch_end {
        for (m, view) in members.iter().zip(all_views(members).await) {
            assert_eq!(
                view,
                Some(before),
                "node {} saw (leader, term) {view:?}, was {before:?}",
                m.id
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The sinks really were stuck: every node dropped lines, and says so.
    for m in members {
        let dropped = dropped_lines(&m.admin).await;
        assert!(
            dropped.is_some_and(|d| d > 0.0),
            "node {} reports {dropped:?} dropped log lines; the pipes never filled, so this \
             test proved nothing",
            m.id
        );
    }
    drop(cluster);
}

/// Every member's `(leader, term)` view, in member order.
async fn all_views(members: &[MemberPorts]) -> Vec<Option<(u64, u64)>> {
    let mut out = Vec::new();
    for m in members {
        out.push(leadership(&m.admin).await);
    }
    out
}
