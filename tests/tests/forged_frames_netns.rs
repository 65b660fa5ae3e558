//! Peer frames cannot be forged on path, in network namespaces (issue 23 item 6): three
//! real fulcrum nodes without peer TLS, each in its own namespace on one bridge
//! (10.77.70.0/24, no route anywhere else), and a fourth host in between: a forwarding
//! man-in-the-middle. Every node's peers list names the forwarder's address for the other
//! two nodes, so every peer connection crosses the bridge twice, through the forwarder,
//! which rewrites one byte run of the AppendEntries frame that carries a new config.
//! Peers are not on loopback here (the case the issue is about): the follower that
//! receives the altered frame must refuse it and drop the connection, and every node
//! must end with the config the operator applied, none with the forged text.
//!
//! The namespaces (and so every socket in them) are deleted when the test ends, also on
//! failure; the node processes are killed by their PIDs first. Needs root.

use fulcrum_testbed::cluster::{peers_line, web_to_app, Cluster, NodeFile, RAFT_PORT};
use fulcrum_testbed::netns::{can_run, exec};
use fulcrum_testbed::testbed::Testbed;
use fulcrum_tests::mitm::{Mitm, Tamper};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const GOOD: &[u8] = b"/probe-good";
const EVIL: &[u8] = b"/probe-evil";
const NODES: [&str; 3] = ["n1", "n2", "n3"];
/// The forwarder's host; it listens on `RELAY_PORT + i` for node `i`.
const RELAY_IP: &str = "10.77.70.30";
const RELAY_PORT: u16 = 7950;

fn node_ip(i: usize) -> String {
    format!("10.77.70.{}", 11 + i)
}

/// Node `me`'s config: its own Raft address is real, the others are the forwarder's.
fn node_config(nodes: &Cluster, me: usize, health_path: &str) -> String {
    let peers: Vec<String> = (0..3)
        .map(|j| {
            if j == me {
                format!("{}:{RAFT_PORT}", node_ip(j))
            } else {
                format!("{RELAY_IP}:{}", RELAY_PORT + j as u16)
            }
        })
        .collect();
    let local = NodeFile {
        peers: peers_line((1..).zip(peers.iter().map(String::as_str))),
        ..nodes.node_file(me)
    };
    let pool = format!(
        "backends = [{{ addr = \"10.77.70.21:8080\" }}]\nhealth = {{ path = \"{health_path}\", interval = \"1s\", timeout = \"500ms\", rise = 1, fall = 3 }}"
    );
    local.render(&web_to_app(&format!("{}:80", node_ip(me)), "", &pool))
}

/// `curl` from the client namespace: (success, body).
fn admin(bed: &Testbed, i: usize, path: &str) -> Option<String> {
    let url = format!("http://{}:9901{path}", node_ip(i));
    let (ok, out) = exec(&bed.ns("cl"), &["curl", "-s", "-f", "-m", "1", &url]);
    ok.then_some(out)
}

fn status(bed: &Testbed, i: usize) -> Option<serde_json::Value> {
    admin(bed, i, "/status").and_then(|s| serde_json::from_str(&s).ok())
}

fn leader(bed: &Testbed, within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for i in 0..3 {
            if status(bed, i).is_some_and(|s| s["role"] == "leader") {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Runs the forwarders inside the relay's namespace until `stop` fires.
fn start_relay(
    bed: &Testbed,
    tamper: Arc<Tamper>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
    std::sync::mpsc::Receiver<()>,
) {
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let handle = bed.in_ns("mx", move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut relays = Vec::new();
            for i in 0..3 {
                let listen = format!("{RELAY_IP}:{}", RELAY_PORT + i as u16);
                let upstream = format!("{}:{RAFT_PORT}", node_ip(i))
                    .parse()
                    .expect("upstream");
                relays.push(Mitm::start(&listen, upstream, GOOD, EVIL, tamper.clone()).await);
            }
            let _ = ready_tx.send(());
            let _ = stop_rx.await;
            drop(relays);
        });
    });
    (stop_tx, handle, ready_rx)
}

