//! Raft's committed state -> this node: the one-way path from the replicated
//! `ClusterState` to the data plane.
//!
//! `follow` watches the committed state and makes the node match it: a newer config
//! version goes to `Applier::apply_committed` (Raft's version wins over the local file),
//! effective backend health is recomputed with the configured policy, drain flags are
//! copied. It also runs the health reporter, which carries this node's verdicts the
//! other way (into Raft).
//!
//! A committed config this node cannot apply (a port still busy, a certificate not yet
//! deployed) is not forgotten: the node keeps running the last version that applied,
//! records the failure (`Applier::failure`, shown in `/status`, `ctl status` and
//! `fulcrum_config_apply_failures_total`) and retries with backoff until it applies or
//! a newer version is committed. Only a text the node refuses as invalid is not retried.
//!
//! The data plane never waits on any of this: without quorum it keeps serving with the
//! last config and its own passive view.

use crate::control::apply::Applier;
use crate::control::cluster::Cluster;
use crate::dataplane::DataPlane;
use fulcrum_raft::ClusterState;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// First pause before retrying a config version that failed to apply.
const APPLY_RETRY_FIRST: Duration = Duration::from_millis(250);
/// Longest pause between two attempts: a freed port is used within about this long.
const APPLY_RETRY_MAX: Duration = Duration::from_secs(2);

/// When to try a failed version again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    version: u64,
    at: Instant,
    pause: Duration,
}

/// Keeps the node in line with the replicated state until `stop` fires, and runs the
/// health reporter alongside.
pub async fn follow(
    cluster: Arc<Cluster>,
    applier: Arc<Applier>,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
) {
    let known = {
        let dp = dp.clone();
        move |pool: &str, backend: &str| dp.registry.find(pool, backend).is_some()
    };
    tokio::spawn(cluster.run_reporter(known, stop.clone()));
    let mut states = cluster.raft.cluster_state();
    let mut retry: Option<Retry> = None;
    loop {
        let state = states.borrow_and_update().clone();
        retry = converge_config(&applier, &state, retry).await;
        sync_backends(&cluster, &dp, &state);
        let retry_at = retry.map(|r| r.at);
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = states.changed() => if changed.is_err() { return },
            _ = sleep_until(retry_at) => {}
        }
    }
}

/// Applies the committed config when this node runs an older one; returns when to try
/// again after a failure that may go away.
async fn converge_config(
    applier: &Applier,
    state: &ClusterState,
    retry: Option<Retry>,
) -> Option<Retry> {
    let version = state.config_version;
    if version <= applier.version() || state.config_toml.is_empty() {
        applier.clear_failure(applier.version());
        return None;
    }
    let failed_before = applier.failure().filter(|f| f.version == version);
    match (&failed_before, retry) {
        // A newer version, or a retry that is due: try now.
        (None, _) => {}
        (Some(_), Some(r)) if r.version == version && Instant::now() >= r.at => {}
        // Waiting for the retry, or refused for good: nothing to do yet.
        (Some(_), _) => return retry,
    }
    match applier.apply_committed(&state.config_toml, version).await {
        Ok(()) => {
            applier.clear_failure(version);
            None
        }
        Err(e) => {
            let failure = applier.note_failure(version, &e);
            if !failure.retrying {
                return None;
            }
            let pause = match retry {
                Some(r) if r.version == version => (r.pause * 2).min(APPLY_RETRY_MAX),
                _ => APPLY_RETRY_FIRST,
            };
            Some(Retry {
                version,
                at: Instant::now() + pause,
                pause,
            })
        }
    }
}

/// Effective health and drain flags from the replicated state.
fn sync_backends(cluster: &Cluster, dp: &DataPlane, state: &ClusterState) {
    let voters: BTreeSet<u64> = cluster.raft.voter_ids();
    for (pool, addr, backend) in dp.registry.all() {
        backend.set_cluster_healthy(state.backend_healthy(&pool, &addr, &voters, cluster.policy));
        backend.set_drained(state.is_drained(&pool, &addr));
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
