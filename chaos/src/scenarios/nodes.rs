//! Scenarios that hit fulcrum processes: kill -9 of the leader or a follower, SIGSTOP of
//! the leader, and a rolling restart (SIGTERM + start, one node at a time).

use super::Ctx;
use crate::checks::Fault;
use crate::faults::{self, node_action, restart};
use crate::ops::{NodeAction, Ops};
use anyhow::Result;
use std::time::Duration;

/// kill -9 the leader at 3 s; start it again at 7 s (it must catch up from disk).
pub async fn kill_leader(cx: &mut Ctx<'_>) -> Result<()> {
    kill_then_start(cx, |_, leader| leader, 2000.0, true).await
}

/// kill -9 at 3 s of the node `victim` picks from the leader (failures allowed for
/// `allow_ms`; `failover` when the failover is measured), started again at 7 s.
async fn kill_then_start(
    cx: &mut Ctx<'_>,
    victim: fn(&dyn Ops, usize) -> usize,
    allow_ms: f64,
    failover: bool,
) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let victim = victim(cx.ops, leader);
    node_action(
        cx.ops,
        &mut cx.tl,
        victim,
        NodeAction::Kill,
        allow_ms,
        failover,
    )?;
    cx.tl.until(7000).await;
    restart(cx.ops, &mut cx.tl, victim, 0.0)
}

/// Death of the leader's node at 3 s: its link goes down first (peers and clients hear
/// silence, never a reset), then kill -9 of its process; at 7 s the link comes back and
/// the process starts again.
pub async fn crash_node_leader(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let name = cx.ops.node_name(leader);
    let t = Some(leader);
    let what = format!("link down {name}");
    let marked = cx.tl.mark(Fault::LinkDown, t, what, 2000.0, true);
    cx.ops.link(leader, false)?;
    cx.tl.note_applied(marked);
    node_action(cx.ops, &mut cx.tl, leader, NodeAction::Kill, 2000.0, false)?;
    cx.tl.until(7000).await;
    cx.tl
        .mark(Fault::LinkUp, t, format!("link up {name}"), 0.0, false);
    cx.ops.link(leader, true)?;
    restart(cx.ops, &mut cx.tl, leader, 0.0)
}

/// kill -9 a follower at 3 s (nothing may fail); start it again at 7 s.
pub async fn kill_follower(cx: &mut Ctx<'_>) -> Result<()> {
    kill_then_start(cx, faults::follower, 0.0, false).await
}

/// SIGSTOP the leader at 3 s (a zombie: its kernel keeps the VIP until the lifetime runs
/// out), SIGCONT at 6 s; the resumed node must not take the VIP back without a lease.
pub async fn freeze_leader(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    node_action(cx.ops, &mut cx.tl, leader, NodeAction::Freeze, 2500.0, true)?;
    // Sample densely around the resume: a re-announce may last only milliseconds.
    cx.tl.until(6000 - DENSE_LEAD_MS).await;
    cx.dense(true);
    cx.tl.until(6000).await;
    node_action(cx.ops, &mut cx.tl, leader, NodeAction::Resume, 0.0, false)?;
    if let Some(resume) = cx.tl.events.last_mut() {
        // By now the frozen kernel's VIP lifetime (2 s) has run out: any second holder
        // from here on is a re-announce without a lease.
        resume.no_dual_after = true;
    }
    cx.tl.until(6000 + DENSE_TAIL_MS).await;
    cx.dense(false);
    Ok(())
}

/// Dense sampling starts this long before a resume...
const DENSE_LEAD_MS: u64 = 100;
/// ...and lasts this long after it.
const DENSE_TAIL_MS: u64 = 1500;

/// How long the samples stay dense after a stopping leader exits (its successor's claim and
/// the old holder's forward are over well before).
const HAND_OVER_DENSE_MS: u64 = 300;

/// SIGTERM and restart every node in turn, followers first, the leader last.
pub async fn rolling_restart(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let mut order: Vec<usize> = (0..cx.ops.nodes()).filter(|i| *i != leader).collect();
    order.push(leader);
    for i in order {
        // Whoever leads now gets the failover measurement.
        let now_leader = faults::find_leader(cx.ops, &cx.holders()).await.ok();
        let is_leader = now_leader == Some(i);
        let allow = if is_leader { 1000.0 } else { 0.0 };
        // The leader's stop is a hand-over: sample it densely, so that an overlap of a few
        // milliseconds between the old holder and its successor cannot fall between samples.
        if is_leader {
            cx.dense(true);
            // The pollers take the dense period at their next sample.
            tokio::time::sleep(Duration::from_millis(DENSE_LEAD_MS)).await;
        }
        node_action(cx.ops, &mut cx.tl, i, NodeAction::Stop, allow, is_leader)?;
        if cx.ops.wait_exit(i, Duration::from_secs(5)) && cx.ops.running(i) != Some(true) {
            let what = format!("{} exited", cx.ops.node_name(i));
            cx.tl.mark(Fault::Exited, Some(i), what, 0.0, false);
        } else {
            node_action(cx.ops, &mut cx.tl, i, NodeAction::Kill, 0.0, false)?;
        }
        if is_leader {
            tokio::time::sleep(Duration::from_millis(HAND_OVER_DENSE_MS)).await;
            cx.dense(false);
        }
        restart(cx.ops, &mut cx.tl, i, 0.0)?;
        faults::wait_answering(cx.ops, i, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(())
}
