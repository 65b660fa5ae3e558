//! `ctl status` and `ctl shift`: a split route's weights and its shift in one line each.

use serde_json::Value;
use std::fmt::Write as _;

/// `blue 50, green 50` from `{"blue": 50, "green": 50}`.
pub fn weights(weights: &Value) -> String {
    let parts: Vec<String> = (weights.as_object().into_iter().flatten())
        .map(|(pool, w)| format!("{pool} {w}"))
        .collect();
    parts.join(", ")
}

/// `shift green -> 100% (step 40 every 1000 ms): running, step 2; last step: ...`.
pub fn shift_line(shift: &Value) -> Option<String> {
    if !shift.is_object() {
        return None;
    }
    let phase = match &shift["phase"] {
        Value::String(p) if p == "Running" => format!("running, step {}", shift["steps"]),
        Value::String(p) if p == "Done" => "done".to_string(),
        Value::String(p) if p == "Aborted" => "aborted: back to the start".to_string(),
        Value::Object(o) => match o.get("RolledBack") {
            Some(r) => format!(
                "rolled back after step {}: {}",
                shift["steps"],
                r["reason"].as_str().unwrap_or("?")
            ),
            None => "?".to_string(),
        },
        _ => "?".to_string(),
    };
    let plan = &shift["plan"];
    let mut line = format!(
        "shift {} -> {}% (step {} every {} ms): {phase}",
        plan["pool"].as_str().unwrap_or("?"),
        plan["to"],
        plan["step"],
        plan["every_ms"]
    );
    let last = &shift["last"];
    if last.is_object() {
        let p99 = last["p99_us"]
            .as_u64()
            .map_or("-".to_string(), |us| format!("{:.1} ms", us as f64 / 1e3));
        let _ = write!(
            line,
            "; last step {} requests, {} errors, p99 {p99}",
            last["requests"], last["errors"]
        );
    }
    Some(line)
}

/// The `splits` of a node's `/status`, one line per route and one per shift.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    for split in status["splits"].as_array().into_iter().flatten() {
        let source = if split["replicated"] == true {
            "replicated"
        } else {
            "the file's"
        };
        let _ = writeln!(
            out,
            "split {}: {} ({source})",
            split["route"].as_str().unwrap_or("?"),
            weights(&split["weights"])
        );
        if let Some(line) = shift_line(&split["shift"]) {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_rolled_back_shift_says_why_and_what_it_saw() {
        let status = json!({"splits": [{
            "route": "front", "weights": {"blue": 90, "green": 10}, "replicated": true,
            "shift": {"plan": {"pool": "green", "to": 100, "step": 20, "every_ms": 1000}, "steps": 3,
                "phase": {"RolledBack": {"reason": "error rate 40.00% over the bound 5.00%"}},
                "last": {"requests": 50, "errors": 20, "p99_us": 1500}}
        }]});
        let text = render(&status);
        assert_eq!(
            text,
            "split front: blue 90, green 10 (replicated)\n  shift green -> 100% (step 20 every 1000 ms): rolled back after step 3: error rate 40.00% over the bound 5.00%; last step 50 requests, 20 errors, p99 1.5 ms\n"
        );
    }
}
