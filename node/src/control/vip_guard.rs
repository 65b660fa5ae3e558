//! Leadership -> VIP: this node's kernel answers for the VIP only while this node leads
//! with a lease a quorum confirmed, and never before every earlier holder's fence lapsed.
//!
//! The guard follows the lease's published [`Leadership`] (a deadline, not a flag: the
//! decision is taken from the clock, so a stalled publisher cannot keep it open). On
//! each confirmation it pushes out two deadlines:
//! - the kernel fence (`fulcrum_vip::Fence`): an nftables element with a millisecond
//!   timeout, without which the kernel drops ARP and IP for the VIP. A frozen or dead
//!   holder's kernel stops answering by itself when the lease ends;
//! - the address task's hold deadline (`VipController::hold_until`): the address with
//!   its kernel lifetime (whole seconds) is the second fence.
//!
//! Release is synchronous through [`StepDownHook`]: the Raft server calls it before it
//! grants a vote and whenever a higher term shows up, so the fence is shut before the
//! new leader can hear a grant. Claiming waits for `claim_after` (the moment every
//! fence the voters know of has lapsed); in `strict` mode also for the old holder's
//! address lifetime, as the kernel was given it.
//!
//! A planned hand-off bridges instead (`bridge`, `hand_over`): the stopping leader grants
//! its successor's vote with the fence still open for at most one lease, and closes it
//! when the successor, leading, asks for the traffic; what still reaches this node for
//! the VIP is then forwarded to the successor's MAC by the fence itself (`handover`).
//!
//! Without the privilege for nftables the fence is off (warned at start); the address
//! lifetime is then the only kernel-side fence, as in earlier versions.

use crate::control::cluster::Cluster;
use fulcrum_config::{Config, Fencing};
use fulcrum_raft::lease::time::{instant_at, now_us};
use fulcrum_raft::{HookSlot, Leadership, Lease, StepDownHook};
use fulcrum_vip::{Fence, VipController, VipError, VipOptions};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub(in crate::control) mod handover;

/// Margin on top of the longest an old holder's address can outlive its last renewal
/// (`VipOptions::kernel_expiry_bound`, which already includes the kernel's own slack)
/// before a strict-mode claim.
const STRICT_MARGIN: Duration = Duration::from_millis(100);

/// The VIP as the rest of the node sees it.
pub struct VipGuard {
    controller: VipController,
    /// The kernel fence (`None`: unavailable). Its lock also orders a claim against a
    /// concurrent step-down.
    fence: Mutex<Option<Fence>>,
    fenced: bool,
    address: IpAddr,
    fencing: Fencing,
    /// The longest the address can outlive its last renewal: the lifetime as the kernel was
    /// given it (whole seconds) plus the kernel's expiry slack.
    address_outlives: Duration,
    held: AtomicBool,
    /// Term in which the VIP is held (0 when not).
    held_term: AtomicU64,
    lease: OnceLock<Arc<Lease>>,
    /// A planned hand-off's bridge: the fence stays open until then (µs), or until the
    /// successor asks for the traffic. Locked after `fence`.
    bridge: Mutex<Option<u64>>,
    /// The deadline (µs) the fence was last opened until.
    fence_until: AtomicU64,
    /// Told when a bridge ends by a hand-over.
    bridge_ended: tokio::sync::Notify,
}

impl VipGuard {
    /// Starts the controller (checks interface and capabilities), removes a VIP left on
    /// the interface by an earlier run, and installs the kernel fence when `clustered`
    /// (closed: at start-up this node does not lead yet).
    pub async fn start(
        config: &Config,
        clustered: bool,
    ) -> Result<Option<Arc<VipGuard>>, VipError> {
        let Some(section) = config.leader_vip() else {
            return Ok(None);
        };
        let opts = VipOptions::from_section(section, None)?;
        if fulcrum_vip::remove_stale(opts.address, opts.prefix, &opts.interface).await? {
            tracing::warn!(vip = %opts.address, interface = %opts.interface, "removed a VIP left over by an earlier run");
        }
        let fence = if clustered {
            install_fence(&opts.interface, &[opts.address])
        } else {
            None
        };
        let address_outlives = opts.kernel_expiry_bound();
        let address = opts.address;
        let controller = VipController::start(opts).await?;
        Ok(Some(Arc::new(VipGuard {
            controller,
            fenced: fence.is_some(),
            fence: Mutex::new(fence),
            address,
            fencing: section.fencing,
            address_outlives,
            held: AtomicBool::new(false),
            held_term: AtomicU64::new(0),
            lease: OnceLock::new(),
            bridge: Mutex::new(None),
            fence_until: AtomicU64::new(0),
            bridge_ended: tokio::sync::Notify::new(),
        })))
    }

