//! One watchdog sweep per listener instead of timers in every connection.
//!
//! A client connection on the hand-written HTTP/1.1 path (`crate::h1`) must be closed
//! when it has been idle for `idle_timeout`, when a request head trickles in for longer
//! than `header_read_timeout`, and at once (if it is between requests) when its listener
//! stops. Each connection used to carry the means itself: a ticking `tokio::time::Interval`
//! (a timer entry of its own), the `Watchdog` state, and a wait on the stop token — a few
//! hundred bytes per idle connection. Here one task per listener does it for all of them:
//! the listener's `Sweep` holds every watched connection's counters (`ConnActivity`) and
//! watchdog state, judges them all at each tick (`Watchdog::tick`, the same verdicts as
//! before) and on stop, and posts what it found into the connection's `ConnActivity`
//! (`post`), waking its task. A connection holds only its `Watched` ticket (it leaves the
//! sweep when dropped); between events it costs the sweep one slot.
//!
//! A sweep costs O(connections) per tick, a few atomic loads each (at 10,000 connections
//! about a tenth of a millisecond per tick); ticks are `Watchdog::period` apart, so a
//! timeout fires up to one tick late, as before.

use crate::conn_watch::{ConnActivity, Verdict, Watchdog};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the sweep posts to a connection (bits of `ConnActivity::post`).
pub(crate) mod event {
    /// The listener is stopping: finish the request in progress, then close.
    pub(crate) const STOP: u8 = 1;
    /// Nothing moved for the idle timeout.
    pub(crate) const IDLE: u8 = 2;
    /// A request head took longer than the header timeout.
    pub(crate) const SLOW_HEAD: u8 = 4;
    /// Quiet for more than a tick: a connection waiting between requests with no unread
    /// byte may leave its task for the listener's parking lot (`crate::idle_park`).
    pub(crate) const PARK: u8 = 8;
}

/// The longest tick: a quiet connection is told `PARK` two to three ticks (one to
/// one and a half seconds) after its last byte, whatever its timeouts.
const MAX_PERIOD: Duration = Duration::from_millis(500);

/// The connections of one listener under watch.
pub(crate) struct Sweep {
    idle_timeout: Duration,
    header_timeout: Duration,
    watched: Mutex<Slots>,
}

/// Watched connections in a slab: a slot per connection, freed slots reused.
#[derive(Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    /// The listener stopped: connections that join now get `STOP` at once.
    stopped: bool,
}

struct Slot {
    activity: Arc<ConnActivity>,
    dog: Watchdog,
    /// The connection can be parked (a plain TCP one on a listener with a lot).
    parkable: bool,
}

/// A connection's place in its listener's sweep; dropping it leaves the sweep.
pub(crate) struct Watched {
    sweep: Arc<Sweep>,
    index: usize,
}

impl Drop for Watched {
    fn drop(&mut self) {
        let mut slots = self.sweep.slots();
        if let Some(slot) = slots.slots.get_mut(self.index) {
            *slot = None;
            slots.free.push(self.index);
        }
    }
}

impl Sweep {
    /// A sweep for a listener with these timeouts, ticking in a task of its own until
    /// `stop` has fired and its last connection has left (or nothing refers to it).
    pub(crate) fn start(
        idle_timeout: Duration,
        header_timeout: Duration,
        stop: CancellationToken,
    ) -> Arc<Sweep> {
        let sweep = Arc::new(Sweep {
            idle_timeout,
            header_timeout,
            watched: Mutex::new(Slots::default()),
        });
        tokio::spawn(run(sweep.clone(), stop));
        sweep
    }

