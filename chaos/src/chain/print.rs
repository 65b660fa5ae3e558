//! The chain on stdout: one table per failover of a run, and over repeated runs the
//! median and worst (latest) instant of every link.

use super::{stats, Chain, LINKS};

/// Prints the chains of one run.
pub fn print_run(chains: &[Chain]) {
    for c in chains {
        println!(
            "   chain of \"{}\" (ms after it; /debug/failover of {}):",
            c.fault,
            if c.nodes_read.is_empty() {
                "no node".to_string()
            } else {
                c.nodes_read.join(", ")
            }
        );
        for l in &c.links {
            println!(
                "     {:<16} {:>+8.1}  {:<6} {}",
                l.link, l.ms, l.node, l.detail
            );
        }
        let missing: Vec<&str> = LINKS
            .iter()
            .copied()
            .filter(|n| c.link(n).is_none())
            .collect();
        if !missing.is_empty() {
            println!("     not recorded: {}", missing.join(", "));
        }
    }
}

/// Per kind of fault, per link, the median and worst over every chain of one scenario.
pub fn print_repeated(name: &str, chains: &[&Chain]) {
    for (kind, group) in stats::by_fault(chains) {
        println!(
            "{name} ({kind}): chain over {} failover(s), ms after the fault, median / worst (n):",
            group.len()
        );
        let (crash, silence) = stats::suspect_reasons(&group);
        for l in stats::per_link(&group) {
            let why = if l.link == "suspect" {
                format!("  [crash {crash}, silence {silence}]")
            } else {
                String::new()
            };
            println!(
                "     {:<16} {:>+7.1} / {:>+7.1} (n={}){why}",
                l.link, l.median_ms, l.worst_ms, l.n
            );
        }
    }
}
