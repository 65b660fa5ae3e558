//! The facade the `fulcrum` binary uses: the options of a node (`RaftOptions`), its
//! errors, and the cloneable `RaftHandle` that `start::start` returns (status/state/lease
//! watches, propose, membership, hand-off, shutdown).
//!
//! Everything is spawned on the runtime `start` runs in (the node's control thread); calls
//! made from other runtimes (admin API) hop onto it, so that control-plane sockets are
//! only ever driven by the control thread.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::DbError;
use crate::lease::Lease;
use crate::network::{CallError, Channel, PeerPool};
use crate::propose::{AppOp, ProposeError, Router};
use crate::rpc::{MembershipOp, PeerRequest, PeerResponse};
use crate::state::ClusterState;
use crate::status::RaftStatus;
use crate::successor;
use crate::tls::PeerTlsError;
use crate::types::{Command, NodeId, PeerNode, Raft, Response, TypeConfig};

/// Everything needed to run one Raft node. Durations are openraft's timing knobs.
#[derive(Debug, Clone)]
pub struct RaftOptions {
    pub node_id: u64,
    pub raft_addr: SocketAddr,
    pub admin_addr: String,
    /// Static peers `(id, raft address)`, this node included. Empty = one-node cluster.
    pub peers: Vec<(u64, SocketAddr)>,
    pub secret: Vec<u8>,
    /// Mutual TLS for peer traffic (CA, cert, key files); `None` = plain TCP. The
    /// shared-secret check runs either way.
    pub tls: Option<fulcrum_config::PeerTls>,
    pub data_dir: PathBuf,
    /// Lease ping period.
    pub heartbeat: Duration,
    /// Silence after which the designated successor suspects the leader.
    pub election_timeout_min: Duration,
    /// Silence after which any voter suspects the leader.
    pub election_timeout_max: Duration,
    /// The fence: a leader's kernel may answer for the VIP until this long after the send
    /// instant of its newest quorum-acknowledged ping.
    pub lease: Duration,
    /// Balancer config proposed once at bootstrap when the cluster has none.
    pub seed_config_toml: String,
    /// Shuts the VIP fence when this node stops leading; registered before the peer
    /// server accepts its first vote request.
    pub step_down_hook: Option<crate::lease::HookSlot>,
    /// Run by the leader on every write before proposing it (`ops::WriteCheck`).
    pub write_check: Option<crate::ops::WriteCheck>,
}

impl RaftOptions {
    /// Options with fulcrum's default timing (heartbeat 5 ms, lease 20 ms, election
    /// timeout 25-50 ms).
    pub fn new(node_id: u64, raft_addr: SocketAddr, data_dir: PathBuf, secret: Vec<u8>) -> Self {
        Self {
            node_id,
            raft_addr,
            admin_addr: String::new(),
            peers: Vec::new(),
            secret,
            tls: None,
            data_dir,
            heartbeat: Duration::from_millis(5),
            election_timeout_min: Duration::from_millis(25),
            election_timeout_max: Duration::from_millis(50),
            lease: Duration::from_millis(20),
            seed_config_toml: String::new(),
            step_down_hook: None,
            write_check: None,
        }
    }
}

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum RaftError {
    #[error("invalid raft options: {0}")]
    Options(String),
    #[error("raft data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("raft store: {0}")]
    Store(#[from] DbError),
    #[error("peer tls: {0}")]
    Tls(#[from] PeerTlsError),
    #[error("cannot bind raft address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("raft start: {0}")]
    Start(String),
}

/// One member as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: NodeId,
    pub raft_addr: String,
    /// From the replicated registry (`RegisterNode`); empty until the node registered.
    pub admin_addr: String,
    pub voter: bool,
    pub is_leader: bool,
}

pub(crate) struct Inner {
    pub(crate) node_id: NodeId,
    pub(crate) raft_addr: String,
    pub(crate) admin_addr: String,
    pub(crate) seed_config_toml: String,
    pub(crate) raft: Raft,
    pub(crate) pool: PeerPool,
    pub(crate) status_rx: watch::Receiver<RaftStatus>,
    pub(crate) lease: Arc<Lease>,
    /// The runtime everything of this node runs on (the control thread's).
    pub(crate) rt: tokio::runtime::Handle,
    pub(crate) state_rx: watch::Receiver<Arc<ClusterState>>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) shutdown_rx: watch::Receiver<bool>,
    pub(crate) bootstrapped: bool,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Lets `shutdown` wait until the store file is really closed.
    pub(crate) db_ref: Weak<redb::Database>,
    pub(crate) write_check: Option<crate::ops::WriteCheck>,
    pub(crate) vip_grants: Arc<crate::vip_grant::VipGrants>,
}

