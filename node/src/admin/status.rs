//! The `/status` and `/members` documents, and gauges refreshed at scrape time.

use crate::app::Node;
use crate::metrics::BackendLabels;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// `GET /status`: the fields DESIGN.md promises, plus a little more.
pub fn status(node: &Node) -> Value {
    let snapshot = node.dp.snapshot();
    let mut names: Vec<&String> = snapshot.pools.keys().collect();
    names.sort();
    let pools: Vec<Value> = names
        .into_iter()
        .filter_map(|name| snapshot.pools.get(name))
        .map(|pool| {
            let backends: Vec<Value> = pool
                .backends
                .iter()
                .map(|b| {
                    json!({
                        "addr": b.id,
                        "healthy": b.state.healthy(),
                        "drained": b.state.drained(),
                        "ejected": b.state.ejected(),
                        "active_connections": b.state.load.connections.load(Ordering::Relaxed),
                        "in_flight": b.state.load.in_flight.load(Ordering::Relaxed),
                        "weight": b.weight,
                    })
                })
                .collect();
            json!({ "name": pool.name, "affinity": pool.affinity_mode.as_str(), "backends": backends })
        })
        .collect();
    json!({
        "node_id": node.local.id,
        "role": "leader",
        "leader_id": node.local.id,
        "term": 0,
        "config_version": snapshot.version,
        "vip_held": false,
        "session_store": "disabled",
        "pools": pools,
    })
}

/// `GET /members`: a node without `[cluster]` is a cluster of one.
pub fn members(node: &Node) -> Value {
    json!([{ "id": node.local.id, "admin": node.local.admin.to_string(), "voter": true, "leader": true }])
}

/// Mirrors live backend state into gauges just before a scrape.
pub fn refresh_gauges(node: &Node) {
    let snapshot = node.dp.snapshot();
    for pool in snapshot.pools.values() {
        for b in &pool.backends {
            let labels = BackendLabels {
                pool: pool.name.clone(),
                backend: b.id.clone(),
            };
            node.dp
                .metrics
                .backend_healthy
                .get_or_create(&labels)
                .set(i64::from(b.state.healthy()));
            node.dp
                .metrics
                .backend_in_flight
                .get_or_create(&labels)
                .set(b.state.load.in_flight() as i64);
        }
    }
}
