//! Premises: what must be true of a run before its figures mean anything. Each scenario
//! lists its premises as data (`scenarios/plan.rs`); this module turns each into a check
//! named "premise: ..." that fails as "premise not met" with the evidence it lacked.
//!
//! Evidence comes from observers, never from the fault's own claim: the `/status`
//! samples (role, lease, Redis and backend state, config version), the holder samples
//! (netlink, else the nodes' own word) and, locally, the wire probe.

use super::holders::{holder_view, wire_view};
use super::{effect, Check, Event, Fault, Inputs, Recording, StatusSample};
pub use effect::saturated_by;

/// Which events of a kind a premise looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Every,
    Last,
    AllButLast,
}

/// One thing a scenario requires of its run.
#[derive(Debug, Clone, Copy)]
pub enum Premise {
    /// The fault's target was the Raft leader and the VIP holder when it hit.
    Leads { fault: Fault, which: Which },
    /// The fault's target was a follower that did not hold the VIP.
    Follows { fault: Fault, which: Which },
    /// The fault took effect (what that means depends on the fault, see [`takes_effect`]).
    TakesEffect(Fault),
    /// A leader and VIP holder other than the target emerged within this many ms.
    NewLeaderAndHolder {
        after: Fault,
        which: Which,
        within_ms: f64,
    },
    /// The target was seen without the VIP within this many ms (its lease).
    Releases { after: Fault, within_ms: f64 },
}

/// How long a `/status` answer counts as "now" for a premise.
const STATUS_FRESH_MS: f64 = 1500.0;
/// Slack for the `/status` sampling period (about 100 ms, longer when a node hangs).
const STATUS_SLACK_MS: f64 = 400.0;

impl Fault {
    pub fn label(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Freeze => "freeze",
            Fault::Resume => "resume",
            Fault::Stop => "stop",
            Fault::Exited => "exit",
            Fault::Start => "start",
            Fault::Partition => "partition",
            Fault::Heal => "heal",
            Fault::NetemOn => "netem",
            Fault::NetemOff => "netem off",
            Fault::RedisDown => "redis kill",
            Fault::RedisUp => "redis start",
            Fault::BackendDown => "backend fault",
            Fault::BackendUp => "backend repair",
            Fault::ConfigPut => "config change",
            Fault::LinkDown => "link down",
            Fault::LinkUp => "link up",
            Fault::HogOn => "cpu hog",
            Fault::HogOff => "cpu hog end",
            Fault::PortBusy => "port taken",
            Fault::PortFree => "port freed",
        }
    }
}

impl Premise {
    pub fn describe(&self) -> String {
        match self {
            Premise::Leads { fault, which } => {
                format!(
                    "{}{} hits the leader and VIP holder",
                    which_text(*which),
                    fault.label()
                )
            }
            Premise::Follows { fault, which } => {
                format!("{}{} hits a follower", which_text(*which), fault.label())
            }
            Premise::TakesEffect(f) => format!("{} takes effect", f.label()),
            Premise::NewLeaderAndHolder { after, which, .. } => format!(
                "another node leads and holds after the {}{}",
                which_text(*which),
                after.label()
            ),
            Premise::Releases { after, .. } => {
                format!(
                    "the {} target drops the VIP within its lease",
                    after.label()
                )
            }
        }
    }
}

fn which_text(w: Which) -> &'static str {
    match w {
        Which::Every => "",
        Which::Last => "last ",
        Which::AllButLast => "every but the last ",
    }
}

pub fn evaluate(inp: &Inputs) -> Vec<Check> {
    inp.plan.premises.iter().map(|p| check(p, inp)).collect()
}

fn check(p: &Premise, inp: &Inputs) -> Check {
    let name = format!("premise: {}", p.describe());
    let (fault, which) = match *p {
        Premise::Leads { fault, which } | Premise::Follows { fault, which } => (fault, which),
        Premise::TakesEffect(f) => (f, Which::Every),
        Premise::NewLeaderAndHolder { after, which, .. } => (after, which),
        Premise::Releases { after, .. } => (after, Which::Every),
    };
    let events = select(&inp.rec.events, fault, which);
    if events.is_empty() {
        return Check::failed(
            &name,
            format!("premise not met: no {} on the timeline", fault.label()),
        );
    }
    let mut evidence = Vec::new();
    for e in events {
        let result = match *p {
            Premise::Leads { .. } => role_at(inp, e, true),
            Premise::Follows { .. } => role_at(inp, e, false),
            Premise::TakesEffect(_) => effect::takes_effect(inp, e),
            Premise::NewLeaderAndHolder { within_ms, .. } => new_holder(inp, e, within_ms),
            Premise::Releases { within_ms, .. } => releases(inp, e, within_ms),
        };
        match result {
            Ok(text) => evidence.push(text),
            Err(why) => return Check::failed(&name, format!("premise not met: {why}")),
        }
    }
    Check::new(&name, evidence.join("; "), None, true)
}

