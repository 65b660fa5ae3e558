//! Process lifecycle of `fulcrum run`: runtime, logging, signals, graceful shutdown.
//!
//! - SIGHUP re-reads the config file and applies it (refused if invalid; the running
//!   config stays).
//! - SIGTERM / SIGINT stop accepting, let in-flight requests finish up to
//!   `node.shutdown_grace`, then exit 0.

use crate::admin;
use crate::app::Node;
use crate::control::thread::ControlThread;
use crate::listener;
use crate::logging;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{signal, SignalKind};

pub fn run(config_path: &Path, threads: Option<usize>) -> ExitCode {
    let text = match std::fs::read_to_string(config_path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}:1:1: cannot read: {e}", config_path.display());
            return ExitCode::FAILURE;
        }
    };
    let config = match fulcrum_config::parse(&text, &config_path.display().to_string()) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // Before anything is bound: a broken peer certificate is a config error.
    let origin = config_path.display().to_string();
    if let Err(errors) = crate::cluster::check_peer_tls(&config, &text, &origin) {
        eprintln!("{errors}");
        return ExitCode::FAILURE;
    }
    let access_log = config
        .node
        .as_ref()
        .map(|n| n.access_log.clone())
        .unwrap_or_else(|| "stdout".into());
    if let Err(e) = logging::init(&access_log) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let threads = threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    // One worker thread means one thread: a current-thread runtime keeps every task
    // (connections, upstream pools, timers) on it, with no cross-thread wake-ups.
    let built = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    // Raft, the lease and the VIP guard get their own (real-time when allowed) threads.
    let control = if config.cluster.is_some() {
        match ControlThread::start() {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("cannot start the control thread: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let runtime = match built {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(serve(config, text, config_path));
    drop(runtime);
    drop(control);
    code
}

async fn serve(config: fulcrum_config::Config, text: String, config_path: &Path) -> ExitCode {
    crate::control::vip_agree::mark_started();
    let node = match Node::start(config, text, config_path.to_path_buf()).await {
        Ok(n) => n,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let admin_socket = match listener::bind(node.local.admin) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot bind admin address {}: {e}", node.local.admin);
            return ExitCode::FAILURE;
        }
    };
    tokio::spawn(admin::serve(node.clone(), admin_socket));
    // All nodes of a cluster run one [vip]: a node whose file differs does not join.
    // Checked alongside the signal handling, so a signal during the check is handled.
    let (refused_tx, refused) = tokio::sync::oneshot::channel();
    let checked = node.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::control::vip_agree::check_peers(&checked).await {
            let _ = refused_tx.send(e);
        }
    });
    tracing::info!(node = node.local.id, admin = %node.local.admin, version = node.version(), "fulcrum node running");
    let code = match wait_for_signals(&node, refused).await {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(e)) => {
            tracing::error!(error = %e, "refusing to run");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!(error = %e, "signal handling failed");
            ExitCode::SUCCESS
        }
    };
    shutdown(&node).await;
    code
}

/// Handles SIGHUP reloads until SIGTERM or SIGINT arrives, or the `[vip]` check refuses
/// this node (`Some`).
async fn wait_for_signals(
    node: &Arc<Node>,
    mut refused: tokio::sync::oneshot::Receiver<crate::control::vip_agree::VipDisagreement>,
) -> std::io::Result<Option<crate::control::vip_agree::VipDisagreement>> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut checking = true;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(node).await,
            _ = term.recv() => { tracing::info!("SIGTERM: shutting down"); return Ok(None) }
            _ = int.recv() => { tracing::info!("SIGINT: shutting down"); return Ok(None) }
            r = &mut refused, if checking => match r {
                Ok(e) => return Ok(Some(e)),
                // The check passed (its sender is gone).
                Err(_) => checking = false,
            },
        }
    }
}

async fn reload(node: &Arc<Node>) {
    let path = node.config_path.clone();
    let origin = path.display().to_string();
    match std::fs::read_to_string(&path) {
        Ok(text) => match node.change_config(&text, &origin).await {
            Ok(version) => tracing::info!(version, "SIGHUP: config reloaded"),
            Err(e) => tracing::warn!(error = %e, "SIGHUP: reload refused"),
        },
        Err(e) => tracing::warn!(error = %e, path = %path.display(), "SIGHUP: cannot read config"),
    }
}

/// Planned stop, make before break:
/// 1. While listeners still accept, hand Raft leadership (and with it the VIP) to a
///    peer: the successor's vote request shuts this node's fence before it is granted,
///    and the successor claims as soon as it has the grant.
/// 2. If this node still leads (no peer took over), shut Raft down: a node that leads
///    never releases the VIP while it still serves as leader, and a stopped Raft lets
///    the peers elect at once.
/// 3. Only then stop accepting and drain in-flight requests up to the grace period.
async fn shutdown(node: &Arc<Node>) {
    let mut raft_stopped = false;
    if let Some(cluster) = node.cluster() {
        let outcome = cluster.raft.hand_off().await;
        tracing::info!(?outcome, "leadership hand-off before stopping");
        if cluster.raft.status().borrow().role == fulcrum_raft::Role::Leader {
            tracing::warn!("still leading after the hand-off; stopping Raft before draining");
            cluster.raft.shutdown().await;
            raft_stopped = true;
        }
    }
    node.vip_stop.cancel();
    if let Some(vip) = node.vip.get() {
        vip.release("shutting down");
    }
    node.stop.cancel();
    node.connections.close();
    node.dp.tunnels.close();
    let grace = node.local.shutdown_grace;
    let drained = tokio::time::timeout(grace, async {
        node.connections.wait().await;
        node.dp.tunnels.wait().await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections finished; exiting"),
        Err(_) => tracing::warn!(
            ?grace,
            remaining = node.connections.len(),
            "grace period over; exiting with connections open"
        ),
    }
    if let Some(cluster) = node.cluster() {
        if !raft_stopped {
            cluster.raft.shutdown().await;
        }
    }
}
