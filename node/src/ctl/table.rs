//! `ctl status` for people: the cluster table (one row per member, from `GET /cluster`),
//! the backends as each node sees them, then the asked node's own details.

use serde_json::Value;
use std::fmt::Write as _;

/// Renders the gathered view `cluster` (the `GET /cluster` document).
pub fn render(cluster: &Value) -> String {
    let mut out = String::new();
    let committed = cluster["config_version_committed"].as_u64().unwrap_or(0);
    let holders = ids(&cluster["vip_holders"]);
    let _ = writeln!(
        out,
        "cluster (asked node {}): leader {}, committed config version {committed}, VIP held by {}",
        cluster["via"],
        opt(&cluster["leader_id"]),
        if holders.is_empty() {
            "no node".to_string()
        } else {
            holders
        }
    );
    let _ = writeln!(
        out,
        "{:<4} {:<21} {:<9} {:<5} {:<8} {:<6} {:<4} {:<10} APPLY ERROR",
        "NODE", "ADMIN", "ROLE", "TERM", "CONFIG", "LEASE", "VIP", "REDIS"
    );
    let nodes = cluster["nodes"].as_array().cloned().unwrap_or_default();
    for n in &nodes {
        let s = &n["status"];
        if n["reachable"] != true {
            // What it last said through Raft about its config, when it said anything.
            let r = &n["reported"];
            let (config, said) = match r["config_version_running"].as_u64() {
                Some(v) if v == committed => (format!("{v} (raft)"), String::new()),
                Some(v) => (
                    format!("{v} (!raft)"),
                    format!("; {}", apply_error(&r["config_apply_error"])),
                ),
                None => ("-".to_string(), String::new()),
            };
            let _ = writeln!(
                out,
                "{:<4} {:<21} {:<9} {:<5} {:<8} {:<6} {:<4} {:<10} unreachable: {}{said}",
                n["id"],
                n["admin"].as_str().unwrap_or("?"),
                "DOWN",
                "-",
                config,
                "-",
                "-",
                "-",
                n["error"].as_str().unwrap_or("?")
            );
            continue;
        }
        let running = s["config_version_running"].as_u64().unwrap_or(0);
        let config = if running == committed {
            running.to_string()
        } else {
            format!("{running} (!)")
        };
        let lease = match s["lease_left_ms"].as_u64() {
            Some(ms) => format!("{ms}ms"),
            None => "-".to_string(),
        };
        let _ = writeln!(
            out,
            "{:<4} {:<21} {:<9} {:<5} {:<8} {:<6} {:<4} {:<10} {}",
            n["id"].to_string(),
            n["admin"].as_str().unwrap_or("?"),
            s["role"].as_str().unwrap_or("?"),
            s["term"].to_string(),
            config,
            lease,
            if s["vip_held"] == true { "held" } else { "-" },
            s["session_store"].as_str().unwrap_or("?"),
            apply_error(&s["config_apply_error"])
        );
    }
    let diverged = ids(&cluster["divergent"]);
    if !diverged.is_empty() {
        let _ = writeln!(
            out,
            "DIVERGED: node(s) {diverged} do not run committed config version {committed}"
        );
    }
    backends(&mut out, &nodes);
    super::bgp_rows::render(&mut out, &nodes);
    super::vip_rows::render(&mut out, &nodes);
    out
}

/// One line per backend: its verdict on each reachable node, drained, connections.
fn backends(out: &mut String, nodes: &[Value]) {
    let reachable: Vec<&Value> = nodes.iter().filter(|n| n["reachable"] == true).collect();
    // Pools and backends in the order the first reachable node lists them, then any
    // that only other nodes (running another config) have.
    let mut rows: Vec<(String, String)> = Vec::new();
    for n in &reachable {
        for pool in n["status"]["pools"].as_array().into_iter().flatten() {
            let name = pool["name"].as_str().unwrap_or("?").to_string();
            for b in pool["backends"].as_array().into_iter().flatten() {
                let row = (name.clone(), b["addr"].as_str().unwrap_or("?").to_string());
                if !rows.contains(&row) {
                    rows.push(row);
                }
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "backends (verdict per node: up/down/drained, '-' = not in the config it runs):"
    );
    for (pool, addr) in rows {
        let mut line = format!("  {pool:<12} {addr:<22}");
        for n in &reachable {
            let b = find_backend(&n["status"], &pool, &addr);
            let verdict = match b {
                None => "-".to_string(),
                Some(b) if b["drained"] == true => "drained".to_string(),
                Some(b) if b["healthy"] == true => {
                    format!("up({})", b["active_connections"].as_u64().unwrap_or(0))
                }
                Some(_) => "down".to_string(),
            };
            let _ = write!(line, " n{}:{verdict:<8}", n["id"]);
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn find_backend<'a>(status: &'a Value, pool: &str, addr: &str) -> Option<&'a Value> {
    status["pools"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pool)?["backends"]
        .as_array()?
        .iter()
        .find(|b| b["addr"] == addr)
}

/// `version 2 (3 attempts, retrying): reason`, or `-`.
pub fn apply_error(e: &Value) -> String {
    if !e.is_object() {
        return "-".to_string();
    }
    let state = if e["retrying"] == true {
        "retrying"
    } else {
        "waiting for a newer version"
    };
    let attempts = match e["attempts"].as_u64() {
        Some(n) => format!("{n} attempts, "),
        None => String::new(),
    };
    format!(
        "version {} ({attempts}{state}): {}",
        e["version"],
        e["reason"].as_str().unwrap_or("?")
    )
}

fn ids(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn opt(v: &Value) -> String {
    if v.is_null() {
        "none".to_string()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_diverged_and_a_down_node_are_named() {
        let cluster = json!({
            "via": 2, "leader_id": 1, "config_version_committed": 2,
            "divergent": [3], "vip_holders": [1],
            "nodes": [
                {"id": 1, "admin": "127.0.0.1:1", "reachable": true, "status": {
                    "role": "leader", "term": 4, "config_version_running": 2, "lease_left_ms": 17,
                    "vip_held": true, "session_store": "disabled", "config_apply_error": null,
                    "pools": [{"name": "app", "backends": [{"addr": "b:1", "healthy": true, "drained": false, "active_connections": 2}]}]}},
                {"id": 3, "admin": "127.0.0.1:3", "reachable": true, "status": {
                    "role": "follower", "term": 4, "config_version_running": 1, "lease_left_ms": null,
                    "vip_held": false, "session_store": "disabled",
                    "config_apply_error": {"version": 2, "attempts": 5, "retrying": true, "reason": "cannot bind 127.0.0.1:80: Address in use"},
                    "pools": [{"name": "app", "backends": [{"addr": "b:1", "healthy": false, "drained": false}]}]}},
                {"id": 4, "admin": "127.0.0.1:4", "reachable": false, "error": "connection refused", "status": null}
            ]
        });
        let text = super::render(&cluster);
        assert!(text.contains("VIP held by 1"), "{text}");
        assert!(text.contains("1 (!)"), "{text}");
        assert!(
            text.contains("version 2 (5 attempts, retrying): cannot bind"),
            "{text}"
        );
        assert!(text.contains("DOWN"), "{text}");
        assert!(text.contains("unreachable: connection refused"), "{text}");
        assert!(text.contains("DIVERGED: node(s) 3"), "{text}");
        assert!(text.contains("n1:up(2)"), "{text}");
        assert!(text.contains("n3:down"), "{text}");
    }
}
