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
//! addresses (`fulcrum_raft::vip_plan`) over the nodes that keep asking, are not draining
//! for a stop and are not drained (`ClusterState::drained_nodes`, `ctl drain-node`), and
//! commits the result (`Command::AssignVips`): orphans at once, rebalancing
//! one move per `HOLD_DOWN`.
//!
//! A move between two live nodes (drain, SIGTERM, rebalancing) is make before break: the
//! leader has the new owner stage, then the old holder hand over, then grants the new owner
//! (`moves`). Each ask says which addresses this node holds (so a new leader renews them at
//! once instead of leaving them dark for a grant length) and which it is staged for.
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

mod moves;

/// How often a node renews its grants (a grant runs `fulcrum_raft::vip_grant::VIP_LEASE`).
pub const RENEW: Duration = Duration::from_millis(60);
/// How often a node asks while it is staged for an address: the sooner it asks after the
/// old holder let go, the sooner it claims.
const STAGED_RENEW: Duration = Duration::from_millis(5);
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
    /// While staged for this address (`moves`): until when.
    staged_until: Mutex<Option<Instant>>,
}

/// This node's `[[vip]]` addresses.
pub struct SpreadVips {
    vips: Vec<Spread>,
    fence: Mutex<Option<Fence>>,
    /// This node's MAC on the addresses' link, when it has a fence (moves need both).
    mac: Option<[u8; 6]>,
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
                staged_until: Mutex::new(None),
            });
        }
        let fence = if clustered {
            install_fence(&vips)
        } else {
            None
        };
        let mac = fence
            .as_ref()
            .and(vips.first())
            .map(|v| v.controller.link_mac());
        Ok(Some(Arc::new(SpreadVips {
            vips,
            fence: Mutex::new(fence),
            mac,
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

    /// Ask for no address, so the leader moves them away: before a stop (`drain_for_stop`).
    /// `ctl drain-node` is committed instead (`drained_nodes`, which the leader's placement
    /// leaves out, so that it holds across a restart).
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
    /// then releases every address. Asks again at once after handing an address over, and
    /// every `STAGED_RENEW` while staged.
    pub async fn run(self: Arc<Self>, raft: RaftHandle, stop: CancellationToken) {
        let me = raft.node_id();
        let grant_len = Duration::from_micros(raft.vip_grants().lease_us());
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
            let sent = Instant::now();
            let ask = self.ask(me, raft.drained(), sent);
            let grant = raft.ask_vip_lease(ask, RENEW).await;
            let handed_over = self.apply_grant(grant.as_ref(), sent + grant_len);
            if raft.status().borrow().role == Role::Leader {
                self.place(&raft);
            }
            let every = if self.staged(Instant::now()) {
                STAGED_RENEW
            } else {
                RENEW
            };
            wait = if handed_over {
                Duration::ZERO
            } else {
                every.saturating_sub(sent.elapsed())
            };
        }
        self.release_all("stopping");
    }

    /// What this node tells the leader at `now`: what it holds, what it is staged for, and
    /// whether it drains (for a stop, or `drained`: its drain is committed).
    fn ask(&self, me: u64, drained: bool, now: Instant) -> VipLeaseAsk {
        let running = |m: &Mutex<Option<Instant>>| lock(m).is_some_and(|u| u > now);
        VipLeaseAsk {
            from: me,
            draining: self.draining() || drained,
            holding: self
                .vips
                .iter()
                .filter(|v| v.held.load(Ordering::Relaxed) && running(&v.until))
                .map(|v| v.key.clone())
                .collect(),
            staged: self
                .vips
                .iter()
                .filter(|v| running(&v.staged_until))
                .map(|v| v.key.clone())
                .collect(),
            mac: self.mac,
        }
    }

    fn staged(&self, now: Instant) -> bool {
        self.vips
            .iter()
            .any(|v| lock(&v.staged_until).is_some_and(|u| u > now))
    }

    /// Holds what `grant` names until `until`, hands over and stages what it says, and
    /// releases what it does not name (or, with no answer, what has run out). Returns
    /// whether an address was handed over (the leader should hear it at once).
    fn apply_grant(&self, grant: Option<&VipLeaseGrant>, until: Instant) -> bool {
        let Some(grant) = grant else {
            self.lapse();
            return false;
        };
        let granted: BTreeSet<&str> = grant.granted.iter().map(String::as_str).collect();
        let find = |list: &[(String, [u8; 6])], key: &str| {
            list.iter().find(|(a, _)| a == key).map(|(_, mac)| *mac)
        };
        let mut handed_over = false;
        let mut fence = lock(&self.fence);
        for v in &self.vips {
            if granted.contains(v.key.as_str()) {
                hold(fence.as_mut(), v, until);
                continue;
            }
            if v.held.load(Ordering::Relaxed) {
                let switched = match (find(&grant.hand_over, &v.key), fence.as_mut()) {
                    (Some(to), Some(f)) => moves::hand_over(f, v, to),
                    _ => false,
                };
                handed_over |= switched;
                if !switched {
                    close(fence.as_mut(), v, "no longer granted");
                }
            }
            if let (Some(from), Some(f)) = (find(&grant.stage, &v.key), fence.as_mut()) {
                moves::stage(f, v, from, until);
            }
        }
        handed_over
    }

    /// No answer: the fence elements lapse by themselves; mirror that in `held`.
    fn lapse(&self) {
        let now = Instant::now();
        let mut fence = lock(&self.fence);
        for v in &self.vips {
            let ran_out = lock(&v.until).is_none_or(|u| now >= u);
            if v.held.load(Ordering::Relaxed) && ran_out {
                close(fence.as_mut(), v, "grant not renewed");
            }
        }
    }

    /// Releases what this node holds or is staged for; an address it handed over stays,
    /// unannounced, until the connections it kept are done (`moves`).
    fn release_all(&self, reason: &str) {
        let mut fence = lock(&self.fence);
        for v in &self.vips {
            let staged = lock(&v.staged_until).take().is_some();
            if v.held.load(Ordering::Relaxed) || staged {
                close(fence.as_mut(), v, reason);
            }
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
        let state = raft.cluster_state().borrow().clone();
        let live: BTreeMap<u64, u64> = live_us
            .iter()
            .filter(|(n, _)| !state.drained_nodes.contains(n))
            .map(|(n, s)| (*n, s / 1000))
            .collect();
        let specs: Vec<VipSpec> = self
            .vips
            .iter()
            .map(|v| VipSpec {
                address: v.key.clone(),
                preferred: v.entry.preferred.clone(),
            })
            .collect();
        let current = state.vip_assignment.clone();
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

/// Opens the fence for `v` until `until` and holds the address (announcing it if new).
fn hold(fence: Option<&mut Fence>, v: &Spread, until: Instant) {
    if let Some(f) = fence {
        if let Err(e) = f.open_until(v.ip, until) {
            tracing::warn!(vip = %v.ip, error = %e, "fence open failed; not holding");
            return;
        }
    }
    v.controller.hold_until(until, "granted by the leader");
    *lock(&v.until) = Some(until);
    *lock(&v.staged_until) = None;
    if !v.held.swap(true, Ordering::Relaxed) {
        tracing::info!(vip = %v.ip, "holding a spread VIP");
    }
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
