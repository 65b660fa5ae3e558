//! Messages carried on the authenticated peer channel: openraft's three RPCs plus the
//! application RPCs (forwarded writes and membership changes, leadership hand-off).

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::types::{Command, NodeId, PeerNode, Response, TypeConfig};

/// A membership change the leader should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipOp {
    /// Add a non-voting learner and wait until it caught up.
    AddLearner { id: NodeId, node: PeerNode },
    /// Make an existing learner a voter.
    Promote { id: NodeId },
    /// Remove a node (voter or learner) from the cluster.
    Remove { id: NodeId },
}

/// Request frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A follower forwards a client proposal; the receiver must be the leader.
    ForwardWrite(Command),
    /// A follower forwards a membership change; the receiver must be the leader.
    Membership(MembershipOp),
    /// "Start an election now" — sent by a leader that is about to stop.
    Elect,
}

/// Why an application RPC failed on the remote side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum AppError {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("no quorum: the write was not committed in time")]
    NoQuorum,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("raft stopped")]
    Shutdown,
}

/// Response frame.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    App(Result<Response, AppError>),
}
