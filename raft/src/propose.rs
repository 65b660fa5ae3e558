//! Routing an application operation (write or membership change) to the leader:
//! run it locally when this node leads, otherwise forward it over the peer channel.
//! Retries while leadership is unknown or moving, within one bounded deadline; running
//! out of time is `NoQuorum`, so a caller never hangs.

use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::network::{CallError, Channel, PeerPool};
use crate::ops;
use crate::rpc::{AppError, MembershipOp, PeerRequest, PeerResponse};
use crate::types::{Command, NodeId, Raft, Response};

/// Why a proposal failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// No leader, or the leader could not reach a quorum, within the time budget.
    #[error("no quorum: no leader could commit the proposal in time")]
    NoQuorum,
    /// The leader refused the operation (e.g. an invalid membership change).
    #[error("rejected by the leader: {0}")]
    Rejected(String),
    /// This node is shutting down.
    #[error("raft is shut down")]
    Shutdown,
}

/// What to run on the leader.
#[derive(Debug, Clone)]
pub(crate) enum AppOp {
    Write(Command),
    Membership(MembershipOp),
}

impl AppOp {
    fn request(&self) -> PeerRequest {
        match self {
            AppOp::Write(c) => PeerRequest::ForwardWrite(c.clone()),
            AppOp::Membership(m) => PeerRequest::Membership(m.clone()),
        }
    }

    async fn run_local(
        &self,
        raft: &Raft,
        check: Option<&ops::WriteCheck>,
        ttl: Duration,
    ) -> Result<Response, AppError> {
        match self {
            AppOp::Write(c) => ops::local_write(raft, check, c.clone(), ttl).await,
            AppOp::Membership(m) => ops::local_membership(raft, m.clone(), ttl).await,
        }
    }
}

/// Everything `route` needs from the node.
pub(crate) struct Router<'a> {
    pub self_id: NodeId,
    pub raft: &'a Raft,
    pub pool: &'a PeerPool,
    pub shutdown: &'a watch::Receiver<bool>,
    pub check: Option<&'a ops::WriteCheck>,
}

/// Pause between attempts while leadership is unknown or moving.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

enum Attempt {
    Done(Result<Response, ProposeError>),
    Retry,
}

impl Router<'_> {
    /// Run `op` on the current leader, retrying until `budget` is spent.
    #[tracing::instrument(level = "debug", skip(self))]
    pub async fn route(&self, op: AppOp, budget: Duration) -> Result<Response, ProposeError> {
        let deadline = Instant::now() + budget;
        // Bounded in count as well as time: budget / pause attempts at most.
        let max_attempts = (budget.as_millis() / RETRY_PAUSE.as_millis()).max(1) + 1;
        for _ in 0..max_attempts {
            if *self.shutdown.borrow() {
                return Err(ProposeError::Shutdown);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.attempt(&op, left).await {
                Attempt::Done(r) => return r,
                Attempt::Retry => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(RETRY_PAUSE.min(left)).await;
                }
            }
        }
        Err(ProposeError::NoQuorum)
    }

    async fn attempt(&self, op: &AppOp, left: Duration) -> Attempt {
        let (leader, leader_addr) = {
            let m = self.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader;
            let addr = leader.and_then(|l| {
                m.membership_config
                    .membership()
                    .get_node(&l)
                    .map(|n| n.raft_addr.clone())
            });
            (leader, addr)
        };
        match (leader, leader_addr) {
            (Some(l), _) if l == self.self_id => {
                from_app(op.run_local(self.raft, self.check, left).await)
            }
            (Some(l), Some(addr)) => {
                let client = self.pool.get(l, &addr, Channel::App);
                match client.call(&op.request(), left).await {
                    Ok(PeerResponse::App(r)) => from_app(r),
                    Ok(_) => Attempt::Retry,
                    Err(CallError::Timeout(_)) => Attempt::Done(Err(ProposeError::NoQuorum)),
                    Err(e) => {
                        tracing::debug!(leader = l, error = %e, "forward to leader failed");
                        Attempt::Retry
                    }
                }
            }
            _ => Attempt::Retry,
        }
    }
}

fn from_app(r: Result<Response, AppError>) -> Attempt {
    match r {
        Ok(resp) => Attempt::Done(Ok(resp)),
        Err(AppError::NotLeader { .. }) => Attempt::Retry,
        Err(AppError::NoQuorum) => Attempt::Done(Err(ProposeError::NoQuorum)),
        Err(AppError::Rejected(s)) => Attempt::Done(Err(ProposeError::Rejected(s))),
        // The remote leader is stopping: someone else will lead soon.
        Err(AppError::Shutdown) => Attempt::Retry,
    }
}
