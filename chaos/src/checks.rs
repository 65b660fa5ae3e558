//! The invariants, computed from what a scenario recorded.
//!
//! Inputs: the load samples, the VIP holder samples, the fault timeline, and the state of
//! the nodes at the end. Output: one [`Check`] per invariant, each with its figure.

use crate::load::Sample;
use crate::vip_poller::HolderSample;
use serde::Serialize;
use std::collections::HashMap;

/// One fault (or repair) on the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub t_ms: f64,
    pub what: String,
    /// Failures sent within `[t - request timeout, t + allow_ms]` are expected.
    pub allow_ms: f64,
    /// The VIP has to move (or recover): measure the failover time from here.
    pub failover: bool,
    /// A backend went down (`Some((name, true))`) or came back (`false`).
    pub backend_down: Option<(String, bool)>,
    /// From here on no two nodes may hold the VIP whatever the fencing mode (a resumed
    /// zombie must not re-announce without a fresh lease).
    pub no_dual_after: bool,
}

/// Bounds a scenario must stay within.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub min_availability_pct: f64,
    pub max_outage_ms: f64,
    pub max_failover_ms: f64,
    /// Longest time two nodes may hold the VIP at once (0 except fast fencing + SIGSTOP).
    pub max_dual_ms: f64,
}

/// A pass/fail verdict with its figure.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub figure: String,
    pub value: Option<f64>,
    pub pass: bool,
}

impl Check {
    fn new(name: &str, figure: String, value: Option<f64>, pass: bool) -> Check {
        Check {
            name: name.to_string(),
            figure,
            value,
            pass,
        }
    }
    pub fn failed(name: &str, why: String) -> Check {
        Check::new(name, why, None, false)
    }
}

/// What the nodes looked like at the end of the scenario.
#[derive(Debug, Clone, Serialize)]
pub struct NodeEnd {
    pub name: String,
    /// Process state when known (local runs).
    pub running: Option<bool>,
    pub config_version: Option<u64>,
    pub role: Option<String>,
}

pub struct Inputs<'a> {
    pub samples: &'a [Sample],
    pub holders: Option<&'a [HolderSample]>,
    pub poll_ms: f64,
    pub events: &'a [Event],
    pub timeout_ms: f64,
    pub expect: Expect,
    pub nodes_end: &'a [NodeEnd],
    pub min_config_version: Option<u64>,
}

pub fn evaluate(inp: &Inputs) -> Vec<Check> {
    vec![
        availability(inp),
        longest_outage(inp),
        failover(inp),
        dual_holders(inp),
        affinity(inp),
        lost(inp),
        converged(inp),
        crashes(inp),
    ]
}

fn availability(inp: &Inputs) -> Check {
    let total = inp.samples.len();
    if total == 0 {
        return Check::failed("availability", "no requests sent".into());
    }
    let ok = inp.samples.iter().filter(|s| s.ok()).count();
    let pct = 100.0 * ok as f64 / total as f64;
    Check::new(
        "availability",
        format!(
            "{pct:.2}% ({ok}/{total}, min {}%)",
            inp.expect.min_availability_pct
        ),
        Some(pct),
        pct >= inp.expect.min_availability_pct,
    )
}

/// Outage windows: from the first failed send after a success to the next successful send.
fn outages(samples: &[Sample]) -> Vec<(f64, f64)> {
    let mut windows = Vec::new();
    let mut start: Option<f64> = None;
    for s in samples {
        match (s.ok(), start) {
            (false, None) => start = Some(s.t_ms),
            (true, Some(begin)) => {
                windows.push((begin, s.t_ms));
                start = None;
            }
            _ => {}
        }
    }
    if let (Some(begin), Some(last)) = (start, samples.last()) {
        windows.push((begin, last.t_ms));
    }
    windows
}

