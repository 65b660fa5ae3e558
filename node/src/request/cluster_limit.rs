//! The cluster-wide count of a route's rate limit (`rate_limit.scope = "cluster"`).
//!
//! All nodes count each key against one total per fixed window (`burst` requests per
//! `burst / requests_per_second`, windows numbered from the Unix epoch so every node
//! agrees), kept in the `[session]` Redis. A node does not ask Redis for every request:
//! it takes `chunk` requests' worth at once (`AffinityStore::take_from_window`) and
//! admits from that local budget until it is spent; Redis's total says how much of a
//! take was really left, and once a take comes back short the key is refused for the
//! rest of the window without asking again. So the nodes together never admit more than
//! `burst` per window (a take a node does not use up is lost, never lent twice); the
//! fixed windows let up to twice `burst` through across one window boundary.
//!
//! When Redis cannot answer (down, slow past the session timeout, breaker open), the
//! request is counted by the node's own limiter instead (`rate_limit`), and the fallback
//! is counted in `fulcrum_rate_limit_fallbacks_total`: the data plane never stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fulcrum_config::RateLimit;
use fulcrum_session::AffinityStore;
use prometheus_client::metrics::counter::Counter;

/// Keys with a budget in the current windows before old windows are swept.
const MAX_KEYS: usize = 65_536;

/// What a cluster-wide limit needs from the node: the shared Redis and the fallback
/// counter.
#[derive(Clone)]
pub struct ClusterLimits {
    pub store: Arc<AffinityStore>,
    pub fallbacks: Counter,
}

/// One key's share of the current window on this node.
#[derive(Debug, Clone, Copy, Default)]
struct Budget {
    window: u64,
    granted: u64,
    used: u64,
    /// Redis said the window's total is spent: refuse without asking until it ends.
    spent: bool,
}

/// The answer of the local budget before (or without) Redis.
enum Local {
    Admit,
    Refuse(Duration),
    Ask(u64),
}

/// One route's cluster-wide count.
pub struct ClusterCount {
    limits: ClusterLimits,
    /// Names the route in Redis keys, the same on every node.
    scope: String,
    limit: u64,
    window: Duration,
    chunk: u64,
    budgets: Mutex<HashMap<Vec<u8>, Budget>>,
}

impl std::fmt::Debug for ClusterCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCount")
            .field("scope", &self.scope)
            .field("limit", &self.limit)
            .field("window", &self.window)
            .field("chunk", &self.chunk)
            .finish()
    }
}

/// What `admit` says: admitted, refused for this long, or Redis could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    Refuse(Duration),
    Unavailable,
}

impl ClusterCount {
    pub fn new(limit: &RateLimit, scope: String, limits: ClusterLimits) -> ClusterCount {
        let burst = u64::from(limit.burst());
        ClusterCount {
            limits,
            scope,
            limit: burst,
            window: limit.window(),
            // A tenth of the window's total at a time (1 to 100): few Redis calls, and
            // little left unused on a node when the traffic moves elsewhere.
            chunk: (burst / 10).clamp(1, 100),
            budgets: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one request of `key` against the cluster's total.
    pub async fn admit(&self, key: &[u8]) -> Verdict {
        let (window, left) = self.now();
        let ask = match self.local(key, window, left) {
            Local::Admit => return Verdict::Admit,
            Local::Refuse(wait) => return Verdict::Refuse(wait),
            Local::Ask(n) => n,
        };
        let taken = self
            .limits
            .store
            .take_from_window(&self.scope, key, window, self.window, ask)
            .await;
        let Some(total) = taken else {
            self.limits.fallbacks.inc();
            return Verdict::Unavailable;
        };
        // What was left of the window's total before this take, up to the take.
        let got = self.limit.saturating_sub(total - total.min(ask)).min(ask);
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        let b = budget_in(&mut budgets, key, window);
        b.granted += got;
        b.spent |= got < ask;
        if b.used < b.granted {
            b.used += 1;
            Verdict::Admit
        } else {
            Verdict::Refuse(left)
        }
    }

    /// The local budget's answer for `key` in `window` (`left` of it to run).
    fn local(&self, key: &[u8], window: u64, left: Duration) -> Local {
        let mut budgets = self.budgets.lock().unwrap_or_else(|p| p.into_inner());
        if budgets.len() >= MAX_KEYS && !budgets.contains_key(key) {
            budgets.retain(|_, b| b.window >= window);
        }
        let b = budget_in(&mut budgets, key, window);
        if b.used < b.granted {
            b.used += 1;
            return Local::Admit;
        }
        if b.spent {
            return Local::Refuse(left);
        }
        Local::Ask(self.chunk)
    }

    /// The current window's number and the time left in it (wall clock: the same
    /// windows on every node, as far as their clocks agree).
    fn now(&self) -> (u64, Duration) {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let length = self.window.as_nanos().max(1);
        let window = (since / length).min(u64::MAX as u128) as u64;
        let left = length - since % length;
        (
            window,
            Duration::from_nanos(left.min(u64::MAX as u128) as u64),
        )
    }
}

/// `key`'s budget in `window`, started empty when it is new or from an older window. The
/// key is copied only the first time it is seen.
fn budget_in<'a>(
    budgets: &'a mut HashMap<Vec<u8>, Budget>,
    key: &[u8],
    window: u64,
) -> &'a mut Budget {
    if !budgets.contains_key(key) {
        budgets.insert(key.to_vec(), Budget::default());
    }
    let b = budgets.get_mut(key).expect("inserted above");
    if b.window != window {
        *b = Budget {
            window,
            ..Budget::default()
        };
    }
    b
}
