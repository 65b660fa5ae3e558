//! Raft type configuration for fulcrum: the replicated commands (`Command`), their
//! result (`Response`), the node descriptor (`PeerNode`) and openraft's `TypeConfig`.
//!
//! Everything here crosses the wire and the disk (bincode 2 via serde), so every type
//! is plain serde data without `flatten`/`untagged` (bincode cannot decode those).

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

/// Raft node id.
pub type NodeId = u64;

/// What the cluster knows about a member: where to reach its Raft port and its admin API.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    pub raft_addr: String,
    pub admin_addr: String,
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} admin={}", self.raft_addr, self.admin_addr)
    }
}

/// One replicated state-machine command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Replace the balancer config; bumps the monotonic `config_version`.
    SetConfig { toml: String },
    /// Like `SetConfig`, but only applies while `config_version == 0`. Used for the
    /// bootstrap seed so that two successive leaders cannot both seed.
    SeedConfig { toml: String },
    /// Record (or update) a node's addresses in the registry.
    RegisterNode {
        id: NodeId,
        raft_addr: String,
        admin_addr: String,
    },
    /// `observer`'s own view of one backend. `seq` is the observer's report counter,
    /// monotonic across its restarts: a report that commits after a newer one from the
    /// same observer about the same backend is ignored.
    ReportHealth {
        observer: NodeId,
        pool: String,
        backend: String,
        healthy: bool,
        seq: u64,
    },
    /// Operator drain flag for one backend.
    SetDrain {
        pool: String,
        backend: String,
        drained: bool,
    },
    /// Which node should hold the VIP (informational; fencing is by lease).
    SetVipHolder { node: Option<NodeId> },
    /// The `[[vip]]` placement (address -> owner), replaced whole by the leader's planner.
    AssignVips {
        assignment: std::collections::BTreeMap<String, NodeId>,
    },
    /// `node`'s own word on the config it runs (or cannot run), so every member and
    /// `ctl status` know it without reaching the node. Kept per node by highest `seq`.
    ReportApply { node: NodeId, report: ApplyReport },
    /// The members the leader judges live now (`liveness`), replaced whole on a change.
    SetLiveNodes {
        live: std::collections::BTreeSet<NodeId>,
    },
    /// `ctl drain-node`: the operator takes `node` out of DNS answers (or puts it back).
    SetNodeDrain { node: NodeId, drained: bool },
    /// A split route's weights and shift (`ctl shift`, the leader's shifter), written
    /// only if the route's generation is still `expect` (see `split`).
    SetSplit {
        route: String,
        expect: u64,
        state: crate::split::SplitState,
    },
    /// A pool's backends as its discovery source found them (proposed by the leader,
    /// `discovered`), replaced whole; an empty set forgets the pool.
    SetDiscovered {
        pool: String,
        set: crate::discovered::DiscoveredSet,
    },
}

/// What one node says about applying the committed config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// The config version the node runs.
    pub running: u64,
    /// A newer committed version it could not apply (0: none), and why.
    pub failed_version: u64,
    pub reason: String,
    /// Whether it keeps trying (a port or a file may appear); false: refused for good.
    pub retrying: bool,
    /// The node's report counter (wall-clock milliseconds, kept increasing).
    pub seq: u64,
}

/// Result of applying one log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The config version after the entry was applied.
    pub config_version: u64,
    /// The log index the entry was applied at (0 for none).
    pub log_index: u64,
}

openraft::declare_raft_types!(
    /// openraft type configuration for fulcrum.
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = NodeId,
        Node = PeerNode,
);

/// Shorthands for openraft generics bound to our config.
pub type Raft = openraft::Raft<TypeConfig>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Vote = openraft::Vote<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, PeerNode>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, PeerNode>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type SnapshotData = Cursor<Vec<u8>>;
