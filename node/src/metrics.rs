//! Prometheus metrics of the node (`GET /metrics`).
//!
//! Metric families live in one `Registry`. The hot path never looks a label set up:
//! when a config is compiled, each backend gets its own handles (`BackendMetrics`,
//! cheap `Arc` clones of the counters), so counting a request is one atomic add.
//! Gauges that mirror live state (health, in-flight) are refreshed at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub pool: String,
    pub backend: String,
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

/// `fulcrum_vip_held{address}`: one series per VIP of this node.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VipLabels {
    pub address: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub pool: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub pool: String,
    pub backend: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusedLabels {
    pub listener: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// All metric families of a node.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<PoolLabels, Histogram, fn() -> Histogram>,
    /// Per-backend latency buckets (not exported: `/status` and the dashboard read them).
    backend_latency:
        std::sync::Mutex<std::collections::HashMap<BackendLabels, crate::latency::BackendBuckets>>,
    pub client_connections: Gauge,
    /// Of those, idle ones parked without a task (`idle_park`).
    pub client_connections_parked: Gauge,
    pub connections_refused: Family<RefusedLabels, Counter>,
    pub local_responses: Family<ResultLabels, Counter>,
    pub backend_in_flight: Family<BackendLabels, Gauge>,
    pub backend_healthy: Family<BackendLabels, Gauge>,
    pub backend_ejections: Family<BackendLabels, Counter>,
    pub backend_unsolicited: Counter,
    /// Requests of a cluster-wide rate limit counted locally: Redis could not answer.
    pub rate_limit_fallbacks: Counter,
    pub health_checks: Family<CheckLabels, Counter>,
    /// gRPC calls by backend and `grpc-status` (`grpc_metrics`).
    grpc_responses: Family<crate::grpc_metrics::GrpcLabels, Counter>,
    pub retries: Counter,
    retry_budget_exhausted: Family<PoolLabels, Counter>,
    pub config_version: Gauge,
    pub reloads: Family<ResultLabels, Counter>,
    pub config: ConfigMetrics,
    session: SessionMetrics,
    raft: RaftMetrics,
    vip_held: Family<VipLabels, Gauge>,
    vip_transitions: Counter,
    /// BGP mode (`[bgp]`), set at scrape time.
    pub bgp: crate::bgp_metrics::BgpMetrics,
    /// The signal to scale: pool gauges (set at scrape time) and hook calls.
    pub pools: crate::pool_metrics::PoolMetrics,
    /// Backends found through DNS (`control::discovery`).
    pub discovery: crate::discovery_metrics::DiscoveryMetrics,
    last_vip_transitions: std::sync::atomic::AtomicU64,
    log_lines_dropped: Counter,
    last_log_lines_dropped: std::sync::atomic::AtomicU64,
}

/// Where this node stands with the replicated config (issue 23: no silent divergence).
#[derive(Default)]
pub struct ConfigMetrics {
    /// Failed attempts to apply a committed version (each retry counts).
    pub apply_failures: Counter,
    /// The version this node runs; set at scrape time.
    pub version_running: Gauge,
    /// The version committed in Raft; set at scrape time.
    pub version_committed: Gauge,
}

/// Affinity-store figures, copied from the store's own counters at scrape time.
#[derive(Default)]
struct SessionMetrics {
    redis_errors: Counter,
    fallbacks: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    redis_calls: Counter,
    redis_latency_seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    connected: Gauge,
    last: std::sync::Mutex<fulcrum_session::StoreMetrics>,
}

/// Raft figures, copied from the status watch at scrape time.
#[derive(Default)]
struct RaftMetrics {
    term: Gauge,
    commit_index: Gauge,
    last_applied: Gauge,
    is_leader: Gauge,
    lease_fresh: Gauge,
    leader_changes: Counter,
    last_leader_changes: std::sync::atomic::AtomicU64,
}

