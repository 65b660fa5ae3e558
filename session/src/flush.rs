//! Writing held pins to Redis once it answers again (called by the monitor), and the
//! bookkeeping shared with a lookup that writes one held pin on its own.
//!
//! Each held pin goes through the same first-writer-wins script as any pin. If Redis already
//! has a pin for the session (another node pinned it while this one could not reach Redis),
//! that pin wins: this node drops its own, caches the winner, and the session follows the
//! winner on this node too from its next request. Writes run a few at a time over the one
//! multiplexed connection. A pin whose breaker is open waits for the next round without a
//! call; a failure does not end the round, because on a cluster the next pin may live on
//! another (healthy) master, and the breaker turns away the rest of a dead one's at once.

use std::time::Instant;

use futures_util::future::join_all;
use tracing::debug;

use crate::commands;
use crate::inner::{Accounting, Inner};
use crate::metrics::Counters;

/// Held pins read per round.
const BATCH: usize = 512;
/// Writes in flight at once.
const PARALLEL: usize = 32;

/// Writes one batch of held pins, skipping those whose breaker is open.
pub async fn held_pins(inner: &Inner) {
    let now = Instant::now();
    let batch = inner.pending.batch(BATCH, now);
    let ready: Vec<&(String, String)> = batch
        .iter()
        .filter(|(rkey, _)| !inner.refusing(rkey, now))
        .collect();
    for chunk in ready.chunks(PARALLEL) {
        let writes = chunk
            .iter()
            .map(|(rkey, backend)| write_one(inner, rkey, backend));
        join_all(writes).await;
    }
}

async fn write_one(inner: &Inner, rkey: &str, backend: &str) {
    let ttl = inner.ttl_secs;
    let winner = inner
        .call(Accounting::Write, Some(rkey), |c| {
            commands::pin(c, rkey, backend, ttl)
        })
        .await;
    if let Some(winner) = winner {
        settled(inner, rkey, backend, &winner);
    }
}

/// A held pin reached Redis and `winner` is what Redis holds now.
pub(crate) fn settled(inner: &Inner, rkey: &str, held: &str, winner: &str) {
    inner.pending.settle(rkey, held);
    inner.cache.put(rkey, winner, Instant::now(), true);
    if winner == held {
        Counters::bump(&inner.counters.held_written);
    } else {
        Counters::bump(&inner.counters.held_superseded);
        debug!(
            key = rkey,
            held, winner, "held pin superseded: another node pinned the session first"
        );
    }
}