fn select(events: &[Event], fault: Fault, which: Which) -> Vec<&Event> {
    let all: Vec<&Event> = events.iter().filter(|e| e.fault == fault).collect();
    match which {
        Which::Every => all,
        Which::Last => all.last().copied().into_iter().collect(),
        Which::AllButLast => all[..all.len().saturating_sub(1)].to_vec(),
    }
}

pub(super) fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

pub(super) fn target_of(e: &Event) -> Result<usize, String> {
    e.target
        .ok_or_else(|| format!("{} at {:.0} ms names no node", e.what, e.t_ms))
}

/// Where the fault's window ends: its repair on the same target, else the end of the load.
pub(super) fn window_end(rec: &Recording, e: &Event) -> f64 {
    let load_end = rec.samples.last().map_or(e.t_ms, |s| s.t_ms);
    e.fault
        .repair()
        .and_then(|r| {
            rec.events
                .iter()
                .find(|x| x.fault == r && x.target == e.target && x.t_ms > e.t_ms)
        })
        .map_or(load_end, |x| x.t_ms)
}

/// `/status` rounds strictly between `from` and `to` (a round at the very instant of a
/// fault or repair may have seen either side).
pub(super) fn statuses_in(
    rec: &Recording,
    from: f64,
    to: f64,
) -> impl Iterator<Item = &StatusSample> {
    rec.statuses
        .iter()
        .filter(move |s| s.t_ms > from && s.t_ms < to)
}

/// The target was (`leader`) the leader and holder, or (`!leader`) a follower without the
/// VIP, just before the event.
pub(super) fn role_at(inp: &Inputs, e: &Event, leader: bool) -> Result<String, String> {
    let t = target_of(e)?;
    let what = format!(
        "the {} of {} at {:.0} ms",
        e.fault.label(),
        node_name(t),
        e.t_ms
    );
    let status = inp
        .rec
        .statuses
        .iter()
        .rev()
        .filter(|s| s.t_ms < e.t_ms && s.t_ms >= e.t_ms - STATUS_FRESH_MS)
        .find_map(|s| s.nodes.get(t).cloned().flatten().map(|n| (s.t_ms, n)));
    let Some((at, node)) = status else {
        return Err(format!(
            "{} did not answer /status in the {STATUS_FRESH_MS:.0} ms before {what}",
            node_name(t)
        ));
    };
    let role = node.role.unwrap_or_else(|| "?".into());
    if (role == "leader") != leader {
        return Err(format!(
            "{} was {role} {:.0} ms before {what}",
            node_name(t),
            e.t_ms - at
        ));
    }
    let holds = held_before(inp, t, e.t_ms)?;
    if holds != leader {
        let word = if holds { "held" } else { "did not hold" };
        return Err(format!(
            "{} {word} the VIP just before {what}",
            node_name(t)
        ));
    }
    if leader {
        if let Some(wire) = wire_view(inp.rec) {
            let last = wire
                .iter()
                .rev()
                .filter(|w| !w.failed && w.t_ms < e.t_ms)
                .find(|w| w.t_ms >= e.t_ms - fresh_holder_ms(inp));
            let answered = last.is_some_and(|w| {
                w.arp.get(t).copied().unwrap_or(false) || w.tcp.get(t).copied().unwrap_or(false)
            });
            if !answered {
                return Err(format!(
                    "{} did not answer for the VIP on the wire just before {what}",
                    node_name(t)
                ));
            }
        }
    }
    Ok(format!("{} {role}", node_name(t)))
}

fn fresh_holder_ms(inp: &Inputs) -> f64 {
    (5.0 * inp.poll_ms).max(200.0)
}

/// Whether node `t` held the VIP in the last known sample before `at`.
fn held_before(inp: &Inputs, t: usize, at: f64) -> Result<bool, String> {
    let view = holder_view(inp.rec);
    view.iter()
        .rev()
        .filter(|(ts, _)| *ts < at && *ts >= at - fresh_holder_ms(inp).max(STATUS_FRESH_MS))
        .find_map(|(_, h)| h.get(t).copied().flatten())
        .ok_or_else(|| format!("no holder sample of {} before {at:.0} ms", node_name(t)))
}

