//! The facade the `fulcrum` binary uses: `start(RaftOptions)` opens the store, binds the
//! peer port, starts openraft, bootstraps a fresh cluster from the static peer list, and
//! returns a cloneable `RaftHandle` (status/state watches, propose, membership, shutdown).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bootstrap;
use crate::db::{self, DbError};
use crate::log_store::LogStore;
use crate::network::{Channel, NetworkFactory, PeerPool};
use crate::propose::{AppOp, ProposeError, Router};
use crate::rpc::{MembershipOp, PeerRequest};
use crate::server::{self, ServerCtx};
use crate::state::ClusterState;
use crate::state_machine::StateMachineStore;
use crate::status::{self, RaftStatus};
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
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A leader's lease is fresh while a quorum acked it within this (< election min+max).
    pub lease: Duration,
    /// Balancer config proposed once at bootstrap when the cluster has none.
    pub seed_config_toml: String,
}

impl RaftOptions {
    /// Options with openraft's recommended timing (50 ms / 150-300 ms, lease 200 ms).
    pub fn new(node_id: u64, raft_addr: SocketAddr, data_dir: PathBuf, secret: Vec<u8>) -> Self {
        Self {
            node_id,
            raft_addr,
            admin_addr: String::new(),
            peers: Vec::new(),
            secret,
            tls: None,
            data_dir,
            heartbeat: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(150),
            election_timeout_max: Duration::from_millis(300),
            lease: Duration::from_millis(200),
            seed_config_toml: String::new(),
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
    pub(crate) election_timeout_max: Duration,
    pub(crate) raft: Raft,
    pub(crate) pool: PeerPool,
    pub(crate) status_rx: watch::Receiver<RaftStatus>,
    pub(crate) state_rx: watch::Receiver<Arc<ClusterState>>,
    pub(crate) shutdown_tx: watch::Sender<bool>,
    pub(crate) shutdown_rx: watch::Receiver<bool>,
    pub(crate) bootstrapped: bool,
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Lets `shutdown` wait until the store file is really closed.
    pub(crate) db_ref: Weak<redb::Database>,
}

/// Handle to a running node; cheap to clone.
#[derive(Clone)]
pub struct RaftHandle {
    pub(crate) inner: Arc<Inner>,
}

/// Budget for a client proposal before it fails with `NoQuorum`.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bound on each step of a leadership hand-off.
pub const HANDOFF_WAIT: Duration = Duration::from_millis(1000);
/// Slack after the followers' leader lease before asking a successor to campaign.
const LEASE_MARGIN: Duration = Duration::from_millis(20);
/// Budget for a membership change (adding a learner waits until it caught up).
pub const MEMBERSHIP_TIMEOUT: Duration = Duration::from_secs(10);

fn raft_config(o: &RaftOptions) -> Result<Config, RaftError> {
    let ms = |d: Duration| d.as_millis() as u64;
    let cfg = Config {
        cluster_name: "fulcrum".to_string(),
        heartbeat_interval: ms(o.heartbeat),
        election_timeout_min: ms(o.election_timeout_min),
        election_timeout_max: ms(o.election_timeout_max),
        // Snapshot chunks are small but a busy loopback/LAN can still take > 200 ms.
        install_snapshot_timeout: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
        max_in_snapshot_log_to_keep: 100,
        ..Default::default()
    };
    cfg.validate()
        .map_err(|e| RaftError::Options(e.to_string()))
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
    if o.lease >= o.election_timeout_max {
        return Err(RaftError::Options(
            "lease must be shorter than election_timeout_max".into(),
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
    let config = Arc::new(raft_config(&opts)?);
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
        shutdown: shutdown_rx.clone(),
    };
    let mut tasks = vec![
        tokio::spawn(server::serve(listener, ctx)),
        tokio::spawn(status::run(
            raft.clone(),
            opts.lease,
            status_tx,
            shutdown_rx.clone(),
        )),
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
            election_timeout_max: opts.election_timeout_max,
            raft,
            pool,
            status_rx,
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
        self.router()
            .route(AppOp::Write(cmd), PROPOSE_TIMEOUT)
            .await
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
        let op = AppOp::Membership(op);
        self.router()
            .route(op, MEMBERSHIP_TIMEOUT)
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

    /// Best-effort hand-off before a planned stop; call `shutdown` afterwards.
    ///
    /// openraft 0.9 has no leadership-transfer API, and every voter (the leader too)
    /// refuses votes until `election_timeout_max` after it last heard the leader, so no
    /// hand-off can beat that lease. When this node leads it: stops sending heartbeats
    /// and disables its own elections (it cannot win again; its lease and `lease_fresh`
    /// lapse, releasing the VIP), waits out the lease (`election_timeout_max` + margin),
    /// then asks its most up-to-date voter to campaign at once (`PeerRequest::Elect`).
    /// Without this a follower only campaigns after lease + a random election timeout.
    /// Waits up to `HANDOFF_WAIT` for another leader; if none shows up, heartbeats and
    /// elections are re-enabled. Non-leaders do nothing.
    pub async fn transfer_leadership_or_step_down(&self) {
        let me = self.inner.node_id;
        let raft = &self.inner.raft;
        let Some((id, addr)) = bootstrap::best_successor(raft, me) else {
            return;
        };
        raft.runtime_config().heartbeat(false);
        raft.runtime_config().elect(false);
        tokio::time::sleep(self.inner.election_timeout_max + LEASE_MARGIN).await;
        let client = self.inner.pool.get(id, &addr, Channel::App);
        if let Err(e) = client.call(&PeerRequest::Elect, HANDOFF_WAIT).await {
            tracing::warn!(successor = id, error = %e, "could not ask successor to campaign");
        }
        let mut status = self.status();
        let moved = async {
            status
                .wait_for(|s| s.leader_id.is_some_and(|l| l != me))
                .await
                .is_ok()
        };
        if let Ok(true) = tokio::time::timeout(HANDOFF_WAIT, moved).await {
            tracing::info!(successor = ?self.status().borrow().leader_id, "leadership handed off");
            return;
        }
        tracing::warn!(
            successor = id,
            "no successor took over in time; staying leader"
        );
        raft.runtime_config().heartbeat(true);
        raft.runtime_config().elect(true);
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
