//! Watching a client connection for idleness and slow request heads, without a timer
//! per request.
//!
//! hyper can arm a header-read timer for every request head, but that timer costs
//! about a fifth of the CPU of a small proxied request (measured: 33 → 26 µs). The
//! same protection comes cheaper from counters: the connection's I/O (`ActivityIo`)
//! and the service (`request_started` / `request_answered`) bump a few atomics, and the
//! connection's watchdog, which wakes a few times per timeout anyway, reads them:
//!
//! - **idle**: no byte in either direction for `idle_timeout`;
//! - **slow head**: bytes arrived since the last response, no request is being
//!   served, and that has lasted `header_timeout` — a request head is being trickled
//!   (slowloris). HTTP/1 only: HTTP/2 carries control frames between requests.
//!
//! Both are judged at watchdog ticks, so a timeout fires up to one tick late. The
//! HTTP/1.1 path's connections are judged by their listener's sweep
//! (`crate::listener_sweep`), which tells a connection its verdict through `post`.

use futures_util::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

/// The counters one client connection shares with its watchdog.
#[derive(Debug, Default)]
pub(crate) struct ConnActivity {
    // Counters wrap (u32, to keep this small): only changes between ticks matter.
    /// Completed reads.
    reads: AtomicU32,
    /// Completed writes.
    writes: AtomicU32,
    /// `reads` when the last response head went out.
    reads_when_answered: AtomicU32,
    /// Requests handed to the service and not yet answered.
    in_flight: AtomicU32,
    /// The connection speaks HTTP/2.
    http2: AtomicBool,
    /// Events a sweep posted and the connection has not taken yet (bits).
    events: AtomicU8,
    /// The connection's task, woken when an event is posted.
    waker: AtomicWaker,
}

impl ConnActivity {
    pub(crate) fn note_read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn note_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads and writes so far.
    pub(crate) fn io_count(&self) -> u64 {
        u64::from(self.reads.load(Ordering::Relaxed))
            + u64::from(self.writes.load(Ordering::Relaxed))
    }

    /// A complete request head reached the service.
    pub(crate) fn request_started(&self, http2: bool) {
        if http2 {
            self.http2.store(true, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// The service answered (the response head is on its way).
    pub(crate) fn request_answered(&self) {
        self.reads_when_answered
            .store(self.reads.load(Ordering::Relaxed), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// Adds `events` (bits) for the connection and wakes its task.
    pub(crate) fn post(&self, events: u8) {
        self.events.fetch_or(events, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The events posted since the last call, once there are any.
    pub(crate) fn poll_events(&self, cx: &mut Context<'_>) -> Poll<u8> {
        self.waker.register(cx.waker());
        if self.events.load(Ordering::Acquire) == 0 {
            return Poll::Pending;
        }
        Poll::Ready(self.events.swap(0, Ordering::AcqRel))
    }

    /// Bytes arrived since the last answer while nothing is being served: a new
    /// request head is being read.
    fn reading_head(&self) -> bool {
        !self.http2.load(Ordering::Relaxed)
            && self.in_flight.load(Ordering::Relaxed) == 0
            && self.reads.load(Ordering::Relaxed)
                != self.reads_when_answered.load(Ordering::Relaxed)
    }
}

/// What a watchdog tick decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Keep,
    /// Nothing moved for the idle timeout.
    Idle,
    /// A request head took longer than the header timeout.
    SlowHead,
}

/// The watchdog's memory between ticks.
#[derive(Debug)]
pub(crate) struct Watchdog {
    // Milliseconds in `u32`s (up to 49 days, saturating): one is kept per watched
    // connection (`listener_sweep`), so it is kept small.
    idle_ms: u32,
    header_ms: u32,
    quiet_ms: u32,
    head_ms: u32,
    last_io: u64,
}

fn millis(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

impl Watchdog {
    pub(crate) fn new(idle_timeout: Duration, header_timeout: Duration) -> Self {
        Watchdog {
            idle_ms: millis(idle_timeout),
            header_ms: millis(header_timeout),
            quiet_ms: 0,
            head_ms: 0,
            last_io: 0,
        }
    }

    /// How often to tick: a quarter of the shorter timeout, at least 100 ms.
    pub(crate) fn period(&self) -> Duration {
        let shorter = Duration::from_millis(u64::from(self.idle_ms.min(self.header_ms)));
        (shorter / 4).max(Duration::from_millis(100))
    }

    /// How long nothing has moved, as of the last tick.
    pub(crate) fn quiet(&self) -> Duration {
        Duration::from_millis(u64::from(self.quiet_ms))
    }

    /// One tick, `elapsed` after the previous one.
    pub(crate) fn tick(&mut self, activity: &ConnActivity, elapsed: Duration) -> Verdict {
        let elapsed = millis(elapsed);
        let io = activity.io_count();
        self.quiet_ms = if io == self.last_io {
            self.quiet_ms.saturating_add(elapsed)
        } else {
            0
        };
        self.last_io = io;
        self.head_ms = if activity.reading_head() {
            self.head_ms.saturating_add(elapsed)
        } else {
            0
        };
        if self.quiet_ms >= self.idle_ms {
            Verdict::Idle
        } else if self.head_ms >= self.header_ms {
            Verdict::SlowHead
        } else {
            Verdict::Keep
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(500);

    fn dog() -> Watchdog {
        Watchdog::new(Duration::from_secs(10), Duration::from_secs(2))
    }

    #[test]
    fn a_trickled_head_is_cut_off_after_the_header_timeout() {
        let act = ConnActivity::default();
        let mut dog = dog();
        let mut verdicts = Vec::new();
        for _ in 0..5 {
            act.note_read();
            verdicts.push(dog.tick(&act, TICK));
        }
        assert_eq!(verdicts[..3], [Verdict::Keep; 3]);
        assert_eq!(verdicts[3], Verdict::SlowHead);
    }

    #[test]
    fn a_request_being_served_or_an_idle_keep_alive_is_no_slow_head() {
        let act = ConnActivity::default();
        let mut dog = dog();
        act.note_read();
        act.request_started(false);
        // A long upload and a slow backend: reads go on while the request is served.
        for _ in 0..8 {
            act.note_read();
            assert_eq!(dog.tick(&act, TICK), Verdict::Keep);
        }
        act.request_answered();
        act.note_write();
        // Then the connection waits quietly for the next request until idle.
        let verdicts: Vec<Verdict> = (0..21).map(|_| dog.tick(&act, TICK)).collect();
        assert!(!verdicts.contains(&Verdict::SlowHead));
        assert_eq!(verdicts.iter().position(|v| *v == Verdict::Idle), Some(20));
    }

    #[test]
    fn http2_control_frames_between_requests_are_not_a_head() {
        let act = ConnActivity::default();
        let mut dog = dog();
        act.request_started(true);
        act.request_answered();
        for _ in 0..8 {
            act.note_read();
            assert_eq!(dog.tick(&act, TICK), Verdict::Keep);
        }
    }
}
