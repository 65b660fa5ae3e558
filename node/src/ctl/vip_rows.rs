//! `ctl status`, several VIPs (`[[vip]]`): one line per address with its committed owner
//! and the reachable nodes that hold it now (two holders would show as two ids).

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Appends the VIP lines for the members in `nodes` (the `GET /cluster` `nodes` array).
pub fn render(out: &mut String, nodes: &[Value]) {
    // address -> (name, assigned owner, holders)
    let mut rows: BTreeMap<String, (String, Option<u64>, Vec<String>)> = BTreeMap::new();
    for n in nodes.iter().filter(|n| n["reachable"] == true) {
        for v in n["status"]["vips"].as_array().into_iter().flatten() {
            let Some(address) = v["address"].as_str() else {
                continue;
            };
            let row = rows.entry(address.to_string()).or_default();
            row.0 = v["name"].as_str().unwrap_or(address).to_string();
            row.1 = row.1.or(v["assigned_to"].as_u64());
            if v["held_here"] == true {
                row.2.push(n["id"].to_string());
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(out, "VIPs:");
    for (address, (name, assigned, held)) in rows {
        let assigned = assigned.map_or("none".to_string(), |a| a.to_string());
        let held = if held.is_empty() {
            "nobody".to_string()
        } else {
            held.join(",")
        };
        let _ = writeln!(
            out,
            "  {address:<16} {name:<12} assigned {assigned:<5} held by {held}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_line_per_address_with_owner_and_holders() {
        let nodes = vec![
            json!({"id": 1, "reachable": true, "status": {"vips": [
                {"name": "v1", "address": "10.0.0.1", "assigned_to": 1, "held_here": true},
                {"name": "v2", "address": "10.0.0.2", "assigned_to": 2, "held_here": false}]}}),
            json!({"id": 2, "reachable": true, "status": {"vips": [
                {"name": "v1", "address": "10.0.0.1", "assigned_to": 1, "held_here": false},
                {"name": "v2", "address": "10.0.0.2", "assigned_to": 2, "held_here": false}]}}),
        ];
        let mut out = String::new();
        render(&mut out, &nodes);
        assert!(
            out.contains("10.0.0.1         v1           assigned 1     held by 1"),
            "{out}"
        );
        assert!(
            out.contains("10.0.0.2         v2           assigned 2     held by nobody"),
            "{out}"
        );
    }
}
