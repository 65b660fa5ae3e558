//! A route's split between pools (blue-green and canary deployments, issue 25 item 3):
//! `split = [{ pool = "blue", weight = 90 }, { pool = "green", weight = 10 }]` instead of
//! `pool`. The file's weights are where a route starts; `ctl shift` moves them through
//! Raft, and the replicated weights then take the file's place (see the node's
//! `control/shift`). `Route::pools` (in `accessors`) lists the pools a route reaches.

use serde::{Deserialize, Serialize};

/// Highest weight one pool of a split may have.
pub const MAX_SPLIT_WEIGHT: u32 = 10_000;

/// One pool of a route's split and its share (weights need not add up to 100).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub pool: String,
    pub weight: u32,
}
