//! A route's split between pools (blue-green and canary deployments, issue 25 item 3):
//! `split = [{ pool = "blue", weight = 90 }, { pool = "green", weight = 10 }]` instead of
//! `pool`. The file's weights are where a route starts; `ctl shift` moves them through
//! Raft, and the replicated weights then take the file's place (see the node's
//! `control/shift`).

use crate::model::Route;
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

impl Route {
    /// The pools this route leads to: its `pool`, or the pools of its `split` in order.
    pub fn pools(&self) -> impl Iterator<Item = &str> {
        self.pool
            .as_deref()
            .into_iter()
            .chain(self.split.iter().map(|s| s.pool.as_str()))
    }
}
