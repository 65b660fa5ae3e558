//! Circuit breaking: a pool's per-backend caps on requests in flight (`max_requests`)
//! and on connects in progress (`max_pending`). A request that would go over either is
//! answered at once with 503 and its reason (`backend at max_requests`), counted in
//! `fulcrum_local_responses_total{result="max_requests"|"max_pending"}`, rather than
//! queued behind a backend that is already saturated (Envoy's circuit breakers).
//!
//! The in-flight count is the one every path keeps anyway (`BackendLoad::occupy`, read
//! by the least-request algorithms); the pending-connect count is kept by the pool's
//! `Upstream`, which owns every connect (`UpstreamError::Pending`). A pool without caps
//! pays one branch per attempt.

use crate::balance::Occupied;
use crate::pool::PoolRuntime;
use crate::request::local::{Cap, Local};

/// Counts an attempt on backend `index` as in flight, or refuses it when that would
/// take the backend over the pool's `max_requests`.
#[inline]
pub(crate) fn occupy(pool: &PoolRuntime, index: usize) -> Result<Occupied<'_>, Local> {
    let backend = &pool.backends[index];
    let occupied = backend.state.load.occupy();
    if let Some(max) = pool.max_requests {
        if backend.state.load.in_flight() > max {
            drop(occupied);
            tracing::warn!(pool = %pool.name, backend = %backend.id, max, "backend at max_requests: 503");
            return Err(Local::Overloaded(Cap::Requests));
        }
    }
    Ok(occupied)
}
