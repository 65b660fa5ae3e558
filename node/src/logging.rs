//! Log output: diagnostics to stderr, the access log to stdout, a file, or nowhere.
//!
//! Access log lines are `tracing` events with target `access`; a separate layer routes
//! them so `RUST_LOG` tuning of diagnostics never hides or floods the access log.

use std::sync::Mutex;
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Installs the global subscriber. `access_log` is `stdout`, `off` or a file path.
pub fn init(access_log: &str) -> Result<(), String> {
    // One global filter decides at each callsite whether it is enabled at all, so
    // disabled spans (the per-request `debug` span) cost nothing on the hot path. The
    // access log's target is always let through; whether it is written is decided by
    // the layers below and by the proxy, which skips the event when the log is off.
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(format!("{base},access=info"))
        .unwrap_or_else(|_| EnvFilter::new("info,access=info"));
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(filter_fn(|meta| meta.target() != "access"));
    let access = match access_log {
        "off" => None,
        "stdout" => Some(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(false)
                .with_target(false)
                .with_filter(filter_fn(|meta| meta.target() == "access"))
                .boxed(),
        ),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open access log {path}: {e}"))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false)
                    .with_filter(filter_fn(|meta| meta.target() == "access"))
                    .boxed(),
            )
        }
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(diagnostics)
        .with(access)
        .try_init()
        .map_err(|e| format!("cannot install logger: {e}"))
}
