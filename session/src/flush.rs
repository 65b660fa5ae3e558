//! Writing held pins to Redis once it answers again (called by the monitor), and the
//! bookkeeping shared with a lookup that writes one held pin on its own.
//!
//! Each held pin goes through the same first-writer-wins script as any pin. If Redis already
//! has a pin for the session (another node pinned it while this one could not reach Redis),
//! that pin wins: this node drops its own, caches the winner, and the session follows the
//! winner on this node too from its next request. Writes run a few at a time over the one
//! multiplexed connection; the first failure ends the round (Redis is away again).

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

/// Writes held pins until none is left, Redis fails, or one batch is done.
pub async fn held_pins(inner: &Inner) {
    let batch = inner.pending.batch(BATCH, Instant::now());
    for chunk in batch.chunks(PARALLEL) {
        let writes = chunk
            .iter()
            .map(|(rkey, backend)| write_one(inner, rkey, backend));
        let written = join_all(writes).await;
        if written.contains(&false) {
            return;
        }
    }
}

async fn write_one(inner: &Inner, rkey: &str, backend: &str) -> bool {
    let ttl = inner.ttl_secs;
    let winner = inner
        .call(Accounting::Write, |c| commands::pin(c, rkey, backend, ttl))
        .await;
    match winner {
        Some(winner) => {
            settled(inner, rkey, backend, &winner);
            true
        }
        None => false,
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
