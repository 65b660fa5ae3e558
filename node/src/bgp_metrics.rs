//! `/metrics` for BGP mode: whether this node announces, each prefix, each BIRD session.

use crate::control::bgp::BgpView;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PrefixLabels {
    pub prefix: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SessionLabels {
    pub session: String,
    pub proto: String,
}

/// The gauges; set from a [`BgpView`] just before a scrape.
#[derive(Default)]
pub struct BgpMetrics {
    announced: Gauge,
    prefix: Family<PrefixLabels, Gauge>,
    session_up: Family<SessionLabels, Gauge>,
    transitions: Counter,
    last_transitions: AtomicU64,
}

impl BgpMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "bgp_announced",
            "1 while this node announces its service prefixes through BIRD",
            self.announced.clone(),
        );
        registry.register(
            "bgp_prefix_announced",
            "1 for each service prefix this node announces",
            self.prefix.clone(),
        );
        registry.register(
            "bgp_session_up",
            "1 for each BIRD BGP session that is Established (BFD: up)",
            self.session_up.clone(),
        );
        registry.register(
            "bgp_transitions",
            "Announce/withdraw transitions on this node",
            self.transitions.clone(),
        );
    }

    pub fn observe(&self, v: &BgpView) {
        self.announced.set(i64::from(v.announced));
        for p in &v.prefixes {
            self.prefix
                .get_or_create(&PrefixLabels { prefix: p.clone() })
                .set(i64::from(v.announced));
        }
        self.session_up.clear();
        for s in &v.sessions {
            let labels = SessionLabels {
                session: s.name.clone(),
                proto: s.proto.clone(),
            };
            self.session_up
                .get_or_create(&labels)
                .set(i64::from(s.established));
        }
        let before = self.last_transitions.swap(v.transitions, Ordering::Relaxed);
        self.transitions
            .inc_by(v.transitions.saturating_sub(before));
    }
}
