//! The scenario catalogue and the runner that drives one scenario end to end.
//!
//! A run: wait until every node answers and the target serves 200, start the VIP poller and
//! the open-loop load, play the scenario's fault script against the same clock, let the
//! cluster settle, then compute the checks (`checks.rs`).

mod config_change;
mod deps;
mod network;
mod nodes;

use crate::checks::{self, Check, Event, Expect, NodeEnd};
use crate::faults::{self, Timeline};
use crate::httpc;
use crate::load::{self, LoadSpec, Progress, Sample};
use crate::ops::{BackendAction, Ops};
use crate::vip_poller::{HolderSample, Poller, Probe};
use anyhow::{bail, Result};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Every scenario, in the order `all` runs them.
pub const ALL: &[&str] = &[
    "kill-leader",
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
];

/// The CI subset (about a minute).
pub const SHORT: &[&str] = &["kill-leader", "partition-leader", "redis-down"];

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
            out.extend(ALL.iter().map(|s| s.to_string()));
        } else if ALL.contains(&name.as_str()) {
            out.push(name.clone());
        } else {
            bail!("unknown scenario {name:?}; known: all, {}", ALL.join(", "));
        }
    }
    if out.is_empty() {
        out.extend(SHORT.iter().map(|s| s.to_string()));
    }
    Ok(out)
}

/// Load length and bounds of a scenario.
fn plan(name: &str, strict: bool) -> (u64, Expect) {
    let base = Expect {
        min_availability_pct: 99.0,
        max_outage_ms: 1000.0,
        max_failover_ms: 2000.0,
        max_dual_ms: 0.0,
    };
    // Strict fencing: a new leader first waits out the old holder's kernel lifetime (2 s).
    let failover = if strict {
        Expect {
            min_availability_pct: 70.0,
            max_outage_ms: 3500.0,
            max_failover_ms: 3500.0,
            ..base
        }
    } else {
        Expect {
            min_availability_pct: 90.0,
            max_outage_ms: 2000.0,
            ..base
        }
    };
    let backend = Expect {
        min_availability_pct: 85.0,
        max_outage_ms: 2500.0,
        ..base
    };
    // Fast fencing: a new leader claims at once while a killed or frozen holder's kernel
    // keeps the address until its lifetime (2 s) runs out. Strict fencing: never two.
    let zombie_dual_ms = if strict { 0.0 } else { 2300.0 };
    match name {
        "kill-leader" => (
            12_000,
            Expect {
                max_dual_ms: zombie_dual_ms,
                ..failover
            },
        ),
        "freeze-leader" => (
            11_000,
            Expect {
                max_dual_ms: zombie_dual_ms,
                max_outage_ms: failover.max_outage_ms.max(3000.0),
                max_failover_ms: failover.max_failover_ms.max(3000.0),
                ..failover
            },
        ),
        "partition-leader" => (13_000, failover),
        "netem" => (
            12_000,
            Expect {
                min_availability_pct: 85.0,
                max_outage_ms: 2500.0,
                ..base
            },
        ),
        "backend-kill" | "backend-hang" | "backend-500" => (12_000, backend),
        // A planned stop hands leadership over first: the window must stay small.
        "rolling-restart" => (
            18_000,
            Expect {
                max_failover_ms: 1000.0,
                min_availability_pct: 90.0,
                ..failover
            },
        ),
        "config-change" => (8_000, base),
        _ => (11_000, base),
    }
}

/// What a fault script can use.
pub struct Ctx<'a> {
    pub ops: &'a dyn Ops,
    pub tl: Timeline,
    pub poller: Option<&'a Poller>,
}

impl Ctx<'_> {
    pub fn holders(&self) -> Vec<usize> {
        self.poller.map(|p| p.holders()).unwrap_or_default()
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
    pub ready_limit: Duration,
    pub interrupted: Arc<AtomicBool>,
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
    /// Holder transitions only (first sample and every change).
    pub vip_transitions: Vec<HolderSample>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
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
            vip_transitions: Vec::new(),
            samples: Vec::new(),
        }
    }
}

