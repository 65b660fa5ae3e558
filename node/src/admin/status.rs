//! The `/status` and `/members` documents, and gauges refreshed at scrape time.

use crate::app::Node;
use crate::control::vip_agree::VipSetting;
use crate::metrics::BackendLabels;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;

/// `GET /status`: the fields DESIGN.md promises, plus a little more.
/// `config_version` is the version running (contract), as is `config_version_running`;
/// `config_version_committed` is Raft's, and `config_apply_error` says why they differ.
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
                    let observers = observers(node, &pool.name, &b.id);
                    json!({
                        "addr": b.id,
                        "healthy": b.state.healthy(),
                        "observers": observers,
                        "drained": b.state.drained(),
                        "ejected": b.state.ejected(),
                        "active_connections": b.state.load.connections.load(Ordering::Relaxed),
                        "in_flight": b.state.load.in_flight.load(Ordering::Relaxed),
                        "weight": b.weight,
                        "responses": responses(b.metrics.counts()),
                        "latency_buckets": latency_json(&b.metrics.duration.backend_buckets()),
                    })
                })
                .collect();
            let latency = pool
                .backends
                .first()
                .map(|b| latency_json(&b.metrics.latency_buckets()))
                .unwrap_or(Value::Null);
            json!({
                "name": pool.name,
                "affinity": pool.affinity_mode.as_str(),
                "panic": {
                    "now": pool.in_panic(),
                    "picks": pool.panic_picks.load(Ordering::Relaxed),
                },
                "backends": backends,
                "latency_buckets": latency,
                "discovery": discovery(node, &snapshot.config, &pool.name),
            })
        })
        .collect();
    let (role, leader_id, term, commit, applied, lease, lease_left) = match node.cluster() {
        Some(c) => {
            let s = c.status();
            (
                s.role.as_str().to_string(),
                json!(s.leader_id),
                s.term,
                s.commit_index,
                s.last_applied,
                s.lease_fresh,
                json!(s.lease_left_ms),
            )
        }
        None => (
            "leader".to_string(),
            json!(node.local.id),
            0,
            0,
            0,
            true,
            Value::Null,
        ),
    };
    json!({
        "node_id": node.local.id,
        "role": role,
        "leader_id": leader_id,
        "term": term,
        "commit_index": commit,
        "last_applied": applied,
        "lease_fresh": lease,
        "lease_left_ms": lease_left,
        "admin": node.local.admin.to_string(),
        "clustered": node.cluster().is_some(),
        "node_drained": node.cluster().is_some_and(|c| c.raft.drained()),
        "config_version": snapshot.version,
        "config_version_running": snapshot.version,
        "config_version_committed": committed_version(node, snapshot.version),
        "config_apply_error": apply_error(node),
        "vip_held": node.vip.get().is_some_and(|v| v.held()),
        "vip": VipSetting::to_json(VipSetting::of(&snapshot.config).as_ref()),
        "vips": spread_vips(node),
        "bgp": node.bgp.get().map(|b| serde_json::to_value(b.view()).unwrap_or(Value::Null)),
        "uptime_ms": crate::control::vip_agree::uptime_ms(),
        "session_store": session_state(node),
        "affinity": affinity(node),
        "events": node.events.to_json(),
        "splits": splits(node),
        "pools": pools,
    })
}

/// The split routes, the weights they run and their shift (`control::shift::view`).
fn splits(node: &Node) -> Value {
    let state = node
        .cluster()
        .map(|c| c.raft.cluster_state().borrow().clone());
    crate::control::shift::view(&node.dp, state.as_deref())
}

/// What each node last reported about a backend: `{"1": true, "2": false}`.
fn observers(node: &Node, pool: &str, backend: &str) -> Value {
    let Some(cluster) = node.cluster() else {
        return json!({ node.local.id.to_string(): node.dp.registry.find(pool, backend).map(|s| s.active_healthy()) });
    };
    let map: serde_json::Map<String, Value> = cluster
        .observations(pool, backend)
        .into_iter()
        .map(|(id, healthy)| (id.to_string(), Value::Bool(healthy)))
        .collect();
    Value::Object(map)
}

fn committed_version(node: &Node, running: u64) -> u64 {
    node.cluster().map_or(running, |c| c.committed_version())
}

/// `{version, reason, since, attempts, retrying}` of the committed version this node
/// could not apply, or null.
fn apply_error(node: &Node) -> Value {
    let Some(failure) = node.applier.failure() else {
        return Value::Null;
    };
    json!({
        "version": failure.version,
        "reason": failure.reason,
        "since": humantime::format_rfc3339_seconds(failure.since).to_string(),
        "attempts": failure.attempts,
        "retrying": failure.retrying,
    })
}

