//! The report: a table per scenario on stdout and, with `--report FILE`, every figure as
//! JSON.

use crate::scenarios::Outcome;
use anyhow::{Context, Result};
use serde_json::json;
use std::path::Path;

/// Prints one scenario's checks as a table.
pub fn print_outcome(o: &Outcome) {
    let verdict = if o.passed() { "PASS" } else { "FAIL" };
    let lat = match (o.latency_p50_ms, o.latency_p99_ms) {
        (Some(p50), Some(p99)) => format!(", latency p50 {p50:.1} ms p99 {p99:.1} ms"),
        _ => String::new(),
    };
    println!(
        "\n== {} — {verdict} ({} requests, {} failed{lat})",
        o.scenario, o.requests, o.failed
    );
    for e in &o.events {
        println!("   {:>8.0} ms  {}", e.t_ms, e.what);
    }
    for stall in crate::host_stalls::describe(&o.host_stalls) {
        println!("   host stall: {stall}");
    }
    let c = &o.counts;
    println!(
        "   samples: load {}/{}/{} (before/during/after the faults), VIP holders {} (netlink), \
         wire {}, /status {}, pinned requests {}",
        c.load_before,
        c.load_during,
        c.load_after,
        c.holder_samples,
        c.wire_samples,
        c.status_samples,
        c.pinned
    );
    crate::chain::print::print_run(&o.chains);
    let width = o.checks.iter().map(|c| c.name.len()).max().unwrap_or(10);
    for c in &o.checks {
        let mark = if c.pass { "ok  " } else { "FAIL" };
        println!("   {mark}  {:<width$}  {}", c.name, c.figure);
    }
}

/// Prints the one-line-per-scenario summary.
pub fn print_summary(outcomes: &[Outcome]) {
    println!(
        "\n{:<18} {:>6} {:>9} {:>10} {:>11} {:>8} {:>8}  {:>15} {:>7} {:>6} {:>6}  failed checks",
        "scenario",
        "result",
        "avail %",
        "outage ms",
        "failover ms",
        "dual ms",
        "affinity",
        "load b/d/a",
        "netlink",
        "wire",
        "pinned",
    );
    for o in outcomes {
        let value = |name: &str| {
            o.checks
                .iter()
                .find(|c| c.name == name)
                .and_then(|c| c.value)
        };
        let fmt = |v: Option<f64>, prec: usize| {
            v.map_or_else(|| "-".to_string(), |v| format!("{v:.prec$}"))
        };
        let c = &o.counts;
        let failed: Vec<&str> = o
            .checks
            .iter()
            .filter(|c| !c.pass)
            .map(|c| c.name.as_str())
            .collect();
        println!(
            "{:<18} {:>6} {:>9} {:>10} {:>11} {:>8} {:>8}  {:>15} {:>7} {:>6} {:>6}  {}",
            o.scenario,
            if o.passed() { "PASS" } else { "FAIL" },
            fmt(value("availability"), 2),
            fmt(value("longest outage"), 0),
            fmt(value("VIP failover"), 0),
            fmt(value("dual VIP holders"), 0),
            fmt(value("affinity breaks"), 0),
            format!("{}/{}/{}", c.load_before, c.load_during, c.load_after),
            c.holder_samples,
            c.wire_samples,
            c.pinned,
            failed.join(", "),
        );
    }
    print_medians(outcomes);
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    println!("\n{} scenario(s), {failed} failed", outcomes.len());
}

