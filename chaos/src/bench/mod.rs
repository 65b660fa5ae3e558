//! `fulcrum-chaos bench`: the proxy throughput benchmark of `reference/MEASURED.md`.
//!
//! One nginx process serves two backends; each target proxy is started fresh per
//! measurement in front of them, warmed up, then measured with `wrk --latency` while its
//! CPU time is sampled from `/proc`. Targets are interleaved round by round and the
//! report gives medians and fulcrum's ratios against HAProxy and nginx.
//!
//! Files: `args` (CLI), `targets` (proxy configs and start-up), `backends` and `nginx`
//! (the backend process), `wrk` (load and its output), `procstat` (CPU and RSS),
//! `stats` (medians, ratios), `report` (table, JSON), `process` and `net` (plumbing).

mod args;
mod backends;
mod net;
mod nginx;
mod process;
mod procstat;
mod report;
mod stats;
mod targets;
mod wrk;

pub use args::{BenchArgs, Settings};

use anyhow::{bail, Context, Result};
use backends::Backends;
use process::{find_program, Pin};
use stats::{Measurement, Sample};
use std::path::{Path, PathBuf};
use targets::{Programs, TargetKind};
use wrk::WrkRun;

/// Runs the benchmark; Ctrl-C stops it and every process it started.
pub async fn run(args: BenchArgs) -> Result<()> {
    tokio::select! {
        result = run_bench(args) => result,
        signal = tokio::signal::ctrl_c() => {
            signal.context("listening for Ctrl-C")?;
            bail!("interrupted: stopped every process the benchmark started")
        }
    }
}

/// Everything a measurement needs, fixed for the whole run.
struct RunContext {
    programs: Programs,
    wrk: PathBuf,
    backends: Vec<String>,
    proxy_pin: Pin,
    load_pin: Pin,
    ticks_per_sec: u64,
    settings: Settings,
    dir: PathBuf,
}

async fn run_bench(args: BenchArgs) -> Result<()> {
    let targets = dedup(&args.targets);
    let programs = find_programs(&args, &targets)?;
    let targets: Vec<TargetKind> = targets
        .into_iter()
        .filter(|k| *k != TargetKind::Haproxy || programs.haproxy.is_some())
        .collect();
    if targets.is_empty() {
        bail!("no target left to measure");
    }
    let wrk = find_program("wrk").context(install_hint("wrk"))?;
    let (proxy_pin, load_pin) = pins();
    let temp = tempfile::Builder::new()
        .prefix("fulcrum-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let backends =
        Backends::start(&programs.nginx, load_pin, &temp.path().join("backends")).await?;
    let mut ctx = RunContext {
        programs,
        wrk,
        backends: backends.addrs(),
        proxy_pin,
        load_pin,
        ticks_per_sec: procstat::clock_ticks()?,
        settings: Settings {
            targets,
            rounds: args.rounds as usize,
            connections: args.connections,
            duration: args.duration,
            warmup: args.warmup,
            pinned: proxy_pin.0.is_some(),
            load_before: procstat::load_average(),
            load_after: None,
        },
        dir: temp.path().to_path_buf(),
    };
    eprintln!(
        "backends at {}; files in {}",
        ctx.backends.join(", "),
        ctx.dir.display()
    );
    let measurements = measure_all(&ctx).await;
    drop(backends);
    ctx.settings.load_after = procstat::load_average();
    finish(&ctx, &measurements, args.json.as_deref())?;
    if args.keep_temp {
        eprintln!("kept {}", temp.keep().display());
    }
    Ok(())
}

async fn measure_all(ctx: &RunContext) -> Vec<Measurement> {
    let mut measurements = Vec::new();
    for round in 1..=ctx.settings.rounds {
        for kind in &ctx.settings.targets {
            let outcome = measure(ctx, *kind, round)
                .await
                .map_err(|e| format!("{e:#}"));
            let m = Measurement {
                kind: *kind,
                round,
                outcome,
            };
            report::progress(&m, ctx.settings.rounds);
            measurements.push(m);
        }
    }
    measurements
}

/// Start the target, warm it up, measure one window, stop it.
async fn measure(ctx: &RunContext, kind: TargetKind, round: usize) -> Result<Sample> {
    let dir = ctx.dir.join(format!("{kind}-round{round}"));
    let mut target =
        targets::start(kind, &ctx.programs, &ctx.backends, ctx.proxy_pin, &dir).await?;
    let url = target.endpoint.url();
    let mut load = WrkRun {
        wrk: &ctx.wrk,
        url: &url,
        connections: ctx.settings.connections,
        duration: ctx.settings.warmup,
        pin: ctx.load_pin,
    };
    load.run().await.context("warm-up")?;
    load.duration = ctx.settings.duration;
    let pid = target.pid();
    let cpu_before = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let wrk = load.run().await.context("measured window")?;
    let cpu_after = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let peak_rss = procstat::peak_rss_bytes(pid)?;
    target.ensure_running()?;
    Ok(Sample {
        wrk,
        cpu: cpu_after.saturating_sub(cpu_before),
        peak_rss,
    })
}

fn finish(ctx: &RunContext, measurements: &[Measurement], json: Option<&Path>) -> Result<()> {
    let summaries = stats::summarize(&ctx.settings.targets, measurements);
    let ratios = stats::ratios(&summaries);
    report::print(&ctx.settings, &summaries, &ratios);
    if let Some(path) = json {
        report::write_json(path, &ctx.settings, measurements, &summaries, &ratios)?;
        eprintln!("wrote {}", path.display());
    }
    if summaries.iter().all(|s| s.rounds_ok == 0) {
        bail!("no measurement succeeded");
    }
    Ok(())
}

fn dedup(kinds: &[TargetKind]) -> Vec<TargetKind> {
    let mut out: Vec<TargetKind> = Vec::new();
    for kind in kinds {
        if !out.contains(kind) {
            out.push(*kind);
        }
    }
    out
}

fn install_hint(program: &str) -> String {
    format!("{program} not found: install it with `apt-get install -y nginx haproxy wrk`")
}

/// Locates nginx (always needed: it serves the backends), HAProxy and fulcrum.
fn find_programs(args: &BenchArgs, targets: &[TargetKind]) -> Result<Programs> {
    let nginx = find_program("nginx").context(install_hint("nginx"))?;
    let haproxy = find_program("haproxy");
    if haproxy.is_none() && targets.contains(&TargetKind::Haproxy) {
        eprintln!(
            "warning: {}; skipping the HAProxy target",
            install_hint("haproxy")
        );
    }
    let fulcrum = args.fulcrum_path();
    if targets.contains(&TargetKind::Fulcrum) && !fulcrum.is_file() {
        bail!(
            "fulcrum binary not found at {}: build it with `cargo build --release -p fulcrum`, \
             pass --fulcrum PATH, or leave it out with --targets haproxy,nginx",
            fulcrum.display()
        );
    }
    Ok(Programs {
        fulcrum,
        haproxy,
        nginx,
    })
}

/// Proxy on CPU 1, wrk and backends on CPU 0, when taskset and two CPUs exist.
fn pins() -> (Pin, Pin) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        eprintln!("warning: only {cpus} CPU available; running unpinned");
        return (Pin(None), Pin(None));
    }
    if find_program("taskset").is_none() {
        eprintln!("warning: taskset not found (util-linux); running unpinned");
        return (Pin(None), Pin(None));
    }
    (Pin(Some(1)), Pin(Some(0)))
}
