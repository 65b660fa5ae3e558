//! `RaftStatus` (role, leader, term, lease, leader-change count) and the task that keeps
//! it — and the lease's view of Raft (leading term, voters, peer addresses) — current.
//!
//! Driven by openraft's metrics watch, plus a 10 ms tick so that `lease_fresh` turns false
//! when the lease runs out even if nothing else happens. The VIP guard does not read this:
//! it watches `Lease::leadership`, which carries deadlines, not booleans.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::lease::time::now_us;
use crate::lease::Lease;
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
    /// Leader AND a quorum acknowledged it within the lease.
    pub lease_fresh: bool,
    /// While leading: milliseconds left of the lease (for operators).
    pub lease_left_ms: Option<u64>,
    /// How many times the known leader changed to a new node since start.
    pub leader_changes: u64,
}

const TICK: Duration = Duration::from_millis(10);

/// What the status task keeps in line with openraft.
pub(crate) struct StatusTask {
    pub raft: Raft,
    pub lease: Arc<Lease>,
    pub admission: Arc<Admission>,
    /// Static peers: their addresses are peers even before the membership names them.
    pub static_peers: Vec<(u64, SocketAddr)>,
    pub tx: watch::Sender<RaftStatus>,
    pub shutdown: watch::Receiver<bool>,
}

/// Keep `tx` up to date until `shutdown` flips to true, then publish `Role::Shutdown`.
pub(crate) async fn run(t: StatusTask) {
    let mut metrics = t.raft.metrics();
    let mut shutdown = t.shutdown.clone();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next = t.tx.borrow().clone();
    // Last leader ever seen: a Some(1) -> None -> Some(1) blip is not a change.
    let mut known_leader: Option<NodeId> = None;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => break,
            changed = metrics.changed() => if changed.is_err() { break },
            _ = tick.tick() => {}
        }
        let m = metrics.borrow_and_update().clone();
        follow_metrics(&t, &m);
        update_from_metrics(&mut next, &mut known_leader, &m);
        let now = now_us();
        let lease_until = t.lease.read(|s| s.leadership(now).lease_until_us);
        next.lease_fresh = next.role == Role::Leader && lease_until.is_some_and(|u| now < u);
        next.lease_left_ms = lease_until
            .filter(|_| next.role == Role::Leader)
            .map(|u| u.saturating_sub(now) / 1000);
        t.tx.send_if_modified(|cur| {
            if *cur != next {
                *cur = next.clone();
                return true;
            }
            false
        });
    }
    t.tx.send_modify(|s| {
        s.role = Role::Shutdown;
        s.lease_fresh = false;
        s.lease_left_ms = None;
    });
}

/// Tells the lease which term this node leads and who votes; tells admission who the
/// peers are.
fn follow_metrics(t: &StatusTask, m: &openraft::RaftMetrics<NodeId, PeerNode>) {
    let membership = m.membership_config.membership();
    let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    let leader = m.state == ServerState::Leader;
    t.lease.with(|s| {
        s.set_voters(voters);
        // A candidate whose votes a quorum granted leads already (see `on_vote_reply`):
        // Raft's metrics catch up once its first entry is on disk.
        let won = m.state == ServerState::Candidate && s.won(m.current_term);
        s.set_leading((leader || won).then_some(m.current_term));
    });
    let mut ips: Vec<IpAddr> = t.static_peers.iter().map(|(_, a)| a.ip()).collect();
    ips.extend(
        membership
            .nodes()
            .filter_map(|(_, n)| n.raft_addr.parse::<SocketAddr>().ok())
            .map(|a| a.ip()),
    );
    t.admission.set_peers(ips);
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
