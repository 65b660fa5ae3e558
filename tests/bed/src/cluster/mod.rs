//! A cluster of real `fulcrum` processes, the one type behind every bed that runs
//! several nodes (`tests/src/cluster.rs` on loopback, `vipbed`/`bgpbed` and the chaos
//! suite in namespaces).
//!
//! - [`toml`] — the node file: node-local part plus the caller's cluster-wide part.
//! - [`node`] — one node process: start, signal, kill, wait for exit, log.
//! - [`Cluster`] (here) — nodes `1..=n`, each a [`Member`]: in a namespace of its own on
//!   its own address with the fixed Raft and admin ports, or in the test's namespace on
//!   loopback ports of its own. Files in one directory (`n1.toml`, `n1.log`, `n1-data`,
//!   `cluster.secret`, and `n1/` when each node runs in a directory of its own), admin
//!   calls and `fulcrum ctl` from any namespace. Dropping it SIGKILLs every node (which
//!   also ends a SIGSTOPped one).

pub mod node;
pub mod toml;

pub use node::Node;
pub use toml::{peers_line, web_to_app, NodeFile};

use crate::netns::exec;
use crate::process::Launched;
use crate::testbed::Testbed;
use crate::BedError;
use std::path::{Path, PathBuf};

/// Raft port of every node on its own address.
pub const RAFT_PORT: u16 = 7946;
/// Admin port of every node on its own address.
pub const ADMIN_PORT: u16 = 9901;

/// Where one member lives.
#[derive(Debug, Clone)]
pub struct Member {
    /// Its network namespace; `None`: the test's own.
    pub ns: Option<String>,
    /// `[cluster].raft`, `IP:PORT`.
    pub raft: String,
    /// `[node].admin`, `IP:PORT`.
    pub admin: String,
}

impl Member {
    /// A member in namespace `ns` on its own address `ip`, Raft and admin on the fixed
    /// [`RAFT_PORT`] and [`ADMIN_PORT`].
    pub fn in_namespace(ip: &str, ns: &str) -> Member {
        Member {
            ns: Some(ns.to_string()),
            raft: format!("{ip}:{RAFT_PORT}"),
            admin: format!("{ip}:{ADMIN_PORT}"),
        }
    }

    /// A member in the test's own namespace with Raft on `raft` and admin on `admin`.
    pub fn local(raft: &str, admin: &str) -> Member {
        Member {
            ns: None,
            raft: raft.to_string(),
            admin: admin.to_string(),
        }
    }
}

/// Nodes `1..=n`, one per member.
#[derive(Debug)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    members: Vec<Member>,
    shutdown_grace: String,
    nodes: Vec<Node>,
}

