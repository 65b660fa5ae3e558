//! Background task of a store with Redis configured. Every [`TICK`], or at once when a
//! sentinel announces a new master, it
//! * follows Sentinel: when the link asks for it, re-resolves the master (at most every
//!   [`RESOLVE_EVERY`], except right after an announcement), and asks the sentinels anyway
//!   every [`SENTINEL_RECHECK`]. On a switch it closes the breaker (the failures were the old
//!   master's) and probes the new master at once;
//! * sends a PING when the (single server's) breaker is open (the PING is the probe, so
//!   recovery does not wait for, or cost, a user request) or when the store has been idle for
//!   [`IDLE_PING`] (keeps `state()` truthful and the connection warm);
//! * writes the pins this node held while Redis could not take them, as soon as the breaker
//!   guarding each one lets it through.
//!
//! The loop holds only a `Weak` reference between ticks and ends when the last
//! `AffinityStore` clone is dropped; each step is bounded by the call timeout.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::commands;
use crate::flush;
use crate::inner::{Accounting, Inner};
use crate::link::Resolved;

pub const TICK: Duration = Duration::from_millis(100);
pub const RESOLVE_EVERY: Duration = Duration::from_millis(500);
pub const SENTINEL_RECHECK: Duration = Duration::from_secs(5);
pub const IDLE_PING: Duration = Duration::from_secs(1);

/// What the monitor remembers between ticks.
#[derive(Debug, Default)]
struct Memory {
    last_resolve: Option<Instant>,
    /// The last resolution failed (and was logged): log again only when it recovers.
    resolve_failing: bool,
}

pub async fn run(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut memory = Memory::default();
    let mut woken = false;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        tick(&inner, &mut memory, woken).await;
        drop(inner);
        woken = tokio::select! {
            _ = tokio::time::sleep(TICK) => false,
            _ = wake.notified() => true,
        };
    }
}

async fn tick(inner: &Inner, memory: &mut Memory, woken: bool) {
    let Some(link) = &inner.link else { return };
    follow_sentinel(inner, memory, woken).await;
    let idle = inner.never_used() || inner.idle_for(Instant::now()) >= IDLE_PING;
    // A cluster's masters are probed one by one (`cluster_watch`); a PING only keeps it warm.
    let probe = !link.is_cluster() && !inner.breakers.all_closed();
    if idle || probe {
        inner.call(Accounting::Health, None, commands::ping).await;
    }
    if inner.pending.len() > 0 && !link.needs_resolve() {
        flush::held_pins(inner).await;
    }
}

async fn follow_sentinel(inner: &Inner, memory: &mut Memory, woken: bool) {
    let Some(link) = &inner.link else { return };
    let now = Instant::now();
    let since = memory.last_resolve.map(|t| now.duration_since(t));
    let due = woken || since.is_none_or(|d| d >= RESOLVE_EVERY);
    let urgent = link.needs_resolve() && due;
    // A routine check also catches a switchover the errors did not reveal (e.g. the old
    // master, now a replica, still answering reads).
    let routine = link.is_sentinel() && since.is_some_and(|d| d >= SENTINEL_RECHECK);
    if !(urgent || routine) {
        return;
    }
    memory.last_resolve = Some(now);
    match link.resolve().await {
        Err(e) if !memory.resolve_failing => {
            warn!(error = %e, "sentinel: cannot resolve the redis master");
            memory.resolve_failing = true;
        }
        Err(e) => debug!(error = %e, "sentinel: still cannot resolve the redis master"),
        Ok(resolved) => {
            if memory.resolve_failing {
                info!("sentinel: redis master resolved again");
                memory.resolve_failing = false;
            }
            if let Resolved::Switched(address) = resolved {
                inner.master.using(&address);
                inner.breakers.reset();
            }
        }
    }
}