fn longest_outage(inp: &Inputs) -> Check {
    let longest = outages(inp.samples)
        .iter()
        .map(|(a, b)| b - a)
        .fold(0.0, f64::max);
    Check::new(
        "longest outage",
        format!("{longest:.0} ms (max {:.0})", inp.expect.max_outage_ms),
        Some(longest),
        longest <= inp.expect.max_outage_ms,
    )
}

/// Fault -> first success after the outage it caused (0 when nothing failed).
fn failover(inp: &Inputs) -> Check {
    let events: Vec<&Event> = inp.events.iter().filter(|e| e.failover).collect();
    if events.is_empty() {
        return Check::new("VIP failover", "n/a".into(), None, true);
    }
    let windows = outages(inp.samples);
    let mut figures = Vec::new();
    let mut worst: f64 = 0.0;
    for e in events {
        let from = e.t_ms - inp.timeout_ms;
        let to = e.t_ms + e.allow_ms.max(inp.expect.max_failover_ms);
        // The outage this fault caused: windows that start around it and end after it.
        let ms = windows
            .iter()
            .filter(|(a, end)| *a >= from && *a <= to && *end > e.t_ms)
            .map(|(_, end)| end - e.t_ms)
            .fold(0.0, f64::max);
        match inp.holders.and_then(|h| vip_moved_ms(h, e.t_ms)) {
            Some(moved) => figures.push(format!("{ms:.0} ms (VIP moved at {moved:.0})")),
            None => figures.push(format!("{ms:.0} ms")),
        }
        worst = worst.max(ms);
    }
    Check::new(
        "VIP failover",
        format!(
            "{} (max {:.0})",
            figures.join("; "),
            inp.expect.max_failover_ms
        ),
        Some(worst),
        worst <= inp.expect.max_failover_ms,
    )
}

/// Time from `t` to the first sample whose (non-empty) holder set differs from the one
/// before `t`.
fn vip_moved_ms(holders: &[HolderSample], t: f64) -> Option<f64> {
    let before = holders.iter().rev().find(|s| s.t_ms <= t)?;
    holders
        .iter()
        .filter(|s| s.t_ms > t)
        .find(|s| s.holders != before.holders && s.holders.iter().any(|h| *h))
        .map(|s| s.t_ms - t)
}

fn dual_holders(inp: &Inputs) -> Check {
    let Some(holders) = inp.holders else {
        return Check::new("dual VIP holders", "not sampled".into(), None, true);
    };
    let mut longest: f64 = 0.0;
    let mut start: Option<f64> = None;
    let mut last_dual = 0.0;
    let mut count = 0;
    for s in holders {
        let n = s.holders.iter().filter(|h| **h).count();
        if n >= 2 {
            count += 1;
            last_dual = s.t_ms;
            start.get_or_insert(s.t_ms);
        } else if let Some(begin) = start.take() {
            longest = longest.max(last_dual - begin + inp.poll_ms);
        }
    }
    if let Some(begin) = start {
        longest = longest.max(last_dual - begin + inp.poll_ms);
    }
    let sampled = holders.len();
    let fence = inp
        .events
        .iter()
        .filter(|e| e.no_dual_after)
        .map(|e| e.t_ms)
        .fold(f64::INFINITY, f64::min);
    let after = holders
        .iter()
        .filter(|s| s.t_ms > fence && s.holders.iter().filter(|h| **h).count() >= 2)
        .count();
    let after_text = if fence.is_finite() {
        format!(", {after} after {:.0} ms (must be 0)", fence)
    } else {
        String::new()
    };
    Check::new(
        "dual VIP holders",
        format!(
            "{longest:.0} ms overlap, {count}/{sampled} samples (max {:.0}){after_text}",
            inp.expect.max_dual_ms
        ),
        Some(longest),
        longest <= inp.expect.max_dual_ms && after == 0,
    )
}

