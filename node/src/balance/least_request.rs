//! Least request: power of two choices over requests in flight.
//!
//! Scanning every backend for the global minimum (as `least_connections.rs` does) has
//! a herd problem when many threads pick at once: they all read the same counters and
//! all choose the same "least loaded" backend before any of them has incremented it.
//! The power of two choices (Mitzenmacher; used by Envoy's `LEAST_REQUEST`, linkerd's
//! balancer and Sozu's `PowerOfTwo`) samples two distinct eligible backends uniformly
//! at random and takes the less loaded of the two. Concurrent picks then sample
//! different pairs, the most loaded backend can never win (it loses to whichever
//! partner it is drawn with), and the expected maximum load is exponentially better
//! than a single random choice, at O(1) cost per pick.
//!
//! Load is `(in_flight + 1) / weight`, compared exactly by cross-multiplying (see
//! `least_connections.rs` for why the `+ 1`). On a tie the first sample wins, which is
//! itself random. With a single eligible backend it is returned as is.

use std::sync::Arc;

use super::{lighter, load_of, sample, BackendLoad, PickContext, Selector};

pub(super) struct LeastRequest {
    weights: Vec<u32>,
    loads: Arc<[Arc<BackendLoad>]>,
}

impl LeastRequest {
    /// `weights` are effective weights (all at least 1).
    pub(super) fn new(weights: Vec<u32>, loads: Arc<[Arc<BackendLoad>]>) -> Self {
        LeastRequest { weights, loads }
    }

    fn key(&self, i: usize) -> u64 {
        load_of(&self.loads, i).0.saturating_add(1)
    }
}

impl Selector for LeastRequest {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let (a, b) = sample::two(&mut rand::rng(), self.weights.len(), eligible)?;
        let Some(b) = b else { return Some(a) };
        if lighter(self.key(b), self.weights[b], self.key(a), self.weights[a]) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::loads;
    use super::*;
    use std::sync::atomic::Ordering;

    fn counts(sel: &LeastRequest, picks: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let mut c = vec![0; sel.weights.len()];
        for _ in 0..picks {
            c[sel
                .pick(&PickContext::default(), eligible)
                .expect("eligible")] += 1;
        }
        c
    }

    #[test]
    fn prefers_backends_with_fewer_requests_in_flight() {
        let l = loads(3);
        l[0].in_flight.store(10, Ordering::Relaxed);
        let sel = LeastRequest::new(vec![1, 1, 1], l.clone());
        let c = counts(&sel, 1000, &|_| true);
        assert!(c[0] < 400, "busy backend picked {} of 1000", c[0]);
        // Two distinct samples: the busiest of three can never win.
        assert_eq!(c[0], 0);
        // The two idle ones share the rest evenly (each wins ~1/2; generous bounds).
        assert!(c[1] > 350 && c[2] > 350, "{c:?}");
    }

    #[test]
    fn moderate_imbalance_is_corrected_statistically() {
        // 0 is busier than 1 and 2, which differ too: picks rank 2 > 1 > 0.
        let l = loads(3);
        for (b, f) in [(0, 8), (1, 4), (2, 1)] {
            l[b].in_flight.store(f, Ordering::Relaxed);
        }
        let sel = LeastRequest::new(vec![1, 1, 1], l);
        let c = counts(&sel, 3000, &|_| true);
        // Exact shares are 0, 1/3, 2/3.
        assert!(c[2] > 1800 && c[1] > 800 && c[0] == 0, "{c:?}");
    }

    #[test]
    fn weight_makes_a_backend_look_lighter() {
        // Same in_flight; the weight-4 backend wins every pair it is part of.
        let l = loads(2);
        l[0].in_flight.store(3, Ordering::Relaxed);
        l[1].in_flight.store(3, Ordering::Relaxed);
        let sel = LeastRequest::new(vec![1, 4], l);
        assert_eq!(counts(&sel, 100, &|_| true), vec![0, 100]);
    }

    #[test]
    fn single_eligible_is_returned_and_none_when_nothing_is() {
        let l = loads(3);
        l[1].in_flight.store(1000, Ordering::Relaxed);
        let sel = LeastRequest::new(vec![1, 1, 1], l);
        assert_eq!(counts(&sel, 50, &|i| i == 1), vec![0, 50, 0]);
        assert_eq!(sel.pick(&PickContext::default(), &|_| false), None);
    }
}
