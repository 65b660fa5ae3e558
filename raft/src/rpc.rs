//! Messages carried on the authenticated peer channel: openraft's three RPCs (votes with
//! their fence reports), the application RPCs (forwarded writes and membership changes),
//! and the lease protocol's (lease streams, pre-votes, leadership hand-off).

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::lease::wire::{FenceReport, PreVote};
use crate::types::{Command, NodeId, PeerNode, Response, TypeConfig};
use crate::vip_grant::{VipLeaseAsk, VipLeaseGrant};

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
    /// "Start an election now": a leader of `term` that is about to stop asks its chosen
    /// successor to take over.
    TakeOver {
        term: u64,
    },
    /// Turns this connection into a lease stream (`LeasePing` in, `LeaseAck` out).
    OpenLease,
    /// Would the receiver vote for a campaign (see `lease::wire::PreVote`)?
    PreVote(PreVote),
    /// The successor `from` of a planned hand-off leads `term`: "close your fence and
    /// forward the VIP's packets to `mac`" (see `handover`).
    HandOver {
        term: u64,
        from: NodeId,
        mac: Option<[u8; 6]>,
    },
    /// A `[[vip]]` holder renews its grants (see `vip_grant`); the receiver must lead.
    VipLease(VipLeaseAsk),
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
    /// The vote answer, with the voter's fence report (empty unless granted).
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>, FenceReport),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    App(Result<Response, AppError>),
    /// The connection is a lease stream from now on.
    LeaseOpened,
    /// Pre-vote answer.
    PreVote(bool),
    /// The answer to `PeerRequest::HandOver`: whether the fence is closed and the forward
    /// started (`done`), and the answering node's MAC on the VIP's link, the source of the
    /// frames it forwards (`None`: no VIP there). A request for term 0 only asks for the MAC.
    HandOver {
        done: bool,
        mac: Option<[u8; 6]>,
    },
    /// The answer to `PeerRequest::VipLease` (`None` unless the receiver leads).
    VipLease(Option<VipLeaseGrant>),
}