/// Requests that left their session's pin while the pinned backend was healthy.
fn affinity(inp: &Inputs) -> Check {
    // When each backend first went down: after that, one re-pin per session is allowed.
    let mut down_since: HashMap<&str, f64> = HashMap::new();
    for e in inp.events {
        if let Some((name, true)) = &e.backend_down {
            down_since.entry(name.as_str()).or_insert(e.t_ms);
        }
    }
    let mut pins: HashMap<usize, String> = HashMap::new();
    let (mut breaks, mut repins, mut checked) = (0usize, 0usize, 0usize);
    let mut first_break = String::new();
    for s in inp.samples.iter().filter(|s| s.ok()) {
        let Some(backend) = &s.backend else { continue };
        // A new session (the backend handed out a cookie) pins the user to its backend.
        if s.new_session || !s.had_cookie {
            if s.new_session {
                pins.insert(s.user, backend.clone());
            }
            continue;
        }
        let Some(pin) = pins.get(&s.user) else {
            continue;
        };
        checked += 1;
        if pin == backend {
            continue;
        }
        let pin_faulted = down_since
            .get(pin.as_str())
            .is_some_and(|t| *t - inp.timeout_ms <= s.t_ms);
        if pin_faulted {
            repins += 1;
            pins.insert(s.user, backend.clone());
        } else {
            if breaks == 0 {
                first_break = format!(
                    ", first: user {} at {:.0} ms on {backend}, pinned to {pin}",
                    s.user, s.t_ms
                );
            }
            breaks += 1;
        }
    }
    Check::new(
        "affinity breaks",
        format!("{breaks} of {checked} pinned requests ({repins} re-pins){first_break}"),
        Some(breaks as f64),
        breaks == 0,
    )
}

fn lost(inp: &Inputs) -> Check {
    // A fault that moves the VIP may take the whole failover budget.
    let allow = |e: &Event| {
        if e.failover {
            e.allow_ms.max(inp.expect.max_failover_ms)
        } else {
            e.allow_ms
        }
    };
    let expected = |t: f64| {
        inp.events
            .iter()
            .any(|e| t >= e.t_ms - inp.timeout_ms && t <= e.t_ms + allow(e))
    };
    let failed: Vec<&Sample> = inp.samples.iter().filter(|s| !s.ok()).collect();
    let lost: Vec<&&Sample> = failed.iter().filter(|s| !expected(s.t_ms)).collect();
    let mut why = String::new();
    if let Some(first) = lost.first() {
        let reason = first
            .error
            .clone()
            .or_else(|| first.status.map(|s| format!("HTTP {s}")))
            .unwrap_or_default();
        why = format!(", first at {:.0} ms: {reason}", first.t_ms);
    }
    Check::new(
        "requests lost",
        format!(
            "{} outside fault windows ({} failed in all){why}",
            lost.len(),
            failed.len()
        ),
        Some(lost.len() as f64),
        lost.is_empty(),
    )
}

fn converged(inp: &Inputs) -> Check {
    let versions: Vec<String> = inp
        .nodes_end
        .iter()
        .map(|n| {
            n.config_version
                .map_or_else(|| "?".to_string(), |v| v.to_string())
        })
        .collect();
    let known: Vec<u64> = inp
        .nodes_end
        .iter()
        .filter_map(|n| n.config_version)
        .collect();
    let all_same = known.len() == inp.nodes_end.len() && known.windows(2).all(|w| w[0] == w[1]);
    let high_enough = match (inp.min_config_version, known.first()) {
        (Some(min), Some(v)) => *v >= min,
        (Some(_), None) => false,
        (None, _) => true,
    };
    let min = inp
        .min_config_version
        .map(|m| format!(", want >= {m}"))
        .unwrap_or_default();
    Check::new(
        "config converged",
        format!("versions [{}]{min}", versions.join(", ")),
        known.first().map(|v| *v as f64),
        all_same && high_enough,
    )
}

