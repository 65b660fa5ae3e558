//! Output of a benchmark run: the progress line per measurement, the table of medians
//! per (target, mode), the ratios of fulcrum against the other proxies per mode, and
//! the JSON file with every figure.

use super::mode::Mode;
use super::stats::{Measurement, Ratio, Sample, Summary, ERROR_FLAG_RATIO};
use super::tls;
use super::Settings;
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::Path;

/// One line to stderr for a finished measurement.
pub fn progress(m: &Measurement, rounds: usize) {
    match &m.outcome {
        Ok(s) => eprintln!(
            "[round {}/{rounds}] {:<8} {:<9} {:>9.0} {unit}/s  p50 {:.2} ms  p99 {:.2} ms  \
             {:.2} µs/{unit} CPU  {:.1} MB  {} errors{}",
            m.round,
            m.kind.name(),
            m.mode.name(),
            s.wrk.requests_per_sec,
            s.wrk.p50.as_secs_f64() * 1e3,
            s.wrk.p99.as_secs_f64() * 1e3,
            s.cpu_us_per_request(),
            s.peak_rss_mb(),
            s.wrk.errors(),
            if s.flagged() { "  FLAGGED" } else { "" },
            unit = m.mode.unit(),
        ),
        Err(e) => eprintln!(
            "[round {}/{rounds}] {:<8} {:<9} FAILED: {e}",
            m.round,
            m.kind.name(),
            m.mode.name()
        ),
    }
}

/// How the mode's load was generated, for the header.
fn mode_line(mode: Mode, settings: &Settings) -> String {
    let (c, d) = (settings.connections, settings.duration.as_secs());
    let h2c = settings.h2_connections;
    match mode {
        Mode::Http => format!("http: wrk -t1 -c{c} -d{d}s --latency http://..."),
        Mode::Https => format!("https: wrk -t1 -c{c} -d{d}s --latency https://..."),
        Mode::H2 | Mode::H2Single => format!(
            "{mode}: h2load -t1 -c{h2c} -m{} -D{d} https://... (TLS, ALPN h2); p50/p99 from \
             h2load's per-request log",
            mode.h2_streams().unwrap_or(1)
        ),
        Mode::Handshake => format!(
            "handshake: {c} rustls clients for {d}s, each a new TCP + TLS connection per \
             request (Connection: close), no resumption; req/s = handshakes/s, \
             latency = connect to close"
        ),
    }
}

/// The table of medians and the ratios, to stdout.
pub fn print(settings: &Settings, summaries: &[Summary], ratios: &[Ratio]) {
    println!(
        "\nMedians over {} round(s); proxy pinned: {}",
        settings.rounds, settings.pinned
    );
    for mode in &settings.modes {
        println!("  {}", mode_line(*mode, settings));
    }
    if settings.uses_tls() {
        println!("  TLS: {}", tls::SETTINGS);
    }
    let load = |v: Option<f64>| v.map_or("?".to_string(), |l| format!("{l:.2}"));
    println!(
        "Load average (1 min) before {} / after {} (near or above the CPU count, the figures are noisy).\n",
        load(settings.load_before),
        load(settings.load_after)
    );
    println!(
        "| target | mode | req/s | p50 ms | p99 ms | proxy CPU µs/req | peak RSS MB | errors | rounds ok/failed/flagged |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for s in summaries {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {}/{}/{} |",
            s.kind.label(),
            s.mode.name(),
            fixed(s.requests_per_sec, 0),
            fixed(s.p50_ms, 2),
            fixed(s.p99_ms, 2),
            fixed(s.cpu_us_per_request, 2),
            fixed(s.peak_rss_mb, 1),
            s.errors,
            s.rounds_ok,
            s.rounds_failed,
            s.rounds_flagged,
        );
    }
    if !ratios.is_empty() {
        println!();
    }
    for r in ratios {
        let unit = r.mode.unit();
        println!(
            "fulcrum / {} [{}]: {unit}/s {:.2}x (higher is better), CPU µs/{unit} {:.2}x \
             (lower is better), p99 {:.2}x (lower is better)",
            r.other.label(),
            r.mode.name(),
            r.requests_per_sec,
            r.cpu_us_per_request,
            r.p99
        );
    }
    if summaries.iter().any(|s| s.rounds_flagged > 0) {
        println!(
            "\nA flagged round had more than {:.1}% failed requests.",
            ERROR_FLAG_RATIO * 100.0
        );
    }
}

