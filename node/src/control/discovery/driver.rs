//! The discovery driver: one task per `discover` pool that, while this node leads (or runs
//! alone), asks the pool's source and turns each word into the pool's next set:
//! - found addresses: new ones join (unhealthy until the pool's health check passes, see
//!   `ClusterState::backend_healthy`), missing ones drain and leave after `drain`;
//! - a failure, or a name with no records at all: the last good set stays, with the reason
//!   recorded in the set (`/status`, `fulcrum_discovery_failing`) and logged once;
//! - a drained member whose `drain` is over leaves the set.
//!
//! A new leader starts its own lookups at once and continues from the committed set (the
//! drain start travels in it). A supervisor keeps one task per pool as configs change and,
//! on the leader, forgets the sets of pools that no longer discover.

use super::sink::Sink;
use super::source::{Source, Word};
use crate::dataplane::DataPlane;
use fulcrum_config::Discover;
use fulcrum_raft::DiscoveredSet;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How often the supervisor compares the running tasks with the config.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
/// Pause after a set could not be published (no quorum) before trying again.
const PUBLISH_RETRY: Duration = Duration::from_secs(1);

/// Starts the supervisor; it and its tasks end with `stop`.
pub fn spawn(dp: Arc<DataPlane>, sink: Sink, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut running: HashMap<String, (Discover, CancellationToken)> = HashMap::new();
        loop {
            supervise(&dp, &sink, &stop, &mut running).await;
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(SUPERVISE_EVERY) => {}
            }
        }
    });
}

/// One round: a task per `discover` pool of the running config, restarted when its table
/// changed; on the leader, the sets of pools without `discover` are forgotten.
async fn supervise(
    dp: &Arc<DataPlane>,
    sink: &Sink,
    stop: &CancellationToken,
    running: &mut HashMap<String, (Discover, CancellationToken)>,
) {
    let config = dp.snapshot().config.clone();
    let wanted: HashMap<String, Discover> = (config.pool.iter())
        .filter_map(|p| Some((p.name.clone(), p.discover.clone()?)))
        .collect();
    running.retain(|pool, (discover, token)| {
        let keep = wanted.get(pool) == Some(discover);
        if !keep {
            token.cancel();
        }
        keep
    });
    for (pool, discover) in &wanted {
        if running.contains_key(pool) {
            continue;
        }
        let token = stop.child_token();
        let span =
            tracing::info_span!("discovery", pool = %pool, source = %Source::describe(discover));
        let task = drive(
            pool.clone(),
            discover.clone(),
            sink.clone(),
            dp.clone(),
            token.clone(),
        );
        tokio::spawn(task.instrument(span));
        running.insert(pool.clone(), (discover.clone(), token));
    }
    if !sink.leading() {
        return;
    }
    for pool in sink.pools().into_iter().filter(|p| !wanted.contains_key(p)) {
        tracing::info!(pool = %pool, "pool no longer discovers: forgetting its discovered set");
        if let Err(e) = sink.publish(&pool, DiscoveredSet::default()).await {
            tracing::debug!(pool = %pool, error = %e, "could not forget the set yet");
        }
    }
}

/// One pool: resolves while this node leads, from a fresh source each time it starts to.
async fn drive(
    pool: String,
    discover: Discover,
    sink: Sink,
    dp: Arc<DataPlane>,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = sink.until_leading(true) => {}
        }
        tracing::info!("resolving this pool's backends (leading)");
        let mut source = Source::from_config(&discover);
        tokio::select! {
            () = stop.cancelled() => return,
            () = sink.until_leading(false) => tracing::info!("no longer leading: lookups stop"),
            () = lead(&pool, &discover, &sink, &dp, &mut source) => {}
        }
    }
}

/// Asks the source and publishes each new set, for as long as the caller lets it run.
async fn lead(pool: &str, discover: &Discover, sink: &Sink, dp: &DataPlane, source: &mut Source) {
    let drain_ms = discover.drain.as_millis() as u64;
    loop {
        let current = sink.current(pool);
        let expiry = current.next_expiry(drain_ms).map(until_wall_ms);
        let next = tokio::select! {
            word = source.next() => next_set(pool, discover, &current, word, dp),
            () = sleep_for(expiry) => current.clone(),
        };
        let next = next.expire(now_ms(), drain_ms);
        if next == current {
            continue;
        }
        log_change(&current, &next);
        if let Err(e) = sink.publish(pool, next).await {
            tracing::warn!(error = %e, "discovered set not committed; retrying");
            tokio::time::sleep(PUBLISH_RETRY).await;
        }
    }
}

/// The pool's next set after one word of its source (and the lookup counted).
fn next_set(
    pool: &str,
    discover: &Discover,
    current: &DiscoveredSet,
    word: Word,
    dp: &DataPlane,
) -> DiscoveredSet {
    let metrics = &dp.metrics.discovery;
    match word {
        Word::Found(found) if !found.is_empty() => {
            metrics.lookup(pool, "ok");
            current.after_found(&found, discover.weight, now_ms())
        }
        Word::Found(_) => {
            metrics.lookup(pool, "empty");
            current.after_failure(&format!(
                "{} has no records; keeping the last set",
                discover.dns
            ))
        }
        Word::Failed(why) => {
            metrics.lookup(pool, "failed");
            current.after_failure(&why)
        }
    }
}

/// Logs what a new set changes: joins, drains, departures, and a source failing or back.
fn log_change(current: &DiscoveredSet, next: &DiscoveredSet) {
    let active = |s: &DiscoveredSet| -> BTreeSet<String> {
        (s.members.iter())
            .filter(|(_, m)| !m.draining())
            .map(|(a, _)| a.clone())
            .collect()
    };
    let (before, after) = (active(current), active(next));
    let joined: Vec<&String> = after.difference(&before).collect();
    let draining: Vec<&String> = before
        .difference(&after)
        .filter(|a| next.members.contains_key(*a))
        .collect();
    let left: Vec<&String> = current.removed_in(next).collect();
    if !joined.is_empty() || !draining.is_empty() || !left.is_empty() {
        tracing::info!(?joined, ?draining, ?left, "discovered backends changed");
    }
    match (current.error.is_empty(), next.error.is_empty()) {
        (true, false) => {
            tracing::warn!(error = %next.error, kept = next.members.len(), "discovery failing; keeping the last good set")
        }
        (false, true) => tracing::info!("discovery answers again"),
        _ => {}
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long from now until wall-clock instant `at_ms`.
fn until_wall_ms(at_ms: u64) -> Duration {
    Duration::from_millis(at_ms.saturating_sub(now_ms()))
}

async fn sleep_for(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}
