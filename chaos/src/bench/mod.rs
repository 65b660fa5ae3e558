//! `fulcrum-chaos bench`: the proxy throughput benchmark of `reference/MEASURED.md`.
//!
//! One nginx process serves two backends; each target proxy is started fresh per
//! measurement in front of them, warmed up, then measured while its CPU time is sampled
//! from `/proc`. Modes: HTTP and HTTPS keep-alive (`wrk --latency`), a full TLS
//! handshake per request (the bench's own client), and HTTP/2 over TLS (`h2load`, with
//! ten streams or one per connection). Each round measures every mode of
//! every target in turn; the report gives medians per (target, mode) and fulcrum's
//! ratios against HAProxy and nginx per mode.
//!
//! Files: `args` (CLI), `mode` (what is measured), `targets` (proxy configs and
//! start-up), `tls` (the run's certificate, client TLS settings), `backends` and `nginx`
//! (the backend process), `wrk` and `h2load` (load and its output), `handshake` (the new-connection
//! load), `procstat` (CPU and RSS), `stats` (medians, ratios), `report` (table, JSON),
//! `process` and `net` (plumbing).

mod args;
mod backends;
mod conns;
mod h2conns;
mod h2load;
mod handshake;
mod idle;
mod mode;
mod net;
mod nginx;
mod process;
mod procstat;
mod protocol;
mod report;
mod stats;
mod targets;
mod tls;
mod wrk;

pub use args::{BenchArgs, IdleCount, Settings};

use anyhow::{bail, Context, Result};
use backends::Backends;
use h2load::H2loadRun;
use handshake::HandshakeRun;
use mode::Mode;
use process::{find_program, Pin};
use stats::{Measurement, Sample};
use std::path::{Path, PathBuf};
use std::time::Duration;
use targets::{Endpoint, Programs, TargetEnv, TargetKind};
use tls::TlsFiles;
use wrk::{WrkResult, WrkRun};

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
    targets: TargetEnv,
    wrk: PathBuf,
    /// Needed only by the HTTP/2 modes.
    h2load: Option<PathBuf>,
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
    let modes = dedup(&args.modes);
    let needs_h2load = modes.iter().any(|m| m.h2_streams().is_some())
        || !args.h2_conns.is_empty()
        || (args.conns && args.idle_protocols.contains(&protocol::ConnProtocol::H2));
    let h2load = match needs_h2load {
        true => Some(find_program("h2load").context(
            "h2load not found (the h2 modes need it): install it with \
             `apt-get install -y nghttp2-client`",
        )?),
        false => None,
    };
    // Children inherit it: many idle connections, or wrk's 1,000 busy ones.
    let nofile = idle::raise_nofile()?;
    let plan = args.conns.then(|| conns_plan(&args, nofile));
    let (proxy_pin, load_pin) = pins();
    let temp = tempfile::Builder::new()
        .prefix("fulcrum-bench-")
        .tempdir()
        .context("creating a temp dir")?;
    let tls_files = TlsFiles::generate(&temp.path().join("tls"))?;
    let tls_client = tls_files.client_config()?;
    let backends =
        Backends::start(&programs.nginx, load_pin, &temp.path().join("backends")).await?;
    let mut ctx = RunContext {
        targets: TargetEnv {
            programs,
            backends: backends.addrs(),
            pin: proxy_pin,
            tls_files,
            tls_client,
            max_conns: max_conns(plan.as_ref(), nofile),
        },
        wrk,
        h2load,
        load_pin,
        ticks_per_sec: procstat::clock_ticks()?,
        settings: Settings {
            targets,
            modes,
            rounds: args.rounds as usize,
            connections: args.connections,
            h2_connections: args.h2_connections,
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
        ctx.targets.backends.join(", "),
        ctx.dir.display()
    );
    if let Some(plan) = &plan {
        eprintln!(
            "conns: idle {:?} over {}, busy {:?}, targets {} (open-file limit {nofile})",
            plan.idle,
            names(&plan.protocols),
            plan.busy,
            names(&ctx.settings.targets)
        );
        let all = conns::measure_all(&ctx, plan).await;
        drop(backends);
        conns::print(plan, &all, ctx.settings.duration);
        if let Some(path) = args.json.as_deref() {
            conns::write_json(path, &all)?;
            eprintln!("wrote {}", path.display());
        }
        if args.keep_temp {
            eprintln!("kept {}", temp.keep().display());
        }
        if all.iter().all(|t| t.idle.iter().all(|(_, i)| i.is_err())) {
            bail!("no measurement succeeded");
        }
        return Ok(());
    }
    if !args.h2_conns.is_empty() {
        let all = h2conns::measure_all(&ctx, &args.h2_conns).await;
        drop(backends);
        h2conns::print(&all, ctx.settings.duration);
        if args.keep_temp {
            eprintln!("kept {}", temp.keep().display());
        }
        if all.iter().all(|(_, _, got)| got.is_err()) {
            bail!("no measurement succeeded");
        }
        return Ok(());
    }
    eprintln!(
        "{} measurements ({} round(s) x modes {} x targets {}), about {} s",
        ctx.settings.measurement_count(),
        ctx.settings.rounds,
        names(&ctx.settings.modes),
        names(&ctx.settings.targets),
        ctx.settings.expected_duration().as_secs()
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
        for mode in &ctx.settings.modes {
            for kind in &ctx.settings.targets {
                let outcome = measure(ctx, *kind, *mode, round)
                    .await
                    .map_err(|e| format!("{e:#}"));
                let m = Measurement {
                    kind: *kind,
                    mode: *mode,
                    round,
                    outcome,
                };
                report::progress(&m, ctx.settings.rounds);
                measurements.push(m);
            }
        }
    }
    measurements
}

