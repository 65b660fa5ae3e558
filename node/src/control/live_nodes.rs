//! The leader's record of live members (`Command::SetLiveNodes`), which DNS answers read
//! (`node/src/dns/facts.rs`), so every node answers alike (issue 25 item 2).
//!
//! Every `TICK`, while the running config has `[dns]` and this node leads with a lease,
//! the judge (`fulcrum_raft::liveness`) names the members whose lease pings were
//! acknowledged within `LIVE_WITHIN`; a set that differs from the committed one is
//! proposed. One proposal at a time; nothing is written while nothing changes.

use crate::dataplane::DataPlane;
use fulcrum_raft::lease::time::now_us;
use fulcrum_raft::liveness::LiveJudge;
use fulcrum_raft::{Command, RaftHandle};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often the leader judges (a kill -9 shows after `LIVE_WITHIN` plus up to this).
pub const TICK: Duration = Duration::from_millis(50);

/// Judges and commits until `stop`.
pub async fn run(raft: RaftHandle, dp: Arc<DataPlane>, stop: CancellationToken) {
    let mut judge = LiveJudge::default();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if dp.snapshot().config.dns.is_none() {
            continue;
        }
        let now = now_us();
        let leadership = *raft.lease().leadership().borrow();
        let term = if leadership.may_hold(now) {
            leadership.term
        } else {
            0
        };
        let ages = raft.lease().read(|s| s.ack_ages(now));
        let voters = raft.voter_ids();
        let Some(live) = judge.judge(raft.node_id(), term, &voters, &ages, now) else {
            continue;
        };
        if raft.cluster_state().borrow().live_nodes == live {
            continue;
        }
        let span = tracing::info_span!("live_nodes", ?live);
        span.in_scope(|| tracing::info!("members live now changed; committing"));
        let proposed = raft.propose(Command::SetLiveNodes { live });
        if let Err(e) = proposed.instrument(span.clone()).await {
            span.in_scope(|| tracing::warn!(error = %e, "record of live members not committed; judging again"));
        }
    }
}
