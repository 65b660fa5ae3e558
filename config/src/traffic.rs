//! Traffic-management settings of a pool that are more than one value:
//! `retry_budget = { percent = 20, min_per_second = 3, window = "10s" }`.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Retries a pool allows, as a share of its requests over a sliding window, with a floor
/// so a quiet pool can still retry: retries in the window stay at or below
/// `max(percent% of the requests in the window, min_per_second × window seconds)`.
/// Beyond it a failed attempt is not retried (counted in
/// `fulcrum_retry_budget_exhausted_total`), so a sick pool is not hit by a retry storm.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries allowed per 100 requests (0 to 100).
    #[serde(default = "default_percent")]
    pub percent: f64,
    /// Retries allowed per second whatever the traffic.
    #[serde(default = "default_min_per_second")]
    pub min_per_second: u32,
    /// The window requests and retries are counted over (1 s to 60 s, whole seconds).
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
}

/// `protocol = "h2"` on a pool: HTTP/2 to its backends, prior knowledge (h2c) on plain
/// connections and ALPN `h2` over `tls`. Requests are streams on one shared connection
/// per backend, balanced per request (what gRPC needs); trailers pass both ways.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackendProtocol {
    /// HTTP/1.1 over keep-alive connections (the default).
    #[default]
    Http1,
    H2,
}

impl BackendProtocol {
    pub fn is_http1(&self) -> bool {
        *self == BackendProtocol::Http1
    }
}

/// Where a route's rate limit is counted. `cluster`: `burst` requests per key in each
/// fixed window of `burst / requests_per_second` seconds, counted in Redis for all nodes
/// together (each node takes a few at a time, so not every request asks Redis); while
/// Redis cannot answer, each node falls back to the limit on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RateScope {
    #[default]
    Node,
    Cluster,
}

impl RateScope {
    pub fn is_node(&self) -> bool {
        *self == RateScope::Node
    }
}

/// The longest window a retry budget may count over (one counter per second).
pub const MAX_BUDGET_WINDOW_SECS: u64 = 60;

fn default_percent() -> f64 {
    20.0
}
fn default_min_per_second() -> u32 {
    3
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// `outlier = { consecutive_5xx = 5, consecutive_gateway_errors = 5, base_ejection = "30s",
/// max_ejection = "300s", max_ejection_percent = 50 }` on a pool: passive ejection of a
/// backend that keeps failing its requests, on top of the ejection after connect failures.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    /// Consecutive 5xx responses that eject a backend (0: not counted).
    #[serde(default = "default_consecutive")]
    pub consecutive_5xx: u32,
    /// Consecutive gateway errors (502, 503, 504 answers and tries that timed out) that
    /// eject a backend (0: not counted).
    #[serde(default = "default_consecutive")]
    pub consecutive_gateway_errors: u32,
    /// An ejection lasts this long times the backend's recent ejections.
    #[serde(default = "default_base_ejection", with = "humantime_serde")]
    pub base_ejection: Duration,
    /// The longest an ejection lasts.
    #[serde(default = "default_max_ejection", with = "humantime_serde")]
    pub max_ejection: Duration,
    /// Share of the pool's backends that may be ejected at once (at least one).
    #[serde(default = "default_max_ejection_percent")]
    pub max_ejection_percent: u32,
}

fn default_consecutive() -> u32 {
    5
}
fn default_base_ejection() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ejection() -> Duration {
    Duration::from_secs(300)
}
fn default_max_ejection_percent() -> u32 {
    50
}
