//! The replicated state heals itself (issue 23 items 1 and 2), with three real fulcrum
//! processes on loopback and real backends:
//! - a backend that recovered while one of its observers was down is readmitted on
//!   every node once that observer restarts (its checker reports its real first verdict);
//! - a health view reached while the cluster had no quorum for over 30 s is committed
//!   when quorum returns (the newest view, not an older one);
//! - an older "down" of a partitioned observer never overwrites its newer "up" when
//!   quorum returns;
//! - a committed config whose new port is busy on one node is reported there (`/status`,
//!   metrics, `ctl status`) and applied by that node once the port is free.
//!
//! The tests of this file run one at a time: each starts three nodes and measures how
//! long convergence takes, which a neighbour test competing for the two cores would skew.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, fresh_client, get, get_status};
use fulcrum_tests::cluster::{listen_ip, LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::process::fulcrum_bin;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Checks every 200 ms; two in a row decide (0.4 s per verdict).
const CHECK: &str =
    r#"health = { path = "/healthz", interval = "200ms", timeout = "150ms", rise = 2, fall = 2 }"#;

/// Convergence bound after an observer restarts: its first verdict needs `rise` checks
/// (0.4 s), then one commit; the rest is margin for catching up with the leader.
const RESTART_BOUND: Duration = Duration::from_secs(5);
/// Convergence bound after quorum returns: an election (under 1 s here) plus at most
/// one reporter backoff (2 s) plus one commit.
const QUORUM_BOUND: Duration = Duration::from_secs(6);
/// A freed port is used within the apply retry's longest pause (2 s) plus an apply.
const PORT_FREED_BOUND: Duration = Duration::from_secs(4);

/// The pool's `backends = [...]` line followed by the health check.
fn checked(backends: &[&TestBackend]) -> String {
    format!("{}\n{CHECK}", backend_list(backends, &[]))
}

async fn start_cluster(backends: &str, cluster_extra: &'static str) -> LocalCluster {
    let web_port = fulcrum_tests::free_port();
    let members: Vec<MemberPorts> = (1..=3).map(|id| MemberPorts::new(id, web_port)).collect();
    let cluster =
        LocalCluster::start_members(members, web_port, backends, |_| cluster_extra.to_string())
            .await;
    cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("a leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await,
        "seed config on every node"
    );
    cluster
}

/// The backend `addr` of pool `app` in a `/status` document.
fn backend<'a>(status: &'a Value, addr: &str) -> Option<&'a Value> {
    status["pools"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == "app")?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["addr"] == addr)
}

/// Node `member`'s effective verdict on `addr`.
async fn effective(cluster: &LocalCluster, member: usize, addr: &str) -> Option<bool> {
    let status = get_status(&cluster.members[member].admin).await?;
    backend(&status, addr)?["healthy"].as_bool()
}

/// What observer `observer` last reported on `addr`, as node `member` sees the
/// replicated state (None: never reported).
async fn observed(
    cluster: &LocalCluster,
    member: usize,
    addr: &str,
    observer: u64,
) -> Option<bool> {
    let status = get_status(&cluster.members[member].admin).await?;
    backend(&status, addr)?["observers"][observer.to_string()].as_bool()
}

/// Polls `check` every 50 ms until it holds or `within` passes; returns the time taken.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < within {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

async fn all_effective(cluster: &LocalCluster, members: &[usize], addr: &str, want: bool) -> bool {
    for &m in members {
        if effective(cluster, m, addr).await != Some(want) {
            return false;
        }
    }
    true
}