    pub fn held(&self) -> bool {
        self.held.load(Ordering::Relaxed)
    }

    pub fn transitions(&self) -> u64 {
        self.controller.transitions()
    }

    /// Whether the kernel fence is in place (false: the fallback without nftables).
    pub fn fenced(&self) -> bool {
        self.fenced
    }

    /// How long this node's kernel fence stays open for the VIP (`None`: closed or no fence).
    pub fn fence_open_for(&self) -> Option<Duration> {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        fence.as_mut()?.expires_in(self.address).ok().flatten()
    }

    /// Without `[cluster]` the only node always holds the VIP.
    pub fn hold_alone(&self) {
        self.held.store(true, Ordering::Relaxed);
        self.controller.hold("single node without [cluster]");
    }

    /// The step-down hook to hand to Raft before it starts.
    pub fn hook(self: &Arc<Self>) -> HookSlot {
        HookSlot(self.clone())
    }

    /// Gives the guard the lease (for its event log and timing).
    pub fn attach_lease(&self, lease: &Arc<Lease>) {
        let _ = self.lease.set(lease.clone());
        let lease = lease.clone();
        self.controller
            .on_first_announcement(Arc::new(move |what: &'static str| {
                lease.events.record("garp", 0, what);
            }));
    }

    /// Releases at once (idempotent): fence shut first, then the address.
    ///
    /// While this node hands its leadership off, the fence is bridged instead (see
    /// `bridge`): Raft's role change reaches the guard before the vote's grant does.
    pub fn release(&self, reason: &str) {
        if self.lease.get().is_some_and(|l| l.handing_off()) {
            self.bridge(reason);
        } else {
            self.shut(reason);
        }
    }

    /// Follows the lease's leadership until `stop` fires, then releases.
    pub async fn follow_leadership(
        self: Arc<Self>,
        cluster: Arc<Cluster>,
        stop: CancellationToken,
    ) {
        let lease = cluster.raft.lease().clone();
        let mut leadership = lease.leadership();
        let mut leader_since: Option<(u64, u64)> = None;
        loop {
            let current = *leadership.borrow_and_update();
            let wake = self.evaluate(&lease, current, &mut leader_since);
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = leadership.changed() => if changed.is_err() { break },
                () = sleep_until_us(wake) => {}
            }
        }
        self.release("node shutting down");
    }

    /// Applies the rule once at the current instant; returns when to look again.
    fn evaluate(
        &self,
        lease: &Lease,
        l: Leadership,
        leader_since: &mut Option<(u64, u64)>,
    ) -> Option<u64> {
        let now = now_us();
        if l.term == 0 {
            *leader_since = None;
        } else if leader_since.is_none_or(|(t, _)| t != l.term) {
            *leader_since = Some((l.term, now));
        }
        if !l.may_hold(now) {
            if self.held() {
                let reason = if l.term == 0 {
                    "no longer leader"
                } else {
                    let acks = lease.read(|s| s.ack_ages(now));
                    // Whether this machine itself was stopped (a hypervisor's steal).
                    let (steal_ms, over_ms) = super::steal::since_last_sample().unzip();
                    tracing::warn!(
                        term = l.term,
                        ?acks,
                        host_steal_ms = steal_ms,
                        over_ms,
                        "lease lapsed: age in µs of each voter's newest acknowledged ping; \
                         CPU time the hypervisor took from this machine (steal) lately"
                    );
                    "lease lapsed (no quorum acknowledgement)"
                };
                self.release(reason);
                if let Some(until) = self.bridging(now) {
                    return Some(until);
                }
            }
            // Leading but not yet allowed: wake when the claim instant comes.
            return (l.term != 0 && l.lease_until_us.is_some() && now < l.claim_after_us)
                .then_some(l.claim_after_us);
        }
        let until = l.lease_until_us?;
        if !self.held() {
            if let Some(wait_until) = self.strict_wait(leader_since, now) {
                return Some(wait_until.min(until));
            }
            lease.with(|s| s.mark_claimed(l.term, l.claim_after_us));
        }
        if !self.confirm(lease, l.term, until) && self.held() {
            self.release("the kernel fence could not be opened");
        }
        Some(until)
    }

    /// In strict mode: until when a new leader still waits for an old holder's address
    /// lifetime (as the kernel counts it) to run out.
    fn strict_wait(&self, leader_since: &Option<(u64, u64)>, now: u64) -> Option<u64> {
        if self.fencing != Fencing::Strict {
            return None;
        }
        let since = leader_since.map_or(now, |(_, at)| at);
        let ready = since + (self.address_outlives + STRICT_MARGIN).as_micros() as u64;
        (now < ready).then_some(ready)
    }

    /// Opens the fence until `until` (µs) and takes or keeps the address; false when the
    /// leadership no longer allows it or the fence would not open.
    ///
    /// Runs under the fence's lock and reads the leadership again there: a step-down
    /// revokes the leadership before it takes that lock to shut the fence and release, so
    /// a decision taken just before a step-down can never reopen the fence after it.
    fn confirm(&self, lease: &Lease, term: u64, until: u64) -> bool {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_us();
        let still = lease.read(|s| s.leadership(now));
        if still.term != term || !still.may_hold(now) {
            return false;
        }
        let until = until.min(still.lease_until_us.unwrap_or(0));
        if let Some(f) = fence.as_mut() {
            match f.open_all_until(instant_at(until)) {
                Ok(given) if !given.is_zero() => self.fence_until.store(until, Ordering::Relaxed),
                Ok(_) => return false,
                Err(e) => {
                    tracing::error!(error = %e, "opening the VIP fence failed");
                    return false;
                }
            }
        }
        if !self.held() {
            self.take(term, until);
        } else {
            self.controller
                .hold_until(instant_at(until), "lease confirmed");
            if self.held_term.swap(term, Ordering::Relaxed) != term {
                // Leadership confirmed in a new term (after a healed partition): peers may
                // have cached another MAC.
                self.controller
                    .reannounce("leadership confirmed in a new term");
            }
        }
        true
    }

    fn take(&self, term: u64, until: u64) {
        self.held.store(true, Ordering::Relaxed);
        self.held_term.store(term, Ordering::Relaxed);
        let _span = tracing::info_span!("vip", transition = "hold", term).entered();
        tracing::info!("taking the VIP");
        self.record("claim", term, "fence open, address and announcement follow");
        self.controller.hold_until(
            instant_at(until),
            &format!("leader with a lease in term {term}"),
        );
    }

    /// Shuts the fence and releases the address, under the fence's lock; true when the
    /// fence is surely shut (or there is none).
    fn shut(&self, reason: &str) -> bool {
        let mut fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(until) = self.bridging(now_us()) {
            tracing::debug!(reason, until, "not releasing: bridging a planned hand-off");
            return false;
        }
        let shut = match fence.as_mut().map(Fence::close_all) {
            None | Some(Ok(())) => true,
            Some(Err(e)) => {
                tracing::error!(error = %e, "closing the VIP fence failed; it lapses with the lease");
                false
            }
        };
        self.let_go(reason);
        shut
    }

    /// Releases the address (the fence is closed already).
    fn let_go(&self, reason: &str) {
        if self.held.swap(false, Ordering::Relaxed) {
            let _span = tracing::info_span!("vip", transition = "release").entered();
            tracing::info!(reason, "releasing the VIP");
            let term = self.held_term.swap(0, Ordering::Relaxed);
            self.record("release", term, reason);
            self.controller.release(reason);
        }
    }

    /// The end of the bridge (µs) while one is open at `now`.
    fn bridging(&self, now: u64) -> Option<u64> {
        let bridge = self.bridge.lock().unwrap_or_else(|p| p.into_inner());
        bridge.filter(|until| now < *until)
    }

    /// After a hand-over, once this node's connections are done (its drain ended): the
    /// address kept for them goes now, not with the process.
    pub fn drop_kept_address(&self) {
        if !self.held() {
            self.controller
                .dropper()
                .drop_address("stopping: the connections kept after the hand-over are done");
        }
    }

    /// Waits until no bridge is open (the successor took the traffic, or the bridge
    /// ran out): a stopping node keeps its listeners open until then.
    pub async fn bridge_closed(&self) {
        loop {
            let ended = self.bridge_ended.notified();
            let Some(until) = self.bridging(now_us()) else {
                return;
            };
            tokio::select! {
                () = ended => {}
                () = sleep_until_us(Some(until)) => {}
            }
        }
    }

    fn record(&self, what: &'static str, term: u64, detail: &str) {
        if let Some(lease) = self.lease.get() {
            lease.events.record(what, term, detail);
        }
    }
}

