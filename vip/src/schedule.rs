//! When to announce: the burst plan after a hold (or a re-announce) and the slow refresh
//! after it, as plain arithmetic on instants so it can be tested without a network.

use std::time::Duration;
use tokio::time::Instant;

/// Gap between the frames of one burst. keepalived sends a burst back to back; a few
/// milliseconds apart means one short loss or switch hiccup cannot eat the whole burst.
pub(crate) const FRAME_GAP: Duration = Duration::from_millis(5);

/// The announcement plan of one holding period. Every frame has its own due time; refresh
/// frames follow the last burst every `refresh`.
#[derive(Debug, Clone)]
pub(crate) struct AnnounceSchedule {
    /// Due instants of the burst frames, sorted; `next` indexes the first not yet sent.
    due: Vec<Instant>,
    next: usize,
    refresh: Duration,
    next_refresh: Option<Instant>,
}

impl AnnounceSchedule {
    /// The plan for bursts starting at `start`.
    pub fn new(start: Instant, bursts: &[(Duration, u32)], refresh: Duration) -> AnnounceSchedule {
        let mut due: Vec<Instant> = bursts
            .iter()
            .flat_map(|&(delay, count)| (0..count).map(move |i| start + delay + FRAME_GAP * i))
            .collect();
        due.sort();
        let last = due.last().copied().unwrap_or(start);
        let next_refresh = (!refresh.is_zero()).then(|| last + refresh);
        AnnounceSchedule {
            due,
            next: 0,
            refresh,
            next_refresh,
        }
    }

    /// When the next frame is due, if ever.
    pub fn next_due(&self) -> Option<Instant> {
        let burst = self.due.get(self.next).copied();
        match (burst, self.next_refresh) {
            (Some(b), Some(r)) => Some(b.min(r)),
            (b, r) => b.or(r),
        }
    }

    /// How many frames are due at `now`; marks them sent. Frames missed because the task ran
    /// late are all sent now (bounded by the burst plan), but at most one refresh frame.
    pub fn take_due(&mut self, now: Instant) -> u32 {
        let mut count = 0;
        while self.due.get(self.next).is_some_and(|&t| t <= now) {
            self.next += 1;
            count += 1;
        }
        if let Some(r) = self.next_refresh {
            if r <= now && self.next >= self.due.len() {
                count += 1;
                self.next_refresh = Some(now + self.refresh);
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_bursts() -> Vec<(Duration, u32)> {
        vec![
            (Duration::ZERO, 3),
            (Duration::from_millis(1500), 3),
            (Duration::from_secs(5), 3),
        ]
    }

    /// Walks the schedule up to `until`, returning (offset, frames) for every wake-up.
    fn walk(s: &mut AnnounceSchedule, start: Instant, until: Duration) -> Vec<(Duration, u32)> {
        let mut out = Vec::new();
        for _ in 0..1000 {
            let Some(t) = s.next_due() else { break };
            if t > start + until {
                break;
            }
            out.push((t - start, s.take_due(t)));
        }
        out
    }

    #[test]
    fn default_plan_sends_three_bursts_then_refreshes() {
        let start = Instant::now();
        let mut s = AnnounceSchedule::new(start, &default_bursts(), Duration::from_secs(5));
        let sends = walk(&mut s, start, Duration::from_secs(16));
        let total: u32 = sends.iter().map(|x| x.1).sum();
        assert_eq!(
            total,
            9 + 2,
            "9 burst frames and refreshes at ~10 s and ~15 s"
        );
        assert_eq!(sends[0], (Duration::ZERO, 1));
        assert_eq!(sends[3], (Duration::from_millis(1500), 1));
        let last_burst = Duration::from_secs(5) + FRAME_GAP * 2;
        assert_eq!(sends[9].0, last_burst + Duration::from_secs(5));
    }

    #[test]
    fn late_wakeup_sends_everything_missed_but_one_refresh() {
        let start = Instant::now();
        let mut s = AnnounceSchedule::new(start, &default_bursts(), Duration::from_secs(1));
        assert_eq!(s.take_due(start + Duration::from_secs(30)), 10);
        assert_eq!(s.next_due(), Some(start + Duration::from_secs(31)));
    }

    #[test]
    fn no_refresh_means_the_plan_ends() {
        let start = Instant::now();
        let mut s = AnnounceSchedule::new(start, &[(Duration::ZERO, 2)], Duration::ZERO);
        assert_eq!(s.take_due(start + Duration::from_secs(1)), 2);
        assert_eq!(s.next_due(), None);
    }
}
