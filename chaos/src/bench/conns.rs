//! `fulcrum-chaos bench --conns`: what a connection costs, by how many there are.
//!
//! Memory: for each protocol (`--idle-protocols`: HTTP/1.1, HTTPS, HTTP/2 over TLS, TCP
//! through an L4 listener) each target is started fresh, warmed with `wrk -c64`
//! (`h2load -c16 -m10` for h2), and its resident set read (the baseline); then idle
//! keep-alive clients are added in steps (`--idle`, by default 1,000, 5,000 and as many
//! as the open-file limit allows), each making one request and then staying open and
//! silent, and `SETTLE` after each step the resident set is read again. The figure is
//! user memory per idle connection, (RSS − baseline) / N; kernel socket memory is not in
//! it (the same for every target). Every idle connection then makes a second request,
//! which must be answered.
//!
//! CPU: for each busy-client count (`--busy`, by default 64 and 1,000) each target is
//! started fresh, warmed, and loaded with `wrk -t1 -cN`; the figure is its CPU time
//! over the window divided by the requests answered, with req/s, p99 and peak RSS.

use super::idle::{self, Dialer};
use super::procstat;
use super::protocol::ConnProtocol;
use super::targets::{self, Scheme, TargetKind};
use super::wrk::{WrkResult, WrkRun};
use super::RunContext;
use anyhow::{Context, Result};
use std::path::Path;
use std::time::Duration;

/// How long the proxy is left alone before its resident set is read: long enough for
/// fulcrum to park idle HTTP/1.1 connections (one to one and a half seconds after
/// their last byte), the same for every target.
const SETTLE: Duration = Duration::from_secs(3);
/// Connections of the warm-up before the baseline.
const WARM_CONNECTIONS: u32 = 64;

/// What `--conns` measures.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Idle connection counts, ascending; connections are added from one to the next.
    pub idle: Vec<u32>,
    /// What the idle connections speak.
    pub protocols: Vec<ConnProtocol>,
    /// Busy keep-alive client counts.
    pub busy: Vec<u32>,
}

/// Idle connections of one target.
#[derive(Debug, Clone)]
pub struct IdleFigures {
    pub baseline_rss: u64,
    /// (connections open, RSS then).
    pub steps: Vec<(u32, u64)>,
    /// Of the connections held at the end, how many answered a second request.
    pub held: usize,
    pub reused: usize,
}

impl IdleFigures {
    /// Bytes of user memory per idle connection at each step.
    pub fn per_connection(&self) -> Vec<(u32, i64)> {
        self.steps
            .iter()
            .map(|(n, rss)| {
                let growth = *rss as i64 - self.baseline_rss as i64;
                (*n, growth / i64::from((*n).max(1)))
            })
            .collect()
    }
}

/// One busy-client window of one target.
#[derive(Debug, Clone)]
pub struct BusyFigures {
    pub clients: u32,
    pub wrk: WrkResult,
    pub cpu: Duration,
    pub peak_rss: u64,
}

impl BusyFigures {
    pub fn cpu_us_per_request(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.wrk.requests.max(1) as f64
    }
}

/// Everything measured of one target; a failed measurement keeps its error.
#[derive(Debug)]
pub struct TargetConns {
    pub kind: TargetKind,
    /// Per protocol.
    pub idle: Vec<(ConnProtocol, Result<IdleFigures, String>)>,
    pub busy: Vec<(u32, Result<BusyFigures, String>)>,
}

