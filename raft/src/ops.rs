//! Leader-side operations shared by the facade (local proposals) and the peer server
//! (proposals forwarded by followers): writes, membership changes, elections.
//! Each maps openraft's errors to the small `AppError` the wire carries.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;

use crate::rpc::{AppError, MembershipOp};
use crate::types::{Command, NodeId, PeerNode, Raft, Response};

type WriteError = RaftError<NodeId, ClientWriteError<NodeId, PeerNode>>;

fn map_write_err(e: WriteError) -> AppError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => AppError::NotLeader {
            leader: f.leader_id,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            AppError::Rejected(c.to_string())
        }
        RaftError::Fatal(_) => AppError::Shutdown,
    }
}

/// The leader's own check of a write before it proposes it (its own or one a follower
/// forwarded): `Err(reason)` refuses it as `Rejected`. The node checks a config text the
/// way it would check its own file, so a text that only the follower accepts (another
/// version, a certificate file only the follower has) is not committed.
#[derive(Clone)]
pub struct WriteCheck(pub Arc<CheckFn>);

/// `Err(reason)` refuses the command.
pub type CheckFn = dyn Fn(&Command) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for WriteCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteCheck")
    }
}

/// Propose `cmd` on this node, which must be the leader, after `check`. A write that is
/// not committed within `ttl` (no quorum) yields `NoQuorum`; it may still commit later.
#[tracing::instrument(level = "debug", skip(raft, check))]
pub async fn local_write(
    raft: &Raft,
    check: Option<&WriteCheck>,
    cmd: Command,
    ttl: Duration,
) -> Result<Response, AppError> {
    if let Some(check) = check {
        // Only a leader commits: a follower's answer would be "not leader" anyway.
        let leads = {
            let m = raft.metrics();
            let m = m.borrow();
            m.current_leader == Some(m.id)
        };
        if leads {
            (check.0)(&cmd).map_err(|reason| {
                tracing::warn!(%reason, "the leader refused a write");
                AppError::Rejected(reason)
            })?;
        }
    }
    match tokio::time::timeout(ttl, raft.client_write(cmd)).await {
        Err(_) => Err(AppError::NoQuorum),
        Ok(Ok(r)) => Ok(r.data),
        Ok(Err(e)) => Err(map_write_err(e)),
    }
}

/// Run a membership change on this node, which must be the leader.
#[tracing::instrument(level = "info", skip(raft))]
pub async fn local_membership(
    raft: &Raft,
    op: MembershipOp,
    ttl: Duration,
) -> Result<Response, AppError> {
    let fut = async {
        match op {
            MembershipOp::AddLearner { id, node } => add_learner_checked(raft, id, node).await,
            MembershipOp::Promote { id } => {
                let ids: BTreeSet<NodeId> = [id].into();
                raft.change_membership(ChangeMembers::AddVoterIds(ids), false)
                    .await
            }
            MembershipOp::Remove { id } => {
                let ids: BTreeSet<NodeId> = [id].into();
                let is_voter = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id);
                let change = if is_voter {
                    ChangeMembers::RemoveVoters(ids)
                } else {
                    ChangeMembers::RemoveNodes(ids)
                };
                raft.change_membership(change, false).await
            }
        }
    };
    match tokio::time::timeout(ttl, fut).await {
        Err(_) => Err(AppError::NoQuorum),
        Ok(Ok(r)) => Ok(r.data),
        Ok(Err(e)) => Err(map_write_err(e)),
    }
}

/// How long a new learner may take to catch up before the addition is rolled back.
const LEARNER_CATCH_UP: Duration = Duration::from_secs(3);

/// Adds a learner and checks that it really receives the log. openraft's blocking
/// `add_learner` gives up waiting after a short internal timeout and still reports
/// success; a learner that cannot be reached (down, or refused by the peer
/// authentication because it lacks the cluster secret) would then sit in the
/// membership forever. Such an addition is rolled back and reported as rejected.
async fn add_learner_checked(
    raft: &Raft,
    id: NodeId,
    node: crate::types::PeerNode,
) -> Result<
    openraft::raft::ClientWriteResponse<crate::types::TypeConfig>,
    openraft::error::RaftError<
        NodeId,
        openraft::error::ClientWriteError<NodeId, crate::types::PeerNode>,
    >,
> {
    let resp = raft.add_learner(id, node, true).await?;
    let target = resp.log_id;
    let caught_up = raft
        .wait(Some(LEARNER_CATCH_UP))
        .metrics(
            |m| {
                m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id))
                    .is_some_and(|matched| {
                        matched.as_ref().is_some_and(|l| l.index >= target.index)
                    })
            },
            "new learner catches up",
        )
        .await
        .is_ok();
    if caught_up {
        return Ok(resp);
    }
    tracing::warn!(
        learner = id,
        "new learner did not catch up (unreachable or not authenticated); rolling back"
    );
    let ids: BTreeSet<NodeId> = [id].into();
    raft.change_membership(ChangeMembers::RemoveNodes(ids), false)
        .await?;
    Err(openraft::error::RaftError::APIError(
        openraft::error::ClientWriteError::ChangeMembershipError(
            openraft::error::ChangeMembershipError::LearnerNotFound(
                openraft::error::LearnerNotFound { node_id: id },
            ),
        ),
    ))
}
