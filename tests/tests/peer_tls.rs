//! Raft peer traffic over mutual TLS between real fulcrum processes on loopback: a TLS
//! cluster elects and replicates, plain TCP to a peer port is refused while the cluster
//! keeps working, a node whose certificate comes from another CA never converges, and
//! `fulcrum check` refuses broken peer certificate files with their position.
//!
//! Each node's Raft port is on its own loopback address (127.0.0.21, .22, ...) and its
//! certificate carries only that IP, so the dialling side's IP check is exercised too.

use fulcrum_tests::backend::TestBackend;
use fulcrum_tests::client::{admin_call, fresh_client, get, get_status};
use fulcrum_tests::cluster::{LocalCluster, MemberPorts};
use fulcrum_tests::config::backend_list;
use fulcrum_tests::free_port;
use fulcrum_tests::process::check_config;
use fulcrum_tests::tls::TestCa;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Members whose Raft address is `127.0.0.(20+id)`: one IP per node, as in production.
fn members(n: u64, web_port: u16) -> Vec<MemberPorts> {
    (1..=n)
        .map(|id| {
            let mut m = MemberPorts::new(id, web_port);
            m.raft = format!("127.0.0.{}:{}", 20 + id, free_port());
            m
        })
        .collect()
}

fn raft_ip(m: &MemberPorts) -> String {
    m.raft.split(':').next().unwrap_or_default().to_string()
}

/// `tls = { ... }` for member `m`: a certificate from `ca` for its Raft IP, files in `dir`.
fn tls_line(ca: &TestCa, m: &MemberPorts, dir: &Path) -> String {
    let ca_path = ca.write(dir);
    let name = format!("node{}", m.id);
    let (cert, key) = ca.leaf(&[&raft_ip(m)]).write(dir, &name);
    format!(
        "tls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}",
        ca_path.display(),
        cert.display(),
        key.display()
    )
}

async fn put_config(admin: &str, text: &str) -> (u16, u64, String) {
    let r = admin_call(admin, "PUT", "/config", text, None)
        .await
        .expect("admin call");
    let version = serde_json::from_str::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| v["version"].as_u64())
        .unwrap_or(0);
    (r.status.as_u16(), version, r.body)
}

/// What a plain-TCP peer would send first: the secret handshake's `Hello` frame
/// (u32 length 33, bincode `{ version: 1, nonce: [u8; 32] }`).
fn plain_hello() -> Vec<u8> {
    let mut frame = 33u32.to_be_bytes().to_vec();
    frame.push(1);
    frame.extend_from_slice(&[7u8; 32]);
    frame
}

