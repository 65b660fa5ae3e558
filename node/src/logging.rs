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
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
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
        .with(diagnostics)
        .with(access)
        .try_init()
        .map_err(|e| format!("cannot install logger: {e}"))
}
