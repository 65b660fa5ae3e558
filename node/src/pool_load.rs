//! A pool's load as the signal to scale reads it (issue 25 item 4): requests in flight,
//! connects queued (in progress), and saturation = in flight / capacity.
//!
//! Nothing here runs per request. In flight is the per-backend count every request keeps
//! anyway (`BackendLoad::occupy`, read by the balancers and the circuit breaker); queued
//! is the pool's pending-connect count, which exists only when the pool has
//! `max_pending` or a signal to scale (`pending_cap`), so a pool without either pays
//! nothing more on the hot path. The figures are read when sampled: by the scale hook's
//! task once a second and by `/metrics` at scrape time.

use crate::pool::PoolRuntime;
use fulcrum_config::Pool;

/// One reading of a pool's load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolLoad {
    pub in_flight: u64,
    pub queued: u64,
    pub capacity: Option<u64>,
}

impl PoolLoad {
    /// Reads the pool's counters now.
    pub fn of(pool: &PoolRuntime) -> PoolLoad {
        PoolLoad {
            in_flight: pool.backends.iter().map(|b| b.state.load.in_flight()).sum(),
            queued: pool.upstream.pending(),
            capacity: pool.capacity,
        }
    }

    /// In flight over capacity (none without a capacity).
    pub fn saturation(&self) -> Option<f64> {
        let capacity = self.capacity.filter(|c| *c > 0)?;
        Some(self.in_flight as f64 / capacity as f64)
    }
}

/// The capacity of `pool` with `backends` usable backends: `capacity`, or the sum of
/// the backends' `max_requests`.
pub fn capacity(pool: &Pool, backends: usize) -> Option<u64> {
    let from_caps = || {
        pool.max_requests
            .map(|max| u64::from(max) * backends as u64)
    };
    pool.capacity.map(u64::from).or_else(from_caps)
}

/// The pending-connect cap to count with: `max_pending`, or no cap at all (but counted)
/// when the pool has a signal to scale; none: nothing counts connects.
pub fn pending_cap(pool: &Pool) -> Option<u32> {
    let counted = pool.capacity.is_some() || pool.scale_hook.is_some();
    pool.max_pending.or(counted.then_some(u32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(extra: &str) -> Pool {
        let text = format!(
            "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:8080\"\n\n[[route]]\nlistener = \"web\"\npool = \"app\"\n\n\
             [[pool]]\nname = \"app\"\nbackends = [{{ addr = \"127.0.0.1:9001\" }}, {{ addr = \"127.0.0.1:9002\" }}]\n{extra}\n"
        );
        let config = fulcrum_config::parse(&text, "t.toml").expect("valid");
        config.pool[0].clone()
    }

    #[test]
    fn capacity_is_the_pools_or_the_sum_of_max_requests() {
        assert_eq!(capacity(&pool("capacity = 200"), 2), Some(200));
        assert_eq!(capacity(&pool("max_requests = 50"), 2), Some(100));
        assert_eq!(
            capacity(&pool("capacity = 7\nmax_requests = 50"), 2),
            Some(7)
        );
        assert_eq!(capacity(&pool(""), 2), None);
    }

    #[test]
    fn connects_are_counted_only_when_something_reads_them() {
        assert_eq!(pending_cap(&pool("")), None, "no cost without the signal");
        assert_eq!(pending_cap(&pool("max_pending = 3")), Some(3));
        assert_eq!(pending_cap(&pool("capacity = 10")), Some(u32::MAX));
    }

    #[test]
    fn saturation_is_in_flight_over_capacity() {
        let load = |in_flight, capacity| PoolLoad {
            in_flight,
            queued: 0,
            capacity,
        };
        assert_eq!(load(150, Some(200)).saturation(), Some(0.75));
        assert_eq!(load(5, None).saturation(), None);
        assert_eq!(load(5, Some(0)).saturation(), None);
    }
}
