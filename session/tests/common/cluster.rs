//! A real Redis Cluster on loopback: `redis-server --cluster-enabled yes` processes joined by
//! `redis-cli --cluster create ... --cluster-replicas 1`, each node killed by PID on drop.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{free_port, raw, wait_until, RedisProc};

pub const REDIS_CLI: &str = "/usr/bin/redis-cli";

/// A running cluster: `masters` masters with one replica each.
pub struct Cluster {
    pub nodes: Vec<RedisProc>,
}

impl Cluster {
    /// Starts `2 * masters` nodes and joins them; returns once every node reports
    /// `cluster_state:ok`.
    pub async fn start(masters: usize) -> Self {
        let timeout = "1000".to_string();
        let nodes: Vec<RedisProc> = (0..masters * 2)
            .map(|_| {
                // An explicit bus port: the default (port + 10000) may be taken or too high.
                let bus = free_port().to_string();
                RedisProc::start_on(
                    free_port(),
                    &[
                        // A replica syncs at once, not after the default 5 s delay.
                        "--repl-diskless-sync-delay",
                        "0",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        &timeout,
                        "--cluster-port",
                        &bus,
                    ],
                )
            })
            .collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let status = Command::new(REDIS_CLI)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run redis-cli --cluster create");
        assert!(status.success(), "redis-cli --cluster create failed");
        let cluster = Self { nodes };
        for n in &cluster.nodes {
            let port = n.port;
            wait_until(Duration::from_secs(20), || async move {
                cluster_info(port).await.contains("cluster_state:ok")
            })
            .await
            .expect("cluster never became ok");
        }
        // Every replica has synced with its master (else it could not be promoted).
        for n in &cluster.nodes {
            let port = n.port;
            let synced = wait_until(Duration::from_secs(20), || async move {
                let info = info_replication(port).await;
                info.contains("role:master") || info.contains("master_link_status:up")
            })
            .await;
            assert!(synced.is_some(), "replica {port} never synced");
        }
        cluster
    }

    /// `redis+cluster://` URL naming every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Ports of the nodes that are masters with slots, as a running node sees it.
    pub async fn masters(&self) -> Vec<u16> {
        let Some(alive) = self.nodes.iter().find(|n| n.is_running()) else {
            return Vec::new();
        };
        let text = cluster_nodes(alive.port).await;

        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let is_master = fields.get(2)?.split(',').any(|f| f == "master");
                let failed = fields.get(2)?.contains("fail");
                let has_slots = fields.len() > 8;
                let port = fields.get(1)?.split('@').next()?.rsplit(':').next()?;
                (is_master && !failed && has_slots)
                    .then(|| port.parse().ok())
                    .flatten()
            })
            .collect()
    }

    pub fn node_mut(&mut self, port: u16) -> &mut RedisProc {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("no such node")
    }
}

/// The slot ranges a master owns, from a running node's `CLUSTER NODES` (`asker`).
pub async fn slots_of(asker: u16, master: u16) -> Vec<(u16, u16)> {
    let text = cluster_nodes(asker).await;
    let suffix = format!(":{master}@");
    text.lines()
        .filter(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.contains(&suffix))
        })
        .flat_map(|l| {
            l.split_whitespace()
                .skip(8)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|r| {
            let (a, b) = r.split_once('-').unwrap_or((&r, &r));
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .collect()
}

/// Sets a config parameter on every node.
pub async fn config_set_all(cluster: &Cluster, name: &str, value: &str) {
    for n in &cluster.nodes {
        let mut c = raw(n.port).await;
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .query_async(&mut c)
            .await
            .expect("CONFIG SET");
    }
}

/// The slot of `key`, as the cluster node on `port` computes it (`CLUSTER KEYSLOT`): the
/// ground truth, independent of fulcrum's own slot function.
pub async fn key_slot(port: u16, key: &str) -> u16 {
    let mut c = raw(port).await;
    redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(key)
        .query_async(&mut c)
        .await
        .expect("CLUSTER KEYSLOT")
}

async fn info_replication(port: u16) -> String {
    let mut c = raw(port).await;
    redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .unwrap_or_default()
}

async fn cluster_info(port: u16) -> String {
    let mut c = raw(port).await;
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await
        .unwrap_or_default()
}

async fn cluster_nodes(port: u16) -> String {
    let mut c = raw(port).await;
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .unwrap_or_default()
}

/// The pin keys one node holds (its own slots only).
pub async fn keys_on(port: u16) -> Vec<String> {
    let mut c = raw(port).await;
    redis::cmd("KEYS")
        .arg("fulcrum:aff:*")
        .query_async(&mut c)
        .await
        .unwrap_or_default()
}