#[test]
fn a_config_frame_altered_by_a_relay_between_namespaces_is_refused() {
    if !can_run("a_config_frame_altered_by_a_relay_between_namespaces_is_refused") {
        return;
    }
    let t0 = Instant::now();
    // Dropped last: deletes the namespaces even when an assertion fails.
    let bed = Testbed::new(
        "mx",
        &[("n1", 11), ("n2", 12), ("n3", 13), ("mx", 30), ("cl", 2)],
    );
    eprintln!("test bed up after {:?}", t0.elapsed());
    let dir = tempfile::tempdir().expect("tempdir");
    // Dropped before `bed`: the node processes are killed by their PIDs first.
    let nodes = Cluster::on_testbed(
        &bed,
        &NODES,
        dir.path(),
        "1s",
        "forged-frames-secret-0123456789",
    )
    .expect("cluster files");
    let tamper = Arc::new(Tamper::default());
    let (stop_relay, relay, ready) = start_relay(&bed, tamper.clone());
    ready
        .recv_timeout(Duration::from_secs(10))
        .expect("the forwarders listen");
    for i in 0..3 {
        let text = node_config(&nodes, i, "/healthz");
        nodes.write_config(i, &text).expect("config");
        nodes.start(i).expect("start fulcrum");
    }
    eprintln!("relay and nodes started after {:?}", t0.elapsed());
    let leader = leader(&bed, Duration::from_secs(20)).unwrap_or_else(|| {
        panic!(
            "no leader with every peer connection through the relay; logs:\n{:#?}",
            (0..3).map(|i| nodes.node(i).log()).collect::<Vec<_>>()
        )
    });
    eprintln!("node {} leads after {:?}", leader + 1, t0.elapsed());
    // Every peer connection crosses the relay: nothing else routes between the nodes'
    // peers lists, so a leader proves the relay forwards.
    tamper.armed.store(true, Ordering::SeqCst);
    let applied = dir.path().join("applied.toml");
    std::fs::write(&applied, node_config(&nodes, leader, "/probe-good")).expect("config");
    let (ok, out) = nodes.ctl(
        &bed.ns("cl"),
        leader,
        &["apply", applied.to_str().expect("utf-8 path")],
    );
    assert!(ok, "ctl apply: {out}");
    // `ctl apply` prints "committed: config version N", then one line per node.
    let version: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("committed: config version "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no version in {out:?}"));

    // Every node runs the new version with the real text, never the forged one.
    let started = Instant::now();
    let mut converged = false;
    while started.elapsed() < Duration::from_secs(15) {
        let mut all = true;
        for i in 0..3 {
            let text = admin(&bed, i, "/config").unwrap_or_default();
            assert!(
                !text.contains("probe-evil"),
                "node {} runs the forged config:\n{text}",
                i + 1
            );
            let v = status(&bed, i).and_then(|s| s["config_version"].as_u64());
            all &= v == Some(version) && text.contains("probe-good");
        }
        if all {
            converged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = (0..3).map(|i| nodes.node(i).log()).collect();
    assert!(
        converged,
        "not every node runs version {version}; logs:\n{logs:#?}"
    );
    eprintln!(
        "config with one frame forged by a relay between namespaces: every node runs the real one after {:?}",
        started.elapsed()
    );
    assert_eq!(
        tamper.altered.load(Ordering::SeqCst),
        1,
        "the relay altered one frame"
    );
    let refused: Vec<usize> = (0..3)
        .filter(|&i| logs[i].contains("frame authentication failed"))
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "exactly one node refused the altered frame: {refused:?}; logs:\n{logs:#?}"
    );
    assert_ne!(refused[0], leader, "a follower received the AppendEntries");
    let deadline = Instant::now() + Duration::from_secs(3);
    while tamper.closed_by_server.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        tamper.closed_by_server.load(Ordering::SeqCst),
        1,
        "the receiving node dropped the tampered connection"
    );
    drop(nodes);
    let _ = stop_relay.send(());
    let _ = relay.join();
    eprintln!("done after {:?}", t0.elapsed());
}