fn crashes(inp: &Inputs) -> Check {
    let down: Vec<&str> = inp
        .nodes_end
        .iter()
        .filter(|n| n.running == Some(false) || n.config_version.is_none())
        .map(|n| n.name.as_str())
        .collect();
    let figure = if down.is_empty() {
        format!("all {} nodes up", inp.nodes_end.len())
    } else {
        format!("down at the end: {}", down.join(", "))
    };
    Check::new("no unexpected crash", figure, None, down.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t_ms: f64, user: usize, backend: Option<&str>, new_session: bool) -> Sample {
        Sample {
            t_ms,
            user,
            status: backend.map(|_| 200),
            error: backend.is_none().then(|| "connect: refused".to_string()),
            latency_ms: 1.0,
            backend: backend.map(str::to_string),
            had_cookie: !new_session,
            new_session,
        }
    }

    fn inputs<'a>(
        samples: &'a [Sample],
        events: &'a [Event],
        holders: Option<&'a [HolderSample]>,
    ) -> Inputs<'a> {
        Inputs {
            samples,
            holders,
            poll_ms: 20.0,
            events,
            timeout_ms: 1000.0,
            expect: Expect {
                min_availability_pct: 90.0,
                max_outage_ms: 2000.0,
                max_failover_ms: 2000.0,
                max_dual_ms: 0.0,
            },
            nodes_end: &[],
            min_config_version: None,
        }
    }

    fn event(t_ms: f64, allow_ms: f64, backend_down: Option<(&str, bool)>) -> Event {
        Event {
            t_ms,
            what: "fault".into(),
            allow_ms,
            failover: true,
            backend_down: backend_down.map(|(n, d)| (n.to_string(), d)),
            no_dual_after: false,
        }
    }

    #[test]
    fn outage_failover_and_lost() {
        let samples = vec![
            sample(0.0, 0, Some("b1"), true),
            // A blip that ended before the fault is not its failover.
            sample(2100.0, 1, None, false),
            sample(2110.0, 1, Some("b1"), false),
            sample(3010.0, 1, None, false),
            sample(3300.0, 1, None, false),
            sample(3400.0, 1, Some("b1"), true),
            sample(9000.0, 1, None, false),
            sample(9100.0, 1, Some("b1"), false),
        ];
        let events = [event(3000.0, 2000.0, None)];
        let inp = inputs(&samples, &events, None);
        let outage = longest_outage(&inp);
        assert_eq!(outage.value, Some(390.0));
        assert_eq!(failover(&inp).value, Some(400.0));
        let lost = lost(&inp);
        assert_eq!(lost.value, Some(1.0));
        assert!(!lost.pass);
    }

    #[test]
    fn affinity_breaks_and_repins() {
        let samples = vec![
            sample(0.0, 0, Some("b1"), true),
            sample(100.0, 0, Some("b1"), false),
            sample(200.0, 0, Some("b2"), false), // break: b1 healthy
            sample(5000.0, 0, Some("b2"), false), // b1 down since 4000: one re-pin
            sample(6000.0, 0, Some("b2"), false),
        ];
        let events = [event(4000.0, 2500.0, Some(("b1", true)))];
        let check = affinity(&inputs(&samples, &events, None));
        assert_eq!(check.value, Some(1.0));
        assert!(check.figure.contains("1 re-pins"), "{}", check.figure);
    }

    #[test]
    fn dual_holders_measured() {
        let h = |t: f64, v: [bool; 3]| HolderSample {
            t_ms: t,
            holders: v.to_vec(),
        };
        let holders = vec![
            h(0.0, [true, false, false]),
            h(20.0, [true, true, false]),
            h(40.0, [true, true, false]),
            h(60.0, [false, true, false]),
        ];
        let inp = inputs(&[], &[], Some(&holders));
        let check = dual_holders(&inp);
        assert_eq!(check.value, Some(40.0));
        assert!(!check.pass);
        assert_eq!(vip_moved_ms(&holders, 10.0), Some(10.0));
    }
}
