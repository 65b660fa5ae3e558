//! The failover chain, recorded: each step of losing and taking leadership with its
//! CLOCK_MONOTONIC instant, so the chaos suite can show where the milliseconds of a
//! failover went (last ping, detection, pre-vote, election, lease, fence, address, ARP).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::lease::time::now_us;

/// How many recent events are kept.
const KEEP: usize = 512;

/// One step of a failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailoverEvent {
    /// CLOCK_MONOTONIC, microseconds.
    pub t_us: u64,
    pub what: &'static str,
    pub term: u64,
    pub detail: String,
}

/// A bounded log of recent failover events.
#[derive(Debug, Default)]
pub struct EventLog {
    events: Mutex<VecDeque<FailoverEvent>>,
}

impl EventLog {
    /// Records `what` now.
    pub fn record(&self, what: &'static str, term: u64, detail: impl Into<String>) {
        self.record_at(now_us(), what, term, detail);
    }

    /// Records `what` at an instant already measured.
    pub fn record_at(&self, t_us: u64, what: &'static str, term: u64, detail: impl Into<String>) {
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == KEEP {
            events.pop_front();
        }
        events.push_back(FailoverEvent {
            t_us,
            what,
            term,
            detail: detail.into(),
        });
    }

    /// Every event kept, oldest first.
    pub fn snapshot(&self) -> Vec<FailoverEvent> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest() {
        let log = EventLog::default();
        for i in 0..(KEEP as u64 + 10) {
            log.record_at(i, "x", i, "");
        }
        let all = log.snapshot();
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].t_us, 10);
    }
}