/// Writes every figure as JSON.
pub fn write_json(
    path: &Path,
    mode: &str,
    outcomes: &[Outcome],
    settings: serde_json::Value,
) -> Result<()> {
    let mut chains = serde_json::Map::new();
    for o in outcomes {
        if chains.contains_key(&o.scenario) {
            continue;
        }
        let all: Vec<&crate::chain::Chain> = outcomes
            .iter()
            .filter(|x| x.scenario == o.scenario)
            .flat_map(|x| x.chains.iter())
            .collect();
        if all.is_empty() {
            continue;
        }
        let mut kinds = serde_json::Map::new();
        for (kind, group) in crate::chain::stats::by_fault(&all) {
            let (crash, silence) = crate::chain::stats::suspect_reasons(&group);
            kinds.insert(
                kind,
                json!({
                    "failovers": group.len(),
                    "suspect_crash": crash,
                    "suspect_silence": silence,
                    "links": crate::chain::stats::per_link(&group),
                }),
            );
        }
        chains.insert(o.scenario.clone(), serde_json::Value::Object(kinds));
    }
    let doc = json!({
        "mode": mode,
        "settings": settings,
        "passed": outcomes.iter().all(|o| o.passed()),
        "chain_medians": chains,
        "scenarios": outcomes,
    });
    let text = serde_json::to_string_pretty(&doc).context("encoding the report")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Writes every request of a scenario, one JSON object per line.
pub fn write_samples(path: &Path, outcome: &Outcome) -> Result<()> {
    let mut text = String::new();
    for s in &outcome.samples {
        text.push_str(&serde_json::to_string(s).context("encoding a sample")?);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// For scenarios run more than once: the median and the worst run of each figure
/// (the lowest availability, the highest of the others).
fn print_medians(outcomes: &[Outcome]) {
    let mut names: Vec<&str> = Vec::new();
    for o in outcomes {
        if !names.contains(&o.scenario.as_str()) {
            names.push(&o.scenario);
        }
    }
    let repeated: Vec<&str> = names
        .into_iter()
        .filter(|n| outcomes.iter().filter(|o| o.scenario == *n).count() > 1)
        .collect();
    if repeated.is_empty() {
        return;
    }
    println!("\nover repeated runs, median / worst (n = runs with the figure):");
    for name in repeated.iter().copied() {
        let runs: Vec<&Outcome> = outcomes.iter().filter(|o| o.scenario == name).collect();
        let figure = |check: &str, higher_is_worse: bool| -> String {
            let v: Vec<f64> = runs
                .iter()
                .filter_map(|o| {
                    o.checks
                        .iter()
                        .find(|c| c.name == check)
                        .and_then(|c| c.value)
                })
                .collect();
            match median_worst(&v, higher_is_worse) {
                Some((m, w)) => format!("{m:.1} / {w:.1} (n={})", v.len()),
                None => "-".into(),
            }
        };
        let passed = runs.iter().filter(|o| o.passed()).count();
        println!(
            "{name:<18} {passed}/{} passed; failover ms {}; outage ms {}; avail % {}; dual ms {}; affinity breaks {}",
            runs.len(),
            figure("VIP failover", true),
            figure("longest outage", true),
            figure("availability", false),
            figure("dual VIP holders", true),
            figure("affinity breaks", true),
        );
    }
    for name in &repeated {
        let chains: Vec<&crate::chain::Chain> = outcomes
            .iter()
            .filter(|o| o.scenario == *name)
            .flat_map(|o| o.chains.iter())
            .collect();
        crate::chain::print::print_repeated(name, &chains);
    }
}

/// The median of `v` and its worst value (the highest, or the lowest when lower is worse).
pub fn median_worst(v: &[f64], higher_is_worse: bool) -> Option<(f64, f64)> {
    if v.is_empty() {
        return None;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    };
    let worst = if higher_is_worse {
        v[v.len() - 1]
    } else {
        v[0]
    };
    Some((median, worst))
}

#[cfg(test)]
mod tests {
    use super::median_worst;

    #[test]
    fn median_and_worst() {
        assert_eq!(median_worst(&[], true), None);
        assert_eq!(
            median_worst(&[500.0, 300.0, 900.0], true),
            Some((500.0, 900.0))
        );
        assert_eq!(
            median_worst(&[99.0, 95.0, 97.0, 96.0], false),
            Some((96.5, 95.0))
        );
    }
}
