//! The facade the `fulcrum` binary uses: `start(RaftOptions)` opens the store, binds the
//! peer port, starts openraft, the lease (pinger, detector) and bootstraps a fresh cluster
//! from the static peer list, and returns a cloneable `RaftHandle` (status/state/lease
//! watches, propose, membership, hand-off, shutdown).
//!
//! Timing: openraft's own heartbeats and election timer are off. Liveness, leases and
//! elections are driven by the lease protocol (`lease`, `detector`) at `heartbeat`; the
//! openraft knobs left are budgets: AppendEntries may take `APPEND_BUDGET` (large config
//! entries over a slow link), a vote `VOTE_BUDGET`.
//!
//! Everything is spawned on the runtime `start` runs in (the node's control thread); calls
//! made from other runtimes (admin API) hop onto it, so that control-plane sockets are
//! only ever driven by the control thread.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::admission::Admission;
use crate::bootstrap;
use crate::db::{self, DbError};
use crate::detector::{self, Detector};
use crate::lease::pinger::{self, Driver};
use crate::lease::{Lease, LeaseTiming};
use crate::log_store::LogStore;
use crate::network::{CallError, Channel, NetworkFactory, PeerPool};
use crate::propose::{AppOp, ProposeError, Router};
use crate::rpc::{MembershipOp, PeerRequest, PeerResponse};
use crate::server::{self, ServerCtx};
use crate::state::ClusterState;
use crate::state_machine::StateMachineStore;
use crate::status::{self, RaftStatus, StatusTask};
use crate::tls::{PeerTlsContext, PeerTlsError};
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
/// Budget of one AppendEntries (openraft's `heartbeat_interval`, whose timer is off).
const APPEND_BUDGET: Duration = Duration::from_secs(2);
/// Budget of one vote request (openraft's `election_timeout_min`; its timer is off). It
/// is also openraft's own vote lease, which only matters right after an append.
const VOTE_BUDGET: Duration = Duration::from_millis(15);
/// openraft's own vote lease (its `election_timeout_max`): after an AppendEntries a
/// follower refuses every vote for this long, whatever our detector knows.
const RAFT_VOTE_LEASE: Duration = Duration::from_millis(VOTE_BUDGET.as_millis() as u64 + 1);
/// Budget for a membership change (adding a learner waits until it caught up).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

/// openraft's configuration. Its heartbeat and election timers are off (the lease
/// protocol drives both), so `Config::validate`'s heartbeat < election timeout rule does
/// not apply: the two knobs are only the RPC budgets here.
fn raft_config(_o: &RaftOptions) -> Config {
    let ms = |d: Duration| d.as_millis() as u64;
    Config {
        cluster_name: "fulcrum".to_string(),
        heartbeat_interval: ms(APPEND_BUDGET),
        election_timeout_min: ms(VOTE_BUDGET),
        election_timeout_max: ms(RAFT_VOTE_LEASE),
        enable_heartbeat: false,
        enable_elect: false,
        // Snapshot chunks are small but a busy loopback/LAN can still take > 200 ms.
        install_snapshot_timeout: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    }
}

fn lease_timing(o: &RaftOptions) -> LeaseTiming {
    LeaseTiming {
        heartbeat: o.heartbeat,
        fence: o.lease,
        silence: o.election_timeout_min,
        stagger: o
            .election_timeout_max
            .saturating_sub(o.election_timeout_min),
    }
}

fn check_options(o: &RaftOptions) -> Result<(), RaftError> {
    if o.secret.is_empty() {
        return Err(RaftError::Options("cluster secret is empty".into()));
    }
    if !o.peers.is_empty() && !o.peers.iter().any(|(id, _)| *id == o.node_id) {
        return Err(RaftError::Options(format!(
            "node id {} is not in the peer list",
            o.node_id
        )));
    }
    if o.heartbeat.is_zero() || o.lease < o.heartbeat * 2 {
        return Err(RaftError::Options(
            "lease must be at least twice the heartbeat (one lost ping must not lapse it)".into(),
        ));
    }
    if o.election_timeout_min >= o.election_timeout_max || o.election_timeout_min <= o.heartbeat {
        return Err(RaftError::Options(
            "need heartbeat < election_timeout_min < election_timeout_max".into(),
        ));
    }
    Ok(())
}

type Opened = (
    LogStore,
    StateMachineStore,
    watch::Receiver<Arc<ClusterState>>,
    bool,
    Weak<redb::Database>,
);

/// Open `data_dir/raft.redb`; the flag says whether it holds no Raft state at all.
async fn open_store(opts: &RaftOptions) -> Result<Opened, RaftError> {
    std::fs::create_dir_all(&opts.data_dir).map_err(|source| RaftError::DataDir {
        path: opts.data_dir.clone(),
        source,
    })?;
    let db = db::open(&opts.data_dir.join("raft.redb"))?;
    let weak = Arc::downgrade(&db);
    let log_store = LogStore::new(db.clone());
    let pristine = log_store.is_pristine().await?;
    let (sm, state_rx) = StateMachineStore::open(db).await?;
    Ok((log_store, sm, state_rx, pristine, weak))
}

