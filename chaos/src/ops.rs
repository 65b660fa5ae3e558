//! What a scenario can do to a cluster, whichever way the cluster exists.
//!
//! [`Ops`] is implemented by the local test bed (`local.rs`: PIDs, nftables and tc inside
//! namespaces) and by an inventory of real hosts (`remote.rs`: shell commands, usually
//! ssh). Scenarios and faults are written once against this trait.

use crate::checks::CpuUse;
use anyhow::Result;
use std::time::Duration;

/// A signal-level action on a node's fulcrum process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeAction {
    /// kill -9.
    Kill,
    /// SIGSTOP: the process freezes, its kernel keeps running.
    Freeze,
    /// SIGCONT.
    Resume,
    /// SIGTERM: a planned stop.
    Stop,
}

/// A fault (or its repair) on one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendAction {
    Kill,
    Start,
    /// Accept connections and never answer.
    Hang,
    /// Answer every request with 500.
    Fail,
    /// Back to normal answers.
    Ok,
}

pub trait Ops: Send + Sync {
    /// Number of fulcrum nodes.
    fn nodes(&self) -> usize;
    fn node_name(&self, i: usize) -> String;
    /// Admin API address of node `i`, `HOST:PORT`.
    fn admin(&self, i: usize) -> String;
    /// Where the load goes, `HOST:PORT` (the VIP unless overridden).
    fn target(&self) -> String;
    fn node(&self, i: usize, action: NodeAction) -> Result<()>;
    /// Starts node `i` again (after a kill or a stop).
    fn start(&self, i: usize) -> Result<()>;
    /// Waits for node `i` to exit after `Stop`; true when it did (or cannot be known).
    fn wait_exit(&self, i: usize, limit: Duration) -> bool;
    /// Whether node `i`'s process runs; `None` when only the admin API can tell.
    fn running(&self, i: usize) -> Option<bool>;
    /// Cuts node `i` off from its peers' Raft traffic; clients still reach it.
    fn partition(&self, i: usize) -> Result<()>;
    fn heal(&self, i: usize) -> Result<()>;
    /// Packet loss and delay on node `i`'s link (`on = false` removes it); says what was
    /// applied.
    fn netem(&self, i: usize, on: bool) -> Result<String>;
    /// Takes node `i`'s link down (frames to and from it vanish: peers hear silence, not
    /// a reset) or up again.
    fn link(&self, i: usize, up: bool) -> Result<()>;
    /// Starts `procs` busy processes (0: three per core) for at most `limit`.
    fn hog_start(&self, procs: usize, limit: Duration) -> Result<()>;
    /// Stops them and says how much CPU they got.
    fn hog_stop(&self) -> Result<CpuUse>;
    /// Kills (`up = false`) or starts Redis.
    fn redis(&self, up: bool) -> Result<()>;
    /// Backend names as they appear in `x-backend`.
    fn backend_names(&self) -> Vec<String>;
    fn backend(&self, b: usize, action: BackendAction) -> Result<()>;
    /// A whole config file for `PUT /config`; `variant` 0 is the deployed one.
    fn config_toml(&self, variant: u32) -> Option<String>;
    /// Occupies TCP `port` on every address of node `i` with another process (`on`), or
    /// frees it again. Only the local test bed can.
    fn squat(&self, i: usize, port: u16, on: bool) -> Result<()> {
        let _ = (i, port, on);
        anyhow::bail!("occupying a port on a node is only supported on the local test bed")
    }
}
