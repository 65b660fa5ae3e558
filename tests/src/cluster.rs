//! A local Raft cluster of real fulcrum processes on 127.0.0.1 for tests: the loopback
//! flavour of the test bed's [`Cluster`] (members on free loopback ports, each node in a
//! directory of its own, listeners on `listen_ip`), with the waits the tests share:
//! every admin API up, one agreed leader, every member on a config version.

use crate::client::get_status;
use crate::free_port;
use crate::process::{fulcrum_bin, wait_admin};
use fulcrum_testbed::cluster::{web_to_app, Cluster, Member, Node, NodeFile};
use nix::sys::signal::Signal;
use std::path::Path;
use std::time::{Duration, Instant};

/// The secret every member of a loopback cluster shares.
const SECRET: &str = "test-cluster-secret-0123456789\n";
/// `[node].shutdown_grace` of every member.
const SHUTDOWN_GRACE: &str = "5s";

/// Addresses of one member.
#[derive(Debug, Clone)]
pub struct MemberPorts {
    pub id: u64,
    pub admin: String,
    pub raft: String,
    pub web: String,
}

impl MemberPorts {
    /// Member `id`; its listeners bind `127.0.0.(10+id):web_port` via `listen_ip`, so
    /// every node can share one cluster-wide listener config on one host.
    pub fn new(id: u64, web_port: u16) -> Self {
        let p = || format!("127.0.0.1:{}", free_port());
        MemberPorts {
            id,
            admin: p(),
            raft: p(),
            web: format!("{}:{web_port}", listen_ip(id)),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.web, path)
    }

    /// Where the test bed's cluster runs this member: the test's namespace.
    fn bed_member(&self) -> Member {
        Member::local(&self.raft, &self.admin)
    }
}

/// The loopback address member `id` binds its listeners to.
pub fn listen_ip(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

/// The `[cluster]` peers line for these members.
pub fn peers_line(members: &[MemberPorts]) -> String {
    fulcrum_testbed::cluster::peers_line(members.iter().map(|m| (m.id, m.raft.as_str())))
}

/// A node file: `[node]` + `[cluster]` + the shared balancer part `balancer`.
pub fn node_config(
    me: &MemberPorts,
    peers: &str,
    secret_file: &str,
    data_dir: &str,
    balancer: &str,
) -> String {
    node_config_with(me, peers, secret_file, data_dir, balancer, "")
}

/// Like `node_config`, with `cluster_extra` lines appended to `[cluster]` (e.g. `tls`).
pub fn node_config_with(
    me: &MemberPorts,
    peers: &str,
    secret_file: &str,
    data_dir: &str,
    balancer: &str,
    cluster_extra: &str,
) -> String {
    node_config_full(
        me,
        peers,
        secret_file,
        data_dir,
        balancer,
        "",
        cluster_extra,
    )
}

/// Like `node_config_with`, with `node_extra` lines appended to `[node]` too.
pub fn node_config_full(
    me: &MemberPorts,
    peers: &str,
    secret_file: &str,
    data_dir: &str,
    balancer: &str,
    node_extra: &str,
    cluster_extra: &str,
) -> String {
    NodeFile {
        id: me.id,
        admin: me.admin.clone(),
        data_dir: data_dir.to_string(),
        shutdown_grace: "5s".into(),
        listen_ip: Some(listen_ip(me.id)),
        node_extra: node_extra.to_string(),
        raft: me.raft.clone(),
        peers: peers.to_string(),
        secret_file: secret_file.to_string(),
        cluster_extra: cluster_extra.to_string(),
    }
    .render(balancer)
}

/// The shared balancer part: listener `web` on `web_port`, everything to pool `app`.
pub fn balancer(web_port: u16, backends: &str) -> String {
    web_to_app(
        &format!("127.0.0.1:{web_port}"),
        "",
        &format!("backends = {backends}"),
    )
}

/// A member's whole file on loopback: its local part with its listeners on its own
/// `listen_ip`, `node_extra` in `[node]`, `cluster_extra(member)` in `[cluster]`, then the
/// shared `balancer`.
fn loopback_file<'a>(
    balancer: &'a str,
    node_extra: &'a str,
    cluster_extra: impl Fn(&MemberPorts) -> String + 'a,
) -> impl Fn(&MemberPorts, NodeFile) -> String + 'a {
    move |m, local| {
        NodeFile {
            listen_ip: Some(listen_ip(m.id)),
            node_extra: node_extra.to_string(),
            cluster_extra: cluster_extra(m),
            ..local
        }
        .render(balancer)
    }
}