impl Cluster {
    /// A cluster of `members` (node `i + 1` is `members[i]`) running `bin`, its files in
    /// `dir` (created), the shared `secret` written; nodes are not started yet.
    /// `own_group` puts each node in a process group of its own.
    pub fn new(
        bin: &Path,
        dir: &Path,
        members: Vec<Member>,
        shutdown_grace: &str,
        secret: &str,
        own_group: bool,
    ) -> Result<Cluster, BedError> {
        std::fs::create_dir_all(dir).map_err(|e| BedError::io(dir.display(), e))?;
        let secret_path = dir.join("cluster.secret");
        std::fs::write(&secret_path, secret).map_err(|e| BedError::io(secret_path.display(), e))?;
        let nodes = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let name = format!("n{}", i + 1);
                let node = Node::new(
                    bin,
                    &dir.join(format!("{name}.toml")),
                    &dir.join(format!("{name}.log")),
                );
                let node = match &m.ns {
                    Some(ns) => node.in_namespace(ns),
                    None => node,
                };
                if own_group {
                    node.own_group()
                } else {
                    node
                }
            })
            .collect();
        Ok(Cluster {
            bin: bin.to_path_buf(),
            dir: dir.to_path_buf(),
            members,
            shutdown_grace: shutdown_grace.to_string(),
            nodes,
        })
    }

    /// Nodes on hosts `hosts` of a test's `bed` (node `i + 1` on `hosts[i]`) running the
    /// `fulcrum` under test, files in `dir`, in the test's process group.
    pub fn on_testbed(
        bed: &Testbed,
        hosts: &[&str],
        dir: &Path,
        shutdown_grace: &str,
        secret: &str,
    ) -> Result<Cluster, BedError> {
        let members = hosts
            .iter()
            .map(|h| {
                let ip = bed
                    .ip(h)
                    .ok_or_else(|| BedError::Refused(format!("the bed has no host {h}")))?;
                Ok(Member::in_namespace(&ip.to_string(), &bed.ns(h)))
            })
            .collect::<Result<Vec<_>, BedError>>()?;
        let bin = crate::process::fulcrum_bin()?;
        Cluster::new(&bin, dir, members, shutdown_grace, secret, false)
    }

    /// Runs each node in a directory of its own, `n1/`, `n2/`... in the cluster's
    /// directory (created): a relative path in a node's config is then that node's.
    pub fn each_in_own_dir(mut self) -> Result<Cluster, BedError> {
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for (i, node) in std::mem::take(&mut self.nodes).into_iter().enumerate() {
            let dir = self.dir.join(format!("n{}", i + 1));
            std::fs::create_dir_all(&dir).map_err(|e| BedError::io(dir.display(), e))?;
            nodes.push(node.current_dir(&dir));
        }
        self.nodes = nodes;
        Ok(self)
    }

    /// Adds `args` after `run --config FILE` on every node.
    pub fn with_args(self, args: &[&str]) -> Cluster {
        self.map_nodes(|node| node.args(args))
    }

    /// Sends every node's output to a pipe nobody reads (see [`Node::unread_output`]).
    pub fn unread_output(self) -> Cluster {
        self.map_nodes(Node::unread_output)
    }

    fn map_nodes(mut self, change: impl Fn(Node) -> Node) -> Cluster {
        self.nodes = std::mem::take(&mut self.nodes)
            .into_iter()
            .map(change)
            .collect();
        self
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    /// Node `i`'s admin address.
    pub fn admin(&self, i: usize) -> String {
        self.members[i].admin.clone()
    }

    /// The directory node `i` runs in (see [`Cluster::each_in_own_dir`]); `None` when
    /// it runs in the test's.
    pub fn node_dir(&self, i: usize) -> Option<&Path> {
        self.nodes[i].current_dir_path()
    }

    /// The shared cluster secret's file.
    pub fn secret_path(&self) -> PathBuf {
        self.dir.join("cluster.secret")
    }

    /// The node-local part of node `i`'s file (see [`member_file`]).
    pub fn node_file(&self, i: usize) -> NodeFile {
        member_file(&self.members, i, &self.dir, &self.shutdown_grace)
    }

    /// Writes `text` as node `i`'s file; returns its path.
    pub fn write_config(&self, i: usize, text: &str) -> Result<PathBuf, BedError> {
        self.nodes[i].write_config(text)?;
        Ok(self.nodes[i].config_path().to_path_buf())
    }

    /// (Re)starts node `i` with its file.
    pub fn start(&self, i: usize) -> Result<(), BedError> {
        self.nodes[i].start()
    }

    /// `GET path` on node `i`'s admin API from namespace `from_ns` (curl, 1 s budget):
    /// whether it succeeded, and the body (or curl's complaint).
    pub fn admin_get(&self, from_ns: &str, i: usize, path: &str) -> (bool, String) {
        let url = format!("http://{}{path}", self.admin(i));
        exec(from_ns, &["curl", "-s", "-m", "1", &url])
    }

    /// Node `i`'s `/status` as seen from `from_ns`; None when it does not answer JSON.
    pub fn status(&self, from_ns: &str, i: usize) -> Option<serde_json::Value> {
        let (ok, out) = self.admin_get(from_ns, i, "/status");
        if !ok {
            return None;
        }
        serde_json::from_str(&out).ok()
    }

    /// `fulcrum ctl --admin <node i> ARGS...` from namespace `from_ns`: (success, output).
    pub fn ctl(&self, from_ns: &str, i: usize, args: &[&str]) -> (bool, String) {
        let admin = self.admin(i);
        let bin = self.bin.to_string_lossy();
        let mut cmd = vec![bin.as_ref(), "ctl", "--admin", &admin];
        cmd.extend_from_slice(args);
        exec(from_ns, &cmd)
    }
}

/// The node-local part of the file of node `i + 1` of `members` whose files are in `dir`
/// (a [`Cluster`]'s layout): every member a peer, Raft and admin on the member's addresses.
pub fn member_file(members: &[Member], i: usize, dir: &Path, shutdown_grace: &str) -> NodeFile {
    NodeFile {
        id: i as u64 + 1,
        admin: members[i].admin.clone(),
        data_dir: dir.join(format!("n{}-data", i + 1)).display().to_string(),
        shutdown_grace: shutdown_grace.to_string(),
        raft: members[i].raft.clone(),
        peers: peers_line((1..).zip(members.iter().map(|m| m.raft.as_str()))),
        secret_file: dir.join("cluster.secret").display().to_string(),
        ..NodeFile::default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.nodes.iter().for_each(Node::kill);
    }
}
