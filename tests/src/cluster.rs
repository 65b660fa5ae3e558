//! A local Raft cluster of real fulcrum processes on 127.0.0.1 for tests: the loopback
//! flavour of the test bed's cluster (node files from `fulcrum_testbed::cluster::NodeFile`,
//! each node a [`Fulcrum`] in its own temp dir, free ports, listeners on `listen_ip`).

use crate::client::get_status;
use crate::free_port;
use crate::process::Fulcrum;
use fulcrum_testbed::cluster::{web_to_app, NodeFile};
use std::time::{Duration, Instant};

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

/// A running cluster; each member has its own temp dir (config, log, data).
pub struct LocalCluster {
    pub members: Vec<MemberPorts>,
    pub nodes: Vec<Fulcrum>,
    pub secret_dir: tempfile::TempDir,
    pub web_port: u16,
    /// Raft data dirs, kept across restarts of a member, removed at the end.
    pub data_dirs: Vec<tempfile::TempDir>,
}

impl LocalCluster {
    /// Starts `n` nodes sharing `balancer(web_port, backends)`; returns once every
    /// admin API answers.
    pub async fn start(n: u64, web_port: u16, backends: &str) -> LocalCluster {
        let members: Vec<MemberPorts> = (1..=n).map(|id| MemberPorts::new(id, web_port)).collect();
        Self::start_members(members, web_port, backends, |_| String::new()).await
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

    /// Starts `members` sharing the cluster-wide part `balancer`.
    async fn start_balancer(
        members: Vec<MemberPorts>,
        web_port: u16,
        balancer: &str,
        node_extra: &str,
        cluster_extra: impl Fn(&MemberPorts) -> String,
    ) -> LocalCluster {
        let secret_dir = tempfile::tempdir().expect("tempdir");
        let secret = secret_dir.path().join("cluster.secret");
        std::fs::write(&secret, "test-cluster-secret-0123456789\n").expect("secret");
        let peers = peers_line(&members);
        let mut nodes = Vec::new();
        let mut data_dirs = Vec::new();
        for m in &members {
            let data = tempfile::tempdir().expect("tempdir");
            let cfg = node_config_full(
                m,
                &peers,
                &secret.display().to_string(),
                &data.path().display().to_string(),
                balancer,
                node_extra,
                &cluster_extra(m),
            );
            nodes.push(Fulcrum::start(&cfg, &m.admin).await);
            data_dirs.push(data);
        }
        LocalCluster {
            members,
            nodes,
            secret_dir,
            web_port,
            data_dirs,
        }
    }

    /// The balancer part of this cluster with other backends.
    pub fn balancer(&self, backends: &str) -> String {
        balancer(self.web_port, backends)
    }

    pub fn secret_path(&self) -> String {
        self.secret_dir
            .path()
            .join("cluster.secret")
            .display()
            .to_string()
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
