//! Drives one scenario end to end: readiness, observers, load, fault script, settle,
//! verdicts.

use super::{plan, play, Ctx, Outcome, Settings};
use crate::chain;
use crate::checks::{self, Check, HolderSample, NodeEnd, Probed, Recording, WireSample};
use crate::converge;
use crate::faults::{self, Timeline};
use crate::host_stalls::StallWatch;
use crate::httpc;
use crate::ops::Ops;
use crate::poller::{Poller, Probe, Sampling};
use crate::status_poller::StatusPoller;
use anyhow::{bail, Result};
use fulcrum_testbed::load::{self, LoadSpec, Progress};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A probe, or why there is none.
pub type Observer<S> = Result<Box<dyn Probe<Sample = S>>, String>;

impl<S: Clone + Send + 'static> Probe for Box<dyn Probe<Sample = S>> {
    type Sample = S;
    fn probe(&mut self, t_ms: f64, period: Duration) -> S {
        (**self).probe(t_ms, period)
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

fn start_poller<S: Clone + Send + 'static>(
    name: &str,
    observer: Observer<S>,
    sampling: &Arc<Sampling>,
    epoch: Instant,
    limit: Duration,
) -> Result<Option<Poller<S>>, Check> {
    match observer {
        Ok(probe) => Poller::start(name, probe, sampling.clone(), epoch, limit)
            .map(Some)
            .map_err(|e| Check::failed(name, format!("{e:#}"))),
        Err(_) => Ok(None),
    }
}

/// A finished poller's samples, or why there are none.
fn probed<S: Clone + Send + 'static>(
    poller: Option<Poller<S>>,
    unavailable: Option<String>,
) -> Probed<S> {
    match (poller, unavailable) {
        (Some(p), _) => match p.finish() {
            Ok(samples) => Probed::Samples(samples),
            Err(e) => Probed::Died(format!("{e:#}")),
        },
        (None, why) => Probed::Unavailable(why.unwrap_or_else(|| "not sampled".into())),
    }
}

