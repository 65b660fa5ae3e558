//! Several VIPs (`[[vip]]`, issue 18): every node holds the addresses the committed
//! assignment gives it, each only under a short grant from the leader, with the kernel
//! fence of `vip/src/fence` open for exactly that grant.
//!
//! Every `RENEW` this node asks the leader for its grants (`RaftHandle::ask_vip_lease`,
//! `fulcrum_raft::vip_grant`) and, for each address granted, opens the fence and holds the
//! address until the ask's send instant plus the grant length; an address not granted is
//! released at once. A node cut off from the leader gets no answer: its fence elements and
//! its address deadlines lapse by themselves, within one grant, with no help from the
//! process (frozen or dead included). On the leader the same loop also places the
//! addresses (`fulcrum_raft::vip_plan`) over the nodes that keep asking and are not
//! draining, and commits the result (`Command::AssignVips`): orphans at once, rebalancing
//! one move per `HOLD_DOWN`.
//!
//! The single `[vip]` of the leader (`vip_guard`) is a different path; TOML allows only one
//! of the two shapes in a file.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fulcrum_config::{Config, VipEntry};
use fulcrum_raft::vip_grant::{VipLeaseAsk, VipLeaseGrant};
use fulcrum_raft::vip_plan::{self, PlanInput, VipSpec};
use fulcrum_raft::{Command, RaftHandle, Role};
use fulcrum_vip::{Fence, VipController, VipError, VipOptions};
use tokio_util::sync::CancellationToken;

/// How often a node renews its grants (a grant runs `fulcrum_raft::vip_grant::VIP_LEASE`).
pub const RENEW: Duration = Duration::from_millis(60);
/// Least time between two rebalancing moves, and before a returning node takes one.
pub const HOLD_DOWN: Duration = Duration::from_secs(3);

/// One `[[vip]]` address on this node.
struct Spread {
    entry: VipEntry,
    /// The assignment key (the address without its prefix).
    key: String,
    ip: IpAddr,
    controller: VipController,
    held: AtomicBool,
    /// The end of the newest grant.
    until: Mutex<Option<Instant>>,
}

/// This node's `[[vip]]` addresses.
pub struct SpreadVips {
    vips: Vec<Spread>,
    fence: Mutex<Option<Fence>>,
    draining: AtomicBool,
    /// The leader's last rebalancing move (ms of its clock), for the hold-down.
    last_move_ms: AtomicU64,
    proposing: AtomicBool,
}

/// One row of `/status` `vips`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SpreadView {
    pub name: String,
    pub address: String,
    pub assigned_to: Option<u64>,
    pub held_here: bool,
}

impl SpreadVips {
    /// Starts one controller per `[[vip]]` (removing addresses an earlier run left) and,
    /// in a cluster, the kernel fence over all of them (closed). `None` without `[[vip]]`.
    pub async fn start(config: &Config, clustered: bool) -> Result<Option<Arc<Self>>, VipError> {
        let entries = config.spread_vips();
        if entries.is_empty() {
            return Ok(None);
        }
        let mut vips = Vec::new();
        for entry in entries {
            let (ip, prefix) = fulcrum_vip::parse_cidr(&entry.address)?;
            let interface = entry.interface.as_deref().ok_or_else(|| {
                VipError::InvalidOptions(format!("[[vip]] {}: interface is not set", entry.label()))
            })?;
            let mut opts = VipOptions::new(ip, prefix, interface);
            opts.lifetime = entry.lifetime;
            if fulcrum_vip::remove_stale(ip, prefix, interface).await? {
                tracing::warn!(vip = %ip, interface, "removed a VIP left over by an earlier run");
            }
            vips.push(Spread {
                key: entry.ip_text(),
                entry: entry.clone(),
                ip,
                controller: VipController::start(opts).await?,
                held: AtomicBool::new(false),
                until: Mutex::new(None),
            });
        }
        let fence = if clustered {
            install_fence(&vips)
        } else {
            None
        };
        Ok(Some(Arc::new(SpreadVips {
            vips,
            fence: Mutex::new(fence),
            draining: AtomicBool::new(false),
            last_move_ms: AtomicU64::new(0),
            proposing: AtomicBool::new(false),
        })))
    }

    /// Without `[cluster]` the only node holds every address.
    pub fn hold_alone(&self) {
        for v in &self.vips {
            v.held.store(true, Ordering::Relaxed);
            v.controller.hold("single node without [cluster]");
        }
    }

    /// `ctl drain-node`: ask for no address, so the leader moves them away.
    pub fn set_draining(&self, on: bool) {
        self.draining.store(on, Ordering::Relaxed);
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Before a stop: drains and waits (up to `limit`) until this node holds no address,
    /// so the others have taken them while this one still serves. Whether they all went.
    pub async fn drain_for_stop(&self, limit: Duration) -> bool {
        self.set_draining(true);
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if self.vips.iter().all(|v| !v.held.load(Ordering::Relaxed)) {
                return true;
            }
            tokio::time::sleep(RENEW / 2).await;
        }
        false
    }

    /// address -> held here, for `/metrics`.
    pub fn held(&self) -> Vec<(String, bool)> {
        self.vips
            .iter()
            .map(|v| (v.key.clone(), v.held.load(Ordering::Relaxed)))
            .collect()
    }

    /// Transitions of all controllers together.
    pub fn transitions(&self) -> u64 {
        self.vips.iter().map(|v| v.controller.transitions()).sum()
    }

