//! A backend's response latency: the pool's Prometheus histogram plus this backend's own
//! buckets (same bounds), so `/status` and the dashboard can show p50/p99 per backend
//! without a Prometheus series per backend.
//!
//! Observing is one lock-free increment on top of the pool histogram; the buckets are
//! read only at status time.

use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Upper bounds in seconds: 0.5 ms doubling 16 times (the pool histogram's), then +Inf.
pub fn bounds() -> impl Iterator<Item = f64> {
    (0..16).map(|i| 0.0005 * 2f64.powi(i))
}

/// Number of buckets: 16 bounds and +Inf.
const BUCKETS: usize = 17;

/// One backend's own buckets; shared by every config version's handle on that backend
/// (kept in the node's metrics, like its response counters), so a reload resets nothing.
#[derive(Clone, Debug)]
pub struct BackendBuckets(Arc<[AtomicU64; BUCKETS]>);

impl Default for BackendBuckets {
    fn default() -> Self {
        BackendBuckets(Arc::new(std::array::from_fn(|_| AtomicU64::new(0))))
    }
}

/// Where a backend's latencies go.
#[derive(Clone, Debug)]
pub struct Latency {
    /// The pool's histogram (`fulcrum_request_duration_seconds{pool}`).
    pub pool: Histogram,
    backend: BackendBuckets,
}

impl Latency {
    pub fn new(pool: Histogram, backend: BackendBuckets) -> Latency {
        Latency { pool, backend }
    }

    /// Records one response's latency for the pool and this backend.
    pub fn observe(&self, seconds: f64) {
        self.pool.observe(seconds);
        let i = bounds().position(|le| seconds <= le).unwrap_or(BUCKETS - 1);
        self.backend.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// This backend's buckets as cumulative `(upper bound, count)` pairs, `+Inf` last.
    pub fn backend_buckets(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        bounds()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.backend.0.iter())
            .map(|(le, n)| {
                total += n.load(Ordering::Relaxed);
                (le, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_backend_counts_its_own_and_the_pool_both() {
        let pool = Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
            0.0005, 2.0, 16,
        ));
        let shared = BackendBuckets::default();
        let a = Latency::new(pool.clone(), shared.clone());
        let b = Latency::new(pool.clone(), BackendBuckets::default());
        a.observe(0.0004);
        a.observe(0.003);
        b.observe(100.0);
        let got = a.backend_buckets();
        assert_eq!(got.len(), BUCKETS);
        assert_eq!(got[0], (0.0005, 1));
        assert_eq!(got[3], (0.004, 2), "0.003 s is under the 4 ms bound");
        assert_eq!(got.last(), Some(&(f64::INFINITY, 2)));
        assert_eq!(b.backend_buckets()[15].1, 0);
        assert_eq!(b.backend_buckets().last(), Some(&(f64::INFINITY, 1)));
        // The next config version's handle on backend `a` keeps counting where it was.
        let again = Latency::new(pool, shared);
        again.observe(0.001);
        assert_eq!(a.backend_buckets().last(), Some(&(f64::INFINITY, 3)));
    }
}
