//! The node's link to Raft: one config everywhere, shared health, drains, members.
//!
//! Two directions:
//! - **Out**: operator changes (`PUT /config`, `ctl apply`, SIGHUP, drain) and this
//!   node's own health flips become Raft proposals (`propose_*`). They return once the
//!   change is committed, or fail with a clear "no quorum" error within seconds.
//! - **In**: `follow` watches the replicated `ClusterState` and makes the data plane match
//!   it: a newer config version is applied (Raft's version wins over the local file),
//!   effective backend health is recomputed with the configured policy, drain flags copied.
//!
//! The data plane never waits on any of this: without quorum it keeps serving with the
//! last config and its own passive view.

use crate::app::Node;
use fulcrum_config::{ClusterSection, Config, HealthPolicy, NodeSection};
use fulcrum_raft::{
    ClusterState, Command, Policy, ProposeError, RaftHandle, RaftOptions, RaftStatus,
};
use std::collections::BTreeSet;
use std::sync::Arc;
use tokio::sync::watch;

/// Why the cluster could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot read cluster secret {path}: {source}")]
    Secret {
        path: String,
        source: std::io::Error,
    },
    #[error("cluster secret file {0} is empty")]
    EmptySecret(String),
    #[error("cannot render the balancer config for Raft: {0}")]
    Render(String),
    #[error(transparent)]
    Raft(#[from] fulcrum_raft::RaftError),
}

/// A running Raft member inside this node.
pub struct Cluster {
    pub raft: RaftHandle,
    pub node_id: u64,
    policy: Policy,
}

fn policy(p: HealthPolicy) -> Policy {
    match p {
        HealthPolicy::Majority => Policy::Majority,
        HealthPolicy::Any => Policy::Any,
        HealthPolicy::All => Policy::All,
    }
}

/// The cluster-wide part of a config as stored in Raft: local sections removed.
pub fn replicated_text(config: &Config) -> Result<String, ClusterError> {
    config
        .without_local()
        .to_toml()
        .map_err(|e| ClusterError::Render(e.to_string()))
}

impl Cluster {
    /// Starts Raft for this node (bootstraps the cluster when nobody has state yet).
    pub async fn start(
        local: &NodeSection,
        section: &ClusterSection,
        config: &Config,
    ) -> Result<Cluster, ClusterError> {
        let secret_path = section.secret_file.display().to_string();
        let secret =
            std::fs::read(&section.secret_file).map_err(|source| ClusterError::Secret {
                path: secret_path.clone(),
                source,
            })?;
        let secret = trim_ascii(&secret).to_vec();
        if secret.is_empty() {
            return Err(ClusterError::EmptySecret(secret_path));
        }
        let mut opts =
            RaftOptions::new(local.id, section.raft, local.data_dir.join("raft"), secret);
        opts.admin_addr = local.admin.to_string();
        opts.peers = section.peer_list();
        opts.heartbeat = section.heartbeat;
        opts.election_timeout_min = section.election_timeout_min;
        opts.election_timeout_max = section.election_timeout_max;
        opts.lease = section.lease;
        opts.seed_config_toml = replicated_text(config)?;
        let raft = fulcrum_raft::start(opts).await?;
        tracing::info!(node = local.id, raft = %section.raft, "raft started");
        Ok(Cluster {
            raft,
            node_id: local.id,
            policy: policy(section.health_policy),
        })
    }

    pub fn status(&self) -> RaftStatus {
        self.raft.status().borrow().clone()
    }

    /// Proposes a new balancer config; returns the committed version.
    pub async fn propose_config(&self, config: &Config) -> Result<u64, ProposeError> {
        let toml = replicated_text(config).map_err(|e| ProposeError::Rejected(e.to_string()))?;
        let resp = self.raft.propose(Command::SetConfig { toml }).await?;
        Ok(resp.config_version)
    }

    pub async fn propose_drain(
        &self,
        pool: &str,
        backend: &str,
        drained: bool,
    ) -> Result<(), ProposeError> {
        let cmd = Command::SetDrain {
            pool: pool.to_string(),
            backend: backend.to_string(),
            drained,
        };
        self.raft.propose(cmd).await.map(|_| ())
    }

    /// Reports this node's own view of a backend (only called when it flips).
    pub fn report_health(self: &Arc<Self>, pool: &str, backend: &str, healthy: bool) {
        let cluster = self.clone();
        let cmd = Command::ReportHealth {
            observer: self.node_id,
            pool: pool.to_string(),
            backend: backend.to_string(),
            healthy,
        };
        tokio::spawn(async move {
            // A flip that cannot be committed now is retried a few times; after that the
            // next flip (or the periodic re-report at start-up) carries the truth.
            for attempt in 0..5u32 {
                match cluster.raft.propose(cmd.clone()).await {
                    Ok(_) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, attempt, "health report not committed yet");
                        tokio::time::sleep(std::time::Duration::from_millis(500 << attempt.min(3)))
                            .await;
                    }
                }
            }
        });
    }

    /// Keeps the data plane in line with the replicated state until the node stops.
    pub async fn follow(self: Arc<Self>, node: Arc<Node>) {
        let mut states: watch::Receiver<Arc<ClusterState>> = self.raft.cluster_state();
        let mut applied_version = 0u64;
        loop {
            let state = states.borrow_and_update().clone();
            if state.config_version > applied_version && !state.config_toml.is_empty() {
                match node
                    .apply_replicated(&state.config_toml, state.config_version)
                    .await
                {
                    Ok(()) => applied_version = state.config_version,
                    Err(e) => {
                        tracing::error!(version = state.config_version, error = %e, "replicated config could not be applied; keeping the previous one");
                        applied_version = state.config_version;
                    }
                }
            }
            self.sync_backends(&node, &state);
            tokio::select! {
                _ = node.stop.cancelled() => return,
                changed = states.changed() => if changed.is_err() { return },
            }
        }
    }

    /// Effective health and drain flags from the replicated state.
    fn sync_backends(&self, node: &Node, state: &ClusterState) {
        let voters: BTreeSet<u64> = self.raft.voter_ids();
        for (pool, addr, backend) in node.dp.registry.all() {
            backend.set_cluster_healthy(state.backend_healthy(&pool, &addr, &voters, self.policy));
            backend.set_drained(state.is_drained(&pool, &addr));
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}
