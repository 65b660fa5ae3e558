//! Redis Cluster upkeep: a task of its own per cluster store (so a long round of held-pin
//! writes in the monitor never delays it), ticking every [`TICK`]:
//! * reads the slot map (`CLUSTER SLOTS` from one node at random) so that each master has its
//!   own breaker ([`crate::owners`]): every tick while a breaker is open or the last command
//!   failed, so a promoted replica is written to within a tick of the cluster naming it, and
//!   every [`SLOTS_EVERY`] otherwise;
//! * probes each master whose breaker is open by reading a key in one of its slots (a PING
//!   goes to a node at random and says nothing about that master);
//! * replaces a wedged cluster connection. The redis crate's cluster connection can stop
//!   answering for good during a failover (seen with redis 1.8.1: a slot refresh that never
//!   completes, after which every command on that connection times out). The slot map is read
//!   from the masters whose breaker is closed, in turn, so [`FAILED_READS`] failed reads in a
//!   row mean that many different masters did not answer: the connection is rebuilt (at most
//!   every [`REBUILD_EVERY`]) and the breakers are closed again, since their failures were the
//!   wedged connection's. One frozen master never triggers it (a rebuild would then wait on
//!   that master's connect timeout for every key).
//!
//! The task ends when the store is dropped.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::commands;
use crate::inner::{Accounting, Inner};
use crate::metrics::Counters;
use crate::owners::parse_slots;

pub const TICK: Duration = Duration::from_millis(50);
/// Slot map read this often while all is well.
pub const SLOTS_EVERY: Duration = Duration::from_secs(1);
/// A slot-map read waits this long at most (less if the call timeout is shorter): a master
/// answers `CLUSTER SLOTS` within a millisecond or two, and a wedged connection is found
/// sooner.
pub const SLOTS_TIMEOUT: Duration = Duration::from_millis(100);
/// Failed slot-map reads in a row (each from another master) after which the connection is
/// presumed wedged.
pub const FAILED_READS: u32 = 2;
/// At most one rebuild this often (a cluster that is down entirely fails every read).
pub const REBUILD_EVERY: Duration = Duration::from_secs(1);

/// What the cluster upkeep remembers between ticks.
#[derive(Debug, Default)]
pub struct ClusterMemory {
    last_read: Option<Instant>,
    failures: u32,
    last_rebuild: Option<Instant>,
    /// Turn of the next master to read the slot map from.
    next: usize,
}

pub fn spawn(inner: &Arc<Inner>, closed: &watch::Receiver<()>) {
    tokio::spawn(run(Arc::downgrade(inner), closed.clone()));
}

async fn run(weak: Weak<Inner>, mut closed: watch::Receiver<()>) {
    let mut memory = ClusterMemory::default();
    loop {
        let Some(inner) = weak.upgrade() else { return };
        tick(&inner, &mut memory).await;
        drop(inner);
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = closed.changed() => return,
        }
    }
}

async fn tick(inner: &Inner, memory: &mut ClusterMemory) {
    let (Some(link), Some(owners)) = (&inner.link, inner.breakers.owners()) else {
        return;
    };
    let now = Instant::now();
    let troubled =
        memory.failures > 0 || !inner.last_ok.load(Relaxed) || !inner.breakers.all_closed();
    let due = troubled || memory.last_read.is_none_or(|t| now - t >= SLOTS_EVERY);
    if due {
        memory.last_read = Some(now);
        let healthy = owners.healthy();
        let at = (!healthy.is_empty()).then(|| healthy[memory.next % healthy.len()].clone());
        memory.next = memory.next.wrapping_add(1);
        let read = link
            .exec_within(SLOTS_TIMEOUT, |c| commands::cluster_slots(c, at.clone()))
            .await;
        match read
            .as_ref()
            .ok()
            .and_then(|r| r.as_ref())
            .and_then(parse_slots)
        {
            Some(ranges) if !ranges.is_empty() => {
                if memory.failures > 0 {
                    info!("redis cluster: slot map read again");
                }
                owners.update(&ranges);
                memory.failures = 0;
            }
            _ => {
                memory.failures += 1;
                match &read {
                    Err(e) => {
                        debug!(error = %e, failures = memory.failures, "redis cluster: cannot read the slot map")
                    }
                    Ok(_) => debug!("redis cluster: unexpected CLUSTER SLOTS reply"),
                }
                let rebuild_due = memory.last_rebuild.is_none_or(|t| now - t >= REBUILD_EVERY);
                if memory.failures >= FAILED_READS && rebuild_due {
                    memory.last_rebuild = Some(now);
                    match link.rebuild_cluster() {
                        Ok(()) => {
                            inner.breakers.reset();
                            Counters::bump(&inner.counters.connection_rebuilds);
                            warn!(
                                failures = memory.failures,
                                "redis cluster not answering: new cluster connection"
                            );
                        }
                        Err(e) => warn!(error = %e, "redis cluster: cannot build a new connection"),
                    }
                }
            }
        }
    }
    for key in owners.probes() {
        let k = key.as_str();
        // Refused at once (no I/O) unless the breaker is due for its probe.
        inner
            .call(Accounting::Health, Some(k), |c| commands::read(c, k, None))
            .await;
    }
}
