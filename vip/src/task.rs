//! The controller's background task: the only place that changes the address. It runs its own
//! timers (renewal every lifetime/4, announcement schedule), so a stalled caller cannot keep
//! the VIP alive, and a stalled task loses it when the kernel lifetime runs out.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::Instrument;

use crate::announcer::Announcer;
use crate::deadline::Deadline;
use crate::netlink::{LinkInfo, Netlink};
use crate::schedule::AnnounceSchedule;
use crate::VipOptions;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Called right after the first announcement of a holding period (`"hold"`) or of a
/// re-announce (`"reannounce"`) went out.
pub type AnnounceHook = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Retry delay for a failed add while we should be holding, when lifetime/4 is longer.
const ADD_RETRY: Duration = Duration::from_millis(200);
/// While adds keep failing, warn on the first failure and then every this many (about 5 s at
/// the retry delay), so a vanished interface does not flood the log.
const WARN_EVERY: u32 = 25;

pub(crate) enum Command {
    Hold {
        reason: String,
    },
    Release {
        reason: String,
    },
    Reannounce {
        reason: String,
    },
    /// Keep the address (renewing it) but announce it no more: a handed-over node
    /// finishing its connections while clients move to the successor.
    Quiet,
    /// Add the address without announcing it, unless holding already: a successor about
    /// to take over gets it in place before its claim (see `VipController::stage_until`).
    Stage,
    Shutdown {
        done: oneshot::Sender<()>,
    },
}

/// State while commanded to hold.
struct Holding {
    /// When to re-add the address (renewal, or a retry after a failed add).
    next_renew: Instant,
    /// `None` until the address is in the kernel: we never announce an address we lack.
    schedule: Option<AnnounceSchedule>,
    /// Announce nothing (see `Command::Quiet`).
    quiet: bool,
}

pub(crate) struct Task {
    opts: VipOptions,
    netlink: Netlink,
    announcer: Announcer,
    link: LinkInfo,
    rx: mpsc::UnboundedReceiver<Command>,
    holding: Option<Holding>,
    /// Consecutive failed adds/renewals.
    add_failures: u32,
    deadline: Arc<Deadline>,
    suspended: Arc<AtomicBool>,
    on_announce: Arc<OnceLock<AnnounceHook>>,
    /// The next announcement is the first of a holding period or re-announce (which).
    first_due: Option<&'static str>,
}

impl Task {
    pub fn new(
        opts: VipOptions,
        netlink: Netlink,
        announcer: Announcer,
        link: LinkInfo,
        rx: mpsc::UnboundedReceiver<Command>,
        deadline: Arc<Deadline>,
        suspended: Arc<AtomicBool>,
    ) -> Task {
        Task {
            opts,
            netlink,
            announcer,
            link,
            rx,
            holding: None,
            add_failures: 0,
            deadline,
            suspended,
            on_announce: Arc::new(OnceLock::new()),
            first_due: None,
        }
    }

    /// Where the first-announcement hook will be registered.
    pub fn with_announce_hook(mut self, hook: Arc<OnceLock<AnnounceHook>>) -> Task {
        self.on_announce = hook;
        self
    }

