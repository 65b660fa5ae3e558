//! The caller's hold deadline: the task renews and announces the VIP only before it.
//!
//! The caller (the node's leadership check, every 10 ms) keeps pushing the deadline out
//! while it still wants the VIP. If the whole process was frozen (SIGSTOP, a VM pause),
//! the task's overdue timers may fire before the caller has re-checked its lease after
//! the resume; without a deadline they would re-add and re-announce a VIP that another
//! node has taken meanwhile. With it, a late timer sees the deadline has passed and
//! releases instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// No deadline: hold until told otherwise.
const NONE: u64 = u64::MAX;

pub(crate) struct Deadline {
    epoch: Instant,
    /// Milliseconds since `epoch`, or `NONE`.
    until_ms: AtomicU64,
}

impl Deadline {
    pub fn new() -> Self {
        Deadline {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(NONE),
        }
    }

    pub fn set(&self, until: Option<Instant>) {
        let ms = until.map_or(NONE, |t| {
            t.saturating_duration_since(self.epoch).as_millis() as u64
        });
        self.until_ms.store(ms, Ordering::Relaxed);
    }

    pub fn expired(&self) -> bool {
        let until = self.until_ms.load(Ordering::Relaxed);
        until != NONE && self.epoch.elapsed().as_millis() as u64 > until
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn none_never_expires_and_past_deadlines_do() {
        let d = Deadline::new();
        assert!(!d.expired());
        d.set(Some(Instant::now() + Duration::from_secs(60)));
        assert!(!d.expired());
        d.set(Some(Instant::now()));
        std::thread::sleep(Duration::from_millis(5));
        assert!(d.expired());
        d.set(None);
        assert!(!d.expired());
    }
}