/// Measures every target: idle connections first, then each busy-client count.
pub async fn measure_all(ctx: &RunContext, plan: &Plan) -> Vec<TargetConns> {
    let mut all: Vec<TargetConns> = Vec::new();
    for kind in &ctx.settings.targets {
        all.push(TargetConns {
            kind: *kind,
            idle: Vec::new(),
            busy: Vec::new(),
        });
    }
    for protocol in &plan.protocols {
        for target in all.iter_mut() {
            let kind = target.kind;
            if kind == TargetKind::Nginx && *protocol == ConnProtocol::Tcp {
                continue;
            }
            let idle = measure_idle(ctx, kind, plan, *protocol)
                .await
                .map_err(|e| format!("{e:#}"));
            match &idle {
                Ok(f) => eprintln!(
                    "{kind} {protocol}: idle {:?} bytes/conn, second request answered on {}/{}",
                    f.per_connection(),
                    f.reused,
                    f.held
                ),
                Err(e) => eprintln!("{kind} {protocol}: idle measurement failed: {e}"),
            }
            target.idle.push((*protocol, idle));
        }
    }
    for clients in &plan.busy {
        for target in all.iter_mut() {
            let busy = measure_busy(ctx, target.kind, *clients)
                .await
                .map_err(|e| format!("{e:#}"));
            match &busy {
                Ok(b) => eprintln!(
                    "{}: {clients} busy clients: {:.0} req/s, {:.1} µs CPU/req",
                    target.kind,
                    b.wrk.requests_per_sec,
                    b.cpu_us_per_request()
                ),
                Err(e) => eprintln!("{}: {clients} busy clients failed: {e}", target.kind),
            }
            target.busy.push((*clients, busy));
        }
    }
    all
}

async fn measure_idle(
    ctx: &RunContext,
    kind: TargetKind,
    plan: &Plan,
    protocol: ConnProtocol,
) -> Result<IdleFigures> {
    let dir = ctx.dir.join(format!("{kind}-idle-{protocol}"));
    let mut target = targets::start(kind, protocol.scheme(), &ctx.targets, &dir).await?;
    let endpoint = target.endpoint;
    let url = endpoint.url();
    if protocol == ConnProtocol::H2 {
        let log = dir.join("h2load-warm.log");
        super::h2conns::h2load(ctx, &url, &log, 16, 10, ctx.settings.warmup)?
            .run()
            .await
            .context("warm-up")?;
    } else {
        wrk(ctx, &url, WARM_CONNECTIONS, ctx.settings.warmup)
            .await
            .context("warm-up")?;
    }
    tokio::time::sleep(SETTLE).await;
    let dialer = Dialer {
        addr: endpoint.addr(),
        protocol,
        tls: match protocol {
            ConnProtocol::H2 => super::h2conns::h2_client_config(&ctx.targets.tls_client),
            _ => ctx.targets.tls_client.clone(),
        },
    };
    let pid = target.pid();
    let baseline_rss = procstat::rss_bytes(pid)?;
    let mut conns = Vec::new();
    let mut steps = Vec::new();
    for n in &plan.idle {
        let more = (*n as usize).saturating_sub(conns.len());
        idle::open(&dialer, more, &mut conns)
            .await
            .with_context(|| format!("opening idle connection {} of {n}", conns.len() + 1))?;
        tokio::time::sleep(SETTLE).await;
        steps.push((*n, procstat::rss_bytes(pid)?));
    }
    let held = conns.len();
    let reused = idle::reuse_all(conns).await;
    target.ensure_running()?;
    Ok(IdleFigures {
        baseline_rss,
        steps,
        held,
        reused,
    })
}

async fn measure_busy(ctx: &RunContext, kind: TargetKind, clients: u32) -> Result<BusyFigures> {
    let dir = ctx.dir.join(format!("{kind}-busy{clients}"));
    let mut target = targets::start(kind, Scheme::Http, &ctx.targets, &dir).await?;
    let url = target.endpoint.url();
    wrk(ctx, &url, clients, ctx.settings.warmup)
        .await
        .context("warm-up")?;
    let pid = target.pid();
    let before = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let result = wrk(ctx, &url, clients, ctx.settings.duration)
        .await
        .context("measured window")?;
    let after = procstat::cpu_time(pid, ctx.ticks_per_sec)?;
    let peak_rss = procstat::peak_rss_bytes(pid)?;
    target.ensure_running()?;
    Ok(BusyFigures {
        clients,
        wrk: result,
        cpu: after.saturating_sub(before),
        peak_rss,
    })
}

async fn wrk(
    ctx: &RunContext,
    url: &str,
    connections: u32,
    duration: Duration,
) -> Result<WrkResult> {
    WrkRun {
        wrk: &ctx.wrk,
        url,
        connections,
        duration,
        pin: ctx.load_pin,
    }
    .run()
    .await
}

