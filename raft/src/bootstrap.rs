//! Cluster formation and self-maintenance: the one-time `initialize` on a fresh
//! bootstrapper, the registrar task that seeds the config and registers this node's
//! addresses once a leader exists.

use std::time::Duration;

use openraft::error::InitializeError;
use openraft::error::RaftError as OpenraftError;

use crate::node::{self, RaftError, RaftHandle, RaftOptions};
use crate::types::{Command, Raft};

/// How often the registrar checks whether it has something to propose.
const REGISTRAR_PERIOD: Duration = Duration::from_millis(200);
const INIT_ATTEMPTS: u32 = 20;

/// Initialize a fresh cluster with the static peers. Safe because only the lowest id
/// of a pristine store gets here, and `NotAllowed` (already initialized) is success.
#[tracing::instrument(level = "info", skip_all, fields(node = opts.node_id))]
pub(crate) async fn initialize(raft: &Raft, opts: &RaftOptions) -> Result<(), RaftError> {
    let members = node::initial_members(opts);
    let mut last_err = String::new();
    for _ in 0..INIT_ATTEMPTS {
        match raft.initialize(members.clone()).await {
            Ok(()) => {
                tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "initialized cluster");
                return Ok(());
            }
            Err(OpenraftError::APIError(InitializeError::NotAllowed(_))) => return Ok(()),
            Err(e) => last_err = e.to_string(),
        }
        if raft.metrics().borrow().current_leader.is_some() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(RaftError::Start(format!("initialize failed: {last_err}")))
}

/// Until shutdown: once a leader exists, seed the config (leader only, when the cluster
/// has none) and make sure the registry holds this node's current addresses.
pub(crate) async fn registrar(h: RaftHandle) {
    let mut shutdown = h.inner.shutdown_rx.clone();
    let mut tick = tokio::time::interval(REGISTRAR_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Some(cmd) = next_command(&h) {
            if let Err(e) = h.propose(cmd).await {
                tracing::debug!(error = %e, "registrar proposal failed; will retry");
            }
        }
    }
}

fn next_command(h: &RaftHandle) -> Option<Command> {
    let inner = &h.inner;
    let (leader, is_member) = {
        let m = inner.raft.metrics();
        let m = m.borrow();
        let member = m
            .membership_config
            .membership()
            .get_node(&inner.node_id)
            .is_some();
        (m.current_leader, member)
    };
    // A removed node must not re-register itself.
    let leader = leader?;
    if !is_member {
        return None;
    }
    let state = inner.state_rx.borrow().clone();
    if leader == inner.node_id && state.config_version == 0 && !inner.seed_config_toml.is_empty() {
        return Some(Command::SeedConfig {
            toml: inner.seed_config_toml.clone(),
        });
    }
    let me = node::self_entry(inner);
    if state.nodes.get(&inner.node_id) != Some(&me) {
        return Some(Command::RegisterNode {
            id: inner.node_id,
            raft_addr: me.raft_addr,
            admin_addr: me.admin_addr,
        });
    }
    None
}
