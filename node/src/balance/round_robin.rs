//! Round robin: backends in turn, ignoring weights.
//!
//! The only state is one `AtomicUsize` counter; a pick is a `fetch_add` (Relaxed: the
//! counter orders nothing else, it only has to hand out distinct numbers) followed by a
//! walk forward to the first eligible backend. This is Pingora's `RoundRobin` and
//! rpxy's `round_robin`.
//!
//! Walking forward alone would be unfair: with A, B, C and B down, the slot that
//! belonged to B would also go to C, and C would get two thirds of the traffic. So a
//! pick that had to skip `k` ineligible backends also advances the counter by `k`,
//! consuming the slots it stepped over. With B down the sequence becomes A, C, A, C.
//! Under concurrency the extra advance can interleave with other picks, which blurs the
//! alternation a little but never breaks the "only eligible" rule.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PickContext, Selector};

#[derive(Debug)]
pub(super) struct RoundRobin {
    len: usize,
    next: AtomicUsize,
}

impl RoundRobin {
    pub(super) fn new(len: usize) -> Self {
        RoundRobin {
            len,
            next: AtomicUsize::new(0),
        }
    }
}

impl Selector for RoundRobin {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        // `usize` wrap-around is harmless: `% len` of consecutive numbers stays a
        // rotation except for one uneven step every 2^64 picks.
        let start = self.next.fetch_add(1, Ordering::Relaxed) % self.len;
        for skipped in 0..self.len {
            let i = (start + skipped) % self.len;
            if eligible(i) {
                if skipped > 0 {
                    self.next.fetch_add(skipped, Ordering::Relaxed);
                }
                return Some(i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(rr: &RoundRobin, n: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n)
            .map(|_| {
                rr.pick(&PickContext::default(), eligible)
                    .expect("eligible")
            })
            .collect()
    }

    #[test]
    fn alternates_exactly_over_100_picks() {
        let rr = RoundRobin::new(2);
        let got = picks(&rr, 100, &|_| true);
        let want: Vec<usize> = (0..100).map(|k| k % 2).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn cycles_through_three_in_order() {
        let rr = RoundRobin::new(3);
        assert_eq!(picks(&rr, 7, &|_| true), vec![0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn skipping_a_down_backend_does_not_double_its_neighbour() {
        let rr = RoundRobin::new(3);
        let got = picks(&rr, 100, &|i| i != 1);
        let want: Vec<usize> = (0..100).map(|k| if k % 2 == 0 { 0 } else { 2 }).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn none_only_when_nothing_is_eligible() {
        let rr = RoundRobin::new(3);
        assert_eq!(rr.pick(&PickContext::default(), &|_| false), None);
        assert_eq!(rr.pick(&PickContext::default(), &|i| i == 2), Some(2));
        assert_eq!(
            RoundRobin::new(0).pick(&PickContext::default(), &|_| true),
            None
        );
    }
}
