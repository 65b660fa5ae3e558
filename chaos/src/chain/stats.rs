//! Over repeated runs of one scenario: the median and worst (latest) instant of every
//! link, and why the first suspicions came.

use super::{Chain, LINKS};
use crate::report::median_worst;
use serde::Serialize;

/// One link over every chain of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct LinkStat {
    pub link: &'static str,
    pub median_ms: f64,
    pub worst_ms: f64,
    /// Chains that recorded this link.
    pub n: usize,
}

/// Every recorded link's median and worst, in `LINKS` order.
pub fn per_link(chains: &[&Chain]) -> Vec<LinkStat> {
    LINKS
        .iter()
        .copied()
        .filter_map(|link| {
            let v: Vec<f64> = chains
                .iter()
                .filter_map(|c| c.link(link).map(|l| l.ms))
                .collect();
            median_worst(&v, true).map(|(median_ms, worst_ms)| LinkStat {
                link,
                median_ms,
                worst_ms,
                n: v.len(),
            })
        })
        .collect()
}

/// The chains grouped by the kind of fault (the first word of its name: `kill`,
/// `partition`, `heal`, ...), in order of first appearance: a partition's chain and its
/// heal's are different things.
pub fn by_fault<'a>(chains: &[&'a Chain]) -> Vec<(String, Vec<&'a Chain>)> {
    let mut groups: Vec<(String, Vec<&'a Chain>)> = Vec::new();
    for c in chains {
        let kind = c.fault.split_whitespace().next().unwrap_or("").to_string();
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, g)) => g.push(c),
            None => groups.push((kind, vec![*c])),
        }
    }
    groups
}

/// How many first suspicions were a confirmed crash, and how many silence.
pub fn suspect_reasons(chains: &[&Chain]) -> (usize, usize) {
    let count = |r: &str| {
        chains
            .iter()
            .filter(|c| c.link("suspect").is_some_and(|l| l.detail == r))
            .count()
    };
    (count("Crash"), count("Silence"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::Link;

    fn chain(links: &[(&'static str, f64, &str)]) -> Chain {
        Chain {
            fault: "kill n1".into(),
            fault_t_ms: 3000.0,
            links: links
                .iter()
                .map(|(link, ms, detail)| Link {
                    link,
                    ms: *ms,
                    node: "n2".into(),
                    detail: detail.to_string(),
                })
                .collect(),
            nodes_read: vec!["n2".into()],
        }
    }

    #[test]
    fn medians_and_worst_per_link_and_the_reasons() {
        let a = chain(&[("suspect", 4.0, "Crash"), ("claim", 19.0, "")]);
        let b = chain(&[("suspect", 24.0, "Silence"), ("claim", 28.0, "")]);
        let c = chain(&[
            ("suspect", 3.0, "Crash"),
            ("claim", 18.0, ""),
            ("garp", 20.0, ""),
        ]);
        let s = per_link(&[&a, &b, &c]);
        let names: Vec<&str> = s.iter().map(|l| l.link).collect();
        assert_eq!(names, ["suspect", "claim", "garp"]);
        assert_eq!((s[0].median_ms, s[0].worst_ms, s[0].n), (4.0, 24.0, 3));
        assert_eq!((s[1].median_ms, s[1].worst_ms), (19.0, 28.0));
        assert_eq!((s[2].median_ms, s[2].n), (20.0, 1));
        assert_eq!(suspect_reasons(&[&a, &b, &c]), (2, 1));
    }

    #[test]
    fn a_partition_and_its_heal_are_grouped_apart() {
        let mut p1 = chain(&[("claim", 35.0, "")]);
        p1.fault = "partition n1".into();
        let mut h1 = chain(&[("answer", 2.0, "")]);
        h1.fault = "heal n1".into();
        let mut p2 = p1.clone();
        p2.fault = "partition n2".into();
        let g = by_fault(&[&p1, &h1, &p2]);
        let kinds: Vec<(&str, usize)> = g.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
        assert_eq!(kinds, [("partition", 2), ("heal", 1)]);
    }
}
