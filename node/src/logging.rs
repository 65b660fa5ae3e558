//! Log output: diagnostics to stderr, the access log to stdout, a file, or nowhere.
//!
//! Access log lines are `tracing` events with target `access`; a separate layer routes
//! them so `RUST_LOG` tuning of diagnostics never hides or floods the access log.
//!
//! **No thread ever waits for a log sink.** Every line goes through a bounded queue to a
//! writer thread of its own; when the queue is full the line is dropped and counted
//! ([`dropped_lines`], `fulcrum_log_lines_dropped` in `/metrics`). A blocking write in
//! the thread that logs would tie the control thread's timing to the sink: a stderr pipe
//! that journald stops reading, or a log file under the kernel's dirty-page throttling
//! (which parks a writer for up to 200 ms), froze the Raft leader's lease pings long enough
//! for its followers to elect another node (seen in the chaos suite's rolling restart while
//! the machine was writing gigabytes of build output). The same holds for the data plane
//! and the access log.

use std::sync::OnceLock;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Lines a sink may fall behind before new ones are dropped (about 2 MiB of lines), unless
/// `FULCRUM_LOG_QUEUE_LINES` says otherwise.
const QUEUED_LINES: usize = 8 * 1024;

/// The queue's length in lines: `FULCRUM_LOG_QUEUE_LINES` when it is a number above 0.
fn queued_lines() -> usize {
    std::env::var("FULCRUM_LOG_QUEUE_LINES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(QUEUED_LINES)
}

/// The writer threads; dropping it writes out what is queued (at exit).
#[must_use = "dropping the guard stops the log writers"]
pub struct LogGuard {
    _writers: Vec<WorkerGuard>,
}

/// Counters of the lines each sink dropped (diagnostics, then the access log).
static DROPPED: OnceLock<Vec<ErrorCounter>> = OnceLock::new();

/// Log lines dropped so far because a sink did not keep up.
pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |c| c.iter().map(|c| c.dropped_lines() as u64).sum())
}

/// A writer that hands lines to a thread of its own, dropping them when the queue is full.
fn queued<W: std::io::Write + Send + 'static>(
    sink: W,
    name: &str,
    guards: &mut Vec<WorkerGuard>,
    counters: &mut Vec<ErrorCounter>,
) -> NonBlocking {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(queued_lines())
        .thread_name(name)
        .finish(sink);
    counters.push(writer.error_counter());
    guards.push(guard);
    writer
}

/// Installs the global subscriber. `access_log` is `stdout`, `off` or a file path.
pub fn init(access_log: &str) -> Result<LogGuard, String> {
    // One global filter decides at each callsite whether it is enabled at all, so
    // disabled spans (the per-request `debug` span) cost nothing on the hot path. The
    // access log's target is always let through; whether it is written is decided by
    // the layers below and by the proxy, which skips the event when the log is off.
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(format!("{base},access=info"))
        .unwrap_or_else(|_| EnvFilter::new("info,access=info"));
    let (mut guards, mut counters) = (Vec::new(), Vec::new());
    let stderr = queued(std::io::stderr(), "fulcrum-log", &mut guards, &mut counters);
    let diagnostics = tracing_subscriber::fmt::layer()
        .with_writer(stderr)
        .with_filter(filter_fn(|meta| meta.target() != "access"));
    let access_sink: Option<Box<dyn std::io::Write + Send>> = match access_log {
        "off" => None,
        "stdout" => Some(Box::new(std::io::stdout())),
        path => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open access log {path}: {e}"))?;
            Some(Box::new(file))
        }
    };
    let access = access_sink.map(|sink| {
        let writer = queued(sink, "fulcrum-access", &mut guards, &mut counters);
        tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(false)
            .with_target(false)
            .with_filter(filter_fn(|meta| meta.target() == "access"))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(diagnostics)
        .with(access)
        .try_init()
        .map_err(|e| format!("cannot install logger: {e}"))?;
    let _ = DROPPED.set(counters);
    Ok(LogGuard { _writers: guards })
}