/// A running cluster: the test bed's [`Cluster`] of `fulcrum run` processes on loopback,
/// its files (configs, logs, Raft data kept across restarts, the secret) in a temp dir.
pub struct LocalCluster {
    pub members: Vec<MemberPorts>,
    pub web_port: u16,
    /// Declared before `dir`: the processes are killed before their files go.
    nodes: Cluster,
    _dir: tempfile::TempDir,
}

/// How a member's output is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeOutput {
    /// In its log file (see [`LocalCluster::log`]).
    Logged,
    /// In pipes nobody reads (a log collector that stopped reading); no log file.
    Unread,
}

impl LocalCluster {
    /// Starts `n` nodes sharing `balancer(web_port, backends)`; returns once every
    /// admin API answers.
    pub async fn start(n: u64, web_port: u16, backends: &str) -> LocalCluster {
        let members: Vec<MemberPorts> = (1..=n).map(|id| MemberPorts::new(id, web_port)).collect();
        Self::start_members(members, web_port, backends, |_| String::new()).await
    }

    /// Like [`LocalCluster::start`], every node's stdout and stderr to pipes nobody
    /// reads: once full, every write to them blocks. No log files.
    pub async fn start_unread(n: u64, web_port: u16, backends: &str) -> LocalCluster {
        let members: Vec<MemberPorts> = (1..=n).map(|id| MemberPorts::new(id, web_port)).collect();
        let balancer = balancer(web_port, backends);
        let file = loopback_file(&balancer, "", |_| String::new());
        Self::launch(members, web_port, NodeOutput::Unread, file).await
    }

    /// Starts `members` (in order); `cluster_extra(member)` adds lines to that member's
    /// `[cluster]` section (e.g. its peer `tls`).
    pub async fn start_members(
        members: Vec<MemberPorts>,
        web_port: u16,
        backends: &str,
        cluster_extra: impl Fn(&MemberPorts) -> String,
    ) -> LocalCluster {
        Self::start_members_with(members, web_port, backends, "", cluster_extra).await
    }

    /// Like `start_members`, with `node_extra` lines in every member's `[node]`.
    pub async fn start_members_with(
        members: Vec<MemberPorts>,
        web_port: u16,
        backends: &str,
        node_extra: &str,
        cluster_extra: impl Fn(&MemberPorts) -> String,
    ) -> LocalCluster {
        let balancer = balancer(web_port, backends);
        Self::start_balancer(members, web_port, &balancer, node_extra, cluster_extra).await
    }

    /// `n` nodes sharing listener `web` on `web_port` routed to pool `app`, whose lines
    /// are `pool_lines` (`discover = ...`, `health = ...`).
    pub async fn start_pool(n: u64, web_port: u16, pool_lines: &str) -> LocalCluster {
        let members: Vec<MemberPorts> = (1..=n).map(|id| MemberPorts::new(id, web_port)).collect();
        let balancer = web_to_app(&format!("127.0.0.1:{web_port}"), "", pool_lines);
        Self::start_balancer(members, web_port, &balancer, "", |_| String::new()).await
    }

    /// Starts `members` with whole files of the test's own: `file(member, local)` is that
    /// member's file, where `local` holds its Raft and admin addresses, data dir, peers
    /// and secret file.
    pub async fn start_files(
        members: Vec<MemberPorts>,
        web_port: u16,
        file: impl Fn(&MemberPorts, NodeFile) -> String,
    ) -> LocalCluster {
        Self::launch(members, web_port, NodeOutput::Logged, file).await
    }

    /// Starts `members` sharing the cluster-wide part `balancer`.
    async fn start_balancer(
        members: Vec<MemberPorts>,
        web_port: u16,
        balancer: &str,
        node_extra: &str,
        cluster_extra: impl Fn(&MemberPorts) -> String,
    ) -> LocalCluster {
        let file = loopback_file(balancer, node_extra, cluster_extra);
        Self::launch(members, web_port, NodeOutput::Logged, file).await
    }

