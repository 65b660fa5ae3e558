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

/// `fulcrum run`: loads the config, sets up logging, the runtimes and signals, and runs the
/// node until SIGTERM or SIGINT.
pub fn run_process(config_path: &Path, threads: Option<usize>) -> ExitCode {
    if !crate::huge_pages::disable() {
        eprintln!("could not turn transparent huge pages off; memory per connection is larger");
    }
    let loaded = match crate::load(config_path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let config = loaded.config;
    let text = loaded.text;
    let access_log = config
        .node
        .as_ref()
        .map(|n| n.access_log.clone())
        .unwrap_or_else(|| "stdout".into());
    // Held until the process returns: dropping it writes out the queued lines.
    let _log = match logging::init(&access_log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
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
    let stop = async {
        if let Err(e) = stop_signal().await {
            tracing::error!(error = %e, "signal handling failed");
        }
    };
    let code = match runtime.block_on(run(config, text, config_path, stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    };
    drop(runtime);
    drop(control);
    code
}

/// Why a node could not start, or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Start(#[from] crate::app::ApplyError),
    #[error("cannot bind admin address {addr}: {source}")]
    AdminBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Its `[vip]` differs from the cluster's: it does not join.
    #[error("{0}")]
    VipRefused(#[from] crate::control::vip_agree::VipDisagreement),
    /// `[bgp]` is configured and its service link could not be made.
    #[error("{0}")]
    Bgp(#[from] crate::control::bgp::BgpError),
    /// `[dns] bind` could not be bound.
    #[error("{0}")]
    Dns(#[from] crate::dns::DnsBindError),
}

/// Runs a node from `config` (parsed from `text`, the file at `config_path`) until `stop`
/// resolves, then stops it gracefully: hand-off of leadership and the VIP, then drain.
/// SIGHUP re-reads `config_path` and applies it while the node runs. A node whose `[vip]`
/// differs from its peers' stops too, with `RunError::VipRefused`.
pub async fn run(
    config: fulcrum_config::Config,
    text: String,
    config_path: &Path,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), RunError> {
    crate::control::vip_agree::mark_started();
    // The service link first: listeners may bind the service addresses it carries.
    let bgp = crate::bgp_inputs::start(config.bgp.as_ref()).await?;
    let node = Node::start(config, text, config_path.to_path_buf()).await?;
    if let Some(bgp) = bgp {
        crate::bgp_inputs::spawn(&node, bgp);
    }
    crate::dns::start(&node).await?;
    if let Some(cluster) = node.cluster() {
        let live = crate::control::live_nodes::run(
            cluster.raft.clone(),
            node.dp.clone(),
            node.stop.clone(),
        );
        let control = crate::control::thread::control_handle()
            .unwrap_or_else(tokio::runtime::Handle::current);
        control.spawn(live);
        control.spawn(crate::control::steal::sample(node.stop.clone()));
    }
    let admin_socket = listener::bind(node.local.admin).map_err(|source| RunError::AdminBind {
        addr: node.local.admin,
        source,
    })?;
    if admin_exposed(node.local.admin, node.admin_token.is_some()) {
        // Anyone who reaches this address could change the config or drain backends.
        tracing::warn!(
            admin = %node.local.admin,
            "the admin API listens on a non-loopback address without a token; set [node] admin_token_file"
        );
    }
    tokio::spawn(admin::serve(node.clone(), admin_socket));
    crate::control::scale_hook::spawn(&node);
    // All nodes of a cluster run one [vip]: a node whose file differs does not join.
    // Checked alongside the signal handling, so a signal during the check is handled.
    let checked = node.clone();
    let agree = async move {
        let config = checked.dp.snapshot().config.clone();
        let cluster = checked.cluster().map(|c| c.as_ref());
        crate::control::vip_agree::check_peers(cluster, &config, checked.local.id).await
    };
    tracing::info!(node = node.local.id, admin = %node.local.admin, version = node.version(), "fulcrum node running");
    let refused = tokio::select! {
        () = stop => None,
        () = reload_on_hangup(&node) => None,
        Err(e) = agree => Some(e),
    };
    if let Some(e) = &refused {
        tracing::error!(error = %e, "refusing to run");
    }
    shutdown(&node).await;
    refused.map_or(Ok(()), |e| Err(e.into()))
}

/// Resolves on SIGTERM or SIGINT.
async fn stop_signal() -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    Ok(())
}

/// Applies the config file again on every SIGHUP; never resolves unless signal handling
/// cannot be set up.
async fn reload_on_hangup(node: &Arc<Node>) {
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "cannot handle SIGHUP; reloads disabled");
            return std::future::pending().await;
        }
    };
    while hup.recv().await.is_some() {
        reload(node).await;
    }
    std::future::pending().await
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
///    peer: this node grants the successor's vote with its fence still open, and closes
///    it (forwarding stragglers to the successor) when the successor, leading, asks for
///    the traffic; the successor claims on that answer (`control::vip_guard`).
/// 2. If this node still leads (no peer took over), shut Raft down: a node that leads
///    never releases the VIP while it still serves as leader, and a stopped Raft lets
///    the peers elect at once.
/// 3. Only then stop accepting and drain in-flight requests up to the grace period.
///
/// In BGP mode the prefixes are withdrawn before all of this, and the node keeps serving
/// for `[bgp] withdraw_wait` while the routers move the flows to the other nodes.
async fn shutdown(node: &Arc<Node>) {
    if let Some(bgp) = node.bgp.get() {
        let took = bgp
            .withdraw_for_stop(std::time::Duration::from_secs(3))
            .await;
        tracing::info!(took, wait = ?bgp.withdraw_wait, "BGP: withdrawn before stopping; still serving while routers converge");
        tokio::time::sleep(bgp.withdraw_wait).await;
    }
    if let Some(spread) = node.spread.get() {
        let moved = spread
            .drain_for_stop(std::time::Duration::from_secs(2))
            .await;
        tracing::info!(
            moved,
            "spread VIPs: asked the leader to move them before stopping"
        );
    }
    let mut raft_stopped = false;
    if let Some(cluster) = node.cluster() {
        let outcome = cluster.raft.hand_off().await;
        tracing::info!(?outcome, "leadership hand-off before stopping");
        // Listeners keep accepting while the fence is bridged for the successor: until it
        // has taken the traffic, this node is the one that answers.
        if let Some(vip) = node.vip.get() {
            vip.bridge_closed().await;
        }
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
    if let Some(vip) = node.vip.get() {
        vip.drop_kept_address();
    }
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

/// The admin API answers beyond this machine and nobody needs a token to change things.
fn admin_exposed(admin: std::net::SocketAddr, has_token: bool) -> bool {
    !has_token && !admin.ip().is_loopback()
}

#[cfg(test)]
mod admin_warning_tests {
    use super::admin_exposed;

    #[test]
    fn only_a_tokenless_admin_api_beyond_loopback_is_exposed() {
        assert!(!admin_exposed("127.0.0.1:9000".parse().unwrap(), false));
        assert!(!admin_exposed("[::1]:9000".parse().unwrap(), false));
        assert!(admin_exposed("10.77.0.1:9000".parse().unwrap(), false));
        assert!(admin_exposed("0.0.0.0:9000".parse().unwrap(), false));
        assert!(!admin_exposed("10.77.0.1:9000".parse().unwrap(), true));
    }
}
