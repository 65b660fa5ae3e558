//! The faults, each a function over [`Ops`], plus the local namespace mechanics behind
//! partitions (nftables) and link trouble (tc netem).
//!
//! Leader finding asks every node's `/status`; when several claim leadership (or none
//! answers), the VIP holder seen by the poller decides.

use crate::checks::{Event, Fault};
use crate::httpc;
use crate::ops::{BackendAction, NodeAction, Ops};
use anyhow::{bail, Result};
use fulcrum_testbed::netns;
use serde::Serialize;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const ADMIN_TIMEOUT: Duration = Duration::from_millis(500);
/// nftables table used for partitions.
const NFT_TABLE: &str = "fch_partition";
/// Loss and delay applied by the netem fault.
pub const NETEM: &[&str] = &["loss", "5%", "delay", "30ms", "5ms"];

/// One node's answer to `/status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    pub node_id: Option<u64>,
    pub role: Option<String>,
    pub leader_id: Option<u64>,
    pub term: Option<u64>,
    pub config_version: Option<u64>,
    pub vip_held: Option<bool>,
    /// A quorum confirmed this node's leadership recently (leaders only).
    pub lease_fresh: Option<bool>,
    /// `connected`, `degraded` or `disabled`.
    pub session_store: Option<String>,
    /// Backends this node's health checks hold down, over every pool.
    pub unhealthy: Option<usize>,
    /// The highest log index this node knows to be committed.
    pub commit_index: Option<u64>,
    /// The committed config version this node could not apply, and why (`None`: none).
    pub apply_error: Option<ApplyError>,
}

/// `config_apply_error` of a `/status` answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApplyError {
    pub version: u64,
    pub reason: String,
}

pub async fn status(ops: &dyn Ops, i: usize) -> Result<NodeStatus> {
    status_at(&ops.admin(i), ADMIN_TIMEOUT).await
}

/// `/status` of the node whose admin API is at `admin`.
pub async fn status_at(admin: &str, timeout: Duration) -> Result<NodeStatus> {
    let v = httpc::status(admin, timeout).await?;
    Ok(NodeStatus {
        node_id: v.get("node_id").and_then(|r| r.as_u64()),
        role: v.get("role").and_then(|r| r.as_str()).map(str::to_string),
        leader_id: v.get("leader_id").and_then(|r| r.as_u64()),
        term: v.get("term").and_then(|r| r.as_u64()),
        config_version: v.get("config_version").and_then(|r| r.as_u64()),
        vip_held: v.get("vip_held").and_then(|r| r.as_bool()),
        lease_fresh: v.get("lease_fresh").and_then(|r| r.as_bool()),
        session_store: v
            .get("session_store")
            .and_then(|r| r.as_str())
            .map(str::to_string),
        unhealthy: unhealthy_backends(&v),
        commit_index: v.get("commit_index").and_then(|r| r.as_u64()),
        apply_error: apply_error(&v),
    })
}

fn apply_error(v: &serde_json::Value) -> Option<ApplyError> {
    let e = v.get("config_apply_error")?;
    Some(ApplyError {
        version: e.get("version")?.as_u64()?,
        reason: e
            .get("reason")
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string(),
    })
}

/// Backends reported `healthy: false` across every pool of a `/status` answer.
fn unhealthy_backends(v: &serde_json::Value) -> Option<usize> {
    let pools = v.get("pools")?.as_array()?;
    Some(
        pools
            .iter()
            .filter_map(|p| p.get("backends").and_then(|b| b.as_array()))
            .flatten()
            .filter(|b| b.get("healthy").and_then(|h| h.as_bool()) == Some(false))
            .count(),
    )
}

/// Every node's status (None where it did not answer).
pub async fn statuses(ops: &dyn Ops) -> Vec<Option<NodeStatus>> {
    let mut out = Vec::new();
    for i in 0..ops.nodes() {
        out.push(status(ops, i).await.ok());
    }
    out
}