    pub async fn run(mut self) {
        loop {
            let wake = self.next_wake();
            tokio::select! {
                // Commands first: a release must never wait behind a timer.
                biased;
                cmd = self.rx.recv() => match cmd {
                    Some(Command::Hold { reason }) => self.hold(&reason).await,
                    Some(Command::Release { reason }) => self.release(&reason).await,
                    Some(Command::Reannounce { reason }) => self.reannounce(&reason),
                    Some(Command::Quiet) => {
                        if let Some(h) = self.holding.as_mut() {
                            h.quiet = true;
                            h.schedule = None;
                        }
                    }
                    Some(Command::Stage) => self.stage().await,
                    Some(Command::Shutdown { done }) => {
                        self.release("shutdown").await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.release("controller dropped").await;
                        return;
                    }
                },
                () = sleep_until(wake) => self.on_timer().await,
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let h = self.holding.as_ref()?;
        let announce = h.schedule.as_ref().and_then(AnnounceSchedule::next_due);
        Some(announce.map_or(h.next_renew, |a| a.min(h.next_renew)))
    }

    async fn hold(&mut self, reason: &str) {
        let span = tracing::info_span!("vip_hold", vip = %self.opts.address, reason);
        async {
            if let Some(h) = self.holding.as_mut() {
                if h.quiet {
                    // Holding for real again: announce from scratch.
                    h.quiet = false;
                    h.next_renew = Instant::now();
                    self.renew().await;
                    self.announce_due();
                }
                return;
            }
            if self.deadline.expired() {
                self.suspended.store(true, Ordering::Relaxed);
                tracing::warn!("hold deadline already passed; not taking the VIP");
                return;
            }
            let started = Instant::now();
            self.holding = Some(Holding {
                next_renew: started,
                schedule: None,
                quiet: false,
            });
            // The address first: every millisecond before the announcement is an outage.
            self.renew().await;
            if !self.has_schedule() {
                // The interface may have been re-created since start: `renew` looked it up
                // again after the failure; once more with the fresh index.
                self.renew().await;
            }
            if !self.has_schedule() {
                return;
            }
            self.announce_due();
            tracing::info!(took = ?started.elapsed(), "VIP held and announced");
            // Its MAC may have changed since start (bond failover): the first burst would
            // then have named the old one; check now that the VIP is served, and start over.
            let mac = self.link.mac;
            self.refresh_link().await;
            if self.link.mac != mac {
                self.reannounce("the interface's MAC changed");
                self.announce_due();
            }
        }
        .instrument(span)
        .await;
    }

    async fn stage(&mut self) {
        if self.holding.is_some() || self.deadline.expired() {
            return;
        }
        self.holding = Some(Holding {
            next_renew: Instant::now(),
            schedule: None,
            quiet: true,
        });
        self.renew().await;
        tracing::debug!(vip = %self.opts.address, "VIP address staged, unannounced");
    }

    async fn release(&mut self, reason: &str) {
        let span = tracing::info_span!("vip_release", vip = %self.opts.address, reason);
        async {
            if self.holding.take().is_none() {
                return;
            }
            let started = Instant::now();
            // Two tries; if both fail the kernel lifetime still removes the address.
            for attempt in 1..=2 {
                match self.netlink.delete(self.link.index, self.opts.address).await {
                    Ok(_) => {
                        tracing::info!(took = ?started.elapsed(), "VIP released");
                        return;
                    }
                    Err(e) => tracing::error!(error = %e, attempt, "deleting the VIP failed"),
                }
            }
            tracing::error!(expires_in = ?self.opts.lifetime, "VIP not deleted; it expires with its kernel lifetime");
        }
        .instrument(span)
        .await;
    }

    fn reannounce(&mut self, reason: &str) {
        if let Some(Holding {
            schedule: Some(s), ..
        }) = self.holding.as_mut()
        {
            tracing::info!(vip = %self.opts.address, reason, "re-announcing VIP");
            *s = AnnounceSchedule::new(Instant::now(), &self.opts.bursts, self.opts.refresh);
            self.first_due = Some("reannounce");
        }
    }

    async fn on_timer(&mut self) {
        if self.holding.is_some() && self.deadline.expired() {
            // The caller stopped confirming (frozen or stalled process): let go rather
            // than renew or announce a VIP another node may hold by now.
            self.release("hold deadline passed without confirmation")
                .await;
            self.suspended.store(true, Ordering::Relaxed);
            return;
        }
        let now = Instant::now();
        if self.holding.as_ref().is_some_and(|h| h.next_renew <= now) {
            self.renew().await;
        }
        self.announce_due();
    }

    fn has_schedule(&self) -> bool {
        self.holding.as_ref().is_some_and(|h| h.schedule.is_some())
    }

    /// Sends the announcements that are due now.
    fn announce_due(&mut self) {
        let due = match self.holding.as_mut().and_then(|h| h.schedule.as_mut()) {
            Some(s) => s.take_due(Instant::now()),
            None => 0,
        };
        self.announce(due);
    }

    /// Adds or renews the address. On the first success of a holding period, starts the
    /// announcement schedule. On failure, retries soon: the previous lifetime is still running.
    async fn renew(&mut self) {
        let result = self
            .netlink
            .add_or_renew(
                self.link.index,
                self.opts.address,
                self.opts.prefix,
                self.opts.kernel_lifetime_secs(),
            )
            .await;
        let now = Instant::now();
        let Some(h) = self.holding.as_mut() else {
            return;
        };
        match result {
            Ok(()) => {
                h.next_renew = now + self.opts.renew_period();
                if h.schedule.is_none() && !h.quiet {
                    let plan = AnnounceSchedule::new(now, &self.opts.bursts, self.opts.refresh);
                    h.schedule = Some(plan);
                    self.first_due = Some("hold");
                }
                if self.add_failures > 0 {
                    tracing::info!(vip = %self.opts.address, failures = self.add_failures,
                        "adding the VIP works again");
                    self.add_failures = 0;
                }
            }
            Err(e) => {
                h.next_renew = now + self.opts.renew_period().min(ADD_RETRY);
                self.add_failures += 1;
                if self.add_failures % WARN_EVERY == 1 {
                    tracing::warn!(vip = %self.opts.address, error = %e, failures = self.add_failures,
                        "adding/renewing the VIP failed; retrying");
                }
                // A re-created interface has a new index: look it up again before the retry.
                self.refresh_link().await;
            }
        }
    }

    /// Re-reads the interface's index and MAC; keeps the last known ones if that fails.
    async fn refresh_link(&mut self) {
        match self.netlink.link(&self.opts.interface).await {
            Ok(link) => self.link = link,
            Err(e) => tracing::debug!(error = %e,
                "cannot refresh interface; keeping the last known index and MAC"),
        }
    }

    fn announce(&mut self, frames: u32) {
        for _ in 0..frames {
            if let Err(e) = self.announcer.announce(self.link, self.opts.address) {
                tracing::warn!(vip = %self.opts.address, error = %e, "sending an announcement failed");
                return;
            }
        }
        if frames > 0 {
            tracing::debug!(vip = %self.opts.address, frames, "announced VIP");
            if let (Some(what), Some(hook)) = (self.first_due.take(), self.on_announce.get()) {
                hook(what);
            }
        }
    }
}

async fn sleep_until(wake: Option<Instant>) {
    match wake {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
