//! From the nodes' recorded events (and the load client's samples) to one [`Chain`]: a
//! pure function, unit-tested on `/debug/failover` answers recorded from a real kill -9.
//!
//! Each link is the first such event at or after the fault (within the window), except
//! the last ping, which is the newest one recorded at or before the first suspicion, the
//! claim, which is taken on the node that became leader first, and the gratuitous ARP,
//! the first one of that node at or after its claim.

use super::{Chain, Link, NodeDoc, NodeEvent, LINKS};
use fulcrum_testbed::load::Sample;

/// How far before the fault a last ping may lie (one silence threshold is 25 ms; a
/// loaded machine may have missed a few pings).
const LOOKBACK_US: u64 = 200_000;

/// The instants of one failover event on CLOCK_MONOTONIC (µs) and on the scenario clock.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub fault_us: u64,
    /// Events after this belong to something else (the next fault, a restart).
    pub end_us: u64,
    pub fault_t_ms: f64,
}

impl Window {
    fn ms(&self, t_us: u64) -> f64 {
        (t_us as f64 - self.fault_us as f64) / 1000.0
    }
}

/// The chain of one failover; `answer_ms` is the load client's first answered request
/// after the fault's outage, in ms after the fault.
pub fn chain(fault: &str, w: Window, docs: &[NodeDoc], answer_ms: Option<f64>) -> Chain {
    let events: Vec<(&str, &NodeEvent)> = docs
        .iter()
        .flat_map(|d| d.events.iter().map(move |e| (d.name.as_str(), e)))
        .filter(|(_, e)| e.t_us + LOOKBACK_US >= w.fault_us && e.t_us <= w.end_us)
        .collect();
    let first = |what: &str, node: Option<&str>, from: u64| {
        events
            .iter()
            .filter(|(n, e)| e.what == what && e.t_us >= from && node.is_none_or(|x| x == *n))
            .min_by_key(|(_, e)| e.t_us)
            .copied()
    };
    let mut found: Vec<(&'static str, (&str, &NodeEvent))> = Vec::new();
    let suspect = first("suspect", None, w.fault_us);
    let ping_until = suspect.map_or(w.end_us, |(_, e)| e.t_us);
    let last_ping = events
        .iter()
        .filter(|(_, e)| e.what == "last_ping" && e.t_us <= ping_until)
        .max_by_key(|(_, e)| e.t_us)
        .copied();
    let leader = first("leader", None, w.fault_us);
    let claim = first("claim", leader.map(|(n, _)| n), w.fault_us)
        .or_else(|| first("claim", None, w.fault_us));
    let garp = claim.and_then(|(n, c)| first("garp", Some(n), c.t_us));
    for link in LINKS.iter().copied() {
        let hit = match link {
            "last_ping" => last_ping,
            "suspect" => suspect,
            "leader" => leader,
            "claim" => claim,
            "garp" => garp,
            "answer" => None,
            other => first(other, None, w.fault_us),
        };
        if let Some(hit) = hit {
            found.push((link, hit));
        }
    }
    let mut links: Vec<Link> = found
        .into_iter()
        .map(|(link, (node, e))| Link {
            link,
            ms: w.ms(e.t_us),
            node: node.to_string(),
            detail: e.detail.clone(),
        })
        .collect();
    if let Some(ms) = answer_ms {
        links.push(Link {
            link: "answer",
            ms,
            node: "client".into(),
            detail: String::new(),
        });
    }
    Chain {
        fault: fault.to_string(),
        fault_t_ms: w.fault_t_ms,
        links,
        nodes_read: docs.iter().map(|d| d.name.clone()).collect(),
    }
}

/// The load client's first answered request of a failover, in ms after the fault: the
/// first success sent after the last failure of `[fault - timeout, end]`, or the first
/// success after the fault when nothing failed there.
pub fn first_answer_ms(
    samples: &[Sample],
    fault_ms: f64,
    end_ms: f64,
    timeout_ms: f64,
) -> Option<f64> {
    let last_failure = samples
        .iter()
        .filter(|s| !s.ok() && s.t_ms >= fault_ms - timeout_ms && s.t_ms <= end_ms)
        .map(|s| s.t_ms)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
    let from = last_failure.unwrap_or(fault_ms).max(fault_ms);
    samples
        .iter()
        .filter(|s| s.ok() && s.t_ms >= from)
        .map(|s| s.t_ms)
        .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.min(t))))
        .map(|t| t - fault_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/debug/failover` of the two survivors, 1 s after a kill -9 of leader n1
    /// (recorded on the test bed, debug build). The kill was sent at about this instant.
    const KILL_US: u64 = 11_237_312_777;
    const N2: &str = include_str!("fixtures/kill_n1_from_n2.json");
    const N3: &str = include_str!("fixtures/kill_n1_from_n3.json");

    fn docs() -> Vec<NodeDoc> {
        [("n2", N2), ("n3", N3)]
            .into_iter()
            .map(|(name, text)| {
                let mut d: NodeDoc = serde_json::from_str(text).expect("fixture parses");
                d.name = name.into();
                d
            })
            .collect()
    }

    fn window() -> Window {
        Window {
            fault_us: KILL_US,
            end_us: KILL_US + 2_000_000,
            fault_t_ms: 3000.0,
        }
    }

    #[test]
    fn a_recorded_kill_gives_every_link_in_order() {
        let c = chain("kill n1", window(), &docs(), Some(45.0));
        let names: Vec<&str> = c.links.iter().map(|l| l.link).collect();
        assert_eq!(
            names,
            [
                "last_ping",
                "suspect",
                "prevote_won",
                "elect",
                "leader",
                "claim",
                "garp",
                "answer"
            ]
        );
        let at = |n: &str| c.link(n).map(|l| (l.ms * 1000.0).round() / 1000.0);
        // The newest ping either survivor accepted (n3's, 56 µs after n2's).
        assert_eq!(at("last_ping"), Some(8.842));
        let suspect = c.link("suspect").expect("suspect");
        assert_eq!(
            (suspect.node.as_str(), suspect.detail.as_str()),
            ("n2", "Silence")
        );
        assert_eq!(at("suspect"), Some(33.967));
        assert_eq!(at("elect"), Some(34.483));
        let leader = c.link("leader").expect("leader");
        assert_eq!((leader.node.as_str(), at("leader")), ("n2", Some(38.627)));
        assert_eq!(at("claim"), Some(38.78));
        assert_eq!(at("garp"), Some(41.445));
        assert_eq!(c.link("answer").map(|l| l.ms), Some(45.0));
        for pair in c.links.windows(2) {
            assert!(pair[0].ms <= pair[1].ms, "{pair:?} out of order");
        }
        assert_eq!(c.nodes_read, ["n2", "n3"]);
    }

    #[test]
    fn events_outside_the_window_are_not_links() {
        let mut w = window();
        // The same events seen as a fault 1 s later: nothing after it, the pings too old.
        w.fault_us += 1_000_000;
        w.end_us += 1_000_000;
        let c = chain("kill n1", w, &docs(), None);
        assert!(c.links.is_empty(), "{:?}", c.links);
        // A window that ends before the claim stops there.
        let mut w = window();
        w.end_us = KILL_US + 38_700;
        let c = chain("kill n1", w, &docs(), None);
        assert!(c.link("leader").is_some());
        assert!(c.link("claim").is_none() && c.link("garp").is_none());
    }

    fn sample(t_ms: f64, ok: bool) -> Sample {
        Sample {
            t_ms,
            user: 0,
            status: ok.then_some(200),
            error: (!ok).then(|| "connect: ConnectionRefused".into()),
            latency_ms: 1.0,
            backend: None,
            had_cookie: false,
            new_session: false,
        }
    }

    #[test]
    fn the_first_answer_follows_the_last_failure() {
        let s = [
            sample(2990.0, true),
            sample(3000.0, false),
            sample(3010.0, false),
            sample(3020.0, true),
            sample(3030.0, false),
            sample(3040.0, true),
            sample(5000.0, false),
        ];
        assert_eq!(first_answer_ms(&s, 3000.0, 4000.0, 1000.0), Some(40.0));
        // Nothing failed around this fault: the first success after it.
        assert_eq!(first_answer_ms(&s[..4], 3015.0, 3015.0, 10.0), Some(5.0));
        assert_eq!(first_answer_ms(&s[..3], 3000.0, 4000.0, 1000.0), None);
    }
}
