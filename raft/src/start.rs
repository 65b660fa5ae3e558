//! Starting a node: `start(RaftOptions)` checks the options, opens the store, binds the
//! peer port, starts openraft, the peer server and the lease tasks (status, pinger,
//! detector), initializes a fresh cluster when this node is the bootstrapper, and hands
//! back the `RaftHandle` (`node`) with the registrar (`bootstrap`) running.
//!
//! Timing: openraft's own heartbeats and election timer are off. Liveness, leases and
//! elections are driven by the lease protocol (`lease`, `detector`) at `heartbeat`; the
//! openraft knobs left are budgets: AppendEntries may take `APPEND_BUDGET` (large config
//! entries over a slow link), a vote `vote_budget` (a share of the election timeout).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use openraft::{Config, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admission::Admission;
use crate::bootstrap;
use crate::db;
use crate::detector::{self, Detector};
use crate::lease::pinger::{self, Driver};
use crate::lease::{Lease, LeaseTiming};
use crate::log_store::LogStore;
use crate::network::{NetworkFactory, PeerPool};
use crate::node::{Inner, RaftError, RaftHandle, RaftOptions};
use crate::server::{self, ServerCtx};
use crate::state::ClusterState;
use crate::state_machine::StateMachineStore;
use crate::status::{self, RaftStatus, StatusTask};
use crate::tls::PeerTlsContext;
use crate::types::Raft;

/// Budget of one AppendEntries (openraft's `heartbeat_interval`, whose timer is off).
const APPEND_BUDGET: Duration = Duration::from_secs(2);
/// Budget of one vote request (openraft's `election_timeout_min`; its timer is off):
/// three fifths of the silence that starts a campaign (15 ms at the default 25 ms). A
/// grant that arrives later is lost and the election with it, so relaxed timing (for a
/// loaded machine) relaxes this budget too.
fn vote_budget(o: &RaftOptions) -> Duration {
    (o.election_timeout_min * 3 / 5).max(Duration::from_millis(1))
}

/// openraft's own vote lease (its `election_timeout_max`, which must exceed the vote
/// budget): after an AppendEntries a follower refuses every vote for this long, whatever
/// our detector knows. Campaigns and take-overs wait it out (see `detector`).
fn raft_vote_lease(o: &RaftOptions) -> Duration {
    vote_budget(o) + Duration::from_millis(1)
}

/// openraft's configuration. Its heartbeat and election timers are off (the lease
/// protocol drives both), so `Config::validate`'s heartbeat < election timeout rule does
/// not apply: the two knobs are only the RPC budgets here.
fn raft_config(o: &RaftOptions) -> Config {
    let ms = |d: Duration| d.as_millis() as u64;
    Config {
        cluster_name: "fulcrum".to_string(),
        heartbeat_interval: ms(APPEND_BUDGET),
        election_timeout_min: ms(vote_budget(o)),
        election_timeout_max: ms(raft_vote_lease(o)),
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
    let (mut log_store, sm, state_rx, pristine, db_ref) = open_store(&opts).await?;
    let last_log = log_store
        .load_last_log()
        .await
        .map_err(|e| RaftError::Start(e.to_string()))?;
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

    let vip_grants = Arc::new(crate::vip_grant::VipGrants::new(
        crate::vip_grant::VIP_LEASE,
    ));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (status_tx, status_rx) = watch::channel(RaftStatus::default());
    let ctx = ServerCtx {
        raft: raft.clone(),
        secret: opts.secret.as_slice().into(),
        tls,
        lease: lease.clone(),
        admission: admission.clone(),
        shutdown: shutdown_rx.clone(),
        raft_vote_lease: raft_vote_lease(&opts),
        last_log: last_log.clone(),
        write_check: opts.write_check.clone(),
        pool: pool.clone(),
        vip_grants: vip_grants.clone(),
        state: state_rx.clone(),
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
            raft_vote_lease: raft_vote_lease(&opts),
            last_log,
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
            write_check: opts.write_check.clone(),
            vip_grants,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openraft_budgets_follow_the_election_timeout() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let mut o = RaftOptions::new(1, addr, "/nonexistent".into(), b"s".to_vec());
        // The defaults (25 ms silence): the 15 ms vote budget and 16 ms vote lease that
        // the failover figures were measured with.
        assert_eq!(vote_budget(&o), Duration::from_millis(15));
        assert_eq!(raft_vote_lease(&o), Duration::from_millis(16));
        o.election_timeout_min = Duration::from_millis(250);
        let c = raft_config(&o);
        assert_eq!((c.election_timeout_min, c.election_timeout_max), (150, 151));
        // openraft draws its (unused) election timeout from min..max: never empty.
        assert!(c.election_timeout_min < c.election_timeout_max);
    }
}