/// The leader's index: a node that says leader (preferring the one holding the VIP by its
/// own word or the poller's), else the current VIP holder.
pub async fn find_leader(ops: &dyn Ops, vip_holders: &[usize]) -> Result<usize> {
    let all = statuses(ops).await;
    let leaders: Vec<usize> = all
        .iter()
        .enumerate()
        .filter(|(_, s)| s.as_ref().and_then(|s| s.role.as_deref()) == Some("leader"))
        .map(|(i, _)| i)
        .collect();
    let holds = |i: &usize| {
        vip_holders.contains(i) || all[*i].as_ref().and_then(|s| s.vip_held) == Some(true)
    };
    if let Some(i) = leaders.iter().copied().find(holds) {
        return Ok(i);
    }
    // Several claimants and no VIP: the highest term, then the one the others point at.
    let term = |i: &usize| all[*i].as_ref().and_then(|s| s.term).unwrap_or(0);
    let named = |i: &usize| {
        let id = all[*i].as_ref().and_then(|s| s.node_id);
        all.iter()
            .flatten()
            .filter(|s| id.is_some() && s.leader_id == id)
            .count()
    };
    if let Some(i) = leaders.iter().copied().max_by_key(|i| (term(i), named(i))) {
        return Ok(i);
    }
    if let Some(i) = vip_holders.first() {
        return Ok(*i);
    }
    bail!("no node claims leadership and none holds the VIP")
}

/// A running node other than `leader`.
pub fn follower(ops: &dyn Ops, leader: usize) -> usize {
    (0..ops.nodes())
        .map(|k| (leader + 1 + k) % ops.nodes())
        .find(|i| *i != leader && ops.running(*i) != Some(false))
        .unwrap_or((leader + 1) % ops.nodes())
}

/// Records faults against the scenario epoch.
pub struct Timeline {
    pub epoch: Instant,
    pub events: Vec<Event>,
}

impl Timeline {
    pub fn now_ms(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64() * 1000.0
    }
    /// Marks an event that happens now.
    pub fn mark(
        &mut self,
        fault: Fault,
        target: Option<usize>,
        what: String,
        allow_ms: f64,
        failover: bool,
    ) -> f64 {
        let t_ms = self.now_ms();
        self.events.push(Event {
            t_ms,
            what,
            fault,
            target,
            allow_ms,
            failover,
            backend_down: None,
            cpu: None,
            no_dual_after: false,
        });
        t_ms
    }
    /// Says in the last event's text how long its command took to return (`marked_ms`:
    /// what [`Timeline::mark`] returned), so a slow injection shows beside the figures it
    /// lengthens. The event keeps its mark: a window is never measured from later than
    /// the fault could have begun.
    pub fn note_applied(&mut self, marked_ms: f64) {
        let took = self.now_ms() - marked_ms;
        if let Some(last) = self.events.last_mut() {
            last.what = format!("{} (applied in {took:.1} ms)", last.what);
        }
    }
    /// Sleeps until `at_ms` after the epoch.
    pub async fn until(&self, at_ms: u64) {
        let at = self.epoch + Duration::from_millis(at_ms);
        tokio::time::sleep_until(at.into()).await;
    }
}

pub fn node_action(
    ops: &dyn Ops,
    tl: &mut Timeline,
    i: usize,
    action: NodeAction,
    allow_ms: f64,
    failover: bool,
) -> Result<()> {
    let what = format!("{action:?} {}", ops.node_name(i)).to_lowercase();
    let fault = match action {
        NodeAction::Kill => Fault::Kill,
        NodeAction::Freeze => Fault::Freeze,
        NodeAction::Resume => Fault::Resume,
        NodeAction::Stop => Fault::Stop,
    };
    tl.mark(fault, Some(i), what, allow_ms, failover);
    ops.node(i, action)
}

pub fn restart(ops: &dyn Ops, tl: &mut Timeline, i: usize, allow_ms: f64) -> Result<()> {
    let what = format!("start {}", ops.node_name(i));
    tl.mark(Fault::Start, Some(i), what, allow_ms, false);
    ops.start(i)
}

