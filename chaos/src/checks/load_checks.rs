//! Checks on the client's view: the load covered the fault window, availability, outages,
//! failover time, affinity and requests lost outside the expected windows.

use super::{Check, Event, Inputs, Recording};
use fulcrum_testbed::load::Sample;
use std::collections::HashMap;

/// When the fault window ends if the timeline has a single event. At the default 100
/// requests/s a 1,000 ms window held exactly the 100 requests a verdict needs, so one
/// late send failed config-change as "premise not met" (99 during, seen in a real run).
const SINGLE_EVENT_WINDOW_MS: f64 = 1500.0;

/// `(first event, last event)` of the timeline, the window stretched to at least
/// [`SINGLE_EVENT_WINDOW_MS`].
fn fault_window(events: &[Event]) -> Option<(f64, f64)> {
    let first = events.first()?.t_ms;
    let last = events.iter().map(|e| e.t_ms).fold(first, f64::max);
    Some((first, last.max(first + SINGLE_EVENT_WINDOW_MS)))
}

/// Requests sent before the window, inside it, and after it.
pub fn phase_counts(rec: &Recording) -> [usize; 3] {
    let Some((from, to)) = fault_window(&rec.events) else {
        return [rec.samples.len(), 0, 0];
    };
    let mut counts = [0; 3];
    for s in &rec.samples {
        let phase = if s.t_ms < from {
            0
        } else if s.t_ms <= to {
            1
        } else {
            2
        };
        counts[phase] += 1;
    }
    counts
}

/// The load ran before, through and after the fault window, without stalling.
pub fn coverage(inp: &Inputs) -> Check {
    let name = "premise: load through the fault window";
    let rec = inp.rec;
    let need = inp.plan.enough.load;
    let counts = phase_counts(rec);
    let Some((from, to)) = fault_window(&rec.events) else {
        return Check::failed(name, "premise not met: no fault on the timeline".into());
    };
    let around: Vec<f64> = rec
        .samples
        .iter()
        .map(|s| s.t_ms)
        .filter(|t| *t >= from - 1000.0 && *t <= to + 1000.0)
        .collect();
    let gap = around.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    let figure = format!(
        "{} before, {} during, {} after (need {}/{}/{}), longest send gap {gap:.0} ms (max {:.0})",
        counts[0], counts[1], counts[2], need[0], need[1], need[2], inp.plan.enough.max_send_gap_ms
    );
    let enough = counts.iter().zip(need).all(|(have, want)| *have >= want);
    let steady = gap <= inp.plan.enough.max_send_gap_ms && !around.is_empty();
    if enough && steady {
        Check::new(name, figure, Some(counts[1] as f64), true)
    } else {
        Check::failed(name, format!("premise not met: {figure}"))
    }
}

pub fn availability(inp: &Inputs) -> Check {
    let total = inp.rec.samples.len();
    if total == 0 {
        return Check::not_measured("availability", "no requests sent".into());
    }
    let ok = inp.rec.samples.iter().filter(|s| s.ok()).count();
    let pct = 100.0 * ok as f64 / total as f64;
    let min = inp.expect().min_availability_pct;
    Check::new(
        "availability",
        format!("{pct:.2}% ({ok}/{total}, min {min}%)"),
        Some(pct),
        pct >= min,
    )
}

