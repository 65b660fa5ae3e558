//! Least connections: the eligible backend with the fewest connections per unit of weight.
//!
//! Suited to long-lived connections (L4, WebSockets, HTTP/2) whose cost is their
//! duration rather than their count, where round robin lets slow connections pile up.
//!
//! The key compared is `(connections + 1) / weight`, HAProxy's `leastconn` key: the
//! `+ 1` is "the load this backend would have if it got the connection". Without it, an
//! idle pool would tie every backend at 0 and weights would only start to matter once
//! connections exist; with it, an idle weight-3 backend (1/3) beats an idle weight-1
//! one (1/1) until it carries 2 connections. Ratios are compared by cross-multiplying
//! in u128, so there is no float rounding and no division.
//!
//! Ties are broken by where the scan starts: a rotating counter (as in round robin)
//! picks the first backend looked at, and the first of several equally loaded backends
//! wins. Without that, a burst of new connections to an idle pool would all see the
//! same counts (they are only incremented once the proxy assigns the connection) and
//! all land on backend 0.
//!
//! A pick reads every eligible backend's counter: O(n), fine for pools of tens of
//! backends, and every read is a Relaxed atomic load (the figures are advisory; a
//! slightly stale count only changes which of two near-equal backends wins).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{lighter, load_of, BackendLoad, PickContext, Selector};

pub(super) struct LeastConnections {
    weights: Vec<u32>,
    loads: Arc<[Arc<BackendLoad>]>,
    next: AtomicUsize,
}

impl LeastConnections {
    /// `weights` are effective weights (all at least 1).
    pub(super) fn new(weights: Vec<u32>, loads: Arc<[Arc<BackendLoad>]>) -> Self {
        LeastConnections {
            weights,
            loads,
            next: AtomicUsize::new(0),
        }
    }
}

impl Selector for LeastConnections {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let n = self.weights.len();
        if n == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, u64)> = None;
        for k in 0..n {
            let i = (start + k) % n;
            if !eligible(i) {
                continue;
            }
            let (_, connections) = load_of(&self.loads, i);
            let key = connections.saturating_add(1);
            let better = match best {
                None => true,
                Some((b, b_key)) => lighter(key, self.weights[i], b_key, self.weights[b]),
            };
            if better {
                best = Some((i, key));
            }
        }
        best.map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::loads;
    use super::*;

    fn set(loads: &[Arc<BackendLoad>], counts: &[u64]) {
        for (l, &c) in loads.iter().zip(counts) {
            l.connections.store(c, Ordering::Relaxed);
        }
    }

    fn pick(sel: &LeastConnections, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        sel.pick(&PickContext::default(), eligible)
    }

    #[test]
    fn avoids_the_busy_backend() {
        let l = loads(3);
        set(&l, &[50, 3, 4]);
        let sel = LeastConnections::new(vec![1, 1, 1], l.clone());
        for _ in 0..20 {
            assert_eq!(pick(&sel, &|_| true), Some(1));
        }
        // Backend 1 down: the next least loaded, never the busy one.
        assert_eq!(pick(&sel, &|i| i != 1), Some(2));
    }

    #[test]
    fn follows_the_counts_as_connections_are_assigned() {
        // Simulate the proxy: each pick opens a connection on the chosen backend.
        let l = loads(3);
        set(&l, &[10, 0, 0]);
        let sel = LeastConnections::new(vec![1, 1, 1], l.clone());
        for _ in 0..20 {
            let i = pick(&sel, &|_| true).expect("eligible");
            l[i].connections.fetch_add(1, Ordering::Relaxed);
        }
        let counts: Vec<u64> = l.iter().map(|x| x.connections()).collect();
        assert_eq!(counts, vec![10, 10, 10]);
    }

    #[test]
    fn ties_spread_over_idle_backends() {
        let l = loads(4);
        let sel = LeastConnections::new(vec![1, 1, 1, 1], l);
        let mut seen = [0u32; 4];
        for _ in 0..400 {
            seen[pick(&sel, &|_| true).expect("eligible")] += 1;
        }
        assert_eq!(seen, [100; 4]);
    }

    #[test]
    fn weight_scales_the_share() {
        // Weight 3 vs 1: assigning connections one by one ends near 3:1.
        let l = loads(2);
        let sel = LeastConnections::new(vec![3, 1], l.clone());
        for _ in 0..400 {
            let i = pick(&sel, &|_| true).expect("eligible");
            l[i].connections.fetch_add(1, Ordering::Relaxed);
        }
        assert_eq!(l[0].connections(), 300);
        assert_eq!(l[1].connections(), 100);
    }

    #[test]
    fn none_only_when_nothing_is_eligible() {
        let sel = LeastConnections::new(vec![1, 1], loads(2));
        assert_eq!(pick(&sel, &|_| false), None);
        assert_eq!(pick(&sel, &|i| i == 0), Some(0));
    }
}
