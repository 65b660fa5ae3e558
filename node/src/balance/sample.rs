//! Uniform sampling of eligible backend indices.
//!
//! The power-of-two-choices algorithms (`least_request.rs`, `peak_ewma.rs`) need two
//! distinct random eligible backends, and consistent hashing needs one when a request
//! carries no key. Eligibility is a predicate, not a list, so we cannot index into the
//! eligible set directly without building it.
//!
//! The common case is "everything is eligible", so we first draw blindly a few times
//! and accept the first eligible draw (O(1), no allocation). Only when that keeps
//! missing (most of the pool is down) do we scan: count the eligible ones, draw a rank,
//! and walk to it. Both paths are uniform over the eligible set (rejection sampling is
//! uniform on whatever it accepts), so mixing them keeps the result uniform.

use rand::Rng;

/// Blind draws before scanning. With half the pool down, 4 draws all miss 1 time in 16.
const BLIND_TRIES: usize = 4;

/// One uniformly random index in `0..n` with `eligible(i)`, or `None` if there is none.
pub(super) fn one<R: Rng + ?Sized>(
    rng: &mut R,
    n: usize,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<usize> {
    if n == 0 {
        return None;
    }
    for _ in 0..BLIND_TRIES {
        let i = rng.random_range(0..n);
        if eligible(i) {
            return Some(i);
        }
    }
    let count = (0..n).filter(|&i| eligible(i)).count();
    if count == 0 {
        return None;
    }
    let rank = rng.random_range(0..count);
    (0..n)
        .filter(|&i| eligible(i))
        .nth(rank)
        // The predicate reads live health and may change between the two scans; any
        // eligible index is better than a spurious `None`.
        .or_else(|| (0..n).find(|&i| eligible(i)))
}

/// Two distinct uniformly random eligible indices. The second is `None` when only one
/// index is eligible; the whole result is `None` when none is.
pub(super) fn two<R: Rng + ?Sized>(
    rng: &mut R,
    n: usize,
    eligible: &dyn Fn(usize) -> bool,
) -> Option<(usize, Option<usize>)> {
    let first = one(rng, n, eligible)?;
    let second = one(rng, n, &|i| i != first && eligible(i));
    Some((first, second))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn one_is_uniform_over_the_eligible_set() {
        let mut rng = StdRng::seed_from_u64(7);
        // 10 backends, only 1, 5 and 8 eligible: the blind path mostly misses.
        let eligible = |i: usize| matches!(i, 1 | 5 | 8);
        let mut counts = [0u32; 10];
        for _ in 0..9000 {
            let i = one(&mut rng, 10, &eligible).expect("something is eligible");
            counts[i] += 1;
        }
        for i in [1, 5, 8] {
            assert!((2700..3300).contains(&counts[i]), "{counts:?}");
        }
        assert_eq!(
            counts.iter().sum::<u32>(),
            counts[1] + counts[5] + counts[8]
        );
    }

    #[test]
    fn two_gives_distinct_indices() {
        let mut rng = StdRng::seed_from_u64(8);
        for _ in 0..1000 {
            let (a, b) = two(&mut rng, 3, &|_| true).expect("all eligible");
            let b = b.expect("three eligible, so a second exists");
            assert_ne!(a, b);
        }
        assert_eq!(two(&mut rng, 3, &|i| i == 2), Some((2, None)));
        assert_eq!(two(&mut rng, 3, &|_| false), None);
        assert_eq!(two(&mut rng, 0, &|_| true), None);
    }
}