impl StepDownHook for VipGuard {
    /// A step-down during a planned hand-off: the fence is left to lapse by itself at
    /// the lease deadline it already has (never later: every claim already waits for
    /// that), the address stays until then, and the successor can take the traffic
    /// earlier ([`StepDownHook::hand_over`]). Returns how long the kernel may still answer.
    fn bridge(&self, reason: &str) -> Duration {
        let fence = self.fence.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_us();
        let until = self.fence_until.load(Ordering::Relaxed);
        if let Some(open) = self.bridging(now) {
            return Duration::from_micros(open - now);
        }
        if fence.is_none() || !self.held() || until <= now {
            drop(fence);
            return self.step_down(reason);
        }
        *self.bridge.lock().unwrap_or_else(|p| p.into_inner()) = Some(until);
        let term = self.held_term.load(Ordering::Relaxed);
        self.record(
            "bridge",
            term,
            &format!("fence left open {} µs", until - now),
        );
        let _span = tracing::info_span!("vip", transition = "bridge").entered();
        tracing::info!(
            reason,
            left_us = until - now,
            "planned hand-off: answering until the successor takes the traffic or the lease ends"
        );
        Duration::from_micros(until - now)
    }

    /// The successor leads and asks for the traffic (see `handover`).
    fn hand_over(&self, to: Option<[u8; 6]>) {
        self.switch_to_successor(to);
    }