/// A node other than the target holds the VIP and leads within `within_ms`.
fn new_holder(inp: &Inputs, e: &Event, within_ms: f64) -> Result<String, String> {
    let t = target_of(e)?;
    let deadline = e.t_ms + within_ms + inp.poll_ms;
    let view = holder_view(inp.rec);
    // Nodes that already held the VIP at the fault are not "new".
    let before: Vec<bool> = (0..view.first().map_or(0, |v| v.1.len()))
        .map(|j| held_before(inp, j, e.t_ms).unwrap_or(false))
        .collect();
    let (at, j) = view
        .iter()
        .filter(|(ts, _)| *ts > e.t_ms && *ts <= deadline)
        .find_map(|(ts, h)| {
            h.iter()
                .enumerate()
                .find(|(j, held)| *j != t && **held == Some(true) && !before[*j])
                .map(|(j, _)| (*ts, j))
        })
        .ok_or_else(|| {
            format!(
                "no node other than {} took the VIP within {within_ms:.0} ms of the {}",
                node_name(t),
                e.fault.label()
            )
        })?;
    let leads = statuses_in(inp.rec, e.t_ms, deadline + STATUS_SLACK_MS).any(|s| {
        s.nodes
            .get(j)
            .and_then(|n| n.as_ref())
            .is_some_and(|n| n.role.as_deref() == Some("leader"))
    });
    if !leads {
        return Err(format!(
            "{} held the VIP after the {} but never reported itself leader",
            node_name(j),
            e.fault.label()
        ));
    }
    let mut text = format!(
        "{} holds {:.0} ms after the {}",
        node_name(j),
        at - e.t_ms,
        e.fault.label()
    );
    if let Some(wire) = wire_view(inp.rec) {
        let answered = wire
            .iter()
            .filter(|w| !w.failed && w.t_ms > e.t_ms && w.t_ms <= deadline)
            .find(|w| {
                w.arp.get(j).copied().unwrap_or(false) || w.tcp.get(j).copied().unwrap_or(false)
            })
            .ok_or_else(|| {
                format!(
                    "{} never answered for the VIP on the wire within {within_ms:.0} ms",
                    node_name(j)
                )
            })?;
        text.push_str(&format!(
            ", answers on the wire at {:.0} ms",
            answered.t_ms - e.t_ms
        ));
    }
    Ok(text)
}

/// The target is seen without the VIP within `within_ms` (plus one sampling period).
fn releases(inp: &Inputs, e: &Event, within_ms: f64) -> Result<String, String> {
    let t = target_of(e)?;
    let bound = within_ms + inp.poll_ms;
    let view = holder_view(inp.rec);
    let released = view
        .iter()
        .find(|(ts, h)| *ts > e.t_ms && h.get(t).copied().flatten() == Some(false))
        .map(|(ts, _)| ts - e.t_ms)
        .ok_or_else(|| {
            format!(
                "{} never dropped the VIP after the {}",
                node_name(t),
                e.fault.label()
            )
        })?;
    if released > bound {
        return Err(format!(
            "{} dropped the VIP {released:.0} ms after the {} (lease bound {within_ms:.0} + {:.0} ms sampling)",
            node_name(t),
            e.fault.label(),
            inp.poll_ms
        ));
    }
    let mut text = format!(
        "{} dropped it after {released:.0} ms (bound {bound:.0})",
        node_name(t)
    );
    if let Some(wire) = wire_view(inp.rec) {
        let quiet = wire
            .iter()
            .filter(|w| !w.failed && w.t_ms > e.t_ms)
            .find(|w| {
                !w.arp.get(t).copied().unwrap_or(true) && !w.tcp.get(t).copied().unwrap_or(true)
            })
            .map(|w| w.t_ms - e.t_ms)
            .ok_or_else(|| format!("{} never stopped answering on the wire", node_name(t)))?;
        if quiet > bound {
            return Err(format!(
                "{} answered for the VIP on the wire until {quiet:.0} ms after the {} (bound {bound:.0})",
                node_name(t),
                e.fault.label()
            ));
        }
        text.push_str(&format!(", silent on the wire after {quiet:.0} ms"));
    }
    Ok(text)
}