pub fn backend(
    ops: &dyn Ops,
    tl: &mut Timeline,
    b: usize,
    action: BackendAction,
    allow_ms: f64,
) -> Result<()> {
    let name = ops.backend_names().get(b).cloned().unwrap_or_default();
    let down = matches!(
        action,
        BackendAction::Kill | BackendAction::Hang | BackendAction::Fail
    );
    let fault = if down {
        Fault::BackendDown
    } else {
        Fault::BackendUp
    };
    let what = format!("backend {name} {action:?}").to_lowercase();
    tl.mark(fault, None, what, allow_ms, false);
    if let Some(last) = tl.events.last_mut() {
        last.backend_down = Some((name, down));
    }
    ops.backend(b, action)
}

/// Waits until node `i` answers `/status` (bounded).
pub async fn wait_answering(ops: &dyn Ops, i: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if status(ops, i).await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Local partition: in the node's namespace, drop Raft traffic to and from the peers
/// (both directions, both ports), leaving client and admin traffic alone.
pub fn nft_partition(ns: &str, peers: &[Ipv4Addr], raft_port: u16) -> Result<()> {
    let set: Vec<String> = peers.iter().map(|p| p.to_string()).collect();
    let set = set.join(", ");
    let rules = format!(
        "table inet {NFT_TABLE} {{\n\
         \tchain input {{ type filter hook input priority -10; policy accept;\n\
         \t\tip saddr {{ {set} }} tcp dport {raft_port} drop\n\
         \t\tip saddr {{ {set} }} tcp sport {raft_port} drop\n\t}}\n\
         \tchain output {{ type filter hook output priority -10; policy accept;\n\
         \t\tip daddr {{ {set} }} tcp dport {raft_port} drop\n\
         \t\tip daddr {{ {set} }} tcp sport {raft_port} drop\n\t}}\n}}\n"
    );
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), rules)?;
    let path = file.path().to_string_lossy().into_owned();
    netns::run_in_urgently(ns, "nft", &["-f", &path])?;
    Ok(())
}

pub fn nft_heal(ns: &str) -> Result<()> {
    netns::run_in_urgently(ns, "nft", &["delete", "table", "inet", NFT_TABLE])?;
    Ok(())
}

/// nftables table of the netem fallback.
const NFT_LOSS_TABLE: &str = "fch_loss";

/// Loss and delay with tc netem; where the kernel has no netem (no `sch_netem` module),
/// 5% random loss both ways with nftables instead, and no delay. Returns what was applied.
pub fn tc_netem(ns: &str, on: bool) -> Result<String> {
    if !on {
        let tc = netns::run_in(ns, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
        let nft = netns::run_in(ns, "nft", &["delete", "table", "inet", NFT_LOSS_TABLE]);
        return match (tc, nft) {
            (Err(e), Err(_)) => Err(e.into()),
            _ => Ok("removed".into()),
        };
    }
    let mut args = vec!["qdisc", "replace", "dev", "eth0", "root", "netem"];
    args.extend_from_slice(NETEM);
    match netns::run_in(ns, "tc", &args) {
        Ok(_) => Ok(format!("tc netem {}", NETEM.join(" "))),
        Err(e) if e.to_string().contains("unknown") => {
            let rules = format!(
                "table inet {NFT_LOSS_TABLE} {{\n\
                 \tchain input {{ type filter hook input priority -20; policy accept;\n\
                 \t\tiifname \"eth0\" numgen random mod 100 < 5 drop\n\t}}\n\
                 \tchain output {{ type filter hook output priority -20; policy accept;\n\
                 \t\toifname \"eth0\" numgen random mod 100 < 5 drop\n\t}}\n}}\n"
            );
            let file = tempfile::NamedTempFile::new()?;
            std::fs::write(file.path(), rules)?;
            let path = file.path().to_string_lossy().into_owned();
            netns::run_in(ns, "nft", &["-f", &path])?;
            Ok("no sch_netem in this kernel: 5% loss via nftables, no delay".into())
        }
        Err(e) => Err(e.into()),
    }
}