/// Start the target, warm it up, measure one window, stop it.
async fn measure(ctx: &RunContext, kind: TargetKind, mode: Mode, round: usize) -> Result<Sample> {
    let dir = ctx.dir.join(format!("{kind}-{mode}-round{round}"));
    let mut target = targets::start(kind, mode.scheme(), &ctx.targets, &dir).await?;
    let endpoint = target.endpoint;
    load(ctx, mode, endpoint, ctx.settings.warmup)
        .await
        .context("warm-up")?;
    let pid = target.pid();
    let cpu_before = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let wrk = load(ctx, mode, endpoint, ctx.settings.duration)
        .await
        .context("measured window")?;
    let cpu_after = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let peak_rss = procstat::peak_rss_bytes(pid)?;
    target.ensure_running()?;
    Ok(Sample {
        wrk,
        cpu: cpu_after.saturating_sub(cpu_before),
        peak_rss,
    })
}

/// One window of the mode's load against `endpoint`.
async fn load(
    ctx: &RunContext,
    mode: Mode,
    endpoint: Endpoint,
    duration: Duration,
) -> Result<WrkResult> {
    match mode {
        Mode::Http | Mode::Https => {
            let url = endpoint.url();
            let run = WrkRun {
                wrk: &ctx.wrk,
                url: &url,
                connections: ctx.settings.connections,
                duration,
                pin: ctx.load_pin,
            };
            run.run().await
        }
        Mode::H2 | Mode::H2Single => {
            let url = endpoint.url();
            let h2load = ctx.h2load.as_deref().context("h2load was not found")?;
            let log = ctx.dir.join(format!("h2load-{}.log", endpoint.port));
            let run = H2loadRun {
                h2load,
                url: &url,
                connections: ctx.settings.h2_connections,
                streams: mode.h2_streams().unwrap_or(1),
                duration,
                pin: ctx.load_pin,
                log: &log,
            };
            let result = run.run().await;
            // Tens of MB per window: not worth keeping.
            let _ = std::fs::remove_file(&log);
            result
        }
        Mode::Handshake => {
            let run = HandshakeRun {
                addr: endpoint.addr(),
                tls: ctx.targets.tls_client.clone(),
                connections: ctx.settings.connections,
                duration,
                pin: ctx.load_pin,
            };
            run.run().await
        }
    }
}

fn finish(ctx: &RunContext, measurements: &[Measurement], json: Option<&Path>) -> Result<()> {
    let summaries = stats::summarize(&ctx.settings.modes, &ctx.settings.targets, measurements);
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

/// Client connections each proxy is configured for: the most the run opens, with room
/// to spare, and no more than HAProxy can take with `nofile` descriptors (it wants two
/// per connection and refuses to start otherwise).
fn max_conns(plan: Option<&conns::Plan>, nofile: u64) -> u32 {
    let most = plan
        .and_then(|p| p.idle.iter().chain(&p.busy).max().copied())
        .unwrap_or(0);
    let fits = u32::try_from(nofile.saturating_sub(200) / 2).unwrap_or(u32::MAX);
    most.saturating_add(1000).max(4096).min(fits)
}

/// The idle steps (ascending, within the open-file limit) and busy counts of `--conns`.
fn conns_plan(args: &BenchArgs, nofile: u64) -> conns::Plan {
    let max = idle::max_idle(nofile);
    let mut steps: Vec<u32> = args.idle.iter().map(|c| c.resolve(max)).collect();
    if args
        .idle
        .iter()
        .any(|c| matches!(c, IdleCount::Count(n) if *n > max))
    {
        eprintln!("warning: idle counts above {max} (open-file limit {nofile}) measured at {max}");
    }
    steps.sort_unstable();
    steps.dedup();
    conns::Plan {
        idle: steps,
        protocols: dedup(&args.idle_protocols),
        busy: dedup(&args.busy),
    }
}

fn dedup<T: Copy + PartialEq>(items: &[T]) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(item) {
            out.push(*item);
        }
    }
    out
}

fn names<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
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
    let fulcrum_base = args.fulcrum_base.clone();
    let base_missing = fulcrum_base.as_ref().is_none_or(|p| !p.is_file());
    if targets.contains(&TargetKind::FulcrumBase) && base_missing {
        bail!("the fulcrum-base target needs --fulcrum-base PATH to a fulcrum binary");
    }
    Ok(Programs {
        fulcrum,
        fulcrum_base,
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