/// Prints both tables (Markdown).
pub fn print(plan: &Plan, all: &[TargetConns], duration: Duration) {
    let thousands = |n: i64| {
        let s = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            format!("-{out}")
        } else {
            out
        }
    };
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!();
    println!(
        "Idle keep-alive connections: user memory per connection, (RSS - warmed baseline) / N"
    );
    println!();
    let counts: Vec<String> = plan
        .idle
        .iter()
        .map(|n| format!("{} idle", thousands(i64::from(*n))))
        .collect();
    println!(
        "| protocol | target | baseline RSS MB | {} | second request answered |",
        counts.join(" | ")
    );
    println!("|---|---|---|{}---|", "---|".repeat(counts.len()));
    let mut rows = Vec::new();
    for p in &plan.protocols {
        for t in all {
            rows.extend(t.idle.iter().filter(|(q, _)| q == p).map(|i| (t, i)));
        }
    }
    for (t, (protocol, idle)) in rows {
        match idle {
            Ok(f) => {
                let cells: Vec<String> = f
                    .per_connection()
                    .iter()
                    .map(|(_, b)| format!("{} B", thousands(*b)))
                    .collect();
                println!(
                    "| {protocol} | {} | {:.1} | {} | {}/{} |",
                    t.kind.label(),
                    mb(f.baseline_rss),
                    cells.join(" | "),
                    thousands(f.reused as i64),
                    thousands(f.held as i64)
                );
            }
            Err(e) => println!("| {protocol} | {} | failed: {e} |", t.kind.label()),
        }
    }
    println!();
    println!(
        "Busy keep-alive clients: wrk -t1 -cN, {} s window",
        duration.as_secs()
    );
    println!();
    println!("| target | clients | req/s | p99 ms | CPU µs/req | peak RSS MB | errors |");
    println!("|---|---|---|---|---|---|---|");
    for clients in &plan.busy {
        for t in all {
            let Some((_, busy)) = t.busy.iter().find(|(c, _)| c == clients) else {
                continue;
            };
            match busy {
                Ok(b) => println!(
                    "| {} | {} | {} | {:.2} | {:.1} | {:.1} | {} |",
                    t.kind.label(),
                    thousands(i64::from(b.clients)),
                    thousands(b.wrk.requests_per_sec.round() as i64),
                    b.wrk.p99.as_secs_f64() * 1e3,
                    b.cpu_us_per_request(),
                    mb(b.peak_rss),
                    b.wrk.errors()
                ),
                Err(e) => println!("| {} | {clients} | failed: {e} |", t.kind.label()),
            }
        }
    }
}

/// Writes every figure as JSON.
pub fn write_json(path: &Path, all: &[TargetConns]) -> Result<()> {
    let targets: Vec<serde_json::Value> = all
        .iter()
        .map(|t| {
            let idle: Vec<serde_json::Value> = t.idle.iter().map(|(protocol, idle)| match idle {
                Ok(f) => serde_json::json!({
                    "protocol": protocol.name(),
                    "baseline_rss_bytes": f.baseline_rss,
                    "steps": f.steps.iter().zip(f.per_connection()).map(|((n, rss), (_, per))| {
                        serde_json::json!({"connections": n, "rss_bytes": rss, "bytes_per_connection": per})
                    }).collect::<Vec<_>>(),
                    "held": f.held,
                    "second_request_answered": f.reused,
                }),
                Err(e) => serde_json::json!({ "protocol": protocol.name(), "error": e }),
            }).collect();
            let busy: Vec<serde_json::Value> = t
                .busy
                .iter()
                .map(|(clients, b)| match b {
                    Ok(b) => serde_json::json!({
                        "clients": clients,
                        "requests": b.wrk.requests,
                        "requests_per_sec": b.wrk.requests_per_sec,
                        "p99_ms": b.wrk.p99.as_secs_f64() * 1e3,
                        "cpu_us_per_request": b.cpu_us_per_request(),
                        "peak_rss_bytes": b.peak_rss,
                        "errors": b.wrk.errors(),
                    }),
                    Err(e) => serde_json::json!({ "clients": clients, "error": e }),
                })
                .collect();
            serde_json::json!({ "target": t.kind.name(), "idle": idle, "busy": busy })
        })
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "conns": targets }))
        .context("encoding JSON")?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
