//! The scenario catalogue, what a fault script can use, and what a run produced.
//!
//! A run (`runner.rs`): wait until every node answers and the target serves 200, start
//! the observers (holder poller, wire probe, `/status` poller) and the open-loop load,
//! play the scenario's fault script against the same clock, let the cluster settle, then
//! judge the recording against the scenario's plan (`plan.rs`, `checks/`).

mod config_change;
mod cpu;
mod deps;
mod heal;
mod network;
mod nodes;
pub mod plan;
mod runner;

pub use runner::{run, Observer};

use crate::chain::Chain;
use crate::checks::{Check, Counts, Event, HolderSample, NodeEnd};
use crate::faults::Timeline;
use crate::host_stalls::HostStall;
use crate::ops::{BackendAction, Ops};
use crate::poller::{Poller, Sampling};
use anyhow::{bail, Result};
use fulcrum_testbed::load::Sample;
use serde::Serialize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Every scenario, in the order `all` runs them.
pub const ALL: &[&str] = &[
    "kill-leader",
    "crash-node-leader",
    "kill-follower",
    "freeze-leader",
    "partition-leader",
    "netem",
    "redis-down",
    "backend-kill",
    "backend-hang",
    "backend-500",
    "rolling-restart",
    "config-change",
    "cpu-hog",
];

/// The convergence scenarios (`heal.rs`; `--scenario heal` runs them, `all` includes
/// them). Like [`ALL`], each has a synthetic story in the checks' own tests.
pub const HEAL: &[&str] = &[
    "restart-two-recover",
    "partition-flap",
    "port-busy",
    "large-configs",
];

/// The CI subset (about two minutes).
pub const SHORT: &[&str] = &[
    "kill-leader",
    "partition-leader",
    "freeze-leader",
    "redis-down",
    "rolling-restart",
];

/// Expands `--scenario` / `--short` into scenario names.
pub fn select(names: &[String], short: bool, repeat: usize) -> Result<Vec<String>> {
    let once = select_once(names, short)?;
    let mut out = Vec::new();
    for _ in 0..repeat.max(1) {
        out.extend(once.iter().cloned());
    }
    Ok(out)
}

fn select_once(names: &[String], short: bool) -> Result<Vec<String>> {
    if short {
        return Ok(SHORT.iter().map(|s| s.to_string()).collect());
    }
    let mut out = Vec::new();
    for name in names {
        if name == "all" {
            out.extend(ALL.iter().chain(HEAL).map(|s| s.to_string()));
        } else if name == "heal" {
            out.extend(HEAL.iter().map(|s| s.to_string()));
        } else if ALL.contains(&name.as_str()) || HEAL.contains(&name.as_str()) {
            out.push(name.clone());
        } else {
            bail!(
                "unknown scenario {name:?}; known: all, heal, {}, {}",
                ALL.join(", "),
                HEAL.join(", ")
            );
        }
    }
    if out.is_empty() {
        out.extend(SHORT.iter().map(|s| s.to_string()));
    }
    Ok(out)
}

/// What a fault script can use.
pub struct Ctx<'a> {
    pub ops: &'a dyn Ops,
    pub tl: Timeline,
    pub holders: Option<&'a Poller<HolderSample>>,
    pub sampling: Arc<Sampling>,
    /// `--noop-fault`: faults are announced on the timeline but do nothing.
    pub noop: bool,
    /// How long cpu-hog saturates the CPU, and with how many processes (0: 3 per core).
    pub hog: Duration,
    pub hog_procs: usize,
}

impl Ctx<'_> {
    /// Nodes the holder poller saw with the VIP in its latest sample.
    pub fn holders(&self) -> Vec<usize> {
        let latest = self.holders.and_then(|p| p.latest());
        latest
            .map(|s| {
                s.holders
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h == Some(true))
                    .map(|(i, _)| i)
                    .collect()
            })
            .unwrap_or_default()
    }
    /// Switches every poller to the dense period (around a resume) or back.
    pub fn dense(&self, on: bool) {
        self.sampling.set_dense(on);
    }
}

/// How to run: load shape, VIP sampling, interruption.
pub struct Settings {
    pub rate: u32,
    pub users: usize,
    pub timeout: Duration,
    pub keep_alive: bool,
    pub strict: bool,
    pub poll_interval: Duration,
    /// The sampling period around resume events.
    pub dense_poll_interval: Duration,
    pub ready_limit: Duration,
    pub interrupted: Arc<AtomicBool>,
    /// Faults do nothing (the checks must then fail on their premises).
    pub noop: bool,
    /// cpu-hog: how long, and how many busy processes (0: three per core).
    pub hog: Duration,
    pub hog_procs: usize,
    /// Busy processes running through every other scenario's fault script (0: none).
    pub under_hog: usize,
    /// The nodes run on this host (one CLOCK_MONOTONIC): read and print the failover chain.
    pub same_clock: bool,
}

/// Everything one scenario produced.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub checks: Vec<Check>,
    pub events: Vec<Event>,
    pub nodes_end: Vec<NodeEnd>,
    pub requests: usize,
    pub failed: usize,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Sample counts behind the verdicts.
    pub counts: Counts,
    /// Holder transitions only (first sample and every change).
    pub vip_transitions: Vec<HolderSample>,
    /// The failover chain of each failover event (local runs).
    pub chains: Vec<Chain>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    /// Moments a CPU of the machine ran nothing while the scenario ran.
    pub host_stalls: Vec<HostStall>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
    fn failed_before(scenario: &str, check: Check) -> Outcome {
        Outcome {
            scenario: scenario.to_string(),
            checks: vec![check],
            events: Vec::new(),
            nodes_end: Vec::new(),
            requests: 0,
            failed: 0,
            latency_p50_ms: None,
            latency_p99_ms: None,
            counts: Counts::default(),
            vip_transitions: Vec::new(),
            chains: Vec::new(),
            samples: Vec::new(),
            host_stalls: Vec::new(),
        }
    }
}

async fn play(name: &str, cx: &mut Ctx<'_>) -> Result<Option<u64>> {
    match name {
        "kill-leader" => nodes::kill_leader(cx).await?,
        "crash-node-leader" => nodes::crash_node_leader(cx).await?,
        "cpu-hog" => cpu::cpu_hog(cx).await?,
        "kill-follower" => nodes::kill_follower(cx).await?,
        "freeze-leader" => nodes::freeze_leader(cx).await?,
        "rolling-restart" => nodes::rolling_restart(cx).await?,
        "partition-leader" => network::partition_leader(cx).await?,
        "netem" => network::netem(cx).await?,
        "redis-down" => deps::redis_down(cx).await?,
        "backend-kill" => deps::backend(cx, BackendAction::Kill, BackendAction::Start).await?,
        "backend-hang" => deps::backend(cx, BackendAction::Hang, BackendAction::Ok).await?,
        "backend-500" => deps::backend(cx, BackendAction::Fail, BackendAction::Ok).await?,
        "config-change" => return config_change::config_change(cx).await,
        "restart-two-recover" => heal::restart_two_recover(cx).await?,
        "partition-flap" => heal::partition_flap(cx).await?,
        "port-busy" => return heal::port_busy(cx).await,
        "large-configs" => return heal::large_configs(cx).await,
        other => bail!("no script for {other}"),
    }
    Ok(None)
}