/// Waits until every node answers `/status` and the target serves a 200.
async fn wait_ready(ops: &dyn Ops, limit: Duration, stop: &AtomicBool) -> Result<()> {
    let deadline = Instant::now() + limit;
    for i in 0..ops.nodes() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !faults::wait_answering(ops, i, left).await {
            bail!("{} never answered /status", ops.node_name(i));
        }
    }
    loop {
        let reply = httpc::request(
            &ops.target(),
            "GET",
            "/",
            &[],
            None,
            Duration::from_millis(500),
        )
        .await;
        match reply {
            Ok(r) if r.status == 200 => return Ok(()),
            other if Instant::now() >= deadline || stop.load(Ordering::SeqCst) => {
                let why = match other {
                    Ok(r) => format!("HTTP {}", r.status),
                    Err(e) => format!("{e:#}"),
                };
                bail!("target {} never served 200 (last: {why})", ops.target());
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// Runs one scenario against a freshly started cluster.
pub async fn run(
    name: &str,
    ops: &dyn Ops,
    probe: Option<Box<dyn Probe>>,
    settings: &Settings,
) -> Outcome {
    let (load_ms, expect) = plan(name, settings.strict);
    if let Err(e) = wait_ready(ops, settings.ready_limit, &settings.interrupted).await {
        return Outcome::failed_before(name, Check::failed("cluster ready", format!("{e:#}")));
    }
    let epoch = Instant::now();
    let load_time = Duration::from_millis(load_ms);
    let poller = match probe {
        Some(p) => match Poller::start(p, settings.poll_interval, epoch, load_time * 3) {
            Ok(p) => Some(p),
            Err(e) => {
                return Outcome::failed_before(name, Check::failed("VIP poller", format!("{e:#}")))
            }
        },
        None => None,
    };
    let progress = Arc::new(Progress::default());
    let spec = LoadSpec {
        target: ops.target(),
        rate: settings.rate,
        users: settings.users,
        duration: load_time,
        timeout: settings.timeout,
        keep_alive: settings.keep_alive,
    };
    let load_task = tokio::spawn(load::run(
        spec,
        epoch,
        settings.interrupted.clone(),
        progress.clone(),
    ));
    let poller_ref = poller.as_ref();
    let mut cx = Ctx {
        ops,
        tl: Timeline {
            epoch,
            events: Vec::new(),
        },
        poller: poller_ref,
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let script_result = {
        let script = play(name, &mut cx);
        tokio::pin!(script);
        loop {
            tokio::select! {
                r = &mut script => break r,
                _ = ticker.tick() => {
                    print_progress(name, epoch, &progress, poller_ref, ops);
                    if settings.interrupted.load(Ordering::SeqCst) {
                        break Err(anyhow::anyhow!("interrupted"));
                    }
                }
            }
        }
    };
    while !load_task.is_finished() {
        ticker.tick().await;
        print_progress(name, epoch, &progress, poller_ref, ops);
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let samples = load_task.await.unwrap_or_default();
    let events = cx.tl.events;
    let holders = poller.map(|p| p.finish().unwrap_or_default());
    let mut extra = Vec::new();
    let min_version = match script_result {
        Ok(v) => v,
        Err(e) => {
            extra.push(Check::failed("fault injection", format!("{e:#}")));
            None
        }
    };
    let nodes_end = settle(ops, min_version).await;
    let mut checks = checks::evaluate(&checks::Inputs {
        samples: &samples,
        holders: holders.as_deref(),
        poll_ms: settings.poll_interval.as_secs_f64() * 1000.0,
        events: &events,
        timeout_ms: settings.timeout.as_secs_f64() * 1000.0,
        expect,
        nodes_end: &nodes_end,
        min_config_version: min_version,
    });
    checks.extend(extra);
    let mut latencies: Vec<f64> = samples
        .iter()
        .filter(|s| s.ok())
        .map(|s| s.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        (!latencies.is_empty()).then(|| latencies[((latencies.len() - 1) as f64 * p) as usize])
    };
    Outcome {
        scenario: name.to_string(),
        checks,
        events,
        nodes_end,
        requests: samples.len(),
        failed: samples.iter().filter(|s| !s.ok()).count(),
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        vip_transitions: transitions(holders.unwrap_or_default()),
        samples,
    }
}

async fn play(name: &str, cx: &mut Ctx<'_>) -> Result<Option<u64>> {
    match name {
        "kill-leader" => nodes::kill_leader(cx).await?,
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
        other => bail!("no script for {other}"),
    }
    Ok(None)
}

/// After the load: wait (bounded) until every node answers with one config version
/// (at least `min`), then record each node's state.
async fn settle(ops: &dyn Ops, min: Option<u64>) -> Vec<NodeEnd> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = faults::statuses(ops).await;
        let versions: Vec<Option<u64>> = all
            .iter()
            .map(|s| s.as_ref().and_then(|s| s.config_version))
            .collect();
        let same = versions.iter().all(|v| v.is_some() && *v == versions[0]);
        let high = min.is_none_or(|m| versions[0].is_some_and(|v| v >= m));
        if (same && high) || Instant::now() >= deadline {
            return all
                .into_iter()
                .enumerate()
                .map(|(i, s)| NodeEnd {
                    name: ops.node_name(i),
                    running: ops.running(i),
                    config_version: s.as_ref().and_then(|s| s.config_version),
                    role: s.and_then(|s| s.role),
                })
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn transitions(samples: Vec<HolderSample>) -> Vec<HolderSample> {
    let mut out: Vec<HolderSample> = Vec::new();
    for s in samples {
        if out.last().is_none_or(|l| l.holders != s.holders) {
            out.push(s);
        }
    }
    out
}

fn print_progress(
    name: &str,
    epoch: Instant,
    p: &Progress,
    poller: Option<&Poller>,
    ops: &dyn Ops,
) {
    let holders = poller
        .map(|p| {
            let h: Vec<String> = p.holders().into_iter().map(|i| ops.node_name(i)).collect();
            if h.is_empty() {
                "-".to_string()
            } else {
                h.join("+")
            }
        })
        .unwrap_or_else(|| "n/a".into());
    let elapsed = epoch.elapsed().as_secs_f64();
    let line = format!(
        "[{name}] t={elapsed:5.1}s sent={} ok={} failed={} vip={holders}",
        p.sent.load(Ordering::Relaxed),
        p.ok.load(Ordering::Relaxed),
        p.failed.load(Ordering::Relaxed),
    );
    let mut err = std::io::stderr();
    if err.is_terminal() {
        let _ = write!(err, "\r{line}      ");
        let _ = err.flush();
    } else if ((elapsed * 2.0).round() as u64) & 3 == 0 {
        // Logs (CI): one line every 2 s instead of carriage returns.
        let _ = writeln!(err, "{line}");
    }
}
