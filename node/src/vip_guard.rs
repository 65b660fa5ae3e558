//! Leadership -> VIP: hold the floating address only while this node is a leader with
//! a fresh lease.
//!
//! An independent 10 ms timer (not the Raft core) evaluates the rule, so a stalled core
//! or a partitioned leader loses the VIP within its lease even though openraft 0.9 never
//! demotes it. The VIP crate adds the address with a short kernel lifetime and renews it,
//! so a killed or frozen process loses it in its kernel as well.
//!
//! Fencing modes:
//! - `fast`: a new leader claims at once (an old holder that froze can overlap for at
//!   most the kernel lifetime).
//! - `strict`: a node that just became leader waits until any previous holder's kernel
//!   lifetime has surely run out, so two kernels never hold the VIP.
//!
//! Every transition is logged with its reason and counted.

use crate::cluster::Cluster;
use fulcrum_config::{Config, Fencing};
use fulcrum_raft::Role;
use fulcrum_vip::{VipController, VipError, VipOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The rule is evaluated this often, independently of Raft.
const TICK: Duration = Duration::from_millis(10);
/// Slack on top of the kernel lifetime before a strict-mode claim.
const STRICT_MARGIN: Duration = Duration::from_millis(300);
/// Each confirmation lets the VIP task renew for this long; if confirmations stop (the
/// process froze), the task releases instead of renewing on its own overdue timers.
const CONFIRM_WINDOW: Duration = Duration::from_millis(150);
/// A gap between ticks longer than this means this task did not run (frozen process,
/// starved runtime): the published lease may be stale, so it is not trusted until
/// `DISTRUST_AFTER_GAP` has passed and the Raft status task had time to re-evaluate.
const TICK_GAP: Duration = Duration::from_millis(60);
const DISTRUST_AFTER_GAP: Duration = Duration::from_millis(40);

/// The VIP as the rest of the node sees it.
pub struct VipGuard {
    controller: VipController,
    fencing: Fencing,
    lifetime: Duration,
    held: AtomicBool,
}

impl VipGuard {
    /// Starts the controller (checks interface and capabilities) and removes a VIP left
    /// on the interface by an earlier run: at start-up this node is not leader yet.
    pub async fn start(config: &Config) -> Result<Option<Arc<VipGuard>>, VipError> {
        let Some(section) = &config.vip else {
            return Ok(None);
        };
        let opts = VipOptions::from_section(section, None)?;
        if fulcrum_vip::remove_stale(opts.address, opts.prefix, &opts.interface).await? {
            tracing::warn!(vip = %opts.address, interface = %opts.interface, "removed a VIP left over by an earlier run");
        }
        let lifetime = opts.lifetime;
        let controller = VipController::start(opts).await?;
        Ok(Some(Arc::new(VipGuard {
            controller,
            fencing: section.fencing,
            lifetime,
            held: AtomicBool::new(false),
        })))
    }

    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    pub fn transitions(&self) -> u64 {
        self.controller.transitions()
    }

    fn hold(&self, reason: &str) {
        if !self.held.swap(true, Ordering::Relaxed) {
            let _span = tracing::info_span!("vip", transition = "hold").entered();
            tracing::info!(reason, "taking the VIP");
        }
        self.controller
            .hold_until(std::time::Instant::now() + CONFIRM_WINDOW, reason);
    }

    /// Releases at once (idempotent).
    pub fn release(&self, reason: &str) {
        if self.held.swap(false, Ordering::Relaxed) {
            let _span = tracing::info_span!("vip", transition = "release").entered();
            tracing::info!(reason, "releasing the VIP");
        }
        self.controller.release(reason);
    }

    /// Without `[cluster]` the only node always holds the VIP.
    pub fn hold_alone(&self) {
        self.held.store(true, Ordering::Relaxed);
        self.controller.hold("single node without [cluster]");
    }

    /// Runs the leadership rule every 10 ms until `stop` fires, then releases.
    pub async fn follow_leadership(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        stop: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let status = cluster.raft.status();
        let mut leader_since: Option<(u64, Instant)> = None;
        let mut announced_term = 0u64;
        let mut last_tick = Instant::now();
        let mut distrust_until: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let now = Instant::now();
            if now.duration_since(last_tick) > TICK_GAP {
                tracing::warn!(gap = ?now.duration_since(last_tick), "VIP check did not run on time; re-checking the lease before trusting it");
                distrust_until = Some(now + DISTRUST_AFTER_GAP);
            }
            last_tick = now;
            if distrust_until.is_some_and(|t| now < t) {
                continue;
            }
            let s = status.borrow().clone();
            let leading = s.role == Role::Leader && s.lease_fresh;
            if !leading {
                leader_since = None;
                if self.held() {
                    let reason = if s.role == Role::Leader {
                        "leader lease expired (no quorum ack)"
                    } else {
                        "no longer leader"
                    };
                    self.release(reason);
                }
                continue;
            }
            let since = match leader_since {
                Some((term, t)) if term == s.term => t,
                _ => {
                    let now = Instant::now();
                    leader_since = Some((s.term, now));
                    now
                }
            };
            if !self.held() {
                if self.fencing == Fencing::Strict
                    && since.elapsed() < self.lifetime + STRICT_MARGIN
                {
                    continue;
                }
                self.hold(&format!("leader with a fresh lease in term {}", s.term));
                announced_term = s.term;
            } else {
                self.controller.hold_until(
                    std::time::Instant::now() + CONFIRM_WINDOW,
                    "lease confirmed",
                );
            }
            if self.held() && announced_term != s.term {
                // Leadership confirmed in a new term (e.g. after a healed partition):
                // re-announce so clients with a stale ARP entry come back.
                self.controller
                    .reannounce("leadership confirmed in a new term");
                announced_term = s.term;
            }
        }
        self.release("node shutting down");
    }
}