    /// Puts a connection under watch (its `activity` is what its I/O counts).
    pub(crate) fn watch(self: &Arc<Self>, activity: Arc<ConnActivity>, parkable: bool) -> Watched {
        let mut slots = self.slots();
        if slots.stopped {
            activity.post(event::STOP);
        }
        let slot = Some(Slot {
            activity,
            dog: Watchdog::new(self.idle_timeout, self.header_timeout),
            parkable,
        });
        let index = match slots.free.pop() {
            Some(i) => {
                slots.slots[i] = slot;
                i
            }
            None => {
                slots.slots.push(slot);
                slots.slots.len() - 1
            }
        };
        drop(slots);
        Watched {
            sweep: self.clone(),
            index,
        }
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // A panic elsewhere while it was held leaves the slab consistent.
        self.watched.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn period(&self) -> Duration {
        Watchdog::new(self.idle_timeout, self.header_timeout)
            .period()
            .min(MAX_PERIOD)
    }

    /// One tick: judges every watched connection; returns how many there are.
    fn tick(&self, elapsed: Duration) -> usize {
        let mut slots = self.slots();
        let mut count = 0;
        for slot in slots.slots.iter_mut().flatten() {
            count += 1;
            match slot.dog.tick(&slot.activity, elapsed) {
                // More than one tick's worth: a connection that joined just before a
                // tick counts a whole one at its first.
                Verdict::Keep if slot.parkable && slot.dog.quiet() > elapsed => {
                    slot.activity.post(event::PARK)
                }
                Verdict::Keep => {}
                Verdict::Idle => slot.activity.post(event::IDLE),
                Verdict::SlowHead => slot.activity.post(event::SLOW_HEAD),
            }
        }
        count
    }

    /// The listener stopped: tells every watched connection, now and from now on.
    fn stop(&self) {
        let mut slots = self.slots();
        slots.stopped = true;
        for slot in slots.slots.iter().flatten() {
            slot.activity.post(event::STOP);
        }
    }
}

/// The sweep's task.
async fn run(sweep: Arc<Sweep>, stop: CancellationToken) {
    let period = sweep.period();
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stopped = false;
    loop {
        tokio::select! {
            _ = stop.cancelled(), if !stopped => {
                stopped = true;
                let _span = tracing::debug_span!("sweep_stop").entered();
                sweep.stop();
            }
            _ = ticker.tick() => {
                let watched = sweep.tick(period);
                if (stopped && watched == 0) || Arc::strong_count(&sweep) == 1 {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn posted(activity: &ConnActivity) -> u8 {
        let waker = futures_util::task::noop_waker();
        match activity.poll_events(&mut std::task::Context::from_waker(&waker)) {
            std::task::Poll::Ready(events) => events,
            std::task::Poll::Pending => 0,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_connection_is_told_it_is_idle_and_a_busy_one_is_not() {
        let sweep = Sweep::start(
            Duration::from_secs(4),
            Duration::from_secs(100),
            CancellationToken::new(),
        );
        let quiet = Arc::new(ConnActivity::default());
        let busy = Arc::new(ConnActivity::default());
        let _q = sweep.watch(quiet.clone(), false);
        let _b = sweep.watch(busy.clone(), false);
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            busy.note_read();
            assert_eq!(posted(&busy), 0);
        }
        assert_eq!(posted(&quiet), event::IDLE);
        assert_eq!(posted(&quiet), 0, "an event is taken once");
    }

    /// A parkable connection quiet for a tick is told it may park, each tick until it
    /// does; a busy one is not, and one that cannot park is left alone until idle.
    #[tokio::test(start_paused = true)]
    async fn a_quiet_parkable_connection_is_told_to_park() {
        let sweep = Sweep::start(
            Duration::from_secs(60),
            Duration::from_secs(10),
            CancellationToken::new(),
        );
        assert_eq!(sweep.period(), MAX_PERIOD);
        let quiet = Arc::new(ConnActivity::default());
        let busy = Arc::new(ConnActivity::default());
        let plain = Arc::new(ConnActivity::default());
        let _q = sweep.watch(quiet.clone(), true);
        let _b = sweep.watch(busy.clone(), true);
        let _p = sweep.watch(plain.clone(), false);
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            busy.note_read();
        }
        assert_eq!(posted(&quiet), event::PARK);
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            busy.note_read();
        }
        assert_eq!(posted(&quiet), event::PARK, "told again while it stays");
        assert_eq!(posted(&busy), 0);
        assert_eq!(posted(&plain), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickled_head_is_reported_slow() {
        let sweep = Sweep::start(
            Duration::from_secs(100),
            Duration::from_secs(2),
            CancellationToken::new(),
        );
        let head = Arc::new(ConnActivity::default());
        let _h = sweep.watch(head.clone(), false);
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(600)).await;
            head.note_read();
        }
        assert_eq!(posted(&head), event::SLOW_HEAD);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_reaches_watched_and_later_connections_and_leaving_frees_the_slot() {
        let stop = CancellationToken::new();
        let sweep = Sweep::start(
            Duration::from_secs(60),
            Duration::from_secs(10),
            stop.clone(),
        );
        let a = Arc::new(ConnActivity::default());
        let watched = sweep.watch(a.clone(), false);
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(posted(&a), event::STOP);
        let b = Arc::new(ConnActivity::default());
        let later = sweep.watch(b.clone(), false);
        assert_eq!(posted(&b), event::STOP);
        drop(watched);
        assert_eq!(sweep.slots().free, vec![0]);
        drop(later);
        assert_eq!(sweep.tick(Duration::from_secs(1)), 0);
    }
}
