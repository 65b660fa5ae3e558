//! The node's recent transitions, as an operator wants them on the dashboard: leader
//! changes, this node taking or losing the VIP, backends turning unhealthy or healthy
//! (the effective verdict this node routes by), and config versions it starts running.
//!
//! A watcher samples the node's own state every `SAMPLE` and records what changed, with
//! the wall-clock time, in a ring of the last `KEEP` events; `/status` lists them under
//! `events`, and the dashboard merges the members' lists. Sampling (rather than hooks in
//! Raft, the VIP guard and the health checker) keeps those paths untouched; a change that
//! flips and flips back within one sample is not recorded.

use crate::control::cluster::Cluster;
use crate::dataplane::DataPlane;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// How often the node's state is sampled.
const SAMPLE: Duration = Duration::from_millis(100);
/// Events kept (the oldest go first).
pub const KEEP: usize = 50;

/// One transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub at: SystemTime,
    pub what: String,
}

/// The ring of recent events.
#[derive(Debug, Default)]
pub struct Events {
    ring: Mutex<VecDeque<Event>>,
}

impl Events {
    pub fn record(&self, what: String) {
        tracing::info!(event = %what, "transition");
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(Event {
            at: SystemTime::now(),
            what,
        });
    }

    /// Newest first: `[{"at": RFC 3339 with milliseconds, "what": text}]`.
    pub fn to_json(&self) -> Value {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        Value::Array(
            ring.iter()
                .rev()
                .map(|e| {
                    json!({
                        "at": humantime::format_rfc3339_millis(e.at).to_string(),
                        "what": e.what,
                    })
                })
                .collect(),
        )
    }
}

/// What is compared between two samples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sample {
    pub leader: Option<u64>,
    pub term: u64,
    pub vip_held: bool,
    pub version: u64,
    /// `(pool, backend)` -> effective healthy.
    pub backends: BTreeMap<(String, String), bool>,
}

/// The transitions from `before` to `now`, as text.
pub fn diff(before: &Sample, now: &Sample) -> Vec<String> {
    let mut out = Vec::new();
    if before.leader != now.leader {
        let name = |l: Option<u64>| l.map_or("none".to_string(), |l| format!("node {l}"));
        out.push(format!(
            "leader {} -> {} (term {})",
            name(before.leader),
            name(now.leader),
            now.term
        ));
    }
    if before.vip_held != now.vip_held {
        out.push(if now.vip_held {
            "took the VIP".to_string()
        } else {
            "released the VIP".to_string()
        });
    }
    if before.version != now.version {
        out.push(format!("runs config version {}", now.version));
    }
    for (key, healthy) in &now.backends {
        if let Some(was) = before.backends.get(key) {
            if was != healthy {
                out.push(format!(
                    "backend {} (pool {}) {}",
                    key.1,
                    key.0,
                    if *healthy { "healthy" } else { "UNHEALTHY" }
                ));
            }
        }
    }
    out
}

/// This node's state now: `me` leads alone without a cluster.
pub fn sample(
    cluster: Option<&Arc<Cluster>>,
    me: u64,
    dp: &DataPlane,
    vip_held: bool,
    version: u64,
) -> Sample {
    let (leader, term) = match cluster {
        Some(c) => {
            let s = c.status();
            (s.leader_id, s.term)
        }
        None => (Some(me), 0),
    };
    let snapshot = dp.snapshot();
    let mut backends = BTreeMap::new();
    for pool in snapshot.pools.values() {
        for b in &pool.backends {
            backends.insert((pool.name.clone(), b.id.clone()), b.state.healthy());
        }
    }
    Sample {
        leader,
        term,
        vip_held,
        version,
        backends,
    }
}

/// Takes a `sample` every `SAMPLE` until `stop`, recording what changed into `events`.
/// The first sample is compared with a node that knows nothing yet (no leader, no VIP,
/// version 0), so a leader elected or a VIP taken before the watcher first runs is
/// recorded all the same.
pub async fn watch(sample: impl Fn() -> Sample, events: Arc<Events>, stop: CancellationToken) {
    let mut before = Sample::default();
    loop {
        let now = sample();
        for what in diff(&before, &now) {
            events.record(what);
        }
        before = now;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(SAMPLE) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_named() {
        let key = ("app".to_string(), "10.0.0.1:80".to_string());
        let before = Sample {
            leader: Some(1),
            term: 3,
            vip_held: true,
            version: 2,
            backends: [(key.clone(), true)].into(),
        };
        let now = Sample {
            leader: Some(2),
            term: 4,
            vip_held: false,
            version: 3,
            backends: [(key, false)].into(),
        };
        assert_eq!(
            diff(&before, &now),
            vec![
                "leader node 1 -> node 2 (term 4)",
                "released the VIP",
                "runs config version 3",
                "backend 10.0.0.1:80 (pool app) UNHEALTHY",
            ]
        );
        assert!(diff(&now, &now).is_empty());
    }

    #[test]
    fn the_ring_keeps_the_newest() {
        let events = Events::default();
        for i in 0..KEEP + 5 {
            events.record(format!("e{i}"));
        }
        let list = events.to_json();
        let list = list.as_array().expect("array");
        assert_eq!(list.len(), KEEP);
        assert_eq!(list[0]["what"], format!("e{}", KEEP + 4));
        assert_eq!(list[KEEP - 1]["what"], "e5");
    }
}
