//! Scenarios where the replicated state must heal itself (issue 23): after each, the
//! convergence watcher (`converge.rs`) requires every node to agree with the truth.
//!
//! - restart-two-recover: a backend is down; two nodes (a follower, then the leader) are
//!   killed, the backend recovers while they are down, and both start again;
//! - partition-flap: a follower is cut off from Raft while a backend flaps, ending down
//!   while the follower is still cut off; then the partition heals;
//! - port-busy: a config whose new listener port is taken on one node is applied (that
//!   node must report the failure in `/status`), then the port is freed;
//! - large-configs: a follower is killed, six ~1 MiB configs are committed, and it starts
//!   again (it must catch up on about 6 MiB of log).

use super::Ctx;
use crate::checks::Fault;
use crate::config_variants::{EXTRA_PORT, LARGE_BASE, PORT_VARIANT};
use crate::faults::{self, node_action, restart};
use crate::httpc;
use crate::ops::{BackendAction, NodeAction};
use anyhow::{anyhow, bail, Result};
use std::time::{Duration, Instant};

/// Health detection: interval 500 ms x fall 2 + timeout, with slack for a loaded machine.
const DETECT_MS: f64 = 2500.0;
/// From the kills to the new leader holding the VIP after the restarts (no quorum between).
const NO_QUORUM_MS: f64 = 6000.0;
/// The first fault of restart-two-recover and port-busy: late enough that the load sends
/// more than the 100 requests a verdict needs before it at 100 requests/s (at 1,000 ms
/// the count was exactly 100 or 101 in real runs: one late send failed the premise).
const FIRST_FAULT_MS: u64 = 1500;
/// Large configs committed while the follower is down.
const LARGE_COUNT: u32 = 6;

pub async fn restart_two_recover(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(FIRST_FAULT_MS).await;
    faults::backend(cx.ops, &mut cx.tl, 0, BackendAction::Kill, DETECT_MS)?;
    cx.tl.until(3500).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let follower = faults::follower(cx.ops, leader);
    let ops = cx.ops;
    node_action(
        ops,
        &mut cx.tl,
        follower,
        NodeAction::Kill,
        NO_QUORUM_MS,
        false,
    )?;
    node_action(
        ops,
        &mut cx.tl,
        leader,
        NodeAction::Kill,
        NO_QUORUM_MS,
        true,
    )?;
    cx.tl.until(4500).await;
    faults::backend(ops, &mut cx.tl, 0, BackendAction::Start, 0.0)?;
    cx.tl.until(6000).await;
    restart(ops, &mut cx.tl, follower, NO_QUORUM_MS)?;
    restart(ops, &mut cx.tl, leader, NO_QUORUM_MS)
}

pub async fn partition_flap(cx: &mut Ctx<'_>) -> Result<()> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let victim = faults::follower(cx.ops, leader);
    let what = format!("partition {}", cx.ops.node_name(victim));
    cx.tl.mark(Fault::Partition, Some(victim), what, 0.0, false);
    cx.ops.partition(victim)?;
    // Down and up twice, then down for good while the follower is still cut off: its
    // replicated state still says "up" from before the partition, and must learn "down"
    // after the heal.
    for (at, action, allow) in [
        (3300, BackendAction::Fail, DETECT_MS),
        (4300, BackendAction::Ok, 0.0),
        (5300, BackendAction::Fail, DETECT_MS),
        (6300, BackendAction::Ok, 0.0),
        (7300, BackendAction::Fail, DETECT_MS),
    ] {
        cx.tl.until(at).await;
        faults::backend(cx.ops, &mut cx.tl, 0, action, allow)?;
    }
    cx.tl.until(9000).await;
    let what = format!("heal {}", cx.ops.node_name(victim));
    cx.tl.mark(Fault::Heal, Some(victim), what, 0.0, false);
    cx.ops.heal(victim)
}

/// Returns the version every node must reach.
pub async fn port_busy(cx: &mut Ctx<'_>) -> Result<Option<u64>> {
    cx.tl.until(FIRST_FAULT_MS).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let busy = faults::follower(cx.ops, leader);
    let name = cx.ops.node_name(busy);
    let what = format!("port {EXTRA_PORT} taken on {name}");
    cx.tl.mark(Fault::PortBusy, Some(busy), what, 0.0, false);
    cx.ops.squat(busy, EXTRA_PORT, true)?;
    cx.tl.until(3000).await;
    let toml = cx
        .ops
        .config_toml(PORT_VARIANT)
        .ok_or_else(|| anyhow!("no config with a listener on port {EXTRA_PORT}"))?;
    let what = format!("PUT /config (listener on :{EXTRA_PORT}) on {name}");
    cx.tl.mark(Fault::ConfigPut, Some(busy), what, 0.0, false);
    // Sent under `--noop-fault` too: the port is then free, every node applies the
    // config, and the premise that the port was taken must fail.
    let admin = cx.ops.admin(busy);
    let version = httpc::put_config(&admin, toml, Duration::from_secs(5))
        .await?
        .ok_or_else(|| anyhow!("PUT /config did not say the committed version"))?;
    // The busy node should say it could not apply it (and retry); whether it did is
    // judged from the `/status` samples ("premise: port taken takes effect").
    match wait_apply_error(&admin, version, Duration::from_secs(3)).await {
        Ok(error) => tracing_line(&format!("{name} reports: {error}")),
        Err(e) => tracing_line(&format!("{e:#}")),
    }
    cx.tl.until(6000).await;
    let what = format!("port {EXTRA_PORT} freed on {name}");
    cx.tl.mark(Fault::PortFree, Some(busy), what, 0.0, false);
    cx.ops.squat(busy, EXTRA_PORT, false)?;
    Ok(Some(version))
}

async fn wait_apply_error(admin: &str, version: u64, limit: Duration) -> Result<String> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(s) = httpc::status(admin, Duration::from_millis(500)).await {
            let e = &s["config_apply_error"];
            if e["version"].as_u64() == Some(version) {
                return Ok(e["reason"].as_str().unwrap_or("?").to_string());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the node with the busy port never reported a failed apply of version {version}")
}

/// Returns the version every node must reach.
pub async fn large_configs(cx: &mut Ctx<'_>) -> Result<Option<u64>> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let victim = faults::follower(cx.ops, leader);
    node_action(cx.ops, &mut cx.tl, victim, NodeAction::Kill, 0.0, false)?;
    cx.tl.until(3500).await;
    let mut version = None;
    let started = Instant::now();
    let mut bytes = 0;
    for k in 0..LARGE_COUNT {
        let toml = cx
            .ops
            .config_toml(LARGE_BASE + k)
            .ok_or_else(|| anyhow!("no large config"))?;
        bytes += toml.len();
        let what = format!(
            "PUT /config ({} KiB) on {}",
            toml.len() / 1024,
            cx.ops.node_name(leader)
        );
        cx.tl.mark(Fault::ConfigPut, Some(leader), what, 0.0, false);
        if cx.noop {
            continue;
        }
        version = httpc::put_config(&cx.ops.admin(leader), toml, Duration::from_secs(15)).await?;
    }
    tracing_line(&format!(
        "{LARGE_COUNT} configs, {} KiB, committed in {} ms while {} was down",
        bytes / 1024,
        started.elapsed().as_millis(),
        cx.ops.node_name(victim)
    ));
    let now = cx.tl.now_ms() as u64;
    cx.tl.until(now.max(8000)).await;
    restart(cx.ops, &mut cx.tl, victim, 0.0)?;
    Ok(version)
}

fn tracing_line(text: &str) {
    eprintln!("  {text}");
}