/// Outage windows: from the first failed send after a success to the next successful send.
pub fn outages(samples: &[Sample]) -> Vec<(f64, f64)> {
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

pub fn longest_outage(inp: &Inputs) -> Check {
    if inp.rec.samples.is_empty() {
        return Check::not_measured("longest outage", "no requests sent".into());
    }
    let longest = outages(&inp.rec.samples)
        .iter()
        .map(|(a, b)| b - a)
        .fold(0.0, f64::max);
    let max = inp.expect().max_outage_ms;
    Check::new(
        "longest outage",
        format!("{longest:.0} ms (max {max:.0})"),
        Some(longest),
        longest <= max,
    )
}

/// Fault -> first success after the outage it caused (0 when nothing failed; that the VIP
/// really moved is a premise, checked from the holder samples).
pub fn failover(inp: &Inputs) -> Check {
    let events: Vec<&Event> = inp.rec.events.iter().filter(|e| e.failover).collect();
    if events.is_empty() {
        return Check::new("VIP failover", "n/a".into(), None, true);
    }
    if inp.rec.samples.is_empty() {
        return Check::not_measured("VIP failover", "no requests sent".into());
    }
    let max = inp.expect().max_failover_ms;
    let windows = outages(&inp.rec.samples);
    let mut figures = Vec::new();
    let mut worst: f64 = 0.0;
    for e in events {
        let from = e.t_ms - inp.timeout_ms;
        let to = e.t_ms + e.allow_ms.max(max);
        // The outage this fault caused: windows that start around it and end after it.
        let ms = windows
            .iter()
            .filter(|(a, end)| *a >= from && *a <= to && *end > e.t_ms)
            .map(|(_, end)| end - e.t_ms)
            .fold(0.0, f64::max);
        let served_after = inp
            .rec
            .samples
            .iter()
            .any(|s| s.ok() && s.t_ms > e.t_ms + ms);
        if !served_after {
            return Check::failed(
                "VIP failover",
                format!("nothing served after {} at {:.0} ms", e.what, e.t_ms),
            );
        }
        figures.push(format!("{ms:.0} ms"));
        worst = worst.max(ms);
    }
    Check::new(
        "VIP failover",
        format!("{} (max {max:.0})", figures.join("; ")),
        Some(worst),
        worst <= max,
    )
}

/// Every request that carried a session cookie of a pinned user, sent at or after `from`.
pub fn pinned_requests(rec: &Recording, from: f64) -> usize {
    affinity_walk(rec, 0.0).checked_after(from)
}

struct AffinityWalk {
    breaks: usize,
    repins: usize,
    checked_at: Vec<f64>,
    first_break: String,
}

impl AffinityWalk {
    fn checked_after(&self, from: f64) -> usize {
        self.checked_at.iter().filter(|t| **t >= from).count()
    }
}

/// Replays the samples: a new session pins its user; later requests must stay on the pin
/// unless the pinned backend was faulted (then one re-pin per user is allowed).
fn affinity_walk(rec: &Recording, timeout_ms: f64) -> AffinityWalk {
    let mut down_since: HashMap<&str, f64> = HashMap::new();
    for e in &rec.events {
        if let Some((name, true)) = &e.backend_down {
            down_since.entry(name.as_str()).or_insert(e.t_ms);
        }
    }
    let mut pins: HashMap<usize, String> = HashMap::new();
    let mut walk = AffinityWalk {
        breaks: 0,
        repins: 0,
        checked_at: Vec::new(),
        first_break: String::new(),
    };
    for s in rec.samples.iter().filter(|s| s.ok()) {
        let Some(backend) = &s.backend else { continue };
        if s.new_session || !s.had_cookie {
            if s.new_session {
                pins.insert(s.user, backend.clone());
            }
            continue;
        }
        let Some(pin) = pins.get(&s.user) else {
            continue;
        };
        walk.checked_at.push(s.t_ms);
        if pin == backend {
            continue;
        }
        let pin_faulted = down_since
            .get(pin.as_str())
            .is_some_and(|t| *t - timeout_ms <= s.t_ms);
        if pin_faulted {
            walk.repins += 1;
            pins.insert(s.user, backend.clone());
        } else {
            if walk.breaks == 0 {
                walk.first_break = format!(
                    ", first: user {} at {:.0} ms on {backend}, pinned to {pin}",
                    s.user, s.t_ms
                );
            }
            walk.breaks += 1;
        }
    }
    walk
}

/// Requests that left their session's pin while the pinned backend was healthy.
pub fn affinity(inp: &Inputs) -> Check {
    let name = "affinity breaks";
    let walk = affinity_walk(inp.rec, inp.timeout_ms);
    let fault_at = inp.rec.events.first().map_or(f64::INFINITY, |e| e.t_ms);
    let (all, after) = (walk.checked_at.len(), walk.checked_after(fault_at));
    let need = &inp.plan.enough;
    let data = format!("{all} pinned requests, {after} after the first fault");
    if all < need.pinned || after < need.pinned_after_fault {
        return Check::not_measured(
            name,
            format!(
                "{data} (need {} and {})",
                need.pinned, need.pinned_after_fault
            ),
        );
    }
    Check::new(
        name,
        format!(
            "{} of {data} ({} re-pins){}",
            walk.breaks, walk.repins, walk.first_break
        ),
        Some(walk.breaks as f64),
        walk.breaks == 0,
    )
}

/// A host stall this long freezes a leader past the election timeout (25 ms by default)
/// and may cost requests: its window is a fault window for [`lost`].
const HOST_STALL_FREEZES_MS: f64 = 20.0;

pub fn lost(inp: &Inputs) -> Check {
    if inp.rec.samples.is_empty() {
        return Check::not_measured("requests lost", "no requests sent".into());
    }
    let max_failover = inp.expect().max_failover_ms;
    // A fault that moves the VIP may take the whole failover budget.
    let allow = |e: &Event| {
        if e.failover {
            e.allow_ms.max(max_failover)
        } else {
            e.allow_ms
        }
    };
    let expected = |t: f64| {
        inp.rec
            .events
            .iter()
            .any(|e| t >= e.t_ms - inp.timeout_ms && t <= e.t_ms + allow(e))
    };
    // A CPU the host took away long enough to fail a leader over is a freeze like any
    // other, only not ours: its window is a fault window. A stall of the guest's own
    // (no steal) excuses nothing.
    let host_stall = |t: f64| {
        inp.rec.host_stalls.iter().any(|h| {
            h.by_host()
                && h.late_ms >= HOST_STALL_FREEZES_MS
                && t >= h.t_ms - inp.timeout_ms
                && t <= h.t_ms + h.late_ms + max_failover
        })
    };
    let failed: Vec<&Sample> = inp.rec.samples.iter().filter(|s| !s.ok()).collect();
    let unplanned: Vec<&&Sample> = failed.iter().filter(|s| !expected(s.t_ms)).collect();
    let excused = unplanned.iter().filter(|s| host_stall(s.t_ms)).count();
    let lost: Vec<&&&Sample> = unplanned.iter().filter(|s| !host_stall(s.t_ms)).collect();
    let mut why = String::new();
    if excused > 0 {
        why = format!(
            ", {excused} more in host stalls' windows (the machine took a CPU away: see \
             `host stall`)"
        );
    }
    if let Some(first) = lost.first() {
        let reason = first
            .error
            .clone()
            .or_else(|| first.status.map(|s| format!("HTTP {s}")))
            .unwrap_or_default();
        why = format!("{why}, first at {:.0} ms: {reason}", first.t_ms);
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