/// Runs one scenario against a freshly started cluster.
pub async fn run(
    name: &str,
    ops: &dyn Ops,
    holder_probe: Observer<HolderSample>,
    wire_probe: Observer<WireSample>,
    settings: &Settings,
) -> Outcome {
    let hog_ms = u64::try_from(settings.hog.as_millis()).unwrap_or(u64::MAX / 4);
    let plan = plan::plan_for(name, settings.strict, hog_ms);
    let stall_watch = StallWatch::start(
        settings.ready_limit + Duration::from_millis(plan.load_ms) * 3 + Duration::from_secs(30),
    );
    if let Err(e) = wait_ready(ops, settings.ready_limit, &settings.interrupted).await {
        return Outcome::failed_before(name, Check::failed("cluster ready", format!("{e:#}")));
    }
    let epoch = Instant::now();
    let load_time = Duration::from_millis(plan.load_ms);
    let sampling = Sampling::new(settings.poll_interval, settings.dense_poll_interval);
    let no_holders = holder_probe.as_ref().err().cloned();
    let no_wire = wire_probe.as_ref().err().cloned();
    let limit = load_time * 3;
    let holders = match start_poller("vip-poller", holder_probe, &sampling, epoch, limit) {
        Ok(p) => p,
        Err(check) => return Outcome::failed_before(name, check),
    };
    let wire = match start_poller("wire-probe", wire_probe, &sampling, epoch, limit) {
        Ok(p) => p,
        Err(check) => return Outcome::failed_before(name, check),
    };
    let admins = (0..ops.nodes()).map(|i| ops.admin(i)).collect();
    let statuses = StatusPoller::start(admins, epoch, limit);
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
    let mut cx = Ctx {
        ops,
        tl: Timeline {
            epoch,
            events: Vec::new(),
        },
        holders: holders.as_ref(),
        sampling: sampling.clone(),
        noop: settings.noop,
        hog: settings.hog,
        hog_procs: settings.hog_procs,
    };
    let under_hog = settings.under_hog > 0 && name != "cpu-hog";
    let hog_started = if under_hog {
        // Bounded by itself as well: the whole load and a margin.
        ops.hog_start(settings.under_hog, load_time + Duration::from_secs(10))
            .map_err(|e| format!("{e:#}"))
    } else {
        Ok(())
    };
    let script_result = drive(name, &mut cx, epoch, &progress, settings).await;
    let hog_check = under_hog.then(|| {
        let used = ops.hog_stop();
        let name = "premise: the CPU hog under the fault script saturates the machine";
        match (hog_started, used) {
            (Err(e), _) => Check::failed(name, format!("premise not met: hog not started: {e}")),
            (Ok(()), Err(e)) => Check::failed(name, format!("premise not met: {e:#}")),
            (Ok(()), Ok(cpu)) => match checks::premises::saturated_by(&cpu) {
                Ok(text) => Check::passed(name, text),
                Err(why) => Check::failed(name, format!("premise not met: {why}")),
            },
        }
    });
    // The failover chain: every node's recorded steps, read once the faults are over
    // (a dead node's steps died with it; a frozen one answers again after its resume).
    let chain_docs = if settings.same_clock {
        chain::fetch::read_all(ops).await
    } else {
        Vec::new()
    };
    let epoch_us = chain::fetch::epoch_us(epoch);
    // From the last event (the heal or repair) on, the cluster must converge to the
    // truth; watched while the load runs on.
    let from_ms = cx.tl.events.last().map_or(cx.tl.now_ms(), |e| e.t_ms);
    let min_version = script_result.as_ref().ok().copied().flatten();
    let converging = converge::watch(ops, holders.as_ref(), epoch, from_ms, min_version);
    let finishing = async {
        let mut ticker = tokio::time::interval(Duration::from_millis(500));
        while !load_task.is_finished() {
            ticker.tick().await;
            print_progress(name, epoch, &progress, &cx);
        }
    };
    let (convergence, ()) = tokio::join!(converging, finishing);
    eprintln!(
        "[{name}] {}: {}",
        checks::convergence::NAME,
        checks::convergence::verdict(&convergence).figure
    );
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    let events = std::mem::take(&mut cx.tl.events);
    drop(cx);
    let samples = load_task.await.unwrap_or_default();
    let status_samples = statuses.finish().await;
    let host_stalls = stall_watch.finish(epoch);
    let mut extra: Vec<Check> = hog_check.into_iter().collect();
    let min_version = match script_result {
        Ok(v) => v,
        Err(e) => {
            extra.push(Check::failed("fault injection", format!("{e:#}")));
            None
        }
    };
    let nodes_end = settle(ops, min_version).await;
    let rec = Recording {
        samples,
        holders: probed(holders, no_holders),
        wire: probed(wire, no_wire),
        statuses: status_samples,
        events,
        nodes_end,
        min_config_version: min_version,
        host_stalls,
    };
    let mut checks = checks::evaluate(&checks::Inputs {
        rec: &rec,
        plan: &plan,
        poll_ms: sampling.normal_ms(),
        timeout_ms: settings.timeout.as_secs_f64() * 1000.0,
    });
    checks.extend(extra);
    checks.push(checks::convergence::verdict(&convergence));
    let chains = if settings.same_clock {
        chains_of(&rec, &chain_docs, epoch_us, settings.timeout)
    } else {
        Vec::new()
    };
    let mut out = outcome(name, checks, rec);
    out.chains = chains;
    out
}

