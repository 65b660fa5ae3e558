//! Weighted round robin, nginx's "smooth" variant, precomputed.
//!
//! Plain weighted round robin repeats each backend `weight` times in a row, so weights
//! 5:1:1 send bursts of five requests to one backend. nginx's smooth weighted round
//! robin interleaves instead. Each backend keeps a `current` weight; on every pick,
//!
//! 1. each backend's `current += weight`;
//! 2. the backend with the largest `current` wins (the first one on ties);
//! 3. the winner's `current -= total weight`.
//!
//! For {a:5, b:1, c:1} that yields a a b a c a a, and for {A:3, B:1} it yields A A B A.
//! After `total` picks every `current` is back to zero, so the sequence is periodic.
//!
//! Running those steps per request needs mutable state shared by all requests (nginx
//! has one worker per process; we have many threads). Instead we run them once, when
//! the selector is built, and store one period of the sequence. A pick is then a
//! `fetch_add` on an atomic counter and an index into that vector: lock-free, and
//! exactly the smooth sequence when every backend is eligible.
//!
//! The period is `sum(weights) / gcd(weights)`. It is capped at [`MAX_PERIOD`] so that
//! weights like 1000:999 cannot make us build a huge table; above the cap the weights
//! are scaled down proportionally (each stays at least 1), which costs a little
//! precision on exotic weight sets only.
//!
//! Ineligible entries are skipped by walking forward in the sequence, and the walk's
//! length is added to the counter (as in `round_robin.rs`) so the slots of a down
//! backend are spread over the entries that follow instead of all going to its
//! successor. The ratio between the remaining backends then stays close to, but not
//! exactly, their weight ratio (exactness would need one sequence per eligible subset,
//! and outages are the exception, not the steady state).

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PickContext, Selector};

/// Longest precomputed period (entries are `u32`, so 64 KiB per pool at most).
const MAX_PERIOD: u64 = 16_384;

#[derive(Debug)]
pub(super) struct SmoothWeighted {
    /// Number of backends.
    len: usize,
    /// One period of the smooth weighted round-robin sequence (backend indices).
    sequence: Vec<u32>,
    next: AtomicUsize,
}

impl SmoothWeighted {
    /// `weights` are effective weights (all at least 1).
    pub(super) fn new(weights: &[u32]) -> Self {
        SmoothWeighted {
            len: weights.len(),
            sequence: smooth_sequence(&reduce(weights)),
            next: AtomicUsize::new(0),
        }
    }
}

impl Selector for SmoothWeighted {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let period = self.sequence.len();
        if period == 0 {
            return None;
        }
        let start = self.next.fetch_add(1, Ordering::Relaxed) % period;
        for skipped in 0..period {
            // After `len` misses, make sure the walk can succeed before walking a long
            // period: every backend appears in the sequence, so if anything is eligible
            // the walk finds it within one period.
            if skipped == self.len && !(0..self.len).any(eligible) {
                return None;
            }
            let i = self.sequence[(start + skipped) % period] as usize;
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

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Divides the weights by their gcd, then scales them down if the period is too long.
fn reduce(weights: &[u32]) -> Vec<u64> {
    let weights: Vec<u64> = weights.iter().map(|&w| u64::from(w.max(1))).collect();
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let weights: Vec<u64> = weights.iter().map(|w| w / g).collect();
    let total: u64 = weights.iter().sum();
    if total <= MAX_PERIOD {
        return weights;
    }
    weights
        .iter()
        .map(|w| (w * MAX_PERIOD / total).max(1))
        .collect()
}

/// One period of nginx's smooth weighted round robin over `weights`.
fn smooth_sequence(weights: &[u64]) -> Vec<u32> {
    let total: i64 = weights.iter().map(|&w| w as i64).sum();
    let mut current = vec![0i64; weights.len()];
    let mut sequence = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &w) in weights.iter().enumerate() {
            current[i] += w as i64;
            // Strictly greater: on ties the first backend wins, as in nginx.
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        sequence.push(best as u32);
    }
    sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks(sel: &SmoothWeighted, n: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        (0..n)
            .map(|_| {
                sel.pick(&PickContext::default(), eligible)
                    .expect("eligible")
            })
            .collect()
    }

    #[test]
    fn three_to_one_is_a_a_b_a() {
        let sel = SmoothWeighted::new(&[3, 1]);
        assert_eq!(picks(&sel, 8, &|_| true), vec![0, 0, 1, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn three_to_one_is_exact_in_every_window_of_four() {
        let sel = SmoothWeighted::new(&[3, 1]);
        let got = picks(&sel, 400, &|_| true);
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 300);
        for window in got.windows(4) {
            assert_eq!(window.iter().filter(|&&i| i == 1).count(), 1, "{window:?}");
        }
    }

    #[test]
    fn matches_nginx_five_one_one() {
        // The example from nginx's commit introducing smooth weighted round robin.
        assert_eq!(smooth_sequence(&[5, 1, 1]), vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn common_factor_does_not_lengthen_the_period() {
        let sel = SmoothWeighted::new(&[300, 100]);
        assert_eq!(sel.sequence, vec![0, 0, 1, 0]);
    }

    #[test]
    fn huge_weights_are_scaled_not_dropped() {
        let sel = SmoothWeighted::new(&[1_000_000, 999_999, 1]);
        assert!(sel.sequence.len() as u64 <= MAX_PERIOD + 3);
        let count = |b: u32| sel.sequence.iter().filter(|&&i| i == b).count();
        assert!(count(2) >= 1, "the light backend keeps a slot");
        assert!(count(0).abs_diff(count(1)) <= 1);
    }

    #[test]
    fn down_backend_slots_are_shared_by_the_others() {
        // {A:1, B:1, C:1} with B down must still alternate A, C.
        let sel = SmoothWeighted::new(&[1, 1, 1]);
        let got = picks(&sel, 100, &|i| i != 1);
        assert_eq!(got.iter().filter(|&&i| i == 0).count(), 50);
        assert!(got.iter().all(|&i| i != 1));
        // And with weights, the remaining two keep roughly their ratio: {A:2, B:5, C:1}
        // with B down should give A about twice C.
        let sel = SmoothWeighted::new(&[2, 5, 1]);
        let got = picks(&sel, 3000, &|i| i != 1);
        let a = got.iter().filter(|&&i| i == 0).count() as f64;
        let c = got.iter().filter(|&&i| i == 2).count() as f64;
        assert!((1.5..2.5).contains(&(a / c)), "a={a} c={c}");
    }

    #[test]
    fn none_only_when_nothing_is_eligible() {
        let sel = SmoothWeighted::new(&[50, 1]);
        assert_eq!(sel.pick(&PickContext::default(), &|_| false), None);
        assert_eq!(sel.pick(&PickContext::default(), &|i| i == 1), Some(1));
        assert_eq!(
            SmoothWeighted::new(&[]).pick(&PickContext::default(), &|_| true),
            None
        );
    }
}
