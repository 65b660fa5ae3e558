//! Reads `GET /debug/failover` from every node that answers, and the CLOCK_MONOTONIC
//! instant of the scenario epoch (the nodes stamp their events on that clock).

use super::NodeDoc;
use crate::httpc;
use crate::ops::Ops;
use anyhow::{bail, Context, Result};
use nix::time::{clock_gettime, ClockId};
use std::time::{Duration, Instant};

/// Budget of one `/debug/failover` call (a frozen or dead node costs no more).
const CALL_BUDGET: Duration = Duration::from_millis(500);

/// CLOCK_MONOTONIC in microseconds.
pub fn mono_us() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|ts| (ts.tv_sec() as u64) * 1_000_000 + (ts.tv_nsec() as u64) / 1_000)
        .unwrap_or(0)
}

/// CLOCK_MONOTONIC µs of `epoch` (a `std::time::Instant` of this process).
pub fn epoch_us(epoch: Instant) -> u64 {
    mono_us().saturating_sub(epoch.elapsed().as_micros() as u64)
}

/// `/debug/failover` of node `admin`.
pub async fn read(admin: &str, name: &str) -> Result<NodeDoc> {
    let reply = httpc::request(admin, "GET", "/debug/failover", &[], None, CALL_BUDGET).await?;
    if reply.status != 200 {
        bail!("GET /debug/failover on {admin}: HTTP {}", reply.status);
    }
    let mut doc: NodeDoc = serde_json::from_slice(&reply.body)
        .with_context(|| format!("/debug/failover of {admin} is not the expected JSON"))?;
    doc.name = name.to_string();
    Ok(doc)
}

/// Every node that answers (a dead or frozen one is left out; its events died with it or
/// wait for its resume).
pub async fn read_all(ops: &dyn Ops) -> Vec<NodeDoc> {
    let mut docs = Vec::new();
    for i in 0..ops.nodes() {
        match read(&ops.admin(i), &ops.node_name(i)).await {
            Ok(d) => docs.push(d),
            Err(e) => note_missing(&ops.node_name(i), &e),
        }
    }
    docs
}

fn note_missing(node: &str, e: &anyhow::Error) {
    eprintln!("   (chain: no /debug/failover from {node}: {e:#})");
}
