//! `ctl apply`'s wait, like `kubectl rollout status`: after the commit, read the cluster
//! view (`GET /cluster`) until every voter runs the new version or has refused it for
//! good (a node that keeps retrying may still make it), or the wait is over; then print
//! one line per node and say which did not apply it and why. A node whose admin API
//! does not answer is judged by what it reported through Raft (`reported`).

use super::{call, CtlError};
use http::Method;
use serde_json::Value;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Pause between two reads of the cluster view.
const POLL: Duration = Duration::from_millis(200);
/// Progress is printed for waits longer than this, and then this often.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// Where one member stands with version `want`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeOutcome {
    Running,
    /// Runs an older version; the reason when the node reported one.
    Behind {
        running: u64,
        reason: Option<String>,
    },
    /// Refused for good (retrying cannot help): waiting longer changes nothing.
    Refused {
        running: u64,
        reason: String,
    },
    Unreachable(String),
}

/// One member's line.
#[derive(Debug, Clone)]
pub struct NodeLine {
    pub id: u64,
    pub admin: String,
    pub voter: bool,
    pub outcome: NodeOutcome,
}

impl NodeLine {
    pub fn render(&self, want: u64) -> String {
        let who = format!(
            "node {} ({}{})",
            self.id,
            if self.admin.is_empty() {
                "admin address not known yet"
            } else {
                &self.admin
            },
            if self.voter { "" } else { ", learner" }
        );
        match &self.outcome {
            NodeOutcome::Running => format!("{who}: running config version {want}"),
            NodeOutcome::Behind { running, reason } => format!(
                "{who}: NOT applied, still runs version {running}: {}",
                reason
                    .as_deref()
                    .unwrap_or("no error reported yet (still applying?)")
            ),
            NodeOutcome::Refused { running, reason } => {
                format!("{who}: REFUSED, still runs version {running}: {reason}")
            }
            NodeOutcome::Unreachable(e) => format!("{who}: NOT confirmed, unreachable: {e}"),
        }
    }
}

/// The members' outcomes for version `want` in a `GET /cluster` document.
pub fn outcomes(cluster: &Value, want: u64) -> Vec<NodeLine> {
    cluster["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            let outcome = if n["reachable"] == true {
                outcome(&n["status"], want)
            } else {
                let error = n["error"].as_str().unwrap_or("?");
                match outcome(&n["reported"], want) {
                    NodeOutcome::Behind { .. } => NodeOutcome::Unreachable(error.to_string()),
                    reported => reported,
                }
            };
            NodeLine {
                id: n["id"].as_u64().unwrap_or(0),
                admin: n["admin"].as_str().unwrap_or("?").to_string(),
                voter: n["voter"] != false,
                outcome,
            }
        })
        .collect()
}

/// Where a node stands by its own word: its `/status`, or its report through Raft
/// (`config_version_running`, `config_apply_error: {version, reason, retrying}`).
fn outcome(said: &Value, want: u64) -> NodeOutcome {
    let running = said["config_version_running"].as_u64().unwrap_or(0);
    if running >= want {
        return NodeOutcome::Running;
    }
    let e = &said["config_apply_error"];
    if e["version"].as_u64() < Some(want) {
        return NodeOutcome::Behind {
            running,
            reason: None,
        };
    }
    let reason = e["reason"].as_str().unwrap_or("?").to_string();
    if e["retrying"] == false {
        NodeOutcome::Refused { running, reason }
    } else {
        NodeOutcome::Behind {
            running,
            reason: Some(reason),
        }
    }
}

/// Voters that do not run `want` (yet).
pub fn pending(lines: &[NodeLine]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.voter && l.outcome != NodeOutcome::Running)
        .map(|l| l.id)
        .collect()
}

/// Voters that may still run `want`: neither running it nor refusing it for good.
pub fn undecided(lines: &[NodeLine]) -> Vec<u64> {
    lines
        .iter()
        .filter(|l| l.voter)
        .filter(|l| {
            !matches!(
                l.outcome,
                NodeOutcome::Running | NodeOutcome::Refused { .. }
            )
        })
        .map(|l| l.id)
        .collect()
}

