//! Checks on the cluster after the load: one config version everywhere, every node up.

use super::{Check, Inputs};

pub fn converged(inp: &Inputs) -> Check {
    let nodes = &inp.rec.nodes_end;
    if nodes.is_empty() {
        return Check::not_measured("config converged", "no node state at the end".into());
    }
    let versions: Vec<String> = nodes
        .iter()
        .map(|n| {
            n.config_version
                .map_or_else(|| "?".to_string(), |v| v.to_string())
        })
        .collect();
    let known: Vec<u64> = nodes.iter().filter_map(|n| n.config_version).collect();
    let all_same = known.len() == nodes.len() && known.windows(2).all(|w| w[0] == w[1]);
    let min = inp.rec.min_config_version;
    let high_enough = match (min, known.first()) {
        (Some(min), Some(v)) => *v >= min,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let want = min.map(|m| format!(", want >= {m}")).unwrap_or_default();
    Check::new(
        "config converged",
        format!("versions [{}]{want}", versions.join(", ")),
        known.first().map(|v| *v as f64),
        all_same && high_enough,
    )
}

pub fn crashes(inp: &Inputs) -> Check {
    let nodes = &inp.rec.nodes_end;
    if nodes.is_empty() {
        return Check::not_measured("no unexpected crash", "no node state at the end".into());
    }
    let down: Vec<&str> = nodes
        .iter()
        .filter(|n| n.running == Some(false) || n.config_version.is_none())
        .map(|n| n.name.as_str())
        .collect();
    let figure = if down.is_empty() {
        format!("all {} nodes up", nodes.len())
    } else {
        format!("down at the end: {}", down.join(", "))
    };
    Check::new("no unexpected crash", figure, None, down.is_empty())
}