/// Per-backend handles used on the hot path.
#[derive(Clone, Debug)]
pub struct BackendMetrics {
    /// Index 0..=4 for 1xx..5xx.
    by_class: [Counter; 5],
    /// Response latency: the pool's histogram and this backend's own buckets.
    pub duration: crate::latency::Latency,
    /// gRPC calls by their `grpc-status`.
    pub grpc: crate::grpc_metrics::GrpcCodes,
}

impl BackendMetrics {
    pub fn record_status(&self, status: u16) {
        let i = ((status / 100).clamp(1, 5) - 1) as usize;
        self.by_class[i].inc();
    }

    /// Responses so far by status class, 1xx..5xx (for `/status` and the dashboard).
    pub fn counts(&self) -> [u64; 5] {
        let mut out = [0; 5];
        for (o, c) in out.iter_mut().zip(&self.by_class) {
            *o = c.get();
        }
        out
    }

    /// The pool's latency histogram as cumulative `(upper bound in seconds, count)`
    /// pairs, the last bound `+Inf`. prometheus-client keeps its buckets private, so the
    /// histogram is encoded alone and read back (a few hundred bytes, at status time only).
    pub fn latency_buckets(&self) -> Vec<(f64, u64)> {
        let mut registry = Registry::default();
        registry.register("d", "", self.duration.pool.clone());
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
            return Vec::new();
        }
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("d_bucket{le=\"")?;
                let (le, count) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fulcrum");
        let m = Metrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(new_latency_histogram as fn() -> Histogram),
            backend_latency: Default::default(),
            client_connections: Gauge::default(),
            client_connections_parked: Gauge::default(),
            connections_refused: Family::default(),
            local_responses: Family::default(),
            backend_in_flight: Family::default(),
            backend_healthy: Family::default(),
            backend_ejections: Family::default(),
            backend_unsolicited: Counter::default(),
            rate_limit_fallbacks: Counter::default(),
            health_checks: Family::default(),
            grpc_responses: Family::default(),
            retries: Counter::default(),
            retry_budget_exhausted: Family::default(),
            config_version: Gauge::default(),
            reloads: Family::default(),
            config: ConfigMetrics::default(),
            session: SessionMetrics::default(),
            raft: RaftMetrics::default(),
            vip_held: Family::default(),
            vip_transitions: Counter::default(),
            last_vip_transitions: std::sync::atomic::AtomicU64::new(0),
            log_lines_dropped: Counter::default(),
            last_log_lines_dropped: std::sync::atomic::AtomicU64::new(0),
            bgp: Default::default(),
            pools: Default::default(),
            discovery: Default::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Proxied requests by pool, backend and status class",
            m.requests.clone(),
        );
        registry.register(
            "grpc_responses",
            "gRPC calls relayed by pool, backend and grpc-status code",
            m.grpc_responses.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time to the backend's response head",
            m.duration.clone(),
        );
        registry.register(
            "client_connections",
            "Open client connections",
            m.client_connections.clone(),
        );
        registry.register(
            "client_connections_parked",
            "Idle client connections parked without a task until their client sends (plain HTTP)",
            m.client_connections_parked.clone(),
        );
        registry.register(
            "connections_refused",
            "Client connections closed at once by a listener limit (reason=per_ip)",
            m.connections_refused.clone(),
        );
        registry.register(
            "local_responses",
            "Responses generated by fulcrum itself (400, 404, 502, 503, 504); result=client for requests the client broke",
            m.local_responses.clone(),
        );
        registry.register(
            "backend_in_flight",
            "Requests in flight per backend",
            m.backend_in_flight.clone(),
        );
        registry.register(
            "backend_healthy",
            "1 when the backend takes new requests by health",
            m.backend_healthy.clone(),
        );
        registry.register(
            "backend_ejections",
            "Local passive ejections after connect failures",
            m.backend_ejections.clone(),
        );
        registry.register(
            "backend_unsolicited",
            "Pooled backend connections dropped because the backend sent bytes no request asked for",
            m.backend_unsolicited.clone(),
        );
        registry.register(
            "rate_limit_fallbacks",
            "Requests of a cluster-wide rate limit counted by this node alone because Redis could not answer",
            m.rate_limit_fallbacks.clone(),
        );
        registry.register(
            "health_checks",
            "Active health check results",
            m.health_checks.clone(),
        );
        registry.register(
            "retries",
            "Requests retried after a failed try (connect failure, broken connection, per-try timeout)",
            m.retries.clone(),
        );
        registry.register(
            "retry_budget_exhausted",
            "Failed attempts not retried because the pool's retry budget was spent",
            m.retry_budget_exhausted.clone(),
        );
        registry.register(
            "config_version",
            "Version of the balancer config in use",
            m.config_version.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reload attempts by result",
            m.reloads.clone(),
        );
        registry.register(
            "config_apply_failures",
            "Failed attempts to apply a committed config version (retries count)",
            m.config.apply_failures.clone(),
        );
        registry.register(
            "config_version_running",
            "Version of the balancer config this node runs",
            m.config.version_running.clone(),
        );
        registry.register(
            "config_version_committed",
            "Version of the balancer config committed in the cluster",
            m.config.version_committed.clone(),
        );
        let sm = &m.session;
        registry.register(
            "affinity_redis_errors",
            "Redis commands that failed, timed out or were skipped by the breaker",
            sm.redis_errors.clone(),
        );
        registry.register(
            "affinity_fallback",
            "Affinity decisions made by hashing because Redis was away",
            sm.fallbacks.clone(),
        );
        registry.register(
            "affinity_cache_hits",
            "Affinity lookups answered by the local cache",
            sm.cache_hits.clone(),
        );
        registry.register(
            "affinity_cache_misses",
            "Affinity lookups that needed Redis",
            sm.cache_misses.clone(),
        );
        registry.register(
            "affinity_redis_calls",
            "Redis commands sent for affinity",
            sm.redis_calls.clone(),
        );
        registry.register(
            "affinity_redis_latency_seconds",
            "Total time spent in Redis commands",
            sm.redis_latency_seconds.clone(),
        );
        registry.register(
            "affinity_store_connected",
            "1 when the affinity store reaches Redis",
            sm.connected.clone(),
        );
        let rm = &m.raft;
        registry.register("raft_term", "Current Raft term", rm.term.clone());
        registry.register(
            "raft_commit_index",
            "Raft commit index",
            rm.commit_index.clone(),
        );
        registry.register(
            "raft_last_applied",
            "Last Raft log index applied",
            rm.last_applied.clone(),
        );
        registry.register(
            "raft_is_leader",
            "1 on the Raft leader",
            rm.is_leader.clone(),
        );
        registry.register(
            "raft_lease_fresh",
            "1 while the leader holds a fresh quorum lease",
            rm.lease_fresh.clone(),
        );
        registry.register(
            "raft_leader_changes",
            "Leader changes seen by this node",
            rm.leader_changes.clone(),
        );
        registry.register(
            "vip_held",
            "1 while this node holds the VIP at `address`",
            m.vip_held.clone(),
        );
        registry.register(
            "vip_transitions",
            "VIP hold/release transitions on this node",
            m.vip_transitions.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Log lines (diagnostics and access log) dropped because their sink did not keep up",
            m.log_lines_dropped.clone(),
        );
        m.bgp.register(&mut registry);
        m.pools.register(&mut registry);
        m.discovery.register(&mut registry);
        Metrics { registry, ..m }
    }

    /// Handles for one backend, created when a config is compiled.
    pub fn backend(&self, pool: &str, backend: &str) -> BackendMetrics {
        let class = |c: &str| {
            self.requests
                .get_or_create(&RequestLabels {
                    pool: pool.to_string(),
                    backend: backend.to_string(),
                    class: c.to_string(),
                })
                .clone()
        };
        BackendMetrics {
            by_class: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            grpc: crate::grpc_metrics::GrpcCodes::new(self.grpc_responses.clone(), pool, backend),
            duration: crate::latency::Latency::new(
                self.duration
                    .get_or_create(&PoolLabels {
                        pool: pool.to_string(),
                    })
                    .clone(),
                self.backend_latency
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(BackendLabels {
                        pool: pool.to_string(),
                        backend: backend.to_string(),
                    })
                    .or_default()
                    .clone(),
            ),
        }
    }

    /// Copies the affinity store's counters (they only grow) into the registry.
    pub fn observe_session(&self, now: &fulcrum_session::StoreMetrics, connected: bool) {
        let sm = &self.session;
        let mut last = sm.last.lock().unwrap_or_else(|p| p.into_inner());
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        sm.redis_errors
            .inc_by(delta(now.redis_errors, last.redis_errors));
        sm.fallbacks.inc_by(delta(now.fallbacks, last.fallbacks));
        sm.cache_hits.inc_by(delta(now.cache_hits, last.cache_hits));
        sm.cache_misses
            .inc_by(delta(now.cache_misses, last.cache_misses));
        sm.redis_calls
            .inc_by(delta(now.redis_calls, last.redis_calls));
        let micros = delta(now.redis_latency_sum_micros, last.redis_latency_sum_micros);
        sm.redis_latency_seconds.inc_by(micros as f64 / 1e6);
        sm.connected.set(i64::from(connected));
        *last = *now;
    }

    /// Mirrors the VIP state: `(address, held)` for each VIP of this node.
    pub fn observe_vip(&self, held: &[(String, bool)], transitions: u64) {
        for (address, h) in held {
            let labels = VipLabels {
                address: address.clone(),
            };
            self.vip_held.get_or_create(&labels).set(i64::from(*h));
        }
        let before = self
            .last_vip_transitions
            .swap(transitions, std::sync::atomic::Ordering::Relaxed);
        self.vip_transitions
            .inc_by(transitions.saturating_sub(before));
    }

    /// Mirrors the count of log lines dropped so far (it only grows).
    pub fn observe_log_drops(&self, dropped: u64) {
        let before = self
            .last_log_lines_dropped
            .swap(dropped, std::sync::atomic::Ordering::Relaxed);
        self.log_lines_dropped
            .inc_by(dropped.saturating_sub(before));
    }

    /// Mirrors the Raft status into gauges.
    pub fn observe_raft(&self, s: &fulcrum_raft::RaftStatus) {
        let rm = &self.raft;
        rm.term.set(s.term as i64);
        rm.commit_index.set(s.commit_index as i64);
        rm.last_applied.set(s.last_applied as i64);
        rm.is_leader
            .set(i64::from(s.role == fulcrum_raft::Role::Leader));
        rm.lease_fresh.set(i64::from(s.lease_fresh));
        let before = rm
            .last_leader_changes
            .swap(s.leader_changes, std::sync::atomic::Ordering::Relaxed);
        rm.leader_changes
            .inc_by(s.leader_changes.saturating_sub(before));
    }

    /// A retry refused by `pool`'s retry budget.
    pub fn retry_budget_exhausted(&self, pool: &str) {
        self.retry_budget_exhausted
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .inc();
    }

    pub fn local_response(&self, what: &str) {
        self.local_responses
            .get_or_create(&ResultLabels {
                result: what.to_string(),
            })
            .inc();
    }

    /// Prometheus text exposition of everything registered.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// 0.5 ms .. ~16 s, doubling.
fn new_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

#[cfg(test)]
mod tests {
    #[test]
    fn latency_buckets_read_back_cumulative_counts() {
        let m = super::Metrics::new();
        let b = m.backend("app", "10.0.0.1:80");
        b.duration.observe(0.0004);
        b.duration.observe(0.003);
        b.record_status(200);
        b.record_status(503);
        let buckets = b.latency_buckets();
        assert_eq!(buckets.len(), 17, "16 bounds and +Inf: {buckets:?}");
        assert_eq!(buckets[0], (0.0005, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 2)));
        assert_eq!(b.counts(), [0, 1, 0, 0, 1]);
    }
}
