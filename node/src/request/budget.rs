//! A pool's retry budget (`pool.retry_budget`): retries allowed as a share of the pool's
//! requests over a sliding window of whole seconds, with a floor of `min_per_second`, so
//! that when a pool turns sick its failed attempts are not all tried again (a retry
//! storm doubling the load on what is left).
//!
//! One counter pair (requests, retries) per second of the window, in a ring indexed by
//! the second; a slot whose second has passed out of the window is reset by the first
//! request that lands on it. Counting is lock-free and approximate at the edges (two
//! retries deciding at once may both pass the last free place): a budget, not a quota.
//! A pool without a budget has none of this (`PoolRuntime::retry_budget` is `None`), so
//! an unconfigured request touches no shared counter.

use fulcrum_config::RetryBudget;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// The counters of one second.
#[derive(Debug, Default)]
struct Slot {
    /// Which second (since `RetryGate::origin`) the counts are for.
    second: AtomicU64,
    requests: AtomicU64,
    retries: AtomicU64,
}

/// The running budget of one pool (one per config version of the pool).
#[derive(Debug)]
pub struct RetryGate {
    /// Retries allowed per request, in millionths.
    per_million: u64,
    /// Retries always allowed in a window.
    floor: u64,
    origin: Instant,
    slots: Box<[Slot]>,
}

impl RetryGate {
    pub fn new(budget: &RetryBudget) -> Self {
        let window = budget.window.as_secs().max(1);
        RetryGate {
            per_million: (budget.percent.clamp(0.0, 100.0) * 10_000.0) as u64,
            floor: u64::from(budget.min_per_second) * window,
            origin: Instant::now(),
            // Second 0 is counted from the start; every slot starts at it, empty.
            slots: (0..window).map(|_| Slot::default()).collect(),
        }
    }

    /// The slot of the current second, reset if it held an older one.
    fn current(&self) -> (u64, &Slot) {
        let second = self.origin.elapsed().as_secs();
        let n = self.slots.len() as u64;
        let slot = &self.slots[(second % n) as usize];
        let seen = slot.second.load(Relaxed);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Relaxed);
            slot.retries.store(0, Relaxed);
        }
        (second, slot)
    }

    /// Counts one request of the pool.
    pub fn note_request(&self) {
        self.current().1.requests.fetch_add(1, Relaxed);
    }

    /// Takes a retry from the budget: `false` when the window's retries reached its share.
    pub fn try_retry(&self) -> bool {
        let (second, slot) = self.current();
        let n = self.slots.len() as u64;
        let (mut requests, mut retries) = (0u64, 0u64);
        for s in self.slots.iter() {
            // Only slots of the last `n` seconds count; older ones wait for their reset.
            if second.saturating_sub(s.second.load(Relaxed)) < n {
                requests += s.requests.load(Relaxed);
                retries += s.retries.load(Relaxed);
            }
        }
        let allowed = (requests.saturating_mul(self.per_million) / 1_000_000).max(self.floor);
        if retries >= allowed {
            return false;
        }
        slot.retries.fetch_add(1, Relaxed);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn gate(percent: f64, min_per_second: u32, window: u64) -> RetryGate {
        RetryGate::new(&RetryBudget {
            percent,
            min_per_second,
            window: Duration::from_secs(window),
        })
    }

    #[test]
    fn retries_stay_within_the_share_of_requests() {
        let g = gate(20.0, 0, 10);
        for _ in 0..100 {
            g.note_request();
        }
        let granted = (0..100).filter(|_| g.try_retry()).count();
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_floor_allows_retries_without_traffic() {
        let g = gate(20.0, 2, 5);
        let granted = (0..100).filter(|_| g.try_retry()).count();
        assert_eq!(granted, 10, "2 per second over a 5 s window");
    }

    #[test]
    fn a_zero_budget_refuses_every_retry() {
        let g = gate(0.0, 0, 1);
        g.note_request();
        assert!(!g.try_retry());
    }

    #[test]
    fn counts_leave_the_window_as_seconds_pass() {
        let g = gate(50.0, 0, 1);
        for _ in 0..4 {
            g.note_request();
        }
        assert_eq!((0..10).filter(|_| g.try_retry()).count(), 2);
        std::thread::sleep(Duration::from_millis(1100));
        // A new second: the old slot is reset by the first request on it.
        g.note_request();
        g.note_request();
        assert_eq!((0..10).filter(|_| g.try_retry()).count(), 1);
    }
}
