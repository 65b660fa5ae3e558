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
    let (role, leader_id, term, commit, applied, lease) = match node.cluster() {
        Some(c) => {
            let s = c.status();
            (
                s.role.as_str().to_string(),
                json!(s.leader_id),
                s.term,
                s.commit_index,
                s.last_applied,
                s.lease_fresh,
            )
        }
        None => ("leader".to_string(), json!(node.local.id), 0, 0, 0, true),
    };
    json!({
        "node_id": node.local.id,
        "role": role,
        "leader_id": leader_id,
        "term": term,
        "commit_index": commit,
        "last_applied": applied,
        "lease_fresh": lease,
        "clustered": node.cluster().is_some(),
        "config_version": snapshot.version,
        "vip_held": node.vip.get().is_some_and(|v| v.held()),
        "session_store": session_state(node),
        "pools": pools,
    })
}

fn session_state(node: &Node) -> &'static str {
    match node.dp.sessions().map(|s| s.state()) {
        None | Some(fulcrum_session::StoreState::Disabled) => "disabled",
        Some(fulcrum_session::StoreState::Connected) => "connected",
        Some(fulcrum_session::StoreState::Degraded) => "degraded",
    }
}

/// `GET /members`: a node without `[cluster]` is a cluster of one.
pub async fn members(node: &Node) -> Value {
    let Some(cluster) = node.cluster() else {
        return json!([{ "id": node.local.id, "admin": node.local.admin.to_string(), "voter": true, "leader": true }]);
    };
    let members = cluster.raft.members().await;
    Value::Array(
        members
            .into_iter()
            .map(|m| json!({ "id": m.id, "raft": m.raft_addr, "admin": m.admin_addr, "voter": m.voter, "leader": m.is_leader }))
            .collect(),
    )
}

/// Mirrors live backend state into gauges just before a scrape.
pub fn refresh_gauges(node: &Node) {
    if let Some(store) = node.dp.sessions() {
        node.dp.metrics.observe_session(
            &store.metrics(),
            store.state() == fulcrum_session::StoreState::Connected,
        );
    }
    if let Some(c) = node.cluster() {
        node.dp.metrics.observe_raft(&c.status());
    }
    if let Some(v) = node.vip.get() {
        node.dp.metrics.observe_vip(v.held(), v.transitions());
    }
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