/// Writes every figure of the run to `path` as JSON.
pub fn write_json(
    path: &Path,
    settings: &Settings,
    measurements: &[Measurement],
    summaries: &[Summary],
    ratios: &[Ratio],
) -> Result<()> {
    let doc = json!({
        "settings": {
            "rounds": settings.rounds,
            "connections": settings.connections,
            "h2_connections": settings.h2_connections,
            "duration_secs": settings.duration.as_secs(),
            "warmup_secs": settings.warmup.as_secs(),
            "pinned": settings.pinned,
            "load_average_before": settings.load_before,
            "load_average_after": settings.load_after,
            "targets": settings.targets.iter().map(|k| k.name()).collect::<Vec<_>>(),
            "modes": settings.modes.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "tls": if settings.uses_tls() { json!(tls::SETTINGS) } else { Value::Null },
        },
        "measurements": measurements.iter().map(measurement_json).collect::<Vec<_>>(),
        "summary": summaries.iter().map(summary_json).collect::<Vec<_>>(),
        "ratios": ratios.iter().map(ratio_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).context("serializing the report")?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}

/// A figure with `decimals` places, or `–` when there is none.
fn fixed(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "–".to_string()
    }
}

/// JSON has no NaN: missing figures become null.
fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn measurement_json(m: &Measurement) -> Value {
    let base = json!({ "target": m.kind.name(), "mode": m.mode.name(), "round": m.round });
    match &m.outcome {
        Ok(s) => merge(base, sample_json(s)),
        Err(e) => merge(base, json!({ "error": e })),
    }
}

fn sample_json(s: &Sample) -> Value {
    let e = &s.wrk.socket_errors;
    json!({
        "requests": s.wrk.requests,
        "requests_per_sec": num(s.wrk.requests_per_sec),
        "p50_ms": num(s.wrk.p50.as_secs_f64() * 1e3),
        "p99_ms": num(s.wrk.p99.as_secs_f64() * 1e3),
        "cpu_secs": num(s.cpu.as_secs_f64()),
        "cpu_us_per_request": num(s.cpu_us_per_request()),
        "peak_rss_bytes": s.peak_rss,
        "socket_errors": { "connect": e.connect, "read": e.read, "write": e.write, "timeout": e.timeout },
        "non_2xx_3xx": s.wrk.non_2xx_3xx,
        "flagged": s.flagged(),
    })
}

fn summary_json(s: &Summary) -> Value {
    json!({
        "target": s.kind.name(),
        "mode": s.mode.name(),
        "rounds_ok": s.rounds_ok,
        "rounds_failed": s.rounds_failed,
        "rounds_flagged": s.rounds_flagged,
        "requests_per_sec": num(s.requests_per_sec),
        "p50_ms": num(s.p50_ms),
        "p99_ms": num(s.p99_ms),
        "cpu_us_per_request": num(s.cpu_us_per_request),
        "peak_rss_mb": num(s.peak_rss_mb),
        "errors": s.errors,
    })
}

fn ratio_json(r: &Ratio) -> Value {
    json!({
        "fulcrum_over": r.other.name(),
        "mode": r.mode.name(),
        "requests_per_sec": num(r.requests_per_sec),
        "cpu_us_per_request": num(r.cpu_us_per_request),
        "p99": num(r.p99),
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a_map), Value::Object(b_map)) = (a.as_object_mut(), b) {
        a_map.extend(b_map);
    }
    a
}