    /// Every address, its committed owner and whether this node holds it.
    pub fn view(&self, assignment: &BTreeMap<String, u64>) -> Vec<SpreadView> {
        self.vips
            .iter()
            .map(|v| SpreadView {
                name: v.entry.label().to_string(),
                address: v.key.clone(),
                assigned_to: assignment.get(&v.key).copied(),
                held_here: v.held.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Renews grants every `RENEW` (and places the addresses while leading) until `stop`;
    /// then releases every address.
    pub async fn run(self: Arc<Self>, raft: RaftHandle, stop: CancellationToken) {
        let me = raft.node_id();
        let grant_len = Duration::from_micros(raft.vip_grants().lease_us());
        let mut tick = tokio::time::interval(RENEW);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            let sent = Instant::now();
            let ask = VipLeaseAsk {
                from: me,
                draining: self.draining(),
            };
            let grant = raft.ask_vip_lease(ask, RENEW).await;
            self.apply_grant(grant.as_ref(), sent + grant_len);
            if raft.status().borrow().role == Role::Leader {
                self.place(&raft);
            }
        }
        self.release_all("stopping");
    }

    /// Holds what `grant` names until `until`; releases what it does not name (or, with no
    /// answer, what has run out).
    fn apply_grant(&self, grant: Option<&VipLeaseGrant>, until: Instant) {
        let granted: BTreeSet<&str> = grant
            .map(|g| g.granted.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let mut fence = lock(&self.fence);
        for v in &self.vips {
            if granted.contains(v.key.as_str()) {
                if let Some(f) = fence.as_mut() {
                    if let Err(e) = f.open_until(v.ip, until) {
                        tracing::warn!(vip = %v.ip, error = %e, "fence open failed; not holding");
                        continue;
                    }
                }
                v.controller.hold_until(until, "granted by the leader");
                *lock(&v.until) = Some(until);
                if !v.held.swap(true, Ordering::Relaxed) {
                    tracing::info!(vip = %v.ip, "holding a spread VIP");
                }
            } else if v.held.load(Ordering::Relaxed) && grant.is_some() {
                close(fence.as_mut(), v, "no longer granted");
            }
        }
        // No answer: the fence elements lapse by themselves; mirror that in `held`.
        if grant.is_none() {
            let now = Instant::now();
            for v in &self.vips {
                let ran_out = lock(&v.until).is_none_or(|u| now >= u);
                if v.held.load(Ordering::Relaxed) && ran_out {
                    close(fence.as_mut(), v, "grant not renewed");
                }
            }
        }
    }

    fn release_all(&self, reason: &str) {
        let mut fence = lock(&self.fence);
        for v in &self.vips {
            close(fence.as_mut(), v, reason);
        }
    }

    /// The leader's placement: commits a new assignment when `vip_plan` moves anything.
    fn place(self: &Arc<Self>, raft: &RaftHandle) {
        if self.proposing.load(Ordering::Relaxed) {
            return;
        }
        let now_us = fulcrum_raft::lease::time::now_us();
        let term = raft.lease().leadership().borrow().term;
        let Some(live_us) = raft.vip_grants().live(term, now_us) else {
            return;
        };
        let live: BTreeMap<u64, u64> = live_us.iter().map(|(n, s)| (*n, s / 1000)).collect();
        let specs: Vec<VipSpec> = self
            .vips
            .iter()
            .map(|v| VipSpec {
                address: v.key.clone(),
                preferred: v.entry.preferred.clone(),
            })
            .collect();
        let current = raft.cluster_state().borrow().vip_assignment.clone();
        let last = self.last_move_ms.load(Ordering::Relaxed);
        let moves = vip_plan::plan(&PlanInput {
            vips: &specs,
            live: &live,
            current: &current,
            now_ms: now_us / 1000,
            last_move_ms: (last > 0).then_some(last),
            hold_down_ms: HOLD_DOWN.as_millis() as u64,
        });
        let mut next: BTreeMap<String, u64> = current
            .iter()
            .filter(|(a, _)| specs.iter().any(|s| &s.address == *a))
            .map(|(a, n)| (a.clone(), *n))
            .collect();
        for m in &moves {
            let span = tracing::info_span!("vip_move", vip = %m.address, from = ?m.from, to = m.to, rebalance = m.rebalance);
            let _e = span.enter();
            tracing::info!("placing a spread VIP");
            next.insert(m.address.clone(), m.to);
        }
        if moves.iter().any(|m| m.rebalance) {
            self.last_move_ms.store(now_us / 1000, Ordering::Relaxed);
        }
        if next == current {
            return;
        }
        self.proposing.store(true, Ordering::Relaxed);
        let (this, raft) = (self.clone(), raft.clone());
        tokio::spawn(async move {
            if let Err(e) = raft.propose(Command::AssignVips { assignment: next }).await {
                tracing::warn!(error = %e, "VIP assignment not committed; placing again");
            }
            this.proposing.store(false, Ordering::Relaxed);
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn close(fence: Option<&mut Fence>, v: &Spread, reason: &str) {
    if let Some(f) = fence {
        if let Err(e) = f.close(v.ip) {
            tracing::warn!(vip = %v.ip, error = %e, "fence close failed (the element lapses by itself)");
        }
    }
    v.controller.release(reason);
    if v.held.swap(false, Ordering::Relaxed) {
        tracing::info!(vip = %v.ip, reason, "released a spread VIP");
    }
}

/// One fence over every address; they must share one interface.
fn install_fence(vips: &[Spread]) -> Option<Fence> {
    let interfaces: BTreeSet<&str> = vips
        .iter()
        .filter_map(|v| v.entry.interface.as_deref())
        .collect();
    let (Some(interface), 1) = (interfaces.first(), interfaces.len()) else {
        tracing::warn!(
            ?interfaces,
            "[[vip]] entries on several interfaces: no kernel fence, only grant deadlines"
        );
        return None;
    };
    let ips: Vec<IpAddr> = vips.iter().map(|v| v.ip).collect();
    super::vip_guard::install_fence(interface, &ips)
}