async fn all_observed(
    cluster: &LocalCluster,
    members: &[usize],
    addr: &str,
    observer: u64,
    want: bool,
) -> bool {
    for &m in members {
        if observed(cluster, m, addr, observer).await != Some(want) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_recovered_while_an_observer_was_down_is_readmitted_when_it_restarts() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    // `any`: one observer's "down" ejects the backend, so a stale one shows at once.
    let cluster = start_cluster(&checked(&[&a, &b]), "health_policy = \"any\"").await;
    let addr = a.addr.to_string();
    a.set_healthy(false);
    for observer in 1..=3 {
        assert!(
            eventually(Duration::from_secs(5), || all_observed(
                &cluster,
                &[0, 1, 2],
                &addr,
                observer,
                false
            ))
            .await
            .is_some(),
            "node {observer}'s 'down' committed"
        );
    }
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("leader");
    let stopped = (leader + 1) % 3;
    let alive: Vec<usize> = (0..3).filter(|&i| i != stopped).collect();
    cluster.kill9(stopped);
    a.set_healthy(true);
    for &m in &alive {
        let id = cluster.members[m].id;
        assert!(
            eventually(Duration::from_secs(5), || all_observed(
                &cluster, &alive, &addr, id, true
            ))
            .await
            .is_some(),
            "node {id}'s 'up' committed"
        );
    }
    // The premise: the stopped node's stale "down" still ejects the backend everywhere.
    assert!(all_effective(&cluster, &alive, &addr, false).await);

    cluster.restart(stopped).await;
    let took = eventually(RESTART_BOUND, || {
        all_effective(&cluster, &[0, 1, 2], &addr, true)
    })
    .await;
    eprintln!("observer restart -> healthy on every node: {took:?}");
    let took = took.unwrap_or_else(|| {
        panic!(
            "still ejected {RESTART_BOUND:?} after the observer restarted; its log:\n{}",
            cluster.log(stopped)
        )
    });
    assert!(took <= RESTART_BOUND);
    let id = cluster.members[stopped].id;
    assert!(all_observed(&cluster, &[0, 1, 2], &addr, id, true).await);
    let r = get(&fresh_client(), &cluster.members[stopped].url("/"), &[])
        .await
        .expect("proxy");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_view_reached_without_quorum_for_over_30s_is_committed_when_it_returns() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let cluster = start_cluster(&checked(&[&a, &b]), "").await;
    let addr = a.addr.to_string();
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("leader");
    // Keep a follower: it cannot commit anything alone, nor find a leader to forward to.
    let kept = (leader + 1) % 3;
    let kept_id = cluster.members[kept].id;
    let frozen: Vec<usize> = (0..3).filter(|&i| i != kept).collect();
    for &i in &frozen {
        cluster.signal(i, Signal::SIGSTOP);
    }
    // The kept node's view flaps down, up, down; the last flip is > 30 s before quorum
    // returns, so a bounded retry would have given up on all of them.
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.set_healthy(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_secs(34)).await;
    assert_eq!(
        observed(&cluster, kept, &addr, kept_id).await,
        None,
        "nothing can commit without quorum"
    );
    for &i in &frozen {
        cluster.signal(i, Signal::SIGCONT);
    }
    let took = eventually(QUORUM_BOUND, || {
        all_observed(&cluster, &[0, 1, 2], &addr, kept_id, false)
    })
    .await;
    eprintln!("quorum back -> kept node's newest view committed on every node: {took:?}");
    let took = took.unwrap_or_else(|| {
        panic!(
            "node {kept_id}'s view not committed {QUORUM_BOUND:?} after quorum returned; its log:\n{}",
            cluster.log(kept)
        )
    });
    assert!(took <= QUORUM_BOUND);
    assert!(
        eventually(Duration::from_secs(3), || all_effective(
            &cluster,
            &[0, 1, 2],
            &addr,
            false
        ))
        .await
        .is_some(),
        "every node ejects the backend every observer sees down"
    );
}

/// An older "down" must never overwrite a newer "up" when quorum returns.
///
/// Before the reporter each flip got its own retry task (attempts of up to 3 s each,
/// 0.5, 1, 2, 4 s apart), so the order in which a partitioned observer's flips committed
/// depended on where each task was in its schedule when quorum came back. This timeline
/// puts the return where the "down" task (flip at D) pauses between attempts (D+15.5 s to
/// D+19.5 s) while the "up" task (flip at D+5 s) is in an attempt: the "up" committed
/// first, the "down" on its next attempt, and every node ejected a healthy backend for
/// good. Only fields every version's `/status` has are read, so the test also runs
/// against an old binary (`FULCRUM_BIN`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_down_never_overwrites_a_newer_up_when_quorum_returns() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    // `any`: the kept node's stale "down" alone would eject the backend everywhere.
    let cluster = start_cluster(&checked(&[&a, &b]), "health_policy = \"any\"").await;
    let addr = a.addr.to_string();
    assert!(all_effective(&cluster, &[0, 1, 2], &addr, true).await);
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("leader");
    let kept = (leader + 1) % 3;
    let away: Vec<usize> = (0..3).filter(|&i| i != kept).collect();
    for &i in &away {
        cluster.kill9(i);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_at = Instant::now();
    a.set_healthy(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.set_healthy(true);
    // Quorum is back about a second after the restart: D+17.5..19 s.
    tokio::time::sleep(Duration::from_millis(17_000).saturating_sub(down_at.elapsed())).await;
    for &i in &away {
        cluster.restart(i).await;
    }
    eprintln!(
        "restarted the other two {:?} after the 'down'",
        down_at.elapsed()
    );
    let took = eventually(Duration::from_secs(10), || {
        all_effective(&cluster, &[0, 1, 2], &addr, true)
    })
    .await;
    eprintln!("quorum back -> the healthy backend admitted everywhere: {took:?}");
    // Stays admitted: a late "down" would flip it back within its task's next attempt.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for m in 0..3 {
        assert_eq!(
            effective(&cluster, m, &addr).await,
            Some(true),
            "node {} ejects the healthy backend; the kept node's log:\n{}",
            cluster.members[m].id,
            cluster.log(kept)
        );
    }
    assert!(took.is_some(), "never admitted everywhere");
}

/// `config_version_running`, `config_version_committed`, `config_apply_error` of a node.
async fn versions(admin: &str) -> (u64, u64, Value) {
    let s = get_status(admin).await.expect("status");
    let running = s["config_version_running"].as_u64().unwrap_or(0);
    assert_eq!(
        s["config_version"].as_u64(),
        Some(running),
        "contract: running"
    );
    let committed = s["config_version_committed"].as_u64().unwrap_or(0);
    (running, committed, s["config_apply_error"].clone())
}

async fn metrics(admin: &str) -> String {
    admin_call(admin, "GET", "/metrics", "", None)
        .await
        .expect("metrics")
        .body
}

/// The value of an unlabelled metric line `name VALUE`.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn ctl_status(admin: &str) -> String {
    let out = std::process::Command::new(fulcrum_bin())
        .args(["ctl", "--admin", admin, "status"])
        .output()
        .expect("run fulcrum ctl");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_whose_port_is_busy_on_one_node_is_reported_and_applied_once_free() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let cluster = start_cluster(&backend_list(&[&a], &[]), "").await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(5))
        .await
        .expect("leader");
    let busy = (leader + 1) % 3;
    let others: Vec<usize> = (0..3).filter(|&i| i != busy).collect();
    let admin = cluster.members[busy].admin.clone();
    let port = fulcrum_tests::free_port();
    let blocker = std::net::TcpListener::bind((listen_ip(cluster.members[busy].id), port))
        .expect("occupy the port on the busy node's address");
    let extra = format!(
        "{}\n[[listener]]\nname = \"extra\"\nbind = \"127.0.0.1:{port}\"\n\n[[route]]\nlistener = \"extra\"\npool = \"app\"\n",
        cluster.balancer(&backend_list(&[&a], &[]))
    );
    let put = admin_call(
        &cluster.members[leader].admin,
        "PUT",
        "/config",
        &extra,
        None,
    )
    .await
    .expect("apply");
    assert_eq!(put.status, 200, "{}", put.body);
    let version = serde_json::from_str::<Value>(&put.body).expect("json")["version"].as_u64();
    assert_eq!(version, Some(2), "{}", put.body);
    assert!(
        cluster
            .wait_version(&others, 2, Duration::from_secs(1))
            .await,
        "the nodes with a free port run it at once"
    );

    let failing = || async {
        let (running, committed, error) = versions(&admin).await;
        running == 1
            && committed == 2
            && error["version"] == 2
            && error["attempts"].as_u64() >= Some(2)
    };
    assert!(
        eventually(Duration::from_secs(5), failing).await.is_some(),
        "the busy node reports the failure and keeps retrying: {:?}",
        versions(&admin).await
    );
    let (_, _, error) = versions(&admin).await;
    let reason = error["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot bind") && reason.contains(&port.to_string()),
        "{error}"
    );
    assert!(reason.to_lowercase().contains("in use"), "{error}");
    assert_eq!(error["retrying"], true);
    assert!(
        error["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{error}"
    );
    let m = metrics(&admin).await;
    assert_eq!(
        metric(&m, "fulcrum_config_version_running"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "fulcrum_config_version_committed"), Some(2.0));
    assert!(
        metric(&m, "fulcrum_config_apply_failures_total") >= Some(2.0),
        "{m}"
    );
    let ctl = ctl_status(&admin);
    assert!(ctl.contains("config running 1 committed 2"), "{ctl}");
    assert!(ctl.contains("config apply error: version 2"), "{ctl}");
    // The busy node still serves with the version it runs.
    let r = get(&fresh_client(), &cluster.members[busy].url("/"), &[])
        .await
        .expect("old config serves");
    assert_eq!(r.backend.as_deref(), Some("a"));

    drop(blocker);
    let took = eventually(PORT_FREED_BOUND, || async { versions(&admin).await.0 == 2 }).await;
    eprintln!("port freed -> busy node runs the committed version: {took:?}");
    assert!(
        took.is_some_and(|t| t <= PORT_FREED_BOUND),
        "not applied {PORT_FREED_BOUND:?} after the port was freed: {:?}",
        versions(&admin).await
    );
    let (running, committed, error) = versions(&admin).await;
    assert_eq!((running, committed, error), (2, 2, Value::Null));
    let m = metrics(&admin).await;
    assert_eq!(metric(&m, "fulcrum_config_version_running"), Some(2.0));
    let url = format!("http://{}:{port}/", listen_ip(cluster.members[busy].id));
    let r = get(&fresh_client(), &url, &[]).await.expect("new listener");
    assert_eq!(r.backend.as_deref(), Some("a"));
    for &i in &others {
        let e = versions(&cluster.members[i].admin).await.2;
        assert_eq!(
            e,
            Value::Null,
            "node {} had no failure",
            cluster.members[i].id
        );
    }
}
