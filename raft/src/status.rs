//! `RaftStatus` (role, leader, term, lease freshness, leader-change count) and the task
//! that maintains it.
//!
//! The lease is evaluated on this task's own 10 ms timer, independent of the Raft core:
//! each time the core publishes metrics we record `last_ack = now - millis_since_quorum_ack`;
//! between publications the recorded instant just ages. A stalled core therefore stops
//! refreshing `last_ack` and `lease_fresh` turns false `lease` after the last quorum ack.

use std::time::{Duration, Instant};

use openraft::ServerState;
use tokio::sync::watch;

use crate::types::{NodeId, PeerNode, Raft};

/// This node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Role {
    Leader,
    #[default]
    Follower,
    Candidate,
    Learner,
    Shutdown,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl From<ServerState> for Role {
    fn from(s: ServerState) -> Self {
        match s {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        }
    }
}

/// Snapshot of this node's Raft status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftStatus {
    pub role: Role,
    pub leader_id: Option<NodeId>,
    pub term: u64,
    /// Highest log index this node knows to be committed. openraft 0.9 metrics do not
    /// expose the commit index, so this is the applied index (applied <= committed).
    pub commit_index: u64,
    pub last_applied: u64,
    /// Leader AND a quorum acknowledged it within `lease`: safe to hold the VIP.
    pub lease_fresh: bool,
    /// How many times the known leader changed to a new node since start.
    pub leader_changes: u64,
}

const TICK: Duration = Duration::from_millis(10);

/// Keep `tx` up to date until `shutdown` flips to true, then publish `Role::Shutdown`.
pub(crate) async fn run(
    raft: Raft,
    lease: Duration,
    tx: watch::Sender<RaftStatus>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut metrics = raft.metrics();
    // Process the current value on the first tick, not only later changes.
    metrics.mark_changed();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ack: Option<Instant> = None;
    let mut next = tx.borrow().clone();
    // Last leader ever seen: a Some(1) -> None -> Some(1) blip is not a change.
    let mut known_leader: Option<NodeId> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            _ = tick.tick() => {}
        }
        if metrics.has_changed().unwrap_or(false) {
            let m = metrics.borrow_and_update().clone();
            last_ack = match (m.state, m.millis_since_quorum_ack) {
                (ServerState::Leader, Some(ms)) => {
                    Instant::now().checked_sub(Duration::from_millis(ms))
                }
                _ => None,
            };
            update_from_metrics(&mut next, &mut known_leader, &m);
        }
        next.lease_fresh =
            next.role == Role::Leader && last_ack.is_some_and(|t| t.elapsed() < lease);
        tx.send_if_modified(|cur| {
            if *cur != next {
                *cur = next.clone();
                return true;
            }
            false
        });
    }
    tx.send_modify(|s| {
        s.role = Role::Shutdown;
        s.lease_fresh = false;
    });
}

#[tracing::instrument(level = "debug", skip_all)]
fn update_from_metrics(
    s: &mut RaftStatus,
    known_leader: &mut Option<NodeId>,
    m: &openraft::RaftMetrics<NodeId, PeerNode>,
) {
    let role = Role::from(m.state);
    if role != s.role {
        tracing::info!(
            from = s.role.as_str(),
            to = role.as_str(),
            term = m.current_term,
            "raft role changed"
        );
    }
    if m.current_leader.is_some() && m.current_leader != *known_leader {
        *known_leader = m.current_leader;
        s.leader_changes += 1;
        tracing::info!(leader = ?m.current_leader, term = m.current_term, "raft leader changed");
    }
    s.role = role;
    s.leader_id = m.current_leader;
    s.term = m.current_term;
    s.last_applied = m.last_applied.map(|l| l.index).unwrap_or(0);
    s.commit_index = s.last_applied;
}
