//! What "the fault took effect" means for each kind of fault, seen by an observer and
//! never taken from the fault's own claim: a killed process stops answering `/status`, a
//! partitioned leader's lease lapses and a partitioned follower's commit index stands
//! still while the others commit, a taken port shows as the node's apply error, a link
//! fault slows the load, a CPU hog measured a busy machine.

use super::holders::wire_view;
use super::premises::{node_name, role_at, statuses_in, target_of, window_end};
use super::{CpuUse, Event, Fault, Inputs, StatusSample};

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
/// `/status` rounds a partitioned follower must answer before its still commit index
/// means anything.
const CUT_OFF_MIN_ROUNDS: usize = 5;
/// A CPU hog took effect when its processes got at least this share of every core...
const HOG_MIN_PCT: f64 = 25.0;
/// ...and the machine was idle at most this share of the time.
const HOG_MAX_IDLE_PCT: f64 = 10.0;

/// The fault did what it is for, seen by an observer.
pub(super) fn takes_effect(inp: &Inputs, e: &Event) -> Result<String, String> {
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
        Fault::Partition => partitioned(inp, e, end),
        Fault::PortBusy => port_taken(inp, e, end),
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

/// A partition took effect. A leader shows it in its own `/status` (its lease lapses or
/// it steps down); a follower's role says nothing ("not leader" either way), so for a
/// follower the evidence is its commit index: it stays still while the cluster it was
/// cut off from commits past it (see [`cut_off`]).
fn partitioned(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    match role_at(inp, e, true) {
        Ok(_) => lost_quorum(inp, e, end),
        Err(not_leader) => match role_at(inp, e, false) {
            Ok(_) => cut_off(inp, e, end),
            Err(_) => Err(format!(
                "a partition's effect is judged on a leader or a follower, and {not_leader}"
            )),
        },
    }
}

/// A partitioned leader reports its lease lapsed (or that it stepped down).
fn lost_quorum(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
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

/// A partitioned follower hears no AppendEntries: its commit index does not move in any
/// `/status` round of the partition (after [`EFFECT_DELAY_MS`], before the heal), while
/// another node commits past it. Rules that match nothing leave the follower in step, and
/// a cluster that commits nothing during the window proves nothing: both fail.
fn cut_off(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
    let rounds: Vec<&StatusSample> = statuses_in(inp.rec, e.t_ms + EFFECT_DELAY_MS, end)
        .filter(|s| s.done_ms < end)
        .collect();
    let own: Vec<(f64, u64)> = rounds
        .iter()
        .filter_map(|s| {
            let n = s.nodes.get(t)?.as_ref()?;
            Some((s.t_ms, n.commit_index?))
        })
        .collect();
    if own.len() < CUT_OFF_MIN_ROUNDS {
        return Err(format!(
            "{} reported its commit index in {} /status rounds of the partition (need {CUT_OFF_MIN_ROUNDS})",
            node_name(t),
            own.len()
        ));
    }
    let (first, last) = (own[0].1, own[own.len() - 1].1);
    if let Some((at, moved)) = own.iter().find(|(_, c)| *c != first) {
        return Err(format!(
            "{}'s commit index moved from {first} to {moved} {:.0} ms after the partition: it still heard the leader",
            node_name(t),
            at - e.t_ms
        ));
    }
    let ahead = rounds.iter().find_map(|s| {
        s.nodes.iter().enumerate().find_map(|(j, n)| {
            let c = n.as_ref()?.commit_index?;
            (j != t && c > last).then_some((s.t_ms, j, c))
        })
    });
    let Some((at, j, c)) = ahead else {
        return Err(format!(
            "no other node committed past {}'s index {first} while it was cut off: nothing shows the partition bit",
            node_name(t)
        ));
    };
    Ok(format!(
        "{}'s commit index stayed at {first} in {} /status rounds; {} committed {c} at {:.0} ms after the partition",
        node_name(t),
        own.len(),
        node_name(j),
        at - e.t_ms
    ))
}

/// The node with the taken port reported that it could not apply the config that needs
/// the port: `config_apply_error` names a newer version than it runs, for an address in
/// use, between the squat and the port's release.
fn port_taken(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let t = target_of(e)?;
    statuses_in(inp.rec, e.t_ms, end)
        .find_map(|s| {
            let n = s.nodes.get(t)?.as_ref()?;
            let err = n.apply_error.as_ref()?;
            let newer = n.config_version.is_some_and(|v| err.version > v);
            let busy = err.reason.to_ascii_lowercase().contains("in use");
            (newer && busy).then(|| {
                format!(
                    "{} could not apply version {} at {:.0} ms: {}",
                    node_name(t),
                    err.version,
                    s.t_ms,
                    err.reason
                )
            })
        })
        .ok_or_else(|| {
            format!(
                "{} never reported a config it could not apply for an address in use while the port was taken",
                node_name(t)
            )
        })
}

/// The link fault shows in the load: slow or failed requests, or a slower median.
fn slowed(inp: &Inputs, e: &Event, end: f64) -> Result<String, String> {
    let during: Vec<&fulcrum_testbed::load::Sample> = inp
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