    /// Writes each member's `file` and starts it, one after the other, each once its
    /// admin API answers. Members must be `1..=n` in order (the bed's node ids).
    async fn launch(
        members: Vec<MemberPorts>,
        web_port: u16,
        output: NodeOutput,
        file: impl Fn(&MemberPorts, NodeFile) -> String,
    ) -> LocalCluster {
        for (i, m) in members.iter().enumerate() {
            assert_eq!(m.id, i as u64 + 1, "loopback members are 1..=n in order");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let bed_members = members.iter().map(MemberPorts::bed_member).collect();
        let nodes = Cluster::new(
            &fulcrum_bin(),
            dir.path(),
            bed_members,
            SHUTDOWN_GRACE,
            SECRET,
            false,
        )
        .and_then(Cluster::each_in_own_dir)
        .expect("the cluster's files")
        .with_args(&["--threads", "2"]);
        let nodes = match output {
            NodeOutput::Logged => nodes,
            NodeOutput::Unread => nodes.unread_output(),
        };
        let cluster = LocalCluster {
            members,
            web_port,
            nodes,
            _dir: dir,
        };
        for (i, m) in cluster.members.iter().enumerate() {
            let text = file(m, cluster.nodes.node_file(i));
            cluster.nodes.write_config(i, &text).expect("write config");
            cluster.restart(i).await;
        }
        cluster
    }

    /// The balancer part of this cluster with other backends.
    pub fn balancer(&self, backends: &str) -> String {
        balancer(self.web_port, backends)
    }

    pub fn secret_path(&self) -> String {
        self.nodes.secret_path().display().to_string()
    }

    /// Member `i`'s process (signal, kill, log, config file).
    pub fn node(&self, i: usize) -> &Node {
        self.nodes.node(i)
    }

    /// Sends `signal` to member `i`'s process; panics when it is not running.
    pub fn signal(&self, i: usize, signal: Signal) {
        if let Err(e) = self.node(i).signal(signal) {
            panic!("{signal} to node {}: {e}", self.members[i].id);
        }
    }

    /// `kill -9` member `i` and reap it.
    pub fn kill9(&self, i: usize) {
        self.node(i).kill();
    }

    /// (Re)starts member `i` with its file and Raft data; returns once its admin API
    /// answers (panics after 15 s, with its log).
    pub async fn restart(&self, i: usize) {
        self.node(i).start().expect("start fulcrum");
        wait_admin(&self.members[i].admin, || self.log(i)).await;
    }

    /// Everything member `i` logged so far (empty with unread output).
    pub fn log(&self, i: usize) -> String {
        self.node(i).log()
    }

    /// Member `i`'s node file.
    pub fn config_path(&self, i: usize) -> &Path {
        self.node(i).config_path()
    }

    /// The directory member `i` runs in: a relative path in its config is in here.
    pub fn node_dir(&self, i: usize) -> &Path {
        self.nodes
            .node_dir(i)
            .expect("every loopback node runs in a directory of its own")
    }

    /// Waits (10 s) for a leader of all members and (5 s) for every member to run the
    /// seeded config version 1; returns the leader's index. Panics otherwise.
    pub async fn wait_settled(&self) -> usize {
        let all: Vec<usize> = (0..self.nodes.len()).collect();
        let leader = self
            .wait_leader(&all, Duration::from_secs(10))
            .await
            .expect("a leader");
        assert!(
            self.wait_version(&all, 1, Duration::from_secs(5)).await,
            "every member runs config version 1"
        );
        leader
    }

    /// Waits until exactly one of `alive` reports itself leader and all agree; returns its index.
    pub async fn wait_leader(&self, alive: &[usize], within: Duration) -> Option<usize> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            let mut agreed = std::collections::BTreeSet::new();
            for &i in alive {
                if let Some(s) = get_status(&self.members[i].admin).await {
                    if s["role"] == "leader" {
                        leaders.push(i);
                    }
                    agreed.insert(s["leader_id"].as_u64());
                }
            }
            if leaders.len() == 1
                && agreed.len() == 1
                && agreed.iter().next() == Some(&Some(self.members[leaders[0]].id))
            {
                return Some(leaders[0]);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Waits until every node in `alive` runs config `version`.
    pub async fn wait_version(&self, alive: &[usize], version: u64, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut all = true;
            for &i in alive {
                let v = get_status(&self.members[i].admin)
                    .await
                    .and_then(|s| s["config_version"].as_u64());
                all &= v == Some(version);
            }
            if all {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}
