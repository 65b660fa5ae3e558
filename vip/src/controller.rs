//! `VipController`: the thread-safe handle the node uses to say "hold" or "release". It only
//! records the wish and forwards it; the background task in `task.rs` does the work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::announcer::Announcer;
use crate::deadline::Deadline;
use crate::netlink::Netlink;
use crate::task::{AnnounceHook, Command, Task};
use crate::{caps, VipError, VipOptions};

/// Holds or releases one VIP on command. Cheap to call from any thread; the address work runs
/// on a tokio task spawned by [`VipController::start`]. Dropping the controller releases the
/// VIP (if the runtime is still running); [`VipController::shutdown`] does so and waits.
pub struct VipController {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    /// The commanded state. Changed and forwarded under this lock so the task sees commands
    /// in the same order as `held()` changes.
    desired: Mutex<bool>,
    transitions: AtomicU64,
    /// Set by `hold_until`; the task stops renewing after it.
    deadline: Arc<Deadline>,
    /// The task let go because the deadline passed while `desired` stayed true.
    suspended: Arc<AtomicBool>,
    /// Told when the first announcement of a holding period (or re-announce) is out.
    on_announce: Arc<OnceLock<AnnounceHook>>,
    /// The interface's MAC when the controller started.
    mac: [u8; 6],
}

impl VipController {
    /// Checks the options, the interface (exists, has a MAC) and the capabilities (opens the
    /// netlink connection and the AF_PACKET socket), then starts the background task in the
    /// current network namespace. Must be called inside a tokio runtime. Does not touch the
    /// address: call [`crate::remove_stale`] first to clean up after an earlier run.
    pub async fn start(opts: VipOptions) -> Result<VipController, VipError> {
        opts.validate()?;
        caps::check_net_admin()?;
        let netlink = Netlink::open()?;
        let link = netlink.link(&opts.interface).await?;
        let announcer = Announcer::open()?;
        let mac = link.mac;
        let (tx, rx) = mpsc::unbounded_channel();
        tracing::info!(vip = %opts.address, prefix = opts.prefix, interface = %opts.interface,
            lifetime = ?opts.lifetime, "VIP controller started");
        let deadline = Arc::new(Deadline::new());
        let suspended = Arc::new(AtomicBool::new(false));
        let on_announce = Arc::new(OnceLock::new());
        let task = Task::new(
            opts,
            netlink,
            announcer,
            link,
            rx,
            deadline.clone(),
            suspended.clone(),
        )
        .with_announce_hook(on_announce.clone());
        Ok(VipController {
            shared: Arc::new(Shared {
                desired: Mutex::new(false),
                transitions: AtomicU64::new(0),
                deadline,
                suspended,
                on_announce,
                mac,
            }),
            tx,
            task: Some(tokio::spawn(task.run())),
        })
    }

    /// Take the VIP: add the address with its lifetime, then announce it. Idempotent.
    pub fn hold(&self, reason: &str) {
        self.shared.deadline.set(None);
        self.set(true, reason);
    }

    /// Hold the VIP, but only until `until`: the caller must keep pushing the deadline
    /// out (e.g. on every lease check). If it stops — frozen or stalled — the task
    /// releases instead of renewing. A later call with a fresh deadline takes it again.
    pub fn hold_until(&self, until: std::time::Instant, reason: &str) {
        self.shared.deadline.set(Some(until));
        let desired = *lock(&self.shared.desired);
        if desired && self.shared.suspended.swap(false, Ordering::Relaxed) {
            self.send(Command::Hold {
                reason: reason.to_string(),
            });
        }
        self.set(true, reason);
    }

    /// Registers (once) what to call right after the first gratuitous ARP / NA of each
    /// holding period or re-announce goes out, with `"hold"` or `"reannounce"`: the
    /// failover chain records it.
    pub fn on_first_announcement(&self, hook: AnnounceHook) {
        let _ = self.shared.on_announce.set(hook);
    }

