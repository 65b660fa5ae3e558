//! `/metrics` for the signal to scale (issue 25 item 4): each pool's requests in flight,
//! connects queued and saturation (set from `pool_load` at scrape time), and the scale
//! hook's calls by result.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HookLabels {
    pub pool: String,
    pub direction: String,
    /// `ok` (2xx answer), `failed` (no answer, or not 2xx) or `timeout`.
    pub result: String,
}

/// The pool gauges and the hook counter.
#[derive(Default)]
pub struct PoolMetrics {
    in_flight: Family<PoolLabels, Gauge>,
    queued: Family<PoolLabels, Gauge>,
    saturation: Family<PoolLabels, Gauge<f64, AtomicU64>>,
    hook_calls: Family<HookLabels, Counter>,
}

impl PoolMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "pool_in_flight",
            "Requests in flight to the pool's backends",
            self.in_flight.clone(),
        );
        registry.register(
            "pool_queued",
            "Connects in progress to the pool's backends (pools with max_pending, capacity or scale_hook)",
            self.queued.clone(),
        );
        registry.register(
            "pool_saturation",
            "Requests in flight over the pool's capacity (pools with capacity or max_requests)",
            self.saturation.clone(),
        );
        registry.register(
            "scale_hook_calls",
            "Calls of a pool's scale_hook by direction and result",
            self.hook_calls.clone(),
        );
    }

    /// Sets the gauges of `pool` from one reading (`pool_load::PoolLoad`).
    pub fn observe(&self, pool: &str, in_flight: u64, queued: u64, saturation: Option<f64>) {
        let labels = PoolLabels {
            pool: pool.to_string(),
        };
        self.in_flight.get_or_create(&labels).set(in_flight as i64);
        self.queued.get_or_create(&labels).set(queued as i64);
        if let Some(s) = saturation {
            self.saturation.get_or_create(&labels).set(s);
        }
    }

    /// Counts one hook call.
    pub fn hook_call(&self, pool: &str, direction: &str, result: &str) {
        self.hook_calls
            .get_or_create(&HookLabels {
                pool: pool.to_string(),
                direction: direction.to_string(),
                result: result.to_string(),
            })
            .inc();
    }
}