/// Plays the fault script while printing progress; stops early on Ctrl-C.
async fn drive(
    name: &str,
    cx: &mut Ctx<'_>,
    epoch: Instant,
    progress: &Progress,
    settings: &Settings,
) -> Result<Option<u64>> {
    let mut ticker = tokio::time::interval(Duration::from_millis(500));
    let ops = cx.ops;
    let holders = cx.holders;
    let view = HolderLine { ops, holders };
    let script = play(name, cx);
    tokio::pin!(script);
    loop {
        tokio::select! {
            r = &mut script => return r,
            _ = ticker.tick() => {
                view.print(name, epoch, progress);
                if settings.interrupted.load(Ordering::SeqCst) {
                    return Err(anyhow::anyhow!("interrupted"));
                }
            }
        }
    }
}

/// How long after a failover fault its chain may run (or until the next failover).
const CHAIN_WINDOW_MS: f64 = 2000.0;

/// One chain per failover event of the timeline.
fn chains_of(
    rec: &Recording,
    docs: &[chain::NodeDoc],
    epoch_us: u64,
    timeout: Duration,
) -> Vec<chain::Chain> {
    let failovers: Vec<&checks::Event> = rec.events.iter().filter(|e| e.failover).collect();
    let timeout_ms = timeout.as_secs_f64() * 1000.0;
    failovers
        .iter()
        .enumerate()
        .map(|(k, e)| {
            let end_ms = failovers
                .get(k + 1)
                .map_or(e.t_ms + CHAIN_WINDOW_MS, |next| {
                    next.t_ms.min(e.t_ms + CHAIN_WINDOW_MS)
                });
            let at_us = |ms: f64| epoch_us + (ms * 1000.0).max(0.0) as u64;
            let w = chain::extract::Window {
                fault_us: at_us(e.t_ms),
                end_us: at_us(end_ms),
                fault_t_ms: e.t_ms,
            };
            let answer = chain::extract::first_answer_ms(&rec.samples, e.t_ms, end_ms, timeout_ms);
            chain::extract::chain(&e.what, w, docs, answer)
        })
        .collect()
}

fn outcome(name: &str, checks: Vec<Check>, rec: Recording) -> Outcome {
    let mut latencies: Vec<f64> = rec
        .samples
        .iter()
        .filter(|s| s.ok())
        .map(|s| s.latency_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| -> Option<f64> {
        (!latencies.is_empty()).then(|| latencies[((latencies.len() - 1) as f64 * p) as usize])
    };
    let counts = checks::counts(&rec);
    let transitions = match &rec.holders {
        Probed::Samples(s) => transitions(s),
        _ => Vec::new(),
    };
    Outcome {
        scenario: name.to_string(),
        checks,
        requests: rec.samples.len(),
        failed: rec.samples.iter().filter(|s| !s.ok()).count(),
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
        counts,
        vip_transitions: transitions,
        chains: Vec::new(),
        events: rec.events,
        nodes_end: rec.nodes_end,
        samples: rec.samples,
        host_stalls: rec.host_stalls,
    }
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

fn transitions(samples: &[HolderSample]) -> Vec<HolderSample> {
    let mut out: Vec<HolderSample> = Vec::new();
    for s in samples {
        if out.last().is_none_or(|l| l.holders != s.holders) {
            out.push(s.clone());
        }
    }
    out
}

fn print_progress(name: &str, epoch: Instant, p: &Progress, cx: &Ctx<'_>) {
    HolderLine {
        ops: cx.ops,
        holders: cx.holders,
    }
    .print(name, epoch, p);
}

/// The progress line: load counters and the current VIP holders.
struct HolderLine<'a> {
    ops: &'a dyn Ops,
    holders: Option<&'a Poller<HolderSample>>,
}

impl HolderLine<'_> {
    fn print(&self, name: &str, epoch: Instant, p: &Progress) {
        let holders = match self.holders.and_then(|h| h.latest()) {
            Some(s) => {
                let names: Vec<String> = s
                    .holders
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| **h == Some(true))
                    .map(|(i, _)| self.ops.node_name(i))
                    .collect();
                if names.is_empty() {
                    "-".to_string()
                } else {
                    names.join("+")
                }
            }
            None => "n/a".into(),
        };
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
}