    /// Keep the address until `until` (then let go), announcing it no more: a node that
    /// handed the VIP over finishes the connections it accepted. Clears the wish to hold
    /// (`held()` is false); a later `hold` or `hold_until` holds and announces again.
    pub fn keep_quietly_until(&self, until: std::time::Instant) {
        let mut desired = lock(&self.shared.desired);
        self.shared.deadline.set(Some(until));
        if *desired {
            *desired = false;
            self.shared.transitions.fetch_add(1, Ordering::Relaxed);
            self.send(Command::Quiet);
        }
    }

    /// Put the address in place without announcing it, until `until` unless a `hold` or
    /// `hold_until` comes first (then it is announced as usual): a successor of a planned
    /// hand-over stages it before its claim, so that the packets the old holder forwards
    /// find it (its fence lets through only those). `held()` stays false. Ignored while
    /// holding.
    pub fn stage_until(&self, until: std::time::Instant) {
        let desired = lock(&self.shared.desired);
        if !*desired {
            self.shared.deadline.set(Some(until));
            self.send(Command::Stage);
        }
    }

    /// A handle that can delete the address later (see [`AddressDropper`]).
    pub fn dropper(&self) -> AddressDropper {
        AddressDropper {
            shared: self.shared.clone(),
            tx: self.tx.clone(),
        }
    }

    /// The interface's MAC (as it was when the controller started): where a planned
    /// hand-over forwards the VIP's packets to.
    pub fn link_mac(&self) -> [u8; 6] {
        self.shared.mac
    }

    /// Drop the VIP at once and stop announcing it. Idempotent.
    pub fn release(&self, reason: &str) {
        self.set(false, reason);
    }

    /// If holding, start a fresh burst schedule (after a term change or a healed partition,
    /// when peers may have cached another holder's MAC). Ignored when not holding.
    pub fn reannounce(&self, reason: &str) {
        let desired = lock(&self.shared.desired);
        if *desired {
            self.send(Command::Reannounce {
                reason: reason.to_string(),
            });
        }
    }

    /// Whether the VIP is commanded held and the task is alive to hold it. The kernel side can
    /// lag by the time of one netlink request; [`crate::is_present`] asks the kernel.
    pub fn held(&self) -> bool {
        *lock(&self.shared.desired) && !self.tx.is_closed()
    }

    /// Number of hold/release transitions so far (each false->true and true->false counts 1).
    pub fn transitions(&self) -> u64 {
        self.shared.transitions.load(Ordering::Relaxed)
    }

    /// Releases the VIP and stops the task, waiting until the address is deleted.
    pub async fn shutdown(mut self) {
        let (done_tx, done_rx) = oneshot::channel();
        self.send(Command::Shutdown { done: done_tx });
        // An error means the task is already gone; either way there is nothing left to wait for.
        let _ = done_rx.await;
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn set(&self, want: bool, reason: &str) {
        let mut desired = lock(&self.shared.desired);
        if *desired == want {
            return;
        }
        *desired = want;
        self.shared.transitions.fetch_add(1, Ordering::Relaxed);
        let reason = reason.to_string();
        self.send(if want {
            Command::Hold { reason }
        } else {
            Command::Release { reason }
        });
    }

    fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_err() {
            tracing::error!("VIP controller task is gone; the command is lost (the kernel lifetime removes a held VIP)");
        }
    }
}

/// Deletes the address on command, whatever was wished before: after
/// [`VipController::keep_quietly_until`], once the connections it was kept for are done.
pub struct AddressDropper {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Command>,
}

impl AddressDropper {
    /// Deletes the address now unless the node holds the VIP again.
    pub fn drop_address(&self, reason: &str) {
        let desired = lock(&self.shared.desired);
        if !*desired
            && self
                .tx
                .send(Command::Release {
                    reason: reason.to_string(),
                })
                .is_err()
        {
            tracing::debug!("VIP controller task is gone; nothing to drop");
        }
    }
}

impl Drop for VipController {
    fn drop(&mut self) {
        if self.task.is_some() {
            // Closing the channel makes the task release and exit (if its runtime still runs).
            tracing::debug!("VIP controller dropped without shutdown; the task releases the VIP");
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of a plain bool: use it.
fn lock(m: &Mutex<bool>) -> std::sync::MutexGuard<'_, bool> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
