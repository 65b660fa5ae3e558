//! The cluster as every node sees itself: each member's own `/status`, gathered by the
//! node that was asked (`GET /cluster`, `ctl status`, `ctl apply`'s wait, the dashboard).
//!
//! Each member reports what only it can know (the config version it runs, the error of
//! a committed version it could not apply, whether its kernel holds the VIP), so the
//! view is gathered rather than replicated: a node that cannot apply a config may well be
//! one whose state machine is fine. A member that does not answer within
//! `PEER_TIMEOUT` is listed as unreachable with the reason, never left out, and with
//! what it last reported through Raft about its config (`control::follow` commits it).

use crate::control::cluster::Cluster;
use fulcrum_config::NodeSection;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// How long one member's `/status` may take before it is listed as unreachable.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(800);

/// A member to ask: its id, admin address, whether it votes and leads (per membership).
#[derive(Debug, Clone)]
struct Target {
    id: u64,
    admin: String,
    voter: bool,
}

/// `GET /cluster`: `{via, leader_id, config_version_committed, divergent, vip_holders,
/// nodes: [{id, admin, voter, reachable, error, status, reported}]}`, nodes sorted by id;
/// `reported` is what the node last said through Raft about the config it runs
/// (`{config_version_running, config_apply_error}`, null before its first report).
/// `own` is this node's `/status`, which is not fetched over the network.
pub async fn gather(local: &NodeSection, cluster: Option<&Arc<Cluster>>, own: Value) -> Value {
    let targets = targets(local, cluster).await;
    let mut asks = JoinSet::new();
    for t in targets.iter().filter(|t| t.id != local.id) {
        let t = t.clone();
        asks.spawn(async move {
            let answer = ask(&t.admin).await;
            (t.id, answer)
        });
    }
    let mut answers = std::collections::BTreeMap::new();
    while let Some(done) = asks.join_next().await {
        if let Ok((id, answer)) = done {
            answers.insert(id, answer);
        }
    }
    let committed = own["config_version_committed"].as_u64().unwrap_or(0);
    let reports = cluster
        .map(|c| c.raft.cluster_state().borrow().applied.clone())
        .unwrap_or_default();
    let mut nodes = Vec::new();
    for t in &targets {
        let answer = if t.id == local.id {
            Ok(own.clone())
        } else {
            answers
                .remove(&t.id)
                .unwrap_or_else(|| Err("status task failed".to_string()))
        };
        let reported = reports.get(&t.id).map_or(Value::Null, reported);
        nodes.push(match answer {
            Ok(status) => json!({
                "id": t.id, "admin": t.admin, "voter": t.voter,
                "reachable": true, "error": null, "status": status, "reported": reported,
            }),
            Err(error) => json!({
                "id": t.id, "admin": t.admin, "voter": t.voter,
                "reachable": false, "error": error, "status": null, "reported": reported,
            }),
        });
    }
    // A node that does not answer is judged by its last report through Raft.
    let running = |n: &Value| {
        let own_word = if n["reachable"] == true {
            &n["status"]
        } else {
            &n["reported"]
        };
        own_word["config_version_running"].as_u64()
    };
    let divergent: Vec<u64> = nodes
        .iter()
        .filter(|n| running(n).is_some_and(|r| r != committed))
        .filter_map(|n| n["id"].as_u64())
        .collect();
    let vip_holders: Vec<u64> = nodes
        .iter()
        .filter(|n| n["status"]["vip_held"] == true)
        .filter_map(|n| n["id"].as_u64())
        .collect();
    tracing::trace!(nodes = nodes.len(), ?divergent, "cluster view gathered");
    json!({
        "via": local.id,
        "leader_id": own["leader_id"],
        "config_version_committed": committed,
        "divergent": divergent,
        "vip_holders": vip_holders,
        "nodes": nodes,
    })
}

/// A node's report through Raft in the shape of its `/status` fields.
fn reported(r: &fulcrum_raft::ApplyReport) -> Value {
    let error = if r.failed_version > r.running {
        json!({ "version": r.failed_version, "reason": r.reason, "retrying": r.retrying })
    } else {
        Value::Null
    };
    json!({ "config_version_running": r.running, "config_apply_error": error })
}

/// The members to ask, this node included, sorted by id.
async fn targets(local: &NodeSection, cluster: Option<&Arc<Cluster>>) -> Vec<Target> {
    let me = Target {
        id: local.id,
        admin: local.admin.to_string(),
        voter: true,
    };
    let Some(cluster) = cluster else {
        return vec![me];
    };
    let mut out: Vec<Target> = cluster
        .raft
        .members()
        .await
        .into_iter()
        .map(|m| Target {
            admin: if m.id == me.id {
                me.admin.clone()
            } else {
                m.admin_addr
            },
            id: m.id,
            voter: m.voter,
        })
        .collect();
    if !out.iter().any(|t| t.id == me.id) {
        out.push(Target { voter: false, ..me });
    }
    out.sort_by_key(|t| t.id);
    out
}

/// One member's `/status`, or why not.
pub(crate) async fn ask(admin: &str) -> Result<Value, String> {
    if admin.is_empty() {
        return Err("admin address not registered yet".to_string());
    }
    let call = crate::ctl::call(admin, http::Method::GET, "/status", None, None);
    match tokio::time::timeout(PEER_TIMEOUT, call).await {
        Err(_) => Err(format!("no answer within {PEER_TIMEOUT:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Ok(Ok((status, _))) if !status.is_success() => Err(format!("/status answered {status}")),
        Ok(Ok((_, body))) => {
            serde_json::from_str(&body).map_err(|e| format!("/status is not JSON: {e}"))
        }
    }
}
