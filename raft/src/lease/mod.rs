//! Leader leases and the VIP fence protocol: who may let its kernel answer for the VIP,
//! until when, and when a new leader may start to.
//!
//! - `rules`  — the decisions as pure functions (model-checked).
//! - `state`  — `LeaseState`: this node's knowledge, one lock.
//! - `wire`   — ping, acknowledgement, pre-vote and fence-report messages.
//! - `time`   — the microsecond clock the rules run on.
//! - `pinger` — the leader's lease streams to every voter.
//! - `stream` — the voter's side of a lease stream.
//!
//! `Lease` is the shared handle: transport, detector and pinger feed it; the node's VIP
//! guard watches `leadership()` and registers a [`StepDownHook`] that closes the fence
//! synchronously whenever this node learns it no longer leads.

pub mod pinger;
pub mod rules;
pub mod state;
pub mod stream;
pub mod time;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::events::EventLog;
pub use state::{Following, Leadership, LeaseState};
use time::now_us;
pub use wire::FenceReport;

/// Closes this node's fence when it stops leading.
pub trait StepDownHook: Send + Sync {
    /// Close the fence and release the VIP now, synchronously. Returns how long this
    /// node's kernel may still answer for the VIP (zero once closed; the remaining lease
    /// if closing failed).
    fn step_down(&self, reason: &str) -> Duration;

    /// A step-down while this node hands its leadership off: leave the fence open until
    /// the lease deadline it already has (the kernel closes it then), so that it answers
    /// until the successor takes the traffic ([`StepDownHook::hand_over`]). Returns how
    /// long the kernel may still answer.
    fn bridge(&self, reason: &str) -> Duration {
        self.step_down(reason)
    }

    /// The successor of a planned hand-off leads and asks for the traffic: close the fence
    /// now and send what still arrives for the VIP on to `to` (its MAC on the VIP's link).
    fn hand_over(&self, to: Option<[u8; 6]>) {
        let _ = to;
        self.step_down("handed over");
    }

    /// This node's MAC on the VIP's link (`None`: no VIP here).
    fn link_mac(&self) -> Option<[u8; 6]> {
        None
    }

    /// The successor, leading with a lease until `until` (this process's monotonic clock),
    /// is about to ask the stopping holder whose MAC is `from` for the traffic: until then,
    /// accept the VIP's frames that holder forwards (it forwards only with its own fence
    /// closed) and have the address in place, unannounced, so that no forwarded packet is
    /// lost between its switch and this node's claim.
    fn prepare_take_over(&self, from: [u8; 6], until: std::time::Instant) {
        let _ = (from, until);
    }
}

/// A [`StepDownHook`] as an option of the node (registered before the node can vote).
#[derive(Clone)]
pub struct HookSlot(pub Arc<dyn StepDownHook>);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepDownHook")
    }
}

/// The timing of the lease protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTiming {
    /// Ping period.
    pub heartbeat: Duration,
    /// How long a quorum acknowledgement keeps the fence open (`F`).
    pub fence: Duration,
    /// Silence after which a voter suspects its leader.
    pub silence: Duration,
    /// Extra wait of a voter that is not the designated successor.
    pub stagger: Duration,
}

/// One node's lease knowledge, shared by transport, detector, pinger and VIP guard.
pub struct Lease {
    state: Mutex<LeaseState>,
    tx: watch::Sender<Leadership>,
    hook: OnceLock<Arc<dyn StepDownHook>>,
    pub timing: LeaseTiming,
    pub events: EventLog,
    /// Wakes the detector (a lease stream from the leader closed).
    pub wake: Notify,
    /// Wakes the pinger's driver: this node started leading a term (see `with`).
    pub leads: Notify,
    /// Leader whose lease stream closed, and when (the detector confirms the crash).
    closed_stream: Mutex<Option<(u64, u64)>>,
    /// When this node last handled an AppendEntries (µs): openraft refuses votes for its
    /// own vote lease after that (see `detector`).
    last_append_us: AtomicU64,
    /// This node is handing its leadership off before it stops: it does not campaign
    /// (a stopping leader that won back the election it just gave away would undo it).
    handing_off: AtomicBool,
}

fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl Lease {
    pub fn new(me: u64, timing: LeaseTiming) -> Arc<Lease> {
        let (tx, _) = watch::channel(Leadership::default());
        Arc::new(Lease {
            state: Mutex::new(LeaseState::new(me, us(timing.fence), now_us())),
            tx,
            hook: OnceLock::new(),
            timing,
            events: EventLog::default(),
            wake: Notify::new(),
            leads: Notify::new(),
            closed_stream: Mutex::new(None),
            last_append_us: AtomicU64::new(0),
            handing_off: AtomicBool::new(false),
        })
    }

    /// Registers the VIP guard's hook (once).
    pub fn set_step_down_hook(&self, hook: Arc<dyn StepDownHook>) {
        let _ = self.hook.set(hook);
    }

    /// Watch what this node may do with the VIP.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.tx.subscribe()
    }

    /// Runs `f` on the state and publishes the new leadership.
    pub fn with<R>(&self, f: impl FnOnce(&mut LeaseState) -> R) -> R {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = f(&mut s);
        let now = now_us();
        let l = s.leadership(now);
        drop(s);
        let mut new_term = false;
        self.tx.send_if_modified(|cur| {
            if *cur != l {
                new_term = l.term != 0 && cur.term != l.term;
                *cur = l;
                return true;
            }
            false
        });
        if new_term {
            // The failover chain's "leader": from here this node may claim (a quorum's
            // votes are in; Raft's own metrics follow once its first entry is on disk).
            self.events.record("leader", l.term, "elected");
            self.leads.notify_one();
        }
        r
    }

    /// The term this node leads as last published (0: none).
    pub fn leading_term(&self) -> u64 {
        self.tx.borrow().term
    }

    /// Reads the state without publishing.
    pub fn read<R>(&self, f: impl FnOnce(&LeaseState) -> R) -> R {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    /// Closes the fence now (through the hook); returns what remains of it in µs. While
    /// this node hands off, the fence is bridged instead: left to its lease deadline.
    pub fn step_down(&self, reason: &str) -> u64 {
        match self.hook.get() {
            Some(h) if self.handing_off() => us(h.bridge(reason)),
            Some(h) => us(h.step_down(reason)),
            None => 0,
        }
    }

    /// A higher `term` was seen somewhere: a lower leadership ends here and now.
    pub fn observe_term(&self, term: u64, reason: &str) {
        if self.with(|s| s.observe_term(term)) {
            self.events.record("step_down", term, reason);
            self.step_down(reason);
        }
    }

    /// Raft granted `candidate` a vote in `term`: record it, close our fence, and build
    /// the report that goes with the answer.
    pub fn grant(&self, term: u64, candidate: u64) -> FenceReport {
        let now = now_us();
        // Revoke first, then shut the fence: a guard that re-checks the leadership under
        // the fence's lock can no longer reopen it once the hook has run.
        self.with(|s| s.on_vote_granted(term, candidate, now));
        let own = self.step_down("granted a vote");
        self.read(|s| s.report(own, now))
    }

    /// The successor `from`, leader of `term`, asks for the VIP's traffic: close the fence
    /// and forward to `mac`. False (nothing done) when this node leads a term as late as
    /// `term`. (Closing a fence is always safe, and a forward hands packets to a kernel
    /// whose own fence decides; the forward yields to this node's own lease element.)
    pub fn hand_over(&self, term: u64, from: u64, mac: Option<[u8; 6]>) -> bool {
        let ours = term > 0 && self.read(|s| s.leading() < Some(term));
        if !ours {
            return false;
        }
        // Whatever this node still leads is older: revoked now, so that no late
        // acknowledgement can reopen the fence after the switch.
        self.with(|s| s.observe_term(term));
        if let Some(h) = self.hook.get() {
            h.hand_over(mac);
        }
        self.events.record("hand_over", term, format!("to {from}"));
        true
    }

    /// The old holder confirmed (at `now`) that its fence is closed: a claim no longer
    /// waits for it.
    pub fn released_by(&self, node: u64, term: u64, now: u64) {
        self.with(|s| s.on_released(node, term, now));
    }

    /// See [`StepDownHook::prepare_take_over`].
    pub fn prepare_take_over(&self, from: [u8; 6], until: std::time::Instant) {
        if let Some(h) = self.hook.get() {
            h.prepare_take_over(from, until);
        }
    }

    /// This node's MAC on the VIP's link, if it has a VIP.
    pub fn link_mac(&self) -> Option<[u8; 6]> {
        self.hook.get().and_then(|h| h.link_mac())
    }

    /// A lease stream from `leader` closed (EOF or error): maybe a crash.
    pub fn stream_closed(&self, leader: u64) {
        *self.closed_stream.lock().unwrap_or_else(|p| p.into_inner()) = Some((leader, now_us()));
        self.wake.notify_one();
    }

    /// This node just handled an AppendEntries.
    pub fn appended(&self) {
        self.last_append_us.store(now_us(), Ordering::Relaxed);
    }

    /// When this node last handled an AppendEntries (µs; 0: never).
    pub fn last_append_us(&self) -> u64 {
        self.last_append_us.load(Ordering::Relaxed)
    }

    /// Marks the start (true) or end (false) of a planned hand-off by this node.
    pub fn set_handing_off(&self, on: bool) {
        self.handing_off.store(on, Ordering::Relaxed);
    }

    /// Is this node handing its leadership off (and so must not campaign)?
    pub fn handing_off(&self) -> bool {
        self.handing_off.load(Ordering::Relaxed)
    }

    /// Takes the pending "stream closed" notice.
    pub fn take_closed_stream(&self) -> Option<(u64, u64)> {
        self.closed_stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}
