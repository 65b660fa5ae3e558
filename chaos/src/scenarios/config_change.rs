//! A config change applied through a follower's admin API while the load runs: nothing
//! may fail and every node must end on the new version.

use super::Ctx;
use crate::checks::Fault;
use crate::{faults, httpc};
use anyhow::{anyhow, Result};
use std::time::Duration;

/// `PUT /config` (variant 1: other weights and health interval) on a follower at 3 s.
/// Returns the version every node must reach.
pub async fn config_change(cx: &mut Ctx<'_>) -> Result<Option<u64>> {
    cx.tl.until(3000).await;
    let leader = faults::find_leader(cx.ops, &cx.holders()).await?;
    let follower = faults::follower(cx.ops, leader);
    let before = faults::status(cx.ops, follower).await?.config_version;
    let toml = cx
        .ops
        .config_toml(1)
        .ok_or_else(|| anyhow!("no alternative config to apply"))?;
    cx.tl.mark(
        Fault::ConfigPut,
        Some(follower),
        format!("PUT /config on {}", cx.ops.node_name(follower)),
        0.0,
        false,
    );
    if cx.noop {
        // `--noop-fault`: the change is announced but never sent.
        return Ok(before);
    }
    let version = httpc::put_config(&cx.ops.admin(follower), toml, Duration::from_secs(3)).await?;
    Ok(version.or(before.map(|v| v + 1)))
}
