//! Membership calls of the admin API: add a learner, promote it, remove a node.

use super::{json, param, text, AdminResponse};
use crate::app::Node;
use fulcrum_raft::PeerNode;
use http::StatusCode;

fn id_of(params: &[(String, String)]) -> Option<u64> {
    param(params, "id").and_then(|v| v.parse().ok())
}

fn outcome(result: Result<(), fulcrum_raft::ProposeError>, what: &str, id: u64) -> AdminResponse {
    match result {
        Ok(()) => json(
            StatusCode::OK,
            &serde_json::json!({ "id": id, "done": what }),
        ),
        Err(e) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{what} {id} failed: {e}\n"),
        ),
    }
}

pub async fn add(node: &Node, params: Vec<(String, String)>) -> AdminResponse {
    let Some(cluster) = node.cluster() else {
        return text(StatusCode::CONFLICT, "this node runs without [cluster]\n");
    };
    let (Some(id), Some(raft)) = (id_of(&params), param(&params, "raft")) else {
        return text(
            StatusCode::BAD_REQUEST,
            "need ?id=N&raft=HOST:PORT[&admin=HOST:PORT]\n",
        );
    };
    if raft.parse::<std::net::SocketAddr>().is_err() {
        return text(
            StatusCode::BAD_REQUEST,
            "raft must be HOST:PORT with an IP address\n",
        );
    }
    let peer = PeerNode {
        raft_addr: raft,
        admin_addr: param(&params, "admin").unwrap_or_default(),
    };
    outcome(cluster.raft.add_learner(id, peer).await, "add learner", id)
}

pub async fn promote(node: &Node, params: Vec<(String, String)>) -> AdminResponse {
    let Some(cluster) = node.cluster() else {
        return text(StatusCode::CONFLICT, "this node runs without [cluster]\n");
    };
    let Some(id) = id_of(&params) else {
        return text(StatusCode::BAD_REQUEST, "need ?id=N\n");
    };
    outcome(cluster.raft.promote(id).await, "promote", id)
}

pub async fn remove(node: &Node, params: Vec<(String, String)>) -> AdminResponse {
    let Some(cluster) = node.cluster() else {
        return text(StatusCode::CONFLICT, "this node runs without [cluster]\n");
    };
    let Some(id) = id_of(&params) else {
        return text(StatusCode::BAD_REQUEST, "need ?id=N\n");
    };
    outcome(cluster.raft.remove(id).await, "remove", id)
}
