//! `max_pending`: connects in progress to one backend at most (circuit breaking, see
//! `request::breaker`). A connect over the cap is not started: `UpstreamError::Pending`.
//! A pool without the cap has no counters and takes no branch beyond `Option::None`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// The cap and one counter per backend (index-aligned with the pool's backends). The
/// counters belong to the backends' state, so connects of an earlier config version
/// still count until they end.
#[derive(Debug)]
pub(super) struct ConnectCap {
    max: u64,
    pending: Box<[Arc<AtomicU64>]>,
}

/// A connect in progress; dropping it (connected or failed) ends it.
#[must_use = "dropping it ends the pending connect at once"]
pub(super) struct PendingConnect<'a>(&'a AtomicU64);

impl Drop for PendingConnect<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl ConnectCap {
    pub(super) fn new(max: u32, counters: Vec<Arc<AtomicU64>>) -> Self {
        ConnectCap {
            max: u64::from(max),
            pending: counters.into(),
        }
    }

    /// Connects in progress to all backends now.
    pub(super) fn total(&self) -> u64 {
        self.pending.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// A connect to backend `index` may start (`None`: it is at the cap).
    pub(super) fn begin(&self, index: usize) -> Option<PendingConnect<'_>> {
        let counter = self.pending.get(index)?;
        if counter.fetch_add(1, Relaxed) >= self.max {
            counter.fetch_sub(1, Relaxed);
            return None;
        }
        Some(PendingConnect(counter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connects_over_the_cap_are_refused_until_one_ends() {
        let counters: Vec<Arc<AtomicU64>> = vec![Arc::default(), Arc::default()];
        let cap = ConnectCap::new(2, counters.clone());
        let a = cap.begin(0).expect("first");
        let _b = cap.begin(0).expect("second");
        assert!(cap.begin(0).is_none(), "a third is over the cap");
        assert!(cap.begin(1).is_some(), "each backend has its own count");
        drop(a);
        assert!(cap.begin(0).is_some(), "one ended: room again");
    }

    #[test]
    fn a_new_cap_over_the_same_counters_sees_connects_in_progress() {
        let counters: Vec<Arc<AtomicU64>> = vec![Arc::default()];
        let old = ConnectCap::new(1, counters.clone());
        let running = old.begin(0).expect("first");
        // A config change builds a new cap over the backend's counter.
        let new = ConnectCap::new(1, counters);
        assert!(
            new.begin(0).is_none(),
            "the old version's connect still counts"
        );
        drop(running);
        assert!(new.begin(0).is_some());
    }
}
