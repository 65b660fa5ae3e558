//! Every node's `/status`, sampled about every 100 ms while a scenario runs: the evidence
//! the premises read (who leads, whose lease lapsed, whether Redis or a backend is seen
//! down, which config version each node has). A node that does not answer within the
//! round's budget (killed, frozen) is recorded as `None`.

use crate::checks::StatusSample;
use crate::faults;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Time between rounds.
const PERIOD: Duration = Duration::from_millis(100);
/// Budget of one `/status` call: a frozen node costs a round no more than this.
const CALL_BUDGET: Duration = Duration::from_millis(250);

pub struct StatusPoller {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Vec<StatusSample>>,
}

impl StatusPoller {
    /// Starts sampling the nodes whose admin APIs are `admins` (bounded by `limit`).
    pub fn start(admins: Vec<String>, epoch: Instant, limit: Duration) -> StatusPoller {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !flag.load(Ordering::SeqCst) && epoch.elapsed() < limit {
                tick.tick().await;
                samples.push(round(&admins, epoch).await);
            }
            samples
        });
        StatusPoller { stop, task }
    }

    /// Stops and returns every round (empty if the task died).
    pub async fn finish(self) -> Vec<StatusSample> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap_or_default()
    }
}

/// One call per node, all at once; stamped with the round's start.
async fn round(admins: &[String], epoch: Instant) -> StatusSample {
    let t_ms = epoch.elapsed().as_secs_f64() * 1000.0;
    let calls: Vec<_> = admins
        .iter()
        .cloned()
        .map(|a| tokio::spawn(async move { faults::status_at(&a, CALL_BUDGET).await.ok() }))
        .collect();
    let mut nodes = Vec::with_capacity(calls.len());
    for call in calls {
        nodes.push(call.await.ok().flatten());
    }
    let done_ms = epoch.elapsed().as_secs_f64() * 1000.0;
    StatusSample {
        t_ms,
        done_ms,
        nodes,
    }
}
