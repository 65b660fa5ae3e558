//! "Steady": between a fault and its repair (a CPU hog) nothing may move: no leader
//! change, no new term, no VIP move. Read from the `/status` rounds (who reports itself
//! leader, in which term) and the netlink holder samples (who has the address).
//!
//! Like every check it needs data first: enough `/status` rounds with a leader and enough
//! known holder samples inside the window, otherwise it fails as "not measured".

use super::holders::holder_view;
use super::{Check, Fault, Inputs};

const NAME: &str = "steady leadership and VIP";
/// The `/status` poller's period (see `status_poller.rs`).
const STATUS_PERIOD_MS: f64 = 100.0;
/// Share of the rounds the window promises that must have seen a leader.
const STATUS_SHARE: f64 = 0.5;

pub fn steady(inp: &Inputs, fault: Fault) -> Check {
    let rec = inp.rec;
    let Some(on) = rec.events.iter().find(|e| e.fault == fault) else {
        return Check::failed(NAME, format!("no {} on the timeline", fault.label()));
    };
    let off = fault
        .repair()
        .and_then(|r| rec.events.iter().find(|e| e.fault == r && e.t_ms > on.t_ms))
        .map(|e| e.t_ms);
    let Some(off) = off else {
        return Check::failed(NAME, format!("the {} never ended", fault.label()));
    };
    let within = |t: f64| t > on.t_ms && t < off;
    let span = off - on.t_ms;

    // Leadership: the node reporting itself leader and its term, per round.
    let mut leaders: Vec<(usize, Option<u64>)> = Vec::new();
    for s in rec.statuses.iter().filter(|s| within(s.t_ms)) {
        let leader = s.nodes.iter().enumerate().find_map(|(i, n)| {
            let n = n.as_ref()?;
            (n.role.as_deref() == Some("leader")).then_some((i, n.term))
        });
        leaders.extend(leader);
    }
    let need_rounds = ((span / STATUS_PERIOD_MS) * STATUS_SHARE).ceil() as usize;
    let measured = enough(
        leaders.len(),
        need_rounds,
        "/status rounds with a leader",
        span,
    );
    if let Err(not_measured) = measured {
        return not_measured;
    }
    let leader_changes = leaders.windows(2).filter(|w| w[0].0 != w[1].0).count();
    let terms: Vec<u64> = leaders.iter().filter_map(|(_, t)| *t).collect();
    let term_changes = terms.windows(2).filter(|w| w[0] != w[1]).count();

    // The VIP: the set of holders per known sample; any change is a move (or a flap).
    let view = holder_view(rec);
    let holders: Vec<Vec<usize>> = view
        .iter()
        .filter(|(t, h)| within(*t) && h.iter().all(Option::is_some))
        .map(|(_, h)| {
            h.iter()
                .enumerate()
                .filter(|(_, x)| **x == Some(true))
                .map(|(i, _)| i)
                .collect()
        })
        .collect();
    let need_samples =
        ((span / inp.poll_ms.max(1.0)) * inp.plan.enough.holder_share).ceil() as usize;
    let measured = enough(holders.len(), need_samples, "complete holder samples", span);
    if let Err(not_measured) = measured {
        return not_measured;
    }
    let vip_moves = holders.windows(2).filter(|w| w[0] != w[1]).count();
    let not_one = holders.iter().filter(|h| h.len() != 1).count();
    let first = leaders
        .first()
        .map_or_else(|| "?".to_string(), |(i, _)| format!("n{}", i + 1));
    let figure = format!(
        "{leader_changes} leader changes, {term_changes} term changes, {vip_moves} VIP moves, \
         {not_one} samples without exactly one holder over {span:.0} ms \
         ({} /status rounds, {} holder samples, {first} leading at the start)",
        leaders.len(),
        holders.len()
    );
    let pass = leader_changes == 0 && term_changes == 0 && vip_moves == 0 && not_one == 0;
    Check::new(
        NAME,
        figure,
        Some((leader_changes + vip_moves) as f64),
        pass,
    )
}

/// "Not measured" when the window of `span_ms` holds fewer than `need` of `what`.
fn enough(have: usize, need: usize, what: &str, span_ms: f64) -> Result<(), Check> {
    if have < need {
        let why = format!("{have} {what} in {span_ms:.0} ms (need {need})");
        return Err(Check::not_measured(NAME, why));
    }
    Ok(())
}