/// Start a node: open the store, bind the peer port, start openraft and the peer
/// server, initialize a fresh cluster when this node is the bootstrapper, and start
/// the status/lease and registrar tasks. Dropping every handle does not stop the
/// node: call `shutdown`.
#[tracing::instrument(level = "info", skip_all, fields(node = opts.node_id))]
pub async fn start(opts: RaftOptions) -> Result<RaftHandle, RaftError> {
    check_options(&opts)?;
    let config = Arc::new(raft_config(&opts));
    let lease = Lease::new(opts.node_id, lease_timing(&opts));
    if let Some(hook) = &opts.step_down_hook {
        lease.set_step_down_hook(hook.0.clone());
    }
    let admission = Arc::new(Admission::default());
    admission.set_peers(opts.peers.iter().map(|(_, a)| a.ip()));
    let tls = load_tls(&opts)?;
    let (log_store, sm, state_rx, pristine, db_ref) = open_store(&opts).await?;
    let listener = TcpListener::bind(opts.raft_addr)
        .await
        .map_err(|source| RaftError::Bind {
            addr: opts.raft_addr,
            source,
        })?;
    let pool = PeerPool::new(&opts.secret, tls.clone());
    let factory = NetworkFactory {
        self_id: opts.node_id,
        pool: pool.clone(),
        lease: lease.clone(),
    };
    let raft = Raft::new(opts.node_id, config, factory, log_store, sm)
        .await
        .map_err(|e| RaftError::Start(e.to_string()))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(RaftStatus::default());
    let ctx = ServerCtx {
        raft: raft.clone(),
        secret: opts.secret.as_slice().into(),
        tls,
        lease: lease.clone(),
        admission: admission.clone(),
        shutdown: shutdown_rx.clone(),
    };
    let mut tasks = vec![
        tokio::spawn(server::serve(listener, ctx)),
        tokio::spawn(status::run(StatusTask {
            raft: raft.clone(),
            lease: lease.clone(),
            admission,
            static_peers: opts.peers.clone(),
            tx: status_tx,
            shutdown: shutdown_rx.clone(),
        })),
        tokio::spawn(pinger::drive(Driver {
            lease: lease.clone(),
            raft: raft.clone(),
            pool: pool.clone(),
            me: opts.node_id,
            shutdown: shutdown_rx.clone(),
        })),
        tokio::spawn(detector::run(Detector {
            lease: lease.clone(),
            raft: raft.clone(),
            pool: pool.clone(),
            me: opts.node_id,
            shutdown: shutdown_rx.clone(),
            raft_vote_lease: RAFT_VOTE_LEASE,
        })),
    ];

    let bootstrapped = pristine && is_bootstrapper(&opts);
    if bootstrapped {
        if let Err(e) = bootstrap::initialize(&raft, &opts).await {
            // Do not leave a half-started node holding the port.
            shutdown_tx.send_replace(true);
            let _ = raft.shutdown().await;
            return Err(e);
        }
    }
    let handle = RaftHandle {
        inner: Arc::new(Inner {
            node_id: opts.node_id,
            raft_addr: advertised_addr(&opts),
            admin_addr: opts.admin_addr.clone(),
            seed_config_toml: opts.seed_config_toml.clone(),
            raft,
            pool,
            status_rx,
            lease,
            rt: tokio::runtime::Handle::current(),
            state_rx,
            shutdown_tx,
            shutdown_rx,
            bootstrapped,
            tasks: Mutex::new(Vec::new()),
            db_ref,
        }),
    };
    tasks.push(tokio::spawn(bootstrap::registrar(handle.clone())));
    handle.lock_tasks().extend(tasks);
    tracing::info!(
        pristine,
        bootstrapped,
        peer_tls = opts.tls.is_some(),
        "raft node started"
    );
    Ok(handle)
}

/// Reads and checks the peer TLS files (before anything is bound or opened).
fn load_tls(o: &RaftOptions) -> Result<Option<Arc<PeerTlsContext>>, RaftError> {
    let Some(files) = &o.tls else {
        return Ok(None);
    };
    let own_ip = own_peer_ip(o.node_id, o.raft_addr, &o.peers);
    Ok(Some(Arc::new(PeerTlsContext::load(files, own_ip)?)))
}

/// The IP peers dial to reach node `id` (its entry in `peers`, else its bind address
/// `raft_addr`), unless that is a wildcard address. Peer certificates must carry it.
pub fn own_peer_ip(
    id: u64,
    raft_addr: SocketAddr,
    peers: &[(u64, SocketAddr)],
) -> Option<std::net::IpAddr> {
    let own = peers.iter().find(|(p, _)| *p == id);
    let ip = own.map_or(raft_addr.ip(), |(_, a)| a.ip());
    (!ip.is_unspecified()).then_some(ip)
}

/// The address peers reach us at: our entry in the peer list (the bind address may be
/// a wildcard), else the bind address.
fn advertised_addr(o: &RaftOptions) -> String {
    let own = o.peers.iter().find(|(id, _)| *id == o.node_id);
    own.map(|(_, a)| *a).unwrap_or(o.raft_addr).to_string()
}

/// The lowest id of the static peer list initializes a fresh cluster (or the node
/// alone when there are no peers).
fn is_bootstrapper(o: &RaftOptions) -> bool {
    match o.peers.iter().map(|(id, _)| *id).min() {
        Some(min) => min == o.node_id,
        None => true,
    }
}

impl RaftHandle {
    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
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
            .spawn(async move { h.hand_off_here().await })
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
            let Some((id, addr)) = bootstrap::best_successor_except(raft, me, &tried) else {
                return HandOff::Failed;
            };
            tried.push(id);
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
