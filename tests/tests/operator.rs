//! What an operator sees (issue 15 items 1 and 2), with three real fulcrum processes on
//! loopback and a real backend:
//! - the divergence case of the issue: three nodes on one host, each file naming its own
//!   listener port (no `[node] listen_ip`). Only the node that seeded the cluster can bind
//!   the replicated listener; `ctl status` names the nodes that do not run the committed
//!   version and why, and `ctl apply` from a follower exits 1 naming the two nodes that
//!   could not bind its port, instead of printing "applied";
//! - on a cluster that can apply (listeners on `listen_ip`), `ctl apply` prints one line
//!   per node and succeeds; with a node killed it waits, then names it unreachable;
//!   `--no-wait` returns at the commit.
//!
//! One test at a time: each starts three nodes.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::get_status;
use fulcrum_tests::cluster::{LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::free_port;
use fulcrum_tests::process::{ctl, output_text as text};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A node file as a new user writes it: the listener on this node's own port.
fn own_port_file(
    me: &MemberPorts,
    peers: &str,
    secret: &Path,
    data: &Path,
    web: u16,
    backends: &str,
) -> String {
    format!(
        r#"[node]
id = {id}
admin = "{admin}"
data_dir = "{data}"
access_log = "off"
shutdown_grace = "5s"

[cluster]
raft = "{raft}"
peers = {peers}
secret_file = "{secret}"

[[listener]]
name = "web"
bind = "127.0.0.1:{web}"

[[route]]
listener = "web"
pool = "app"

[[pool]]
name = "app"
backends = {backends}
"#,
        id = me.id,
        admin = me.admin,
        raft = me.raft,
        data = data.display(),
        secret = secret.display(),
    )
}

/// `ctl status --json` of `admin`.
async fn status_json(admin: &str) -> Value {
    let out = ctl(admin, &["status", "--json"]).await;
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

/// Polls `check` every 100 ms for up to `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `ctl apply`'s output has "running config version `version`" for each of `members`.
fn assert_running(out_text: &str, members: &[MemberPorts], version: u64) {
    for m in members {
        let line = format!(
            "node {} ({}): running config version {version}",
            m.id, m.admin
        );
        assert!(out_text.contains(&line), "{line}: {out_text}");
    }
}

fn node(doc: &Value, id: u64) -> &Value {
    doc["nodes"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["id"] == id))
        .unwrap_or(&Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_listener_ports_per_node_show_as_divergence_and_apply_names_the_nodes() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let backends = backend_list(&[&a], &[]);
    let members: Vec<MemberPorts> = (1..=3).map(|id| MemberPorts::new(id, 0)).collect();
    let webs: Vec<u16> = members.iter().map(|_| free_port()).collect();
    let cluster = LocalCluster::start_files(members.clone(), 0, |m, local| {
        let web = webs[m.id as usize - 1];
        own_port_file(
            m,
            &local.peers,
            Path::new(&local.secret_file),
            Path::new(&local.data_dir),
            web,
            &backends,
        )
    })
    .await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("a leader");
    let leader_id = members[leader].id;
    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

    // Every node, asked anywhere, shows the two followers stuck below version 1 and why.
    let asked = &members[followers[0]].admin;
    let diverged = || async {
        let doc = status_json(asked).await;
        let mut d: Vec<u64> = doc["divergent"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .collect();
        d.sort();
        let want: Vec<u64> = followers.iter().map(|&i| members[i].id).collect();
        d == want
            && followers
                .iter()
                .all(|&i| node(&doc, members[i].id)["status"]["config_apply_error"]["version"] == 1)
    };
    assert!(
        eventually(Duration::from_secs(5), diverged).await,
        "the followers are reported diverged: {:#}",
        status_json(asked).await
    );
    let doc = status_json(asked).await;
    assert_eq!(doc["nodes"].as_array().map(Vec::len), Some(3), "{doc:#}");
    assert_eq!(
        node(&doc, leader_id)["status"]["config_version_running"],
        1,
        "{doc:#}"
    );
    for &i in &followers {
        let n = node(&doc, members[i].id);
        assert_eq!(n["reachable"], true, "{doc:#}");
        assert_eq!(n["status"]["config_version_running"], 0, "{doc:#}");
        let reason = n["status"]["config_apply_error"]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.contains("cannot bind") && reason.contains(&webs[leader].to_string()),
            "{n:#}"
        );
    }
    let table = ctl(asked, &["status"]).await;
    let table_text = text(&table);
    assert!(table.status.success(), "{table_text}");
    assert!(table_text.contains("DIVERGED: node(s)"), "{table_text}");
    assert!(table_text.contains("0 (!)"), "{table_text}");
    assert!(
        table_text.contains("version 1 (") && table_text.contains("cannot bind"),
        "{table_text}"
    );
    eprintln!("{table_text}");

    // The issue's step: `ctl apply` of a follower's own file on that follower.
    let f = followers[0];
    let out = ctl(
        &members[f].admin,
        &["apply", &cluster.config_path(f).display().to_string()],
    )
    .await;
    let out_text = text(&out);
    eprintln!("{out_text}");
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(
        out_text.contains("committed: config version 2"),
        "{out_text}"
    );
    assert!(
        !out_text.contains("applied: config version 2"),
        "{out_text}"
    );
    // The follower whose file it is already holds that port: it runs version 2. The
    // other two cannot bind it, and are named with the reason.
    assert!(
        out_text.contains(&format!(
            "node {} ({}): running config version 2",
            members[f].id, members[f].admin
        )),
        "{out_text}"
    );
    for (_, m) in members.iter().enumerate().filter(|(i, _)| *i != f) {
        assert!(
            out_text.contains(&format!("node {} ({}): NOT applied", m.id, m.admin)),
            "node {} named: {out_text}",
            m.id
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let named: Vec<String> = members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != f)
        .map(|(_, m)| format!("node {}", m.id))
        .collect();
    assert!(
        stderr.contains(&format!("but {} did not run it", named.join(", "))),
        "{out_text}"
    );
    assert!(out_text.contains("cannot bind"), "{out_text}");
    assert!(
        out_text.contains("waiting for node(s)"),
        "progress for a wait over a second: {out_text}"
    );

    // Metrics on a node that failed.
    let m = fulcrum_tests::client::admin_call(&members[leader].admin, "GET", "/metrics", "", None)
        .await
        .expect("metrics")
        .body;
    let value = |name: &str| {
        m.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    assert_eq!(value("fulcrum_config_version_running"), Some(1.0), "{m}");
    assert!(
        value("fulcrum_config_apply_failures_total") >= Some(1.0),
        "{m}"
    );

    // --no-wait returns at the commit, with success.
    let out = ctl(
        &members[f].admin,
        &[
            "apply",
            "--no-wait",
            &cluster.config_path(f).display().to_string(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("committed: config version 3 (not waiting for the nodes)"),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_lists_every_node_and_names_a_dead_one() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let cluster = LocalCluster::start(3, free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("a leader");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("balancer.toml");
    std::fs::write(&file, cluster.balancer(&backend_list(&[&a, &b], &[]))).expect("write");
    let file = file.display().to_string();
    let admin = cluster.members[leader].admin.clone();

    let out = ctl(&admin, &["apply", &file]).await;
    let out_text = text(&out);
    assert!(out.status.success(), "{out_text}");
    assert_running(&out_text, &cluster.members, 2);
    assert!(
        out_text.contains("applied: config version 2 on every voter (3)"),
        "{out_text}"
    );
    let table = text(&ctl(&admin, &["status"]).await);
    assert!(!table.contains("DIVERGED"), "{table}");
    assert!(
        table.contains("VIP held by no node"),
        "no [vip] here: {table}"
    );

    // Kill a follower: status shows it down, apply waits and names it.
    let dead = (leader + 1) % 3;
    cluster.kill9(dead);
    let dead_id = cluster.members[dead].id;
    let doc = status_json(&admin).await;
    assert_eq!(node(&doc, dead_id)["reachable"], false, "{doc:#}");
    let table = text(&ctl(&admin, &["status"]).await);
    assert!(table.contains("DOWN"), "{table}");
    std::fs::write(&file, cluster.balancer(&backend_list(&[&b], &[]))).expect("write");
    let started = Instant::now();
    let out = ctl(&admin, &["apply", "--wait", "2s", &file]).await;
    let waited = started.elapsed();
    let out_text = text(&out);
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(
        out_text.contains(&format!(
            "node {dead_id} ({}): NOT confirmed, unreachable",
            cluster.members[dead].admin
        )),
        "{out_text}"
    );
    assert!(
        out_text.contains(&format!("but node {dead_id} did not run it")),
        "{out_text}"
    );
    assert!(waited >= Duration::from_secs(2), "it waited: {waited:?}");
    for (i, m) in cluster
        .members
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != dead)
    {
        assert!(
            out_text.contains(&format!(
                "node {} ({}): running config version 3",
                m.id, m.admin
            )),
            "{out_text}"
        );
        assert_eq!(
            get_status(&cluster.members[i].admin).await.expect("status")["config_version"],
            3
        );
    }
}

/// Issue 15: the leader checks a proposed config again. A certificate named by a relative
/// path that only the follower's directory holds passes the follower's check; the leader
/// (another directory) refuses it, so nothing is committed and no node diverges. Before
/// the leader checked, the follower committed version 2 and the others could not run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_only_the_follower_accepts_is_refused_by_the_leader() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let cluster = LocalCluster::start(3, free_port(), &backend_list(&[&a], &[])).await;
    let leader = cluster.wait_settled().await;
    let f = (leader + 1) % 3;
    let ca = fulcrum_tests::tls::TestCa::new();
    ca.leaf(&["localhost"])
        .write(cluster.node_dir(f), "only-here");
    let file = cluster.node_dir(f).join("with-https.toml");
    let secure = format!(
        "{}\n[[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:{}\"\nprotocol = \"https\"\n\
         tls = [{{ cert = \"only-here.pem\", key = \"only-here.key\" }}]\n\n\
         [[route]]\nlistener = \"secure\"\npool = \"app\"\n",
        cluster.balancer(&backend_list(&[&a], &[])),
        free_port()
    );
    std::fs::write(&file, secure).expect("write");

    let out = ctl(
        &cluster.members[f].admin,
        &["apply", &file.display().to_string()],
    )
    .await;
    let out_text = text(&out);
    eprintln!("{out_text}");
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(
        out_text.contains("rejected by the leader")
            && out_text.contains(&format!(
                "rejected by the leader: node {}: ",
                cluster.members[leader].id
            ))
            && out_text.contains("only-here.pem"),
        "the leader names itself and the file: {out_text}"
    );
    assert!(!out_text.contains("committed"), "{out_text}");
    // Nothing was committed: every node still runs and reports version 1.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let doc = status_json(&cluster.members[leader].admin).await;
    assert_eq!(doc["config_version_committed"], 1, "{doc:#}");
    for m in &cluster.members {
        assert_eq!(
            node(&doc, m.id)["status"]["config_version_running"],
            1,
            "{doc:#}"
        );
    }
}

/// Issue 15: a node that refuses a version for good (here a listener whose port lands on
/// node 3's own admin address through its `listen_ip`, which no retry can fix) ends
/// `ctl apply`'s wait at once instead of after the whole wait; and what each node says
/// about its config is replicated, so the cluster view still shows node 3's refusal
/// while its admin API does not answer (the process stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_for_good_ends_the_wait_and_raft_carries_a_silent_nodes_word() {
    let _serial = SERIAL.lock().await;
    let a = TestBackend::start("a").await;
    let backends = backend_list(&[&a], &[]);
    let web = free_port();
    let mut members: Vec<MemberPorts> = (1..=3).map(|id| MemberPorts::new(id, web)).collect();
    let admin_port = free_port();
    members[2].admin = format!("{}:{admin_port}", fulcrum_tests::cluster::listen_ip(3));
    let cluster = LocalCluster::start_members(members, web, &backends, |_| String::new()).await;
    cluster.wait_settled().await;
    let asked = cluster.members[0].admin.clone();
    let three = cluster.members[2].admin.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("clash.toml");
    let clash = format!(
        "{}\n[[listener]]\nname = \"clash\"\nbind = \"127.0.0.1:{admin_port}\"\n\n\
         [[route]]\nlistener = \"clash\"\npool = \"app\"\n",
        cluster.balancer(&backends)
    );
    std::fs::write(&file, clash).expect("write");

    let started = Instant::now();
    let out = ctl(
        &asked,
        &["apply", "--wait", "10s", &file.display().to_string()],
    )
    .await;
    let waited = started.elapsed();
    let out_text = text(&out);
    eprintln!("{out_text}");
    assert_eq!(out.status.code(), Some(1), "{out_text}");
    assert!(
        out_text.contains(&format!(
            "node 3 ({three}): REFUSED, still runs version 1: listener clash would bind {three}, this node's admin address"
        )),
        "{out_text}"
    );
    assert_running(&out_text, &cluster.members[..2], 2);
    assert!(
        out_text.contains("but node 3 did not run it (refused for good"),
        "{out_text}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "stopped waiting once node 3 refused: {waited:?}"
    );

    // Node 3's word is in the replicated state; stop the process and ask node 1.
    let reported = |doc: &Value| node(doc, 3)["reported"]["config_apply_error"]["version"] == 2;
    let mut doc = status_json(&asked).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !reported(&doc) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        doc = status_json(&asked).await;
    }
    assert!(reported(&doc), "{doc:#}");
    cluster.signal(2, nix::sys::signal::Signal::SIGSTOP);
    let doc = status_json(&asked).await;
    let n3 = node(&doc, 3);
    assert_eq!(n3["reachable"], false, "{doc:#}");
    assert_eq!(n3["reported"]["config_version_running"], 1, "{doc:#}");
    assert_eq!(
        n3["reported"]["config_apply_error"]["retrying"], false,
        "{doc:#}"
    );
    assert!(
        doc["divergent"]
            .as_array()
            .is_some_and(|d| d.iter().any(|i| i == 3)),
        "{doc:#}"
    );
    let table = text(&ctl(&asked, &["status"]).await);
    eprintln!("{table}");
    assert!(
        table.contains("1 (!raft)") && table.contains("this node's admin address"),
        "{table}"
    );
    cluster.signal(2, nix::sys::signal::Signal::SIGCONT);
}
