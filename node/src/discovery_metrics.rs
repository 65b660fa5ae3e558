//! `/metrics` for discovery (issue 25, `control::discovery`): lookups by result (counted on the node that resolves, the
//! leader), and per pool the discovered backends by state and whether its source is
//! failing (set at scrape time from the set this node runs, so every node shows them).

use fulcrum_raft::DiscoveredSet;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub pool: String,
    /// `ok`, `empty` (no records: the last set stays) or `failed`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemberLabels {
    pub pool: String,
    /// `active` or `draining`.
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Default)]
pub struct DiscoveryMetrics {
    lookups: Family<LookupLabels, Counter>,
    members: Family<MemberLabels, Gauge>,
    failing: Family<PoolLabels, Gauge>,
}

impl DiscoveryMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "discovery_lookups",
            "Discovery lookups of a pool's source by result (on the node that resolves)",
            self.lookups.clone(),
        );
        registry.register(
            "discovery_backends",
            "Discovered backends of a pool by state (active, draining)",
            self.members.clone(),
        );
        registry.register(
            "discovery_failing",
            "1 while a pool's discovery source fails and its last good set is kept",
            self.failing.clone(),
        );
    }

    pub fn lookup(&self, pool: &str, result: &str) {
        let labels = LookupLabels {
            pool: pool.to_string(),
            result: result.to_string(),
        };
        self.lookups.get_or_create(&labels).inc();
    }

    /// Sets the gauges of `pool` from the set this node runs.
    pub fn observe(&self, pool: &str, set: &DiscoveredSet) {
        let draining = set.members.values().filter(|m| m.draining()).count();
        for (state, n) in [
            ("active", set.members.len() - draining),
            ("draining", draining),
        ] {
            let labels = MemberLabels {
                pool: pool.to_string(),
                state: state.to_string(),
            };
            self.members.get_or_create(&labels).set(n as i64);
        }
        let labels = PoolLabels {
            pool: pool.to_string(),
        };
        self.failing
            .get_or_create(&labels)
            .set(i64::from(!set.error.is_empty()));
    }
}