/// Responses by status class: `{"1xx": n, ..., "5xx": n}`.
fn responses(counts: [u64; 5]) -> Value {
    let mut map = serde_json::Map::new();
    for (i, n) in counts.iter().enumerate() {
        map.insert(format!("{}xx", i + 1), json!(n));
    }
    Value::Object(map)
}

/// Cumulative `[[upper_bound_seconds, count], ...]`; `+Inf` is written as null.
fn latency_json(buckets: &[(f64, u64)]) -> Value {
    Value::Array(
        buckets
            .iter()
            .map(|(le, n)| {
                json!([
                    if le.is_finite() {
                        json!(le)
                    } else {
                        Value::Null
                    },
                    n
                ])
            })
            .collect(),
    )
}

/// The affinity store's counters (they only grow), or null without `[session]`.
fn affinity(node: &Node) -> Value {
    let Some(store) = node.dp.snapshot().sessions.clone() else {
        return Value::Null;
    };
    let m = store.metrics();
    json!({
        "cache_hits": m.cache_hits,
        "cache_misses": m.cache_misses,
        "redis_errors": m.redis_errors,
        "fallbacks": m.fallbacks,
        "breaker_opens": m.breaker_opens,
    })
}

fn session_state(node: &Node) -> &'static str {
    match node.dp.snapshot().sessions.clone().map(|s| s.state()) {
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
    if let Some(store) = node.dp.snapshot().sessions.clone() {
        node.dp.metrics.observe_session(
            &store.metrics(),
            store.state() == fulcrum_session::StoreState::Connected,
        );
    }
    node.dp
        .metrics
        .observe_log_drops(crate::logging::dropped_lines());
    if let Some(c) = node.cluster() {
        node.dp.metrics.observe_raft(&c.status());
    }
    if let (Some(v), Some(s)) = (node.vip.get(), VipSetting::of(&node.dp.snapshot().config)) {
        let address = s
            .address
            .split('/')
            .next()
            .unwrap_or(&s.address)
            .to_string();
        node.dp
            .metrics
            .observe_vip(&[(address, v.held())], v.transitions());
    }
    if let Some(s) = node.spread.get() {
        node.dp.metrics.observe_vip(&s.held(), s.transitions());
    }
    if let Some(b) = node.bgp.get() {
        node.dp.metrics.bgp.observe(&b.view());
    }
    let snapshot = node.dp.snapshot();
    let config = &node.dp.metrics.config;
    config.version_running.set(snapshot.version as i64);
    config
        .version_committed
        .set(committed_version(node, snapshot.version) as i64);
    for (pool, set) in node.dp.discovered() {
        node.dp.metrics.discovery.observe(&pool, &set);
    }
    for pool in snapshot.pools.values() {
        let load = crate::pool_load::PoolLoad::of(pool);
        let (in_flight, queued) = (load.in_flight, load.queued);
        (node.dp.metrics.pools).observe(&pool.name, in_flight, queued, load.saturation());
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

/// A `discover` pool's source and the set this node runs: `error` is why the last lookup
/// failed (the set is then the last good one), `""` when it worked. Null for other pools.
fn discovery(node: &Node, config: &fulcrum_config::Config, pool: &str) -> Value {
    let Some(d) = (config.pool.iter())
        .find(|p| p.name == pool)
        .and_then(|p| p.discover.as_ref())
    else {
        return Value::Null;
    };
    let set = node.dp.discovered().remove(pool).unwrap_or_default();
    let draining: Vec<&String> = (set.members.iter())
        .filter(|(_, m)| m.draining())
        .map(|(a, _)| a)
        .collect();
    json!({
        "dns": d.dns,
        "type": d.kind,
        "resolvers": d.resolvers,
        "members": set.members.len(),
        "draining": draining,
        "error": set.error,
    })
}

/// `[[vip]]`: every address, its committed owner, and whether this node holds it now.
fn spread_vips(node: &Node) -> Value {
    let (Some(spread), Some(cluster)) = (node.spread.get(), node.cluster()) else {
        return node.spread.get().map_or(Value::Null, |s| {
            serde_json::to_value(s.view(&Default::default())).unwrap_or(Value::Null)
        });
    };
    let assignment = cluster.raft.cluster_state().borrow().vip_assignment.clone();
    serde_json::to_value(spread.view(&assignment)).unwrap_or(Value::Null)
}