/// Sends `bytes` to `addr` and asserts the peer closes without a protocol answer (4 s
/// bound). At most a TLS alert record (content type 21) may come back before the close:
/// that is rustls saying "not TLS", and proves the port speaks only TLS.
async fn assert_refused(addr: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect raft port");
    s.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(4), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "{addr} kept a plain-TCP peer connected");
    assert!(
        got.is_empty() || (got[0] == 21 && got.len() <= 7),
        "{addr} answered a plain-TCP peer with {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_cluster_replicates_and_refuses_plain_tcp_peers() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let certs = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new();
    let web_port = free_port();
    let cluster = LocalCluster::start_members(
        members(3, web_port),
        web_port,
        &backend_list(&[&a], &[]),
        |m| tls_line(&ca, m, certs.path()),
    )
    .await;
    let leader = cluster
        .wait_leader(&[0, 1, 2], Duration::from_secs(10))
        .await
        .expect("a leader over TLS");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 1, Duration::from_secs(5))
            .await,
        "seed config replicated over TLS"
    );
    // A change applied on a follower is forwarded to the leader and reaches everyone.
    let follower = (leader + 1) % 3;
    let (code, version, body) = put_config(
        &cluster.members[follower].admin,
        &cluster.balancer(&backend_list(&[&b], &[])),
    )
    .await;
    assert_eq!((code, version), (200, 2), "{body}");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 2, Duration::from_secs(2))
            .await,
        "config change replicated over TLS"
    );
    for m in &cluster.members {
        let r = get(&fresh_client(), &m.url("/"), &[]).await.expect("proxy");
        assert_eq!(r.backend.as_deref(), Some("b"), "node {}", m.id);
    }

    // Plain TCP to every peer port: a would-be peer speaking the secret handshake in
    // clear, and plain garbage, are both cut off without a byte of answer.
    for m in &cluster.members {
        assert_refused(&m.raft, &plain_hello()).await;
        assert_refused(&m.raft, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    }
    for i in 0..cluster.members.len() {
        let log = cluster.log(i);
        assert!(
            log.contains("refused unauthenticated peer") && log.contains("TLS handshake failed"),
            "node {} did not log the refusal:\n{log}",
            i + 1
        );
        assert!(!log.contains("panicked"), "node {} panicked:\n{log}", i + 1);
    }

    // The cluster keeps working.
    let (code, version, body) = put_config(
        &cluster.members[leader].admin,
        &cluster.balancer(&backend_list(&[&a], &[])),
    )
    .await;
    assert_eq!((code, version), (200, 3), "{body}");
    assert!(
        cluster
            .wait_version(&[0, 1, 2], 3, Duration::from_secs(2))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_ca_certificate_never_converges() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let (good_dir, bad_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ca, foreign) = (TestCa::new(), TestCa::new());
    let web_port = free_port();
    // Node 3 has the right secret and peer list, but its certificate (and the CA it
    // trusts) come from another CA, one with the same subject name but another key.
    // Only TLS can keep it out.
    let cluster = LocalCluster::start_members(
        members(3, web_port),
        web_port,
        &backend_list(&[&a], &[]),
        |m| match m.id {
            3 => tls_line(&foreign, m, bad_dir.path()),
            _ => tls_line(&ca, m, good_dir.path()),
        },
    )
    .await;
    let leader = cluster
        .wait_leader(&[0, 1], Duration::from_secs(10))
        .await
        .expect("the two good nodes elect a leader");
    assert_ne!(leader, 2);
    assert!(
        cluster
            .wait_version(&[0, 1], 1, Duration::from_secs(5))
            .await
    );
    let (code, version, body) = put_config(
        &cluster.members[leader].admin,
        &cluster.balancer(&backend_list(&[&b], &[])),
    )
    .await;
    assert_eq!((code, version), (200, 2), "{body}");
    assert!(
        cluster
            .wait_version(&[0, 1], 2, Duration::from_secs(2))
            .await
    );
    // Give the foreign node time to catch up, were it able to: it must not.
    assert!(
        !cluster.wait_version(&[2], 2, Duration::from_secs(3)).await,
        "a node with a foreign certificate received the committed config"
    );
    let s3 = get_status(&cluster.members[2].admin).await.expect("status");
    assert_eq!(s3["config_version"], 0, "{s3}");
    assert_ne!(s3["role"], "leader", "{s3}");
    let r = get(&fresh_client(), &cluster.members[2].url("/"), &[])
        .await
        .expect("the foreign node still serves its own file");
    assert_eq!(r.backend.as_deref(), Some("a"));

    // A pristine non-bootstrapping node only answers; the good leader dials it and
    // both sides refuse the other's certificate.
    let bad_log = cluster.log(2);
    assert!(
        bad_log.contains("refused unauthenticated peer")
            && bad_log.contains("TLS handshake failed"),
        "foreign node refuses the cluster's certificates:\n{bad_log}"
    );
    let good_refused = (0..2).any(|i| cluster.log(i).contains("peer TLS handshake failed"));
    assert!(good_refused, "good nodes refuse the foreign certificate");
}

#[test]
fn check_refuses_missing_and_mismatched_peer_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_path = ca.write(dir.path());
    let (cert, key) = ca.leaf(&["127.0.0.1"]).write(dir.path(), "node1");
    let (_, other_key) = ca.leaf(&["127.0.0.1"]).write(dir.path(), "other");
    let config = |cert: &Path, key: &Path| {
        format!(
            "[node]\nid = 1\nadmin = \"127.0.0.1:9901\"\n\n[cluster]\nraft = \"127.0.0.1:7001\"\npeers = [\"1@127.0.0.1:7001\"]\nsecret_file = \"/tmp/s\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            ca_path.display(),
            cert.display(),
            key.display()
        )
    };
    let (ok, err, _) = check_config(&config(&cert, &key), dir.path());
    assert!(ok, "good peer certificate refused: {err}");

    let missing = dir.path().join("missing.pem");
    let (ok, err, path) = check_config(&config(&missing, &key), dir.path());
    assert!(!ok);
    // Line 9 is the `tls = { ... }` line; the column is that of the cert value.
    assert!(err.starts_with(&format!("{path}:9:")), "{err}");
    assert!(err.contains("peer tls: cannot read"), "{err}");
    assert!(err.contains("missing.pem"), "{err}");

    let (ok, err, path) = check_config(&config(&cert, &other_key), dir.path());
    assert!(!ok);
    assert!(err.starts_with(&format!("{path}:9:")), "{err}");
    assert!(err.contains("does not match certificate"), "{err}");
}
