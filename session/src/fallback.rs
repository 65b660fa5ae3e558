//! Deterministic backend choice for when Redis is away.
//!
//! Rendezvous (highest-random-weight) hashing: every backend gets a score
//! `xxh3(backend, seed = xxh3(key))` and the highest score wins. The answer depends only on the
//! key and the *set* of backend ids, so every node (and a restarted node) picks the same
//! backend without talking to anyone, and removing one of N backends only moves the keys that
//! were on it (about 1/N).

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Index into `backends` of the backend `key` belongs to, or `None` when there is none.
/// The result does not depend on the order of `backends`.
pub fn fallback_pick(key: &str, backends: &[&str]) -> Option<usize> {
    let seed = xxh3_64(key.as_bytes());
    backends
        .iter()
        .enumerate()
        .map(|(i, b)| (xxh3_64_with_seed(b.as_bytes(), seed), *b, i))
        // Ties (same score) are broken by the id itself so that order never matters.
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, _, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:8080", i + 1)).collect()
    }

    #[test]
    fn empty_has_no_pick() {
        assert_eq!(fallback_pick("k", &[]), None);
    }

    #[test]
    fn same_answer_every_time_and_any_order() {
        let owned = backends(7);
        let list: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mut reversed = list.clone();
        reversed.reverse();
        for k in 0..1000 {
            let key = format!("session-{k}");
            let a = fallback_pick(&key, &list).unwrap();
            assert_eq!(fallback_pick(&key, &list), Some(a));
            let b = fallback_pick(&key, &reversed).unwrap();
            assert_eq!(list[a], reversed[b], "order changed the pick for {key}");
        }
    }

    #[test]
    fn spread_is_even() {
        let owned = backends(5);
        let list: Vec<&str> = owned.iter().map(String::as_str).collect();
        let mut counts = [0usize; 5];
        for k in 0..20_000 {
            counts[fallback_pick(&format!("u{k}"), &list).unwrap()] += 1;
        }
        // Expected 4000 each; allow +-10%.
        for c in counts {
            assert!((3600..=4400).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn removing_one_of_n_moves_about_one_nth() {
        let n = 8;
        let owned = backends(n);
        let all: Vec<&str> = owned.iter().map(String::as_str).collect();
        let removed = all[3];
        let fewer: Vec<&str> = all.iter().copied().filter(|b| *b != removed).collect();
        let keys = 20_000;
        let mut moved = 0;
        for k in 0..keys {
            let key = format!("user:{k}");
            let before = all[fallback_pick(&key, &all).unwrap()];
            let after = fewer[fallback_pick(&key, &fewer).unwrap()];
            if before != after {
                // Only keys of the removed backend may move.
                assert_eq!(before, removed, "{key} moved off a surviving backend");
                moved += 1;
            }
        }
        let share = moved as f64 / keys as f64;
        assert!((share - 1.0 / n as f64).abs() < 0.02, "moved share {share}");
    }
}