/// Waits up to `within` until every voter runs `want` or refused it for good; returns
/// the last lines seen.
pub async fn wait(
    admin: &str,
    token: Option<&str>,
    want: u64,
    within: Duration,
) -> Result<Vec<NodeLine>, CtlError> {
    let start = Instant::now();
    let mut next_progress = start + PROGRESS_AFTER;
    loop {
        let (status, body) = call(admin, Method::GET, "/cluster", None, token).await?;
        if !status.is_success() {
            return Err(CtlError::Other(format!(
                "{admin} GET /cluster answered {status}: {}",
                body.trim_end()
            )));
        }
        let cluster: Value = serde_json::from_str(&body)
            .map_err(|e| CtlError::Other(format!("GET /cluster is not JSON: {e}")))?;
        let lines = outcomes(&cluster, want);
        let waiting = undecided(&lines);
        let now = Instant::now();
        if waiting.is_empty() || now >= start + within {
            return Ok(lines);
        }
        if now >= next_progress {
            let names: Vec<String> = waiting.iter().map(|i| i.to_string()).collect();
            eprintln!(
                "waiting for node(s) {} to run config version {want} ({:.1}s of {:.1}s)",
                names.join(", "),
                now.duration_since(start).as_secs_f64(),
                within.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            next_progress = now + PROGRESS_AFTER;
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn behind_unreachable_and_learner_nodes() {
        let cluster = json!({"nodes": [
            {"id": 1, "admin": "a:1", "voter": true, "reachable": true,
             "status": {"config_version_running": 3, "config_apply_error": null}},
            {"id": 2, "admin": "a:2", "voter": true, "reachable": true,
             "status": {"config_version_running": 1, "config_apply_error":
                {"version": 3, "reason": "cannot bind 127.0.0.1:80: in use"}}},
            {"id": 3, "admin": "a:3", "voter": true, "reachable": false, "error": "refused", "status": null},
            {"id": 4, "admin": "a:4", "voter": false, "reachable": true,
             "status": {"config_version_running": 1, "config_apply_error": null}},
        ]});
        let lines = outcomes(&cluster, 2);
        assert_eq!(pending(&lines), vec![2, 3], "the learner is not waited for");
        assert_eq!(
            lines[1].render(2),
            "node 2 (a:2): NOT applied, still runs version 1: cannot bind 127.0.0.1:80: in use"
        );
        assert!(lines[2].render(2).contains("unreachable: refused"));
        assert_eq!(lines[0].render(2), "node 1 (a:1): running config version 2");
        assert!(lines[3].render(2).contains("learner"));
        assert_eq!(undecided(&lines), vec![2, 3]);
    }

    #[test]
    fn a_refusal_for_good_ends_the_wait_and_a_report_stands_in_for_a_down_node() {
        let refused = json!({"version": 2, "reason": "listener x: this node's admin address", "retrying": false});
        let cluster = json!({"nodes": [
            {"id": 1, "admin": "a:1", "voter": true, "reachable": true,
             "status": {"config_version_running": 2, "config_apply_error": null}},
            {"id": 2, "admin": "a:2", "voter": true, "reachable": true,
             "status": {"config_version_running": 1, "config_apply_error": refused}},
            {"id": 3, "admin": "a:3", "voter": true, "reachable": false, "error": "timed out", "status": null,
             "reported": {"config_version_running": 1, "config_apply_error": refused}},
            {"id": 4, "admin": "a:4", "voter": true, "reachable": false, "error": "timed out", "status": null,
             "reported": {"config_version_running": 2, "config_apply_error": null}},
        ]});
        let lines = outcomes(&cluster, 2);
        assert!(undecided(&lines).is_empty(), "{lines:?}");
        assert_eq!(pending(&lines), vec![2, 3]);
        assert_eq!(
            lines[1].render(2),
            "node 2 (a:2): REFUSED, still runs version 1: listener x: this node's admin address"
        );
        assert!(lines[2].render(2).contains("REFUSED"), "{lines:?}");
        assert_eq!(lines[3].outcome, NodeOutcome::Running);
    }
}