/// How a planned hand-off went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandOff {
    /// This node did not lead: nothing to hand off.
    NotLeader,
    /// Another node leads now.
    Done,
    /// No voter took over; this node still leads.
    Failed,
}

/// Handle to a running node; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    pub(crate) inner: Arc<Inner>,
}

/// Budget for a client proposal before it fails with `NoQuorum`.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on each step of a leadership hand-off.
pub const HANDOFF_WAIT: Duration = Duration::from_millis(500);
/// Budget for a membership change (adding a learner waits until it caught up).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

impl RaftHandle {
    pub(crate) fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        match self.inner.tasks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn router(&self) -> Router<'_> {
        Router {
            self_id: self.inner.node_id,
            raft: &self.inner.raft,
            pool: &self.inner.pool,
            shutdown: &self.inner.shutdown_rx,
            check: self.inner.write_check.as_ref(),
        }
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.node_id
    }

    /// True when this process initialized the cluster (fresh store, lowest peer id).
    /// A restart over existing state never does.
    pub fn bootstrapped(&self) -> bool {
        self.inner.bootstrapped
    }

    /// The underlying openraft instance, for metrics or advanced use.
    pub fn raft(&self) -> &openraft::Raft<TypeConfig> {
        &self.inner.raft
    }

    pub fn status(&self) -> watch::Receiver<RaftStatus> {
        self.inner.status_rx.clone()
    }

    /// Updated after each apply and each snapshot install.
    pub fn cluster_state(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.inner.state_rx.clone()
    }

    /// Whether this node's drain (`Command::SetNodeDrain`) is in the state it has applied:
    /// replicated and persisted, so it holds across restarts until the undrain commits.
    pub fn drained(&self) -> bool {
        self.inner
            .state_rx
            .borrow()
            .drained_nodes
            .contains(&self.inner.node_id)
    }

    /// Commit `cmd` through the leader (forwarded when this node follows). Fails with
    /// `NoQuorum` after at most `PROPOSE_TIMEOUT`.
    pub async fn propose(&self, cmd: Command) -> Result<Response, ProposeError> {
        self.route(AppOp::Write(cmd), PROPOSE_TIMEOUT).await
    }

    /// Runs `op` on the control runtime (its connections belong to that runtime).
    async fn route(&self, op: AppOp, budget: Duration) -> Result<Response, ProposeError> {
        let h = self.clone();
        self.inner
            .rt
            .spawn(async move { h.router().route(op, budget).await })
            .await
            .unwrap_or(Err(ProposeError::Shutdown))
    }

    /// The lease: what this node may do with the VIP, and the failover event log.
    pub fn lease(&self) -> &Arc<Lease> {
        &self.inner.lease
    }

    /// Voter ids of the latest membership config this node knows (a conservative
    /// "live voters" input for `ClusterState::backend_healthy`).
    pub fn voter_ids(&self) -> BTreeSet<NodeId> {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.membership_config.membership().voter_ids().collect()
    }

    /// Members per the latest membership config this node knows.
    pub async fn members(&self) -> Vec<MemberInfo> {
        let m = self.inner.raft.metrics().borrow().clone();
        let state = self.inner.state_rx.borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        membership
            .nodes()
            .map(|(id, node)| MemberInfo {
                id: *id,
                raft_addr: node.raft_addr.clone(),
                admin_addr: state
                    .nodes
                    .get(id)
                    .map(|n| n.admin_addr.clone())
                    .unwrap_or_else(|| node.admin_addr.clone()),
                voter: voters.contains(id),
                is_leader: m.current_leader == Some(*id),
            })
            .collect()
    }

    async fn membership(&self, op: MembershipOp) -> Result<(), ProposeError> {
        self.route(AppOp::Membership(op), MEMBERSHIP_TIMEOUT)
            .await
            .map(|_| ())
    }

    /// Add a non-voting learner; returns once it has caught up with the log.
    pub async fn add_learner(&self, id: NodeId, node: PeerNode) -> Result<(), ProposeError> {
        self.membership(MembershipOp::AddLearner { id, node }).await
    }

    /// Turn a learner into a voter.
    pub async fn promote(&self, id: NodeId) -> Result<(), ProposeError> {
        self.membership(MembershipOp::Promote { id }).await
    }

    /// Remove a voter or learner from the cluster.
    pub async fn remove(&self, id: NodeId) -> Result<(), ProposeError> {
        self.membership(MembershipOp::Remove { id }).await
    }

    /// The `[[vip]]` grant table (the leader's; see `vip_grant`).
    pub fn vip_grants(&self) -> &Arc<crate::vip_grant::VipGrants> {
        &self.inner.vip_grants
    }

    /// Asks the leader (or this node, if it leads) for this node's `[[vip]]` grants, within
    /// `ttl`. `None`: no leader known, no answer, or the node asked does not lead (with a
    /// lease); the caller's grants then run out by themselves.
    pub async fn ask_vip_lease(
        &self,
        ask: crate::vip_grant::VipLeaseAsk,
        ttl: Duration,
    ) -> Option<crate::vip_grant::VipLeaseGrant> {
        let (leader, addr) = {
            let m = self.inner.raft.metrics();
            let m = m.borrow();
            let leader = m.current_leader?;
            let addr = m
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.raft_addr.clone());
            (leader, addr)
        };
        if leader == self.inner.node_id {
            let state = self.inner.state_rx.borrow().clone();
            return crate::vip_grant::answer_here(
                &self.inner.vip_grants,
                &self.inner.lease,
                &state,
                &ask,
            );
        }
        let client = self.inner.pool.get(leader, &addr?, Channel::Vip);
        match client.call(&PeerRequest::VipLease(ask), ttl).await {
            Ok(PeerResponse::VipLease(g)) => g,
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(leader, error = %e, "VIP lease request failed");
                None
            }
        }
    }

    /// Planned hand-off before a stop; call `shutdown` afterwards.
    ///
    /// When this node leads: asks its most up-to-date voter to campaign at once
    /// (`PeerRequest::TakeOver`); that candidate's vote request makes this node close its
    /// fence and release the VIP just before it grants (see `server`), and the successor
    /// claims as soon as the grant arrives. Tries the other voters if the first does not
    /// take over within `HANDOFF_WAIT`. A node that does not lead has nothing to hand off.
    pub async fn hand_off(&self) -> HandOff {
        let h = self.clone();
        self.inner
            .rt
            .spawn(async move {
                // A stopping leader does not campaign while it hands off: winning back the
                // election it just gave away would undo the hand-off.
                h.inner.lease.set_handing_off(true);
                let outcome = h.hand_off_here().await;
                h.inner.lease.set_handing_off(false);
                outcome
            })
            .await
            .unwrap_or(HandOff::Failed)
    }

    async fn hand_off_here(&self) -> HandOff {
        let me = self.inner.node_id;
        let raft = &self.inner.raft;
        let mut tried: Vec<NodeId> = Vec::new();
        loop {
            let (term, leading) = {
                let m = raft.metrics();
                let m = m.borrow();
                (m.current_term, m.current_leader == Some(me))
            };
            if !leading {
                if tried.is_empty() {
                    return HandOff::NotLeader;
                }
                // Stepped down for the successor: done once its leadership is known here.
                return if self.wait_other_leader(me).await {
                    HandOff::Done
                } else {
                    HandOff::Failed
                };
            }
            let Some((id, addr)) = successor::best_successor_except(raft, me, &tried) else {
                return HandOff::Failed;
            };
            tried.push(id);
            // A successor missing the last entry loses the vote to the voters that have it
            // (Raft's up-to-date rule), and its failed campaign deposes this leader: let
            // replication bring it level first, or try the next one.
            if !successor::wait_caught_up(raft, id, HANDOFF_WAIT).await {
                self.inner.lease.events.record(
                    "handoff_skipped",
                    term,
                    format!("{id} did not catch up"),
                );
                tracing::warn!(
                    successor = id,
                    "successor did not catch up; trying the next"
                );
                continue;
            }
            self.inner
                .lease
                .events
                .record("handoff", term, format!("to {id}"));
            let client = self.inner.pool.get(id, &addr, Channel::Control);
            let ask = PeerRequest::TakeOver { term };
            let mut answer = client.call(&ask, HANDOFF_WAIT).await;
            if let Err(CallError::Io(e)) = &answer {
                // A pooled connection to a peer that restarted since (a rolling restart
                // stops the leader last) fails at once: the request never left. The failed
                // call dropped it; once more on a new connection.
                tracing::debug!(successor = id, error = %e, "take-over on a dead connection; redialling");
                answer = client.call(&ask, HANDOFF_WAIT).await;
            }
            match answer {
                Ok(PeerResponse::App(Ok(_))) => {}
                other => {
                    tracing::warn!(successor = id, answer = ?other.map(|_| ()), "successor did not take over");
                    continue;
                }
            }
            if self.wait_other_leader(me).await {
                tracing::info!(successor = ?self.status().borrow().leader_id, "leadership handed off");
                return HandOff::Done;
            }
            tracing::warn!(successor = id, "no successor took over in time");
        }
    }

    /// Waits (up to `HANDOFF_WAIT`) until this node knows a leader other than `me`.
    async fn wait_other_leader(&self, me: NodeId) -> bool {
        let mut status = self.status();
        let moved = async {
            status
                .wait_for(|s| s.leader_id.is_some_and(|l| l != me))
                .await
                .is_ok()
        };
        matches!(tokio::time::timeout(HANDOFF_WAIT, moved).await, Ok(true))
    }

    /// Stop Raft, the peer server and background tasks; frees the Raft port. Idempotent.
    #[tracing::instrument(level = "info", skip(self), fields(node = self.inner.node_id))]
    pub async fn shutdown(&self) {
        self.inner.shutdown_tx.send_replace(true);
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft core shutdown error");
        }
        self.inner.pool.clear();
        let tasks: Vec<JoinHandle<()>> = self.lock_tasks().drain(..).collect();
        for t in tasks {
            // Tasks watch the shutdown flag; the bound only guards against a bug.
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                tracing::warn!("background task did not stop in time");
            }
        }
        self.wait_store_closed().await;
    }

    /// openraft's replication tasks and in-flight blocking writes may hold the store a
    /// little after the core stopped; wait (bounded) so that a restart in the same
    /// process can reopen the file (redb refuses a second open).
    async fn wait_store_closed(&self) {
        for _ in 0..200 {
            if self.inner.db_ref.strong_count() == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::warn!("raft store still open 2 s after shutdown");
    }
}

/// Expected registry entry of this node.
pub(crate) fn self_entry(inner: &Inner) -> PeerNode {
    PeerNode {
        raft_addr: inner.raft_addr.clone(),
        admin_addr: inner.admin_addr.clone(),
    }
}

/// Static peers as openraft members; only this node's admin address is known here.
pub(crate) fn initial_members(o: &RaftOptions) -> BTreeMap<NodeId, PeerNode> {
    let mut peers = o.peers.clone();
    if peers.is_empty() {
        peers.push((o.node_id, o.raft_addr));
    }
    peers
        .into_iter()
        .map(|(id, addr)| {
            let admin_addr = if id == o.node_id {
                o.admin_addr.clone()
            } else {
                String::new()
            };
            let node = PeerNode {
                raft_addr: addr.to_string(),
                admin_addr,
            };
            (id, node)
        })
        .collect()
}
