//! Premises: what must be true of a run before its figures mean anything. Each scenario
//! lists its premises as data (`scenarios/plan.rs`); this module turns each into a check
//! named "premise: ..." that fails as "premise not met" with the evidence it lacked.
//!
//! Evidence comes from observers, never from the fault's own claim: the `/status`
//! samples (role, lease, Redis and backend state, config version), the holder samples
//! (netlink, else the nodes' own word) and, locally, the wire probe.

use super::holders::{holder_view, wire_view};
use super::{Check, CpuUse, Event, Fault, Inputs, Recording, StatusSample};

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
/// After this long a faulted process must have stopped answering `/status`.
const EFFECT_DELAY_MS: f64 = 300.0;
/// A resumed process must answer `/status` again within this long.
const RESUME_ANSWER_MS: f64 = 3000.0;
/// A request this slow (or failed) is evidence of loss on the link (a retransmission).
const NETEM_SLOW_MS: f64 = 200.0;
/// A node whose link is down answers nothing on the wire from this long after the fault.
const LINK_DOWN_SLACK_MS: f64 = 50.0;
/// Wire samples a link-down window needs before its silence means anything.
const LINK_DOWN_MIN_SAMPLES: usize = 10;
/// A CPU hog took effect when its processes got at least this share of every core...
const HOG_MIN_PCT: f64 = 25.0;
/// ...and the machine was idle at most this share of the time.
const HOG_MAX_IDLE_PCT: f64 = 10.0;

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
            Premise::TakesEffect(_) => takes_effect(inp, e),
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

fn node_name(i: usize) -> String {
    format!("n{}", i + 1)
}

fn target_of(e: &Event) -> Result<usize, String> {
    e.target
        .ok_or_else(|| format!("{} at {:.0} ms names no node", e.what, e.t_ms))
}

