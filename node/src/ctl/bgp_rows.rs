//! `ctl status`, BGP mode: one line per reachable node that runs `[bgp]`: announced or
//! withdrawn (and why), its prefixes, its BIRD sessions.

use serde_json::Value;
use std::fmt::Write as _;

/// Appends the BGP lines for the members in `nodes` (the `GET /cluster` `nodes` array).
pub fn render(out: &mut String, nodes: &[Value]) {
    let with_bgp: Vec<&Value> = nodes
        .iter()
        .filter(|n| n["reachable"] == true && n["status"]["bgp"].is_object())
        .collect();
    if with_bgp.is_empty() {
        return;
    }
    let _ = writeln!(out, "BGP:");
    for n in with_bgp {
        let b = &n["status"]["bgp"];
        let state = if b["announced"] == true {
            "announced".to_string()
        } else {
            format!(
                "withdrawn ({})",
                b["withdrawn_because"].as_str().unwrap_or("?")
            )
        };
        let prefixes: Vec<&str> = b["prefixes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let sessions: Vec<String> = b["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["proto"] == "BGP")
            .map(|s| {
                let info = s["info"].as_str().unwrap_or("");
                let what = if s["established"] == true {
                    "Established"
                } else if info.is_empty() {
                    s["state"].as_str().unwrap_or("?")
                } else {
                    info
                };
                format!("{}:{what}", s["name"].as_str().unwrap_or("?"))
            })
            .collect();
        let error = match b["error"].as_str() {
            Some(e) => format!("  BIRD error: {e}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  node {:<3} {:<28} {}  sessions {}{error}",
            n["id"].to_string(),
            state,
            prefixes.join(","),
            if sessions.is_empty() {
                "none".to_string()
            } else {
                sessions.join(" ")
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn announced_and_withdrawn_nodes_with_their_sessions() {
        let nodes = vec![
            json!({"id": 1, "reachable": true, "status": {"bgp": {
                "announced": true, "withdrawn_because": null, "prefixes": ["10.0.0.1/32"], "error": null,
                "sessions": [{"name": "uplink", "proto": "BGP", "state": "up", "info": "Established", "established": true},
                             {"name": "bfd1", "proto": "BFD", "state": "up", "info": "", "established": true}]}}}),
            json!({"id": 2, "reachable": true, "status": {"bgp": {
                "announced": false, "withdrawn_because": "drained", "prefixes": ["10.0.0.1/32"], "error": "cannot run birdc",
                "sessions": [{"name": "uplink", "proto": "BGP", "state": "start", "info": "Active", "established": false}]}}}),
            json!({"id": 3, "reachable": true, "status": {"bgp": null}}),
        ];
        let mut out = String::new();
        super::render(&mut out, &nodes);
        assert!(out.contains("node 1   announced"), "{out}");
        assert!(out.contains("uplink:Established"), "{out}");
        assert!(!out.contains("bfd1"), "{out}");
        assert!(out.contains("withdrawn (drained)"), "{out}");
        assert!(out.contains("uplink:Active"), "{out}");
        assert!(out.contains("BIRD error: cannot run birdc"), "{out}");
        assert!(!out.contains("node 3"), "{out}");
        let mut none = String::new();
        super::render(&mut none, &nodes[2..]);
        assert!(none.is_empty());
    }
}
