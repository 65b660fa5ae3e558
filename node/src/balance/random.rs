//! Weighted random: each eligible backend with probability weight / (eligible weight).
//!
//! Stateless, so nothing is shared between threads at all; over many picks it
//! converges to the weights, with no ordering pattern for clients to synchronise with
//! (two clients cannot "phase-lock" onto the same backend as can happen with round
//! robin). Pingora's `Random` and Sozu's `Random` do the same.
//!
//! The selector keeps the cumulative weights. A pick draws a number below the total
//! and binary-searches the cumulative array (O(log n)). If the chosen backend is
//! ineligible, we draw again, but only among the eligible ones (an O(n) scan of their
//! weights). The result is exactly proportional among eligible backends: backend `i`
//! wins on the first draw with probability `w_i / W`, and otherwise (probability
//! `W_down / W`) on the second with `w_i / W_up`; the sum is `w_i / W_up`.

use rand::Rng;

use super::{PickContext, Selector};

#[derive(Debug)]
pub(super) struct WeightedRandom {
    /// `cumulative[i]` = sum of the weights of backends `0..=i`.
    cumulative: Vec<u64>,
}

impl WeightedRandom {
    /// `weights` are effective weights (all at least 1).
    pub(super) fn new(weights: &[u32]) -> Self {
        let cumulative = weights
            .iter()
            .scan(0u64, |sum, &w| {
                *sum += u64::from(w);
                Some(*sum)
            })
            .collect();
        WeightedRandom { cumulative }
    }

    fn weight(&self, i: usize) -> u64 {
        let before = if i == 0 { 0 } else { self.cumulative[i - 1] };
        self.cumulative[i] - before
    }

    fn pick_with<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        eligible: &dyn Fn(usize) -> bool,
    ) -> Option<usize> {
        let total = *self.cumulative.last()?;
        if total == 0 {
            return None;
        }
        // The first backend whose cumulative weight exceeds the draw.
        let draw = rng.random_range(0..total);
        let i = self.cumulative.partition_point(|&c| c <= draw);
        if eligible(i) {
            return Some(i);
        }
        let n = self.cumulative.len();
        let up: u64 = (0..n)
            .filter(|&i| eligible(i))
            .map(|i| self.weight(i))
            .sum();
        if up == 0 {
            return None;
        }
        let mut draw = rng.random_range(0..up);
        for i in (0..n).filter(|&i| eligible(i)) {
            let w = self.weight(i);
            if draw < w {
                return Some(i);
            }
            draw -= w;
        }
        // Only reachable if eligibility changed between the two scans.
        (0..n).find(|&i| eligible(i))
    }
}

impl Selector for WeightedRandom {
    fn pick(&self, _ctx: &PickContext<'_>, eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        self.pick_with(&mut rand::rng(), eligible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn counts(sel: &WeightedRandom, picks: usize, eligible: &dyn Fn(usize) -> bool) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(42);
        let mut c = vec![0; sel.cumulative.len()];
        for _ in 0..picks {
            c[sel.pick_with(&mut rng, eligible).expect("eligible")] += 1;
        }
        c
    }

    #[test]
    fn three_to_one_over_10k_picks() {
        let sel = WeightedRandom::new(&[3, 1]);
        let c = counts(&sel, 10_000, &|_| true);
        let share = c[0] as f64 / 10_000.0;
        assert!((0.70..=0.80).contains(&share), "{c:?}");
    }

    #[test]
    fn down_backends_weight_goes_to_the_others_in_proportion() {
        // {2, 5, 1, 2} with the weight-5 one down: 2:1:2 among the rest.
        let sel = WeightedRandom::new(&[2, 5, 1, 2]);
        let c = counts(&sel, 10_000, &|i| i != 1);
        assert_eq!(c[1], 0);
        for (i, want) in [(0, 0.4), (2, 0.2), (3, 0.4)] {
            let share = c[i] as f64 / 10_000.0;
            assert!((share - want).abs() < 0.03, "{c:?}");
        }
    }

    #[test]
    fn none_only_when_nothing_is_eligible() {
        let sel = WeightedRandom::new(&[1, 9]);
        assert_eq!(sel.pick(&PickContext::default(), &|_| false), None);
        for _ in 0..20 {
            assert_eq!(sel.pick(&PickContext::default(), &|i| i == 0), Some(0));
        }
        assert_eq!(
            WeightedRandom::new(&[]).pick(&PickContext::default(), &|_| true),
            None
        );
    }
}
