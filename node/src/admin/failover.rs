//! `GET /debug/failover`: what this node knows about the last failovers, for operators
//! and for the chaos suite's chain report.
//!
//! - `events`: the recorded steps (last ping, suspicion, stream closed and the probe's
//!   verdict, crash confirmed, pre-vote, election, lease, claim, first gratuitous ARP
//!   (`garp`), release, hand-off) with their CLOCK_MONOTONIC instants in microseconds, so
//!   the events of nodes on one host line up on one clock;
//! - `lease`: what this node may do with the VIP now (term, lease left, claim instant);
//! - `fence`: whether the kernel fence is installed and how long it stays open;
//! - `control`: the scheduling and memory locking the control thread obtained.

use crate::app::Node;
use fulcrum_raft::lease::time::now_us;
use serde_json::{json, Value};

pub fn failover(node: &Node) -> Value {
    let now = now_us();
    let (events, lease) = match node.cluster() {
        Some(c) => {
            let lease = c.raft.lease();
            let l = *lease.leadership().borrow();
            (
                json!(lease.events.snapshot()),
                json!({
                    "term": l.term,
                    "may_hold": l.may_hold(now),
                    "lease_left_us": l.lease_until_us.map(|u| u.saturating_sub(now)),
                    "claim_after_in_us": l.claim_after_us.saturating_sub(now),
                    "heartbeat_ms": lease.timing.heartbeat.as_millis() as u64,
                    "fence_ms": lease.timing.fence.as_millis() as u64,
                    "silence_ms": lease.timing.silence.as_millis() as u64,
                    "stagger_ms": lease.timing.stagger.as_millis() as u64,
                }),
            )
        }
        None => (json!([]), Value::Null),
    };
    let fence = node.vip.get().map(|v| {
        json!({
            "installed": v.fenced(),
            "open_for_ms": v.fence_open_for().map(|d| d.as_millis() as u64),
            "held": v.held(),
        })
    });
    json!({
        "now_us": now,
        "node_id": node.local.id,
        "events": events,
        "lease": lease,
        "fence": fence,
        "control": crate::control::thread::control_report(),
    })
}
