//! The convergence verdict: after the scenario's last event every node agreed with the
//! truth (config, backend health, one VIP holder) within the bound (`converge.rs`).

use super::Check;
use crate::converge::Convergence;
use std::collections::BTreeMap;

pub const NAME: &str = "converged after heal";

pub fn verdict(c: &Convergence) -> Check {
    match c.after_ms {
        Some(ms) => Check::new(
            NAME,
            format!(
                "{ms:.0} ms after the last event at {:.0} ms (bound {:.0} ms)",
                c.from_ms, c.bound_ms
            ),
            Some(ms),
            ms <= c.bound_ms,
        ),
        None => Check::new(
            NAME,
            format!(
                "not within {:.0} ms of the last event at {:.0} ms ({} rounds); last: {}",
                c.bound_ms, c.from_ms, c.rounds, c.last_miss
            ),
            None,
            false,
        ),
    }
}

/// After every scenario: each scenario's convergence times (one per run), with the
/// median and the worst when it ran more than once.
pub fn print_times(outcomes: &[crate::scenarios::Outcome]) {
    let mut by_name: BTreeMap<&str, Vec<Option<f64>>> = BTreeMap::new();
    for o in outcomes {
        let value =
            o.checks
                .iter()
                .find(|c| c.name == NAME)
                .map(|c| if c.pass { c.value } else { None });
        if let Some(v) = value {
            by_name.entry(o.scenario.as_str()).or_default().push(v);
        }
    }
    if by_name.is_empty() {
        return;
    }
    println!(
        "\nconvergence after the last event (bound {} ms; '-' = not converged):",
        crate::converge::BOUND.as_millis()
    );
    for (name, runs) in by_name {
        let shown: Vec<String> = runs
            .iter()
            .map(|v| v.map_or_else(|| "-".to_string(), |ms| format!("{ms:.0}")))
            .collect();
        let mut known: Vec<f64> = runs.iter().flatten().copied().collect();
        known.sort_by(f64::total_cmp);
        let summary = match (known.get(known.len() / 2), known.last()) {
            (Some(median), Some(worst)) if runs.len() > 1 => {
                format!("  median {median:.0} ms, worst {worst:.0} ms")
            }
            _ => String::new(),
        };
        println!("  {name:<22} [{}] ms{summary}", shown.join(", "));
    }
}
