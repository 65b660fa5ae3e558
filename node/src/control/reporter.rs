//! The health reporter: one per node, the only writer of this node's health
//! observations into the replicated state.
//!
//! It owns this node's latest local view of every backend (`observe`, called with each
//! checker's first verdict and on every flip) and proposes until the replicated value
//! for this observer equals that view. Convergence does not depend on any one proposal
//! getting through:
//! - one task, one proposal at a time, so two reports about one backend never race;
//! - coalescing: only the newest view per backend is kept, and only backends whose
//!   replicated value differs are proposed;
//! - it looks again whenever the view changes, whenever the replicated state changes
//!   (every config apply, a stale report that committed late), and when a leader
//!   appears after a failure (quorum is back);
//! - a failed proposal is retried with backoff (200 ms doubling to 2 s, on top of the
//!   proposal's own bounded wait), forever: a view is never dropped;
//! - each report carries this observer's sequence number (`seq`, monotonic across
//!   restarts), so the state machine ignores a report older than one it already has.
//!
//! A backend this node never reported on counts as healthy in the replicated state
//! (`ClusterState::backend_healthy`), so a healthy view needs no proposal until the
//! node has said something else; a discovered backend counts as down, so its first
//! healthy verdict is proposed. A restarted node has no view until its checkers reach
//! their first verdict: nothing is assumed.

mod seq;

use fulcrum_raft::{ClusterState, Command, NodeId, ProposeError, RaftHandle};
use seq::ReportSeq;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// `(pool, backend)` as written in the config.
type BackendKey = (String, String);

/// First pause after a failed proposal; doubles on each further failure.
const RETRY_FIRST: Duration = Duration::from_millis(200);
/// Longest pause between two attempts (each attempt itself gives up after the Raft
/// handle's proposal budget, a few seconds without quorum).
const RETRY_MAX: Duration = Duration::from_secs(2);
/// How long to wait for a committed report to show up in this node's replicated state
/// before looking again (a follower applies it with the next append from the leader).
const APPLIED_WAIT: Duration = Duration::from_secs(1);
/// A failure streak is logged at its start and then every this many attempts.
const LOG_EVERY: u32 = 10;

/// This node's health views and the loop that commits them.
pub struct HealthReporter {
    observer: NodeId,
    seq_path: PathBuf,
    view: watch::Sender<BTreeMap<BackendKey, bool>>,
}

/// How one round of proposals went.
enum Round {
    /// Nothing differs from the replicated state.
    InSync,
    /// These reports are committed: `(backend, seq)`.
    Committed(Vec<(BackendKey, u64)>),
    /// A proposal failed; retry later.
    Failed,
    /// Raft is shutting down.
    Shutdown,
}

impl HealthReporter {
    /// A reporter for `observer` keeping its sequence counter in the file `seq_path`.
    pub fn new(observer: NodeId, seq_path: PathBuf) -> HealthReporter {
        HealthReporter {
            observer,
            seq_path,
            view: watch::Sender::new(BTreeMap::new()),
        }
    }

    /// Records this node's verdict on a backend. Never blocks; the reporter task picks
    /// up the newest verdict per backend.
    pub fn observe(&self, pool: &str, backend: &str, healthy: bool) {
        let key = (pool.to_string(), backend.to_string());
        self.view
            .send_if_modified(|view| view.insert(key, healthy) != Some(healthy));
    }