    /// This node will lead and ask the old holder for the traffic (see `handover`).
    fn prepare_take_over(&self, from: [u8; 6], until: std::time::Instant) {
        self.stage_take_over(from, until);
    }

    fn link_mac(&self) -> Option<[u8; 6]> {
        Some(self.controller.link_mac())
    }

    /// Called by the Raft server before it grants a vote or when a higher term appears.
    /// Returns how long this kernel may still answer for the VIP.
    fn step_down(&self, reason: &str) -> Duration {
        let was_held = self.held();
        let shut = self.shut(reason);
        let now = now_us();
        if let Some(until) = self.bridging(now) {
            return Duration::from_micros(until - now);
        }
        match (shut, self.fenced) {
            // Fence shut: the kernel drops VIP traffic from now on.
            (true, true) => Duration::ZERO,
            // No fence: strict mode tells the new leader to wait out the address lifetime
            // (in case the release did not reach the kernel).
            (true, false) if was_held && self.fencing == Fencing::Strict => self.address_outlives,
            (true, false) => Duration::ZERO,
            // Closing failed: the element still lapses by the lease deadline.
            (false, _) => self.lease.get().map_or(Duration::ZERO, |l| l.timing.fence),
        }
    }
}

/// Installs the fence over `addresses` or explains, once, why the node runs without it
/// (the leader's VIP here, the spread `[[vip]]` entries in `vip_spread`).
pub(super) fn install_fence(interface: &str, addresses: &[IpAddr]) -> Option<Fence> {
    match Fence::install(interface, addresses) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(error = %e, vips = ?addresses,
                "VIP fence unavailable (needs nf_tables and CAP_NET_ADMIN): a frozen holder keeps \
                 answering for the VIP until its address lifetime runs out");
            None
        }
    }
}

async fn sleep_until_us(at: Option<u64>) {
    match at {
        Some(t) => tokio::time::sleep_until(instant_at(t).into()).await,
        None => std::future::pending().await,
    }
}