/// Where the fault's window ends: its repair on the same target, else the end of the load.
fn window_end(rec: &Recording, e: &Event) -> f64 {
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
fn statuses_in(rec: &Recording, from: f64, to: f64) -> impl Iterator<Item = &StatusSample> {
    rec.statuses
        .iter()
        .filter(move |s| s.t_ms > from && s.t_ms < to)
}

/// The target was (`leader`) the leader and holder, or (`!leader`) a follower without the
/// VIP, just before the event.
fn role_at(inp: &Inputs, e: &Event, leader: bool) -> Result<String, String> {
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

/// The fault did what it is for, seen by an observer.
fn takes_effect(inp: &Inputs, e: &Event) -> Result<String, String> {
    let rec = inp.rec;
    let end = window_end(rec, e);
    match e.fault {
        Fault::Kill | Fault::Freeze => silent(inp, e, end),
        Fault::Stop => {
            let t = target_of(e)?;
            rec.events
                .iter()
                .find(|x| {
                    x.fault == Fault::Exited
                        && x.target == Some(t)
                        && x.t_ms >= e.t_ms
                        && x.t_ms <= end
                })
                .map(|x| {
                    format!(
                        "{} exited {:.0} ms after SIGTERM",
                        node_name(t),
                        x.t_ms - e.t_ms
                    )
                })
                .ok_or_else(|| {
                    format!(
                        "{} never exited after the stop at {:.0} ms",
                        node_name(t),
                        e.t_ms
                    )
                })
        }
        Fault::Partition => lost_quorum(inp, e, end),
        Fault::RedisDown => statuses_in(rec, e.t_ms, end)
            .find_map(|s| {
                s.nodes.iter().flatten().find_map(|n| {
                    n.session_store
                        .as_deref()
                        .filter(|st| *st != "connected")
                        .map(|st| {
                            format!("a node reported its session store {st} at {:.0} ms", s.t_ms)
                        })
                })
            })
            .ok_or_else(|| "no node reported its session store down while Redis was killed".into()),
        Fault::BackendDown => statuses_in(rec, e.t_ms, end)
            .find(|s| {
                s.nodes
                    .iter()
                    .flatten()
                    .any(|n| n.unhealthy.unwrap_or(0) > 0)
            })
            .map(|s| format!("a backend reported unhealthy at {:.0} ms", s.t_ms))
            .ok_or_else(|| "no node marked a backend unhealthy during the backend fault".into()),
        Fault::NetemOn => slowed(inp, e, end),
        Fault::ConfigPut => config_applied(inp, e),
        Fault::LinkDown => silent_on_wire(inp, e, end),
        Fault::HogOn => saturated(e),
        other => Err(format!("no evidence is defined for {}", other.label())),
    }
}

/// A killed or frozen target stops answering `/status` until its repair (and a frozen one
/// answers again after SIGCONT).
fn silent(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
    // Up to (not including) the repair: a restarted or resumed node answers again at
    // once, so a round still waiting for answers at the repair proves nothing.
    let seen: Vec<&StatusSample> = statuses_in(inp.rec, e.t_ms + EFFECT_DELAY_MS, end)
        .filter(|s| s.done_ms < end)
        .collect();
    if seen.is_empty() {
        return Err(format!(
            "no /status sample between the {} of {} and its repair",
            e.fault.label(),
            node_name(t)
        ));
    }
    if let Some(s) = seen
        .iter()
        .find(|s| s.nodes.get(t).is_some_and(|n| n.is_some()))
    {
        return Err(format!(
            "{} still answered /status {:.0} ms after the {}",
            node_name(t),
            s.t_ms - e.t_ms,
            e.fault.label()
        ));
    }
    let mut text = format!("{} silent in {} /status samples", node_name(t), seen.len());
    if e.fault == Fault::Freeze {
        let back = statuses_in(inp.rec, end, end + RESUME_ANSWER_MS)
            .find(|s| s.nodes.get(t).is_some_and(|n| n.is_some()))
            .ok_or_else(|| format!("{} never answered again after the resume", node_name(t)))?;
        text.push_str(&format!(
            ", answers {:.0} ms after the resume",
            back.t_ms - end
        ));
    }
    Ok(text)
}

/// A partitioned leader reports its lease lapsed (or that it stepped down).
fn lost_quorum(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
    // Only a leader's lost quorum shows in its /status (its lease goes stale, it steps
    // down); a follower is "not leader" whether or not the partition bit, so that would
    // prove nothing.
    role_at(inp, e, true)
        .map_err(|why| format!("a partition's effect is visible only on a leader, and {why}"))?;
    statuses_in(inp.rec, e.t_ms, end)
        .find_map(|s| {
            let n = s.nodes.get(t)?.as_ref()?;
            let lapsed = n.lease_fresh == Some(false) || n.role.as_deref() != Some("leader");
            lapsed.then(|| {
                format!(
                    "{} lost quorum {:.0} ms after the partition",
                    node_name(t),
                    s.t_ms - e.t_ms
                )
            })
        })
        .ok_or_else(|| {
            format!(
                "{} kept a fresh lease as leader through the partition",
                node_name(t)
            )
        })
}

/// The link fault shows in the load: slow or failed requests, or a slower median.
fn slowed(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let during: Vec<&crate::load::Sample> = inp
        .rec
        .samples
        .iter()
        .filter(|s| s.t_ms >= e.t_ms && s.t_ms <= end)
        .collect();
    if during.is_empty() {
        return Err("no request sent while the link was degraded".into());
    }
    let hit = during
        .iter()
        .filter(|s| !s.ok() || s.latency_ms >= NETEM_SLOW_MS)
        .count();
    let share = hit as f64 / during.len() as f64;
    if share >= 0.01 {
        return Ok(format!("{hit} of {} requests slow or failed", during.len()));
    }
    Err(format!(
        "only {hit} of {} requests slower than {NETEM_SLOW_MS:.0} ms or failed while the link was degraded",
        during.len()
    ))
}

/// Every node reports a higher config version after the change than before it.
fn config_applied(inp: &Inputs, e: &Event) -> Result<String, String> {
    let before = inp
        .rec
        .statuses
        .iter()
        .rev()
        .filter(|s| s.t_ms <= e.t_ms)
        .find_map(|s| {
            s.nodes
                .iter()
                .map(|n| n.as_ref().and_then(|n| n.config_version))
                .collect::<Option<Vec<u64>>>()
        })
        .ok_or_else(|| {
            "no /status round before the change where every node answered".to_string()
        })?;
    inp.rec
        .statuses
        .iter()
        .filter(|s| s.t_ms > e.t_ms)
        .find(|s| {
            s.nodes.len() == before.len()
                && s.nodes.iter().zip(&before).all(|(n, b)| {
                    n.as_ref()
                        .and_then(|n| n.config_version)
                        .is_some_and(|v| v > *b)
                })
        })
        .map(|s| format!("every node above version {:?} at {:.0} ms", before, s.t_ms))
        .ok_or_else(|| format!("the nodes never moved past versions {before:?}"))
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

/// A node whose link went down answers neither ARP nor TCP for the VIP until its repair:
/// its peers and clients hear silence, not a closed socket (a reset).
fn silent_on_wire(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
    let wire = wire_view(inp.rec)
        .ok_or_else(|| "no wire probe: nothing can show that the link went silent".to_string())?;
    let seen: Vec<_> = wire
        .iter()
        .filter(|w| !w.failed && w.t_ms > e.t_ms + LINK_DOWN_SLACK_MS && w.t_ms < end)
        .collect();
    if seen.len() < LINK_DOWN_MIN_SAMPLES {
        return Err(format!(
            "{} wire samples while the link of {} was down (need {LINK_DOWN_MIN_SAMPLES})",
            seen.len(),
            node_name(t)
        ));
    }
    let answered = |w: &&&crate::checks::WireSample| {
        w.arp.get(t).copied().unwrap_or(false) || w.tcp.get(t).copied().unwrap_or(false)
    };
    if let Some(w) = seen.iter().find(answered) {
        return Err(format!(
            "{} still answered on the wire {:.0} ms after its link went down",
            node_name(t),
            w.t_ms - e.t_ms
        ));
    }
    Ok(format!(
        "{} silent on the wire in {} samples",
        node_name(t),
        seen.len()
    ))
}

/// The hog processes got CPU and the machine had (almost) no idle time.
fn saturated(e: &Event) -> Result<String, String> {
    let cpu = e
        .cpu
        .ok_or_else(|| "the CPU use of the hog was not measured".to_string())?;
    saturated_by(&cpu)
}

/// Whether a hog's measured CPU use saturated the machine (also `--under-hog`).
pub fn saturated_by(cpu: &CpuUse) -> Result<String, String> {
    let text = format!(
        "{} busy processes on {} cores got {:.0}% of the CPU, idle {:.1}%",
        cpu.procs, cpu.cores, cpu.hog_pct, cpu.idle_pct
    );
    if cpu.procs <= cpu.cores || cpu.hog_pct < HOG_MIN_PCT || cpu.idle_pct > HOG_MAX_IDLE_PCT {
        return Err(format!(
            "{text} (need more processes than cores, at least {HOG_MIN_PCT:.0}% and idle at most {HOG_MAX_IDLE_PCT:.0}%)"
        ));
    }
    Ok(text)
}
