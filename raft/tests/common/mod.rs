//! Helpers for the cluster tests: free loopback ports, temp data dirs, waiting on watches.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fulcrum_raft::{start, RaftHandle, RaftOptions, RaftStatus, Role};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

pub mod certs;

pub const SECRET: &[u8] = b"test-cluster-secret";

/// A free 127.0.0.1 port below the kernel's ephemeral range (32768+), so an outgoing
/// connection can never take it while a test restarts a node on it.
pub fn free_addr() -> SocketAddr {
    use std::sync::atomic::{AtomicU16, Ordering};
    // Spread test processes apart, then walk upwards.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20000 + (std::process::id() % 500) as u16 * 20;
    for _ in 0..10_000 {
        let off = NEXT.fetch_add(1, Ordering::Relaxed) % 12_000;
        let port = 20000 + (base - 20000 + off) % 12_000;
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            return l.local_addr().unwrap();
        }
    }
    panic!("no free port");
}

/// One cluster at a time per test process: three nodes' lease tasks run on the test
/// threads, and two clusters competing for two cores starve each other's 25 ms failure
/// detectors into elections nobody asked for (CI saw a leader change after a restart
/// that way).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Cluster {
    pub dir: TempDir,
    pub peers: Vec<(u64, SocketAddr)>,
    pub nodes: Vec<Option<RaftHandle>>,
    /// Last: released after the nodes are dropped.
    _serial: tokio::sync::MutexGuard<'static, ()>,
}

pub fn options(id: u64, peers: &[(u64, SocketAddr)], dir: PathBuf, secret: &[u8]) -> RaftOptions {
    let addr = peers.iter().find(|(i, _)| *i == id).unwrap().1;
    let mut o = RaftOptions::new(id, addr, dir, secret.to_vec());
    o.admin_addr = format!("127.0.0.1:{}", 9000 + id);
    o.peers = peers.to_vec();
    o.seed_config_toml = "# seed\n".to_string();
    o
}

/// Timing ten times slower than the default (pings every 20 ms, a 100 ms fence, 250 ms
/// of silence before a campaign, so a 150 ms vote budget). Three nodes share a test
/// process's two threads, and a loaded machine starves them for tens of milliseconds:
/// with the default 25 ms silence that alone starts elections (CI saw a leader change in
/// tests that assert there is none). What these tests check does not depend on speed.
pub fn relaxed(o: &mut RaftOptions) {
    o.heartbeat = Duration::from_millis(20);
    o.lease = Duration::from_millis(100);
    o.election_timeout_min = Duration::from_millis(250);
    o.election_timeout_max = Duration::from_millis(500);
}

impl Cluster {
    /// Start `n` nodes with ids 1..=n, with `relaxed` timing.
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, relaxed).await
    }

    /// Start `n` nodes with fulcrum's default timing (25 ms silence), for the tests
    /// about how fast that timing is.
    pub async fn start_default_timing(n: u64) -> Cluster {
        Self::start_with(n, |_| {}).await
    }

    /// Start `n` nodes with ids 1..=n, each with its options changed by `tune`.
    pub async fn start_with(n: u64, tune: impl Fn(&mut RaftOptions)) -> Cluster {
        let serial = SERIAL.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let peers: Vec<(u64, SocketAddr)> = (1..=n).map(|i| (i, free_addr())).collect();
        let mut nodes = Vec::new();
        for (id, _) in &peers {
            let mut o = options(*id, &peers, dir.path().join(format!("n{id}")), SECRET);
            tune(&mut o);
            nodes.push(Some(start(o).await.unwrap()));
        }
        Cluster {
            _serial: serial,
            dir,
            peers,
            nodes,
        }
    }

    pub fn node(&self, id: u64) -> &RaftHandle {
        self.nodes[(id - 1) as usize].as_ref().unwrap()
    }

    pub fn live(&self) -> Vec<&RaftHandle> {
        self.nodes.iter().flatten().collect()
    }

    /// Restart node `id` over its old data dir and port.
    pub async fn restart(&mut self, id: u64) -> RaftHandle {
        let o = options(
            id,
            &self.peers,
            self.dir.path().join(format!("n{id}")),
            SECRET,
        );
        let h = start(o).await.unwrap();
        self.nodes[(id - 1) as usize] = Some(h.clone());
        h
    }

    pub async fn kill(&mut self, id: u64) {
        if let Some(h) = self.nodes[(id - 1) as usize].take() {
            h.shutdown().await;
        }
    }

    pub async fn shutdown_all(&mut self) {
        for h in self.nodes.iter_mut().filter_map(Option::take) {
            h.shutdown().await;
        }
    }

    /// Wait until every live node reports the same leader, which is live and says Leader.
    pub async fn wait_leader(&self, timeout: Duration) -> Option<u64> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(l) = agreed_leader(&self.live()) {
                return Some(l);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        None
    }
}

pub fn agreed_leader(live: &[&RaftHandle]) -> Option<u64> {
    let st: Vec<(u64, RaftStatus)> = live
        .iter()
        .map(|h| (h.node_id(), h.status().borrow().clone()))
        .collect();
    let leader = st.first()?.1.leader_id?;
    let all_agree = st.iter().all(|(_, s)| s.leader_id == Some(leader));
    let leaders = st.iter().filter(|(_, s)| s.role == Role::Leader).count();
    let leader_live = st
        .iter()
        .any(|(id, s)| *id == leader && s.role == Role::Leader);
    (all_agree && leaders == 1 && leader_live).then_some(leader)
}

/// Wait until every handle's state has `config_version >= v`.
pub async fn wait_version(nodes: &[&RaftHandle], v: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if nodes
            .iter()
            .all(|h| h.cluster_state().borrow().config_version >= v)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    false
}

/// Wait for a predicate over one node's state.
pub async fn wait_until<F: Fn() -> bool>(f: F, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// A one-node cluster that leads and has its seed config (for transport tests).
pub async fn single_node() -> (tempfile::TempDir, SocketAddr, RaftHandle) {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let o = options(1, &[(1, addr)], dir.path().join("n1"), SECRET);
    let h = start(o).await.unwrap();
    let leader = wait_until(|| h.status().borrow().lease_fresh, Duration::from_secs(5));
    assert!(leader.await, "single node leads");
    let seeded = wait_until(
        || h.cluster_state().borrow().config_version == 1,
        Duration::from_secs(3),
    );
    assert!(seeded.await);
    (dir, addr, h)
}

/// The server closed the connection: a read sees EOF (or a reset) within 3 s.
pub async fn assert_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
    match r {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(n)) => panic!("server sent {n} bytes instead of closing"),
        Err(_) => panic!("server kept the connection open"),
    }
}