    /// Commits the local view until `stop` fires or Raft shuts down. `known(pool,
    /// backend)` says whether a backend is still in the running config; views of
    /// removed backends are forgotten.
    pub async fn run(
        self: Arc<Self>,
        raft: RaftHandle,
        known: impl Fn(&str, &str) -> bool + Send + 'static,
        stop: CancellationToken,
    ) {
        let span = tracing::info_span!("health_reporter", observer = self.observer);
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.converge(raft, known).instrument(span) => {}
        }
    }

    async fn converge(&self, raft: RaftHandle, known: impl Fn(&str, &str) -> bool) {
        let mut seq = self.open_seq().await;
        let mut views = self.view.subscribe();
        let mut states = raft.cluster_state();
        let mut status = raft.status();
        let mut retry = RETRY_FIRST;
        let mut failures = 0u32;
        loop {
            self.forget_removed(&known);
            let state = states.borrow_and_update().clone();
            let pending = pending_reports(&views.borrow_and_update(), &state, self.observer);
            let round = if pending.is_empty() {
                Round::InSync
            } else {
                self.propose_all(&raft, &mut seq, &state, pending).await
            };
            match round {
                Round::InSync => {
                    (retry, failures) = (RETRY_FIRST, 0);
                    tokio::select! {
                        changed = views.changed() => if changed.is_err() { return },
                        changed = states.changed() => if changed.is_err() { return },
                    }
                }
                Round::Committed(reports) => {
                    if failures > 0 {
                        tracing::info!(failures, "health reports commit again");
                    }
                    (retry, failures) = (RETRY_FIRST, 0);
                    self.wait_applied(&mut states, &reports).await;
                }
                Round::Failed => {
                    failures += 1;
                    if failures % LOG_EVERY == 1 {
                        tracing::warn!(failures, ?retry, "health view not committed yet; retrying");
                    }
                    let leader = status.borrow_and_update().leader_id;
                    let leader_appeared = async {
                        status
                            .wait_for(|s| s.leader_id.is_some() && s.leader_id != leader)
                            .await
                            .is_ok()
                    };
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = leader_appeared => {}
                    }
                    retry = (retry * 2).min(RETRY_MAX);
                }
                Round::Shutdown => return,
            }
        }
    }

    async fn open_seq(&self) -> ReportSeq {
        match ReportSeq::open(self.seq_path.clone()).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = %e, "starting the health report counter above the replicated state's highest number instead");
                ReportSeq::fresh(self.seq_path.clone())
            }
        }
    }

    /// Proposes `pending` one by one; stops at the first failure.
    async fn propose_all(
        &self,
        raft: &RaftHandle,
        seq: &mut ReportSeq,
        state: &ClusterState,
        pending: Vec<(BackendKey, bool)>,
    ) -> Round {
        let mut committed = Vec::with_capacity(pending.len());
        let floor = state.last_report_seq(self.observer);
        for ((pool, backend), healthy) in pending {
            let n = match seq.next_above(floor).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "cannot number a health report");
                    return Round::Failed;
                }
            };
            let cmd = Command::ReportHealth {
                observer: self.observer,
                pool: pool.clone(),
                backend: backend.clone(),
                healthy,
                seq: n,
            };
            match raft.propose(cmd).await {
                Ok(_) => {
                    tracing::info!(%pool, %backend, healthy, seq = n, "health view committed");
                    committed.push(((pool, backend), n));
                }
                Err(ProposeError::Shutdown) => return Round::Shutdown,
                Err(e) => {
                    tracing::debug!(%pool, %backend, healthy, seq = n, error = %e, "health view not committed");
                    return Round::Failed;
                }
            }
        }
        Round::Committed(committed)
    }

    /// Waits (bounded) until this node's replicated state shows `reports`, so they are
    /// not proposed a second time just because the local apply lags the commit.
    async fn wait_applied(
        &self,
        states: &mut watch::Receiver<Arc<ClusterState>>,
        reports: &[(BackendKey, u64)],
    ) {
        let me = self.observer;
        let applied = |state: &Arc<ClusterState>| {
            reports.iter().all(|((pool, backend), seq)| {
                state
                    .observations(pool, backend)
                    .and_then(|obs| obs.get(&me))
                    .is_some_and(|o| o.seq >= *seq)
            })
        };
        let seen = async { states.wait_for(applied).await.is_ok() };
        let _ = tokio::time::timeout(APPLIED_WAIT, seen).await;
    }

    fn forget_removed(&self, known: &impl Fn(&str, &str) -> bool) {
        self.view.send_if_modified(|view| {
            let before = view.len();
            view.retain(|(pool, backend), _| known(pool, backend));
            view.len() != before
        });
    }
}

/// The views whose replicated value for `observer` differs (never reported = healthy).
fn pending_reports(
    view: &BTreeMap<BackendKey, bool>,
    state: &ClusterState,
    observer: NodeId,
) -> Vec<(BackendKey, bool)> {
    view.iter()
        .filter(|((pool, backend), healthy)| {
            state.observed_or_assumed(pool, backend, observer) != **healthy
        })
        .map(|(key, healthy)| (key.clone(), *healthy))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(items: &[(&str, bool)]) -> BTreeMap<BackendKey, bool> {
        items
            .iter()
            .map(|(b, h)| (("p".to_string(), b.to_string()), *h))
            .collect()
    }

    fn reported(state: &mut ClusterState, observer: NodeId, backend: &str, healthy: bool) {
        let seq = state.last_report_seq(observer) + 1;
        state.apply(&Command::ReportHealth {
            observer,
            pool: "p".into(),
            backend: backend.into(),
            healthy,
            seq,
        });
    }

    fn backends(pending: &[(BackendKey, bool)]) -> Vec<(&str, bool)> {
        pending.iter().map(|((_, b), h)| (b.as_str(), *h)).collect()
    }

    #[test]
    fn healthy_views_of_never_reported_backends_need_no_proposal() {
        let state = ClusterState::default();
        let pending = pending_reports(&view(&[("a", true), ("b", false)]), &state, 1);
        assert_eq!(backends(&pending), vec![("b", false)]);
    }

    /// The restart case: the replicated state still holds this node's "down" from
    /// before it stopped; its checker now says "up": that must be proposed.
    #[test]
    fn a_stale_replicated_down_is_corrected() {
        let mut state = ClusterState::default();
        reported(&mut state, 1, "a", false);
        reported(&mut state, 2, "b", false);
        let pending = pending_reports(&view(&[("a", true), ("b", true)]), &state, 1);
        assert_eq!(
            backends(&pending),
            vec![("a", true)],
            "only observer 1's value counts"
        );
        reported(&mut state, 1, "a", true);
        assert!(pending_reports(&view(&[("a", true)]), &state, 1).is_empty());
    }

    #[test]
    fn observe_keeps_only_the_newest_verdict_per_backend() {
        let reporter = HealthReporter::new(1, PathBuf::from("/nonexistent"));
        let mut rx = reporter.view.subscribe();
        reporter.observe("p", "a", false);
        reporter.observe("p", "a", true);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), view(&[("a", true)]));
        reporter.observe("p", "a", true);
        assert!(
            !rx.has_changed().unwrap(),
            "the same verdict again is no news"
        );
        reporter.forget_removed(&|_: &str, backend: &str| backend != "a");
        assert!(rx.borrow_and_update().is_empty());
    }
}
