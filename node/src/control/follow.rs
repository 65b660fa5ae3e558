//! Raft's committed state -> this node: the one-way path from the replicated
//! `ClusterState` to the data plane.
//!
//! `follow` watches the committed state and makes the node match it: a newer config
//! version goes to `Applier::apply_committed` (Raft's version wins over the local file),
//! the discovered backends of `discover` pools are run (`Applier::set_discovered`),
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
//! Each node also says through Raft which version it runs and, when a committed one
//! failed, which and why (`Command::ReportApply`, one proposal at a time, again after a
//! failed proposal), so every member, `ctl status` and `ctl apply` know it even when the
//! node's admin API cannot be reached.
//!
//! The data plane never waits on any of this: without quorum it keeps serving with the
//! last config and its own passive view.

use crate::control::apply::Applier;
use crate::control::cluster::Cluster;
use crate::dataplane::DataPlane;
use fulcrum_raft::{ApplyReport, ClusterState, Command};
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
    let mut reporting = Reporting::default();
    loop {
        let state = states.borrow_and_update().clone();
        retry = converge_config(&applier, &state, retry).await;
        applier.set_discovered(state.discovered.clone());
        sync_backends(&cluster, &dp, &state);
        publish_splits(&dp, &state);
        let report_at = reporting.step(&cluster, &applier, &state).await;
        let retry_at = retry.map(|r| r.at);
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = states.changed() => if changed.is_err() { return },
            _ = sleep_until(retry_at) => {}
            _ = sleep_until(report_at) => {}
        }
    }
}

/// Hands the split routes' replicated weights (`ctl shift`) to the data plane.
fn publish_splits(dp: &DataPlane, state: &ClusterState) {
    let weights = (state.splits.iter())
        .map(|(route, split)| (route.clone(), split.weights.clone()))
        .collect();
    dp.splits.publish(weights);
}

/// How often an outstanding report proposal is looked at.
const REPORT_CHECK: Duration = Duration::from_millis(200);
/// Pause before proposing the report again after a proposal failed.
const REPORT_RETRY: Duration = Duration::from_secs(1);
/// Longest reason carried through Raft (bytes, cut at a character boundary).
const REASON_MAX: usize = 400;

/// This node's apply report on its way into Raft.
#[derive(Default)]
struct Reporting {
    inflight: Option<tokio::task::JoinHandle<bool>>,
    last_seq: u64,
    retry_at: Option<Instant>,
}

impl Reporting {
    /// Proposes this node's report when the replicated one differs; returns when to
    /// look again.
    async fn step(
        &mut self,
        cluster: &Arc<Cluster>,
        applier: &Applier,
        state: &ClusterState,
    ) -> Option<Instant> {
        let now = Instant::now();
        if let Some(task) = self.inflight.take() {
            if !task.is_finished() {
                self.inflight = Some(task);
                return Some(now + REPORT_CHECK);
            }
            if !task.await.unwrap_or(false) {
                self.retry_at = Some(now + REPORT_RETRY);
            }
        }
        let me = cluster.raft.node_id();
        // Reported once the node's admin address is registered: whoever reads the
        // report can then also ask the node itself.
        if state.nodes.get(&me).is_none_or(|n| n.admin_addr.is_empty()) {
            return Some(now + REPORT_CHECK);
        }
        let mut report = local_report(applier);
        let replicated = state.applied.get(&me).cloned();
        if replicated.is_some_and(|r| ApplyReport { seq: 0, ..r } == report) {
            self.retry_at = None;
            return None;
        }
        if let Some(at) = self.retry_at.filter(|at| now < *at) {
            return Some(at);
        }
        self.retry_at = None;
        let wall_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.last_seq = wall_ms.max(self.last_seq + 1);
        report.seq = self.last_seq;
        let (raft, node) = (cluster.raft.clone(), cluster.raft.node_id());
        tracing::debug!(
            running = report.running,
            failed = report.failed_version,
            "reporting the config this node runs"
        );
        self.inflight = Some(tokio::spawn(async move {
            let cmd = Command::ReportApply { node, report };
            match raft.propose(cmd).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "apply report not committed; retrying");
                    false
                }
            }
        }));
        Some(now + REPORT_CHECK)
    }
}

/// What this node says about its config (without `seq`).
fn local_report(applier: &Applier) -> ApplyReport {
    let running = applier.version();
    match applier.failure().filter(|f| f.version > running) {
        Some(f) => {
            let mut reason = f.reason;
            if reason.len() > REASON_MAX {
                let mut cut = REASON_MAX;
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                reason.truncate(cut);
            }
            ApplyReport {
                running,
                failed_version: f.version,
                reason,
                retrying: f.retrying,
                seq: 0,
            }
        }
        None => ApplyReport {
            running,
            ..ApplyReport::default()
        },
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
