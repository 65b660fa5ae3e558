//! Peer frames cannot be forged on path (issue 23 item 6), with three real fulcrum
//! processes on loopback and no peer TLS: peer connections to nodes 2 and 3 go through
//! a forwarding man-in-the-middle (their addresses in the peers lists are their
//! forwarders'), which rewrites one byte run of the AppendEntries frame carrying a new
//! config. The follower that receives it refuses the frame and drops the connection;
//! the leader redials, and every node ends with the config the operator applied —
//! none with the forged text.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, get_status};
use fulcrum_tests::cluster::{balancer, node_config, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::mitm::{Mitm, Tamper};
use fulcrum_tests::process::Fulcrum;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOOD: &[u8] = b"/probe-good";
const EVIL: &[u8] = b"/probe-evil";

fn pool_with_check(backends: &str, path: &str) -> String {
    format!(
        "{backends}\nhealth = {{ path = \"{path}\", interval = \"1s\", timeout = \"500ms\", rise = 1, fall = 3 }}"
    )
}

async fn config_text(admin: &str) -> String {
    admin_call(admin, "GET", "/config", "", None)
        .await
        .map(|r| r.body)
        .unwrap_or_default()
}

async fn leader_of(admins: &[String], within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for (i, a) in admins.iter().enumerate() {
            if get_status(a).await.is_some_and(|s| s["role"] == "leader") {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_frame_altered_on_path_is_refused_and_every_node_runs_the_real_one() {
    let a = TestBackend::start("a").await;
    let web_port = fulcrum_tests::free_port();
    let members: Vec<MemberPorts> = (1..=3).map(|id| MemberPorts::new(id, web_port)).collect();
    let tamper = Arc::new(Tamper::default());
    let mut mitms = Vec::new();
    for m in &members {
        let upstream = m.raft.parse().expect("raft addr");
        mitms.push(Mitm::start("127.0.0.1:0", upstream, GOOD, EVIL, tamper.clone()).await);
    }
    // Each node's own entry must be its real address (config check); the others go
    // through their forwarders. Membership comes from node 1's list, so every
    // connection to nodes 2 and 3 is forwarded: whoever leads, at least one follower
    // receives the config through a forwarder.
    let peers_for = |me: u64| -> String {
        let items: Vec<String> = members
            .iter()
            .zip(&mitms)
            .map(|(m, x)| {
                let addr = if m.id == me {
                    m.raft.clone()
                } else {
                    x.addr.to_string()
                };
                format!("\"{}@{addr}\"", m.id)
            })
            .collect();
        format!("[{}]", items.join(", "))
    };
    let secret_dir = tempfile::tempdir().expect("tempdir");
    let secret = secret_dir.path().join("cluster.secret");
    std::fs::write(&secret, "test-cluster-secret-0123456789\n").expect("secret");
    let backends = backend_list(&[&a], &[]);
    let seed = balancer(web_port, &pool_with_check(&backends, "/healthz"));
    let mut data_dirs = Vec::new();
    let mut nodes = Vec::new();
    for m in &members {
        let data = tempfile::tempdir().expect("tempdir");
        let cfg = node_config(
            m,
            &peers_for(m.id),
            &secret.display().to_string(),
            &data.path().display().to_string(),
            &seed,
        );
        nodes.push(Fulcrum::start(&cfg, &m.admin).await);
        data_dirs.push(data);
    }
    let admins: Vec<String> = members.iter().map(|m| m.admin.clone()).collect();
    let leader = leader_of(&admins, Duration::from_secs(10))
        .await
        .expect("a leader, with every peer frame through a forwarder");

    tamper.armed.store(true, Ordering::SeqCst);
    let applied = balancer(web_port, &pool_with_check(&backends, "/probe-good"));
    let put = admin_call(&admins[leader], "PUT", "/config", &applied, None)
        .await
        .expect("apply");
    assert_eq!(put.status, 200, "{}", put.body);
    let version = serde_json::from_str::<serde_json::Value>(&put.body).expect("json")["version"]
        .as_u64()
        .expect("version");

    // Every node runs the new version with the real text, never the forged one.
    let started = Instant::now();
    let mut converged = false;
    while started.elapsed() < Duration::from_secs(10) {
        let mut all = true;
        for admin in &admins {
            let text = config_text(admin).await;
            assert!(
                !text.contains("probe-evil"),
                "a node runs the forged config:\n{text}"
            );
            let v = get_status(admin)
                .await
                .and_then(|s| s["config_version"].as_u64());
            all &= v == Some(version) && text.contains("probe-good");
        }
        if all {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs: Vec<String> = nodes.iter().map(|n| n.log()).collect();
    assert!(
        converged,
        "not every node runs version {version}; logs:\n{logs:#?}"
    );
    eprintln!(
        "config with one frame forged on path: every node runs the real one after {:?}",
        started.elapsed()
    );
    assert_eq!(
        tamper.altered.load(Ordering::SeqCst),
        1,
        "one frame was altered"
    );
    let refused: Vec<usize> = (0..3)
        .filter(|&i| logs[i].contains("frame authentication failed"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "exactly one node refused the altered frame: {refused:?}"
    );
    assert_ne!(refused[0], leader, "a follower received the AppendEntries");
    let deadline = Instant::now() + Duration::from_secs(3);
    while tamper.closed_by_server.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        tamper.closed_by_server.load(Ordering::SeqCst),
        1,
        "the receiving node dropped the tampered connection"
    );
    drop(nodes);
    drop(mitms);
}
