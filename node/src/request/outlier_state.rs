//! What outlier detection (`request::outlier`) keeps: a pool's settings with its
//! ejection counter (`OutlierPolicy`, in `PoolRuntime`) and each backend's streaks and
//! ejection history (`OutlierCounters`, in `BackendState`, kept across configs). Apart
//! from the detection itself so that the pool and the backend state can hold them.

use crate::metrics::BackendLabels;
use fulcrum_config::Outlier;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Per-backend streaks and ejection history (in `BackendState`, kept across configs).
#[derive(Debug, Default)]
pub struct OutlierCounters {
    pub(crate) five_xx: AtomicU32,
    pub(crate) gateway: AtomicU32,
    /// Ejections by outlier detection, before the decay since `back_ms`.
    pub(crate) times: AtomicU32,
    /// When the last ejection ended (ms on the backend state's clock).
    pub(crate) back_ms: AtomicU64,
}

/// A pool's outlier detection settings.
#[derive(Debug)]
pub struct OutlierPolicy {
    pub(crate) five_xx: u32,
    pub(crate) gateway: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    pub(crate) max_percent: u32,
    pub(crate) ejections: Family<BackendLabels, Counter>,
}

/// Adds one to a streak, or ends it (without a write when it is already 0).
pub(crate) fn streak(counter: &AtomicU32, hit: bool) -> u32 {
    if hit {
        counter.fetch_add(1, Relaxed) + 1
    } else {
        if counter.load(Relaxed) != 0 {
            counter.store(0, Relaxed);
        }
        0
    }
}

impl OutlierPolicy {
    pub fn new(outlier: &Outlier, ejections: Family<BackendLabels, Counter>) -> Self {
        OutlierPolicy {
            five_xx: outlier.consecutive_5xx,
            gateway: outlier.consecutive_gateway_errors,
            base: outlier.base_ejection,
            max: outlier.max_ejection,
            max_percent: outlier.max_ejection_percent,
            ejections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_streak_counts_hits_and_ends_on_a_miss() {
        let c = AtomicU32::new(0);
        assert_eq!(streak(&c, true), 1);
        assert_eq!(streak(&c, true), 2);
        assert_eq!(streak(&c, false), 0);
        assert_eq!(streak(&c, true), 1);
    }
}
